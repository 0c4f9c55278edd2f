#!/usr/bin/env bash
# `trove serve --follow` figures of issue 7 (Docs/performance.md §Serving), release build:
# a model version with a 1 GiB weights file is served from a store cloned from a daemon; under a
# steady load of 50 requests/s a new version (1 % of the weights changed in place) is published,
# promoted and pushed; the serving side follows the alias. Reported: bytes the daemon sent for the
# switch (its trove_http_bytes_out_total) against the 1 GiB, failed requests, seconds to switch.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SCRATCH=${TROVE_BENCH_DIR:-${TMPDIR:-/tmp}/trove-bench}/follow
(cd "$ROOT" && swift build -c release 2>&1 | tail -1)
export PATH=$ROOT/.build/release:$PATH TROVE_PROGRESS=0 TROVE_AUTHOR_NAME=bench HOME=$SCRATCH/home
rm -rf "$SCRATCH" && mkdir -p "$SCRATCH/home" && cd "$SCRATCH"
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DPORT=$(free); SPORT=$(free)
trove daemon project create p --root "$SCRATCH/d" >/dev/null
TOKEN=$(trove daemon token create --project p --role write --root "$SCRATCH/d" 2>/dev/null)
trove daemon --root "$SCRATCH/d" --listen 127.0.0.1:$DPORT > daemon.log 2>&1 &
DAEMON=$!
trap 'kill $DAEMON $SERVE $LOAD 2>/dev/null || true' EXIT
SERVE=; LOAD=
for _ in $(seq 100); do curl -sf http://127.0.0.1:$DPORT/healthz >/dev/null && break; sleep 0.1; done
export TROVE_TOKEN=$TOKEN

# The publisher: v1 with 1 GiB of weights (the fixture worker ignores them; the tiny weights.npz is its model).
mkdir pub && cd pub && trove init -q && mkdir toy
cp "$ROOT/fixtures/serving/worker.py" "$ROOT/fixtures/serving/serving.json" toy/
python3 -c "import numpy as np; np.savez('toy/weights.npz', W=np.arange(8, dtype=np.float32).reshape(4, 2), b=np.array([0.5, -0.5], dtype=np.float32))"
head -c 1073741824 /dev/urandom > toy/big.bin
trove model import-hf toy --name toy -q
trove model promote toy@v1 prod -q
trove remote add origin http://127.0.0.1:$DPORT/p >/dev/null
trove push -q origin 'models/*'
cd ..

# The server: a clone, serving prod and following it.
trove clone -q http://127.0.0.1:$DPORT/p srv --include 'nothing/*'
cd srv
trove serve toy@prod --listen 127.0.0.1:$SPORT --follow --follow-interval 1 > ../serve.log 2>&1 &
SERVE=$!
cd ..
for _ in $(seq 600); do curl -sf http://127.0.0.1:$SPORT/v2/models/toy/ready >/dev/null && break; sleep 0.1; done

# 50 requests/s until told to stop; every status and model version written down.
cat > load.py <<'PY'
import http.client, json, os, sys, time
port = int(sys.argv[1]); body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]})
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
out = open("load.txt", "w"); t = time.time()
while not os.path.exists("stop"):
    try:
        c.request("POST", "/v2/models/toy/infer", body, {"Content-Type": "application/json"}); r = c.getresponse(); d = r.read()
        out.write(f"{time.time():.3f} {r.status} {json.loads(d).get('model_version', '-') if r.status == 200 else '-'}\n")
    except Exception as e:
        out.write(f"{time.time():.3f} error -\n"); c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out.flush(); t += 0.02; time.sleep(max(0, t - time.time()))
PY
python3 load.py $SPORT &
LOAD=$!
sleep 3
before=$(curl -s http://127.0.0.1:$DPORT/metrics | awk '/^trove_http_bytes_out_total/ {print $2}')
# v2: 1 % of the bytes overwritten in place in 20 scattered regions (the shared benchmark's
# in-place mutation, ../shared/bench/mutate.py).
python3 - <<'PY'
import os
with open("pub/toy/big.bin", "r+b") as f:
    for k in range(20):
        f.seek(k * (1073741824 // 20) + 12345); f.write(os.urandom(1073741824 // 100 // 20))
PY
cd pub && trove model import-hf toy --name toy -q && trove model promote toy@v2 prod --expect v1 -q && trove push -q origin 'models/*' && cd ..
published=$(date +%s.%N)
for _ in $(seq 600); do grep -q ' 200 2$' load.txt && break; sleep 0.1; done
switched=$(date +%s.%N)
sleep 2
touch stop; wait $LOAD || true; LOAD=
after=$(curl -s http://127.0.0.1:$DPORT/metrics | awk '/^trove_http_bytes_out_total/ {print $2}')
total=$(wc -l < load.txt); failed=$(grep -vc ' 200 ' load.txt || true)
python3 -c "
b=${after}-${before}
print(f'switch to v2 (1 % of a 1 GiB file changed): the daemon sent {b/1e6:.1f} MB = {100*b/1073741824:.2f} % of the file (bar 2 %)')
print(f'requests during the run: $total at 50/s, failed: $failed; v2 answered {${switched}-${published}:.1f} s after the push')"
