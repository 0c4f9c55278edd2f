#!/usr/bin/env bash
# Installs the Debian packages Trove builds against (and the tools its tests drive) when missing.
set -euo pipefail
need=()
# slurm-wlm + munge: the single-node Slurm the launcher tests start (scripts/slurm-start.sh);
# chromium + chromium-driver: the web UI tests drive a real headless browser;
# postgresql: the daemon replicas' metadata server (scripts/postgres.sh).
for p in libzstd-dev libgit2-dev libssl-dev libsqlite3-dev pkg-config git git-lfs python3 openssh-client openssh-server curl openssl slurm-wlm munge chromium chromium-driver postgresql; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# radosgw + ceph-mon + ceph-osd: the real S3 server of the S3 remote tests (scripts/radosgw.sh;
# it checks SigV4 signatures). Without recommends: 69 MB instead of the whole Ceph.
ceph=()
for p in radosgw ceph-mon ceph-osd; do dpkg -s "$p" >/dev/null 2>&1 || ceph+=("$p"); done
if [ ${#ceph[@]} -gt 0 ]; then
  echo "installing: ${ceph[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${ceph[@]}" >/dev/null
fi
# Python tools the tests drive: Jupyter's notebook machinery, the Kubernetes schema check, and
# the web tests' browser driver, mlflow client and OpenAPI validator.
py=()
python3 -c 'import nbclient, nbformat, ipykernel, papermill' 2>/dev/null || py+=(nbclient nbformat ipykernel papermill)
command -v kubernetes-validate >/dev/null || py+=(kubernetes-validate)
# The web tests: Selenium for the browser, the real mlflow client, the OpenAPI validator.
python3 -c 'import selenium' 2>/dev/null || py+=(selenium)
python3 -c 'import mlflow' 2>/dev/null || py+=(mlflow-skinny)
# mlflow.search_runs answers with a pandas DataFrame, and mlflow-skinny does not bring pandas.
python3 -c 'import pandas' 2>/dev/null || py+=(pandas)
python3 -c 'import openapi_spec_validator' 2>/dev/null || py+=(openapi-spec-validator)
# The model registry tests: the real Hugging Face client.
python3 -c 'import huggingface_hub' 2>/dev/null || py+=(huggingface_hub)
# The serving tests and the demo's served model: the fixture worker is a numpy model.
python3 -c 'import numpy' 2>/dev/null || py+=(numpy)
# A real Open Inference Protocol client for the serving test.
python3 -c 'import tritonclient.http' 2>/dev/null || py+=("tritonclient[http]")
# The S3 tests: botocore signs for the proxy that plays a server without conditional writes.
python3 -c 'import botocore' 2>/dev/null || py+=(awscli)
if [ ${#py[@]} -gt 0 ]; then
  echo "installing (pip): ${py[*]}" >&2
  if ! python3 -m pip --version >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-pip >/dev/null
  fi
  # Debian's own python3 refuses pip installs outside a venv unless told (PEP 668).
  python3 -m pip install -q "${py[@]}" 2>/dev/null || python3 -m pip install -q --break-system-packages "${py[@]}"
  python3 -m ipykernel install --user >/dev/null 2>&1 || true
fi
command -v swift >/dev/null || { echo "swift is not on PATH: install Swift 6.x (https://swift.org) first" >&2; exit 1; }
