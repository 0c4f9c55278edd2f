#!/usr/bin/env bash
# Web UI and API figures of issue 6 (Docs/performance.md §Web), release build, one daemon:
#   - a project of 10,000 recorded runs (a 100x100 sweep of a one-line metric report, pushed);
#   - API: first page (50) of the 10,000 runs sorted by a metric; the history of a 1,000,000-point
#     metric downsampled to 1,000 points (median of 11 requests each, curl's time_total);
#   - 50 concurrent readers for 30 s (Benchmarks/api-readers.py): requests, errors, latency;
#   - the browser: Tests/web/ui_test.py in headless Chromium (runs page of 10,000 runs, compare
#     view of 200 runs); screenshots go to Docs/screenshots/;
#   - MLflow: Benchmarks/mlflow-bench.sh (the same client script against a real `mlflow server`).
# WEB_SKIP_MLFLOW=1 skips the last part.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SCRATCH=${TROVE_BENCH_DIR:-${TMPDIR:-/tmp}/trove-bench}/web
(cd "$ROOT" && swift build -c release 2>&1 | tail -1)
export PATH=$ROOT/.build/release:$PATH TROVE_PROGRESS=0 TROVE_AUTHOR_NAME=bench HOME=${SCRATCH}/home
rm -rf "$SCRATCH" && mkdir -p "$SCRATCH/home" && cd "$SCRATCH"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
trove daemon project create big --root "$SCRATCH/d" >/dev/null
trove daemon project create demo --root "$SCRATCH/d" >/dev/null
BIG=$(trove daemon token create --project big --role write --root "$SCRATCH/d")
DEMO=$(trove daemon token create --project demo --role write --root "$SCRATCH/d")
DEMO_ADMIN=$(trove daemon token create --project demo --role admin --root "$SCRATCH/d")
trove daemon --root "$SCRATCH/d" --listen 127.0.0.1:$port > daemon.log 2>&1 &
DAEMON=$!
trap 'kill $DAEMON 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.1; done
URL=http://127.0.0.1:$port

# 10,000 runs, each reporting loss and acc from its parameters, then a 1,000,000-point run.
mkdir big && cd big && trove init -q
cat > report.sh <<'SH'
# 20 steps of a decaying loss whose level depends on the parameters, then acc.
base=$(( (TROVE_PARAM_A * 7919 + TROVE_PARAM_B * 104729) % 10007 + 100 ))
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
  echo "{\"step\": $i, \"loss\": $(( base / i + base / 50 )).5}"
done >> "$TROVE_METRICS_FILE"
echo "{\"step\": 20, \"acc\": 0.$TROVE_PARAM_B}" >> "$TROVE_METRICS_FILE"
SH
t0=$(date +%s.%N)
TROVE_LIVE=0 trove sweep -q -p a=$(seq -s, 1 100) -p b=$(seq -s, 1 100) --parallel 2 -- sh report.sh
t1=$(date +%s.%N)
cat > million.py <<'PY'
import os, random, struct
random.seed(1)
with open(os.environ["TROVE_METRICS_FILE"], "a") as f:
    for i in range(1_000_000):
        v = struct.unpack("f", struct.pack("f", 2.0 / (1 + i / 5000) + random.random() / 100))[0]
        f.write('{"step": %d, "loss": %r}\n' % (i, v))
PY
TROVE_LIVE=0 trove run -q --name million -- python3 million.py
MILLION=$(trove runs --json --where name=million | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
t2=$(date +%s.%N)
TROVE_TOKEN=$BIG trove push "$URL/big" 'runs/*' 'sweeps/*' >/dev/null
t3=$(date +%s.%N)
python3 -c "print(f'setup: 10,000-run sweep recorded in {${t1}-${t0}:.1f} s; pushed 10,001 runs in {${t3}-${t2}:.1f} s')"
cd ..

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timed() {  # URL -> "median seconds of 11 requests (first, cold: S)"
  local cold
  cold=$(curl -s -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $BIG" "$1")
  echo "$(for _ in $(seq 11); do curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $BIG" "$1"; done | median) (first request: $cold)"
}
first=$(timed "$URL/api/v1/projects/big/runs?limit=50&sort=-metrics.loss")
filtered=$(timed "$URL/api/v1/projects/big/runs?limit=50&sort=metrics.acc&filter=params.a%3C50")
hist=$(timed "$URL/api/v1/projects/big/runs/$MILLION/metrics/loss?points=1000")
count=$(curl -s -H "Authorization: Bearer $BIG" "$URL/api/v1/projects/big/runs/$MILLION/metrics/loss?points=1000" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["count"], len(d["steps"]))')
echo "API: first page of 10,001 runs sorted by metrics.loss: ${first} s (bar 0.100)"
echo "API: filtered (params.a<50) page sorted by metrics.acc: ${filtered} s"
echo "API: 1,000,000-point history downsampled to 1,000: ${hist} s (bar 0.100); count and points returned: $count"
python3 "$HERE/api-readers.py" --url "$URL" --project big --token "$BIG" --readers 50 --seconds 30

# The browser: a small project with a running run to stop, then the big one.
mkdir demo && cd demo && trove init -q
echo '<b>x</b>' > '"><img src=x onerror=alert(1)>.txt' && trove add -q . && trove commit -q -m v1
trove remote add origin "$URL/demo" >/dev/null
export TROVE_TOKEN=$DEMO
trove config runs.live-interval 0.5
for lr in 0.001 0.1; do
  trove run -q -p lr=$lr -- sh -c 'for i in 1 2 3 4 5; do echo "{\"step\": $i, \"loss\": 0.$i$i}" >> $TROVE_METRICS_FILE; done'
done
trove run -q --name '<script>alert(1)</script>' -p 'note=<img src=x onerror=alert(2)>' -- true
trove sweep -q -p lr=0.001,0.01,1,10 --parallel 4 --early-stop 'median:loss,min-step=3' -- \
  sh -c 'for i in 1 2 3 4 5 6 7 8 9 10; do echo "{\"step\": $i, \"loss\": $TROVE_PARAM_LR}" >> $TROVE_METRICS_FILE; sleep 0.3; done' || true
SWEEP=$(ls .trove/refs/sweeps | head -1)
trove push -q origin main 'runs/*' 'sweeps/*' >/dev/null
XSS=$(trove runs --json | python3 -c 'import json,sys; print([r["id"] for r in json.load(sys.stdin) if r.get("name")=="<script>alert(1)</script>"][0])')
trove run -q --name long -p lr=0.5 -- sh -c 'for i in $(seq 600); do echo "{\"step\": $i, \"loss\": 0.5}" >> $TROVE_METRICS_FILE; sleep 0.1; done' &
LONG=$!
for _ in $(seq 50); do
  RUNNING=$(curl -s -H "Authorization: Bearer $DEMO" "$URL/api/v1/projects/demo/runs?filter=status%3Drunning" | python3 -c 'import json,sys; r=json.load(sys.stdin)["runs"]; print(r[0]["id"] if r else "")')
  [ -n "$RUNNING" ] && break; sleep 0.2
done
unset TROVE_TOKEN
curl -s -H "Authorization: Bearer $BIG" "$URL/api/v1/projects/big/runs?limit=200&sort=metrics.loss&filter=params.b%3C100" \
  | python3 -c 'import json,sys; print(",".join(r["id"] for r in json.load(sys.stdin)["runs"]))' > ../compare.txt
cd ..
python3 "$ROOT/Tests/web/ui_test.py" --url "$URL" --token "$DEMO" --project demo --shots "$ROOT/Docs/screenshots" \
  --running-run "$RUNNING" --xss-run "$XSS" --xss-file '"><img src=x onerror=alert(1)>.txt' --filter 'params.lr < 0.01' \
  --big-project big --big-token "$BIG" --compare-runs "@$SCRATCH/compare.txt" \
  --sweep "$SWEEP" --admin-token "$DEMO_ADMIN" --xss-param-run "$XSS" | grep -E 'seconds|total|rows|ok'
wait $LONG 2>/dev/null || true

if [ "${WEB_SKIP_MLFLOW:-0}" != 1 ]; then
  trove daemon project create ml --root "$SCRATCH/d" >/dev/null
  ML=$(trove daemon token create --project ml --role write --root "$SCRATCH/d")
  bash "$HERE/mlflow-bench.sh" "$URL/ml" "$ML"
fi
