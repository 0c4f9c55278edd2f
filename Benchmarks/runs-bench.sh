#!/usr/bin/env bash
# Run-recording figures of issue 5 so far (Docs/performance.md §Runs), release build:
#   - overhead of `trove run -- true` per run (100 runs, minus 100 × /bin/true);
#   - a run reporting 1,000,000 metric points: stored bytes of its series, and the time of
#     `trove runs metrics ID loss --stats` (open the store, find the run, read and decode).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SCRATCH=${TROVE_BENCH_DIR:-${TMPDIR:-/tmp}/trove-bench}/runs
(cd "$ROOT" && swift build -c release 2>&1 | tail -1)
export PATH=$ROOT/.build/release:$PATH TROVE_PROGRESS=0
rm -rf "$SCRATCH" && mkdir -p "$SCRATCH" && cd "$SCRATCH"
trove init -q
trove run -q -- true   # warm: the python version probe is cached after the first run
t0=$(date +%s.%N); for i in $(seq 100); do trove run -q -p i=$i -- true; done; t1=$(date +%s.%N)
for i in $(seq 100); do /bin/true; done; t2=$(date +%s.%N)
python3 -c "print(f'trove run overhead: {((${t1}-${t0})-(${t2}-${t1}))/100*1000:.1f} ms per run (100 runs)')"
vals=$(seq -s, 1 100)
t3=$(date +%s.%N); trove sweep -q -p i=$vals --parallel 1 -- true; t4=$(date +%s.%N)
python3 -c "print(f'100-variant local sweep of true: {(${t4}-${t3}):.2f} s, {((${t4}-${t3})-(${t2}-${t1}))/100*1000:.1f} ms overhead per run')"
cat > million.py <<'PY'
import os, random
random.seed(1)
import struct
with open(os.environ["TROVE_METRICS_FILE"], "a") as f:
    for i in range(1_000_000):
        v = struct.unpack("f", struct.pack("f", 2.0 / (1 + i / 5000) + random.random() / 100))[0]
        f.write('{"step": %d, "loss": %r}\n' % (i, v))
PY
before=$(trove du --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["stored_bytes"])')
trove run -q -- python3 million.py
after=$(trove du --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["stored_bytes"])')
id=$(trove runs --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
echo "1,000,000-point run: store grew by $((after - before)) bytes (series + logs + record)"
trove runs metrics "$id" loss --stats
for k in 1 2 3; do /usr/bin/time -f "read 1,000,000 points: %e s" trove runs metrics "$id" loss --stats > /dev/null; done
