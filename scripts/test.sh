#!/usr/bin/env bash
# The whole test suite: installs missing apt packages, builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
swift build --build-tests
swift test --disable-swift-testing
