#!/usr/bin/env bash
# MLflow tracking: the same client script (Tests/web/mlflow_script.py: set_experiment, start_run,
# log_params, 1,000 log_metric calls, a 10 MB log_artifact, set_tag, end_run, then search_runs,
# get_metric_history and download_artifacts, all checked) against a fresh real `mlflow server`
# and against a Trove daemon, alternating, RUNS times each.
#
# usage: Benchmarks/mlflow-bench.sh TROVE_URI TROVE_TOKEN
#   TROVE_URI    e.g. http://127.0.0.1:8080/myproject (the daemon must already be running)
#   TROVE_TOKEN  a write token of that project (sent by the client as `Authorization: Bearer`)
# environment:
#   RUNS=3                 runs per server
#   WARMUP=0               unmeasured runs per server first (1 hides first-request start-up costs)
#   PYTHON=python3         the interpreter with `mlflow` installed (client and server)
#   MLFLOW_SERVER_ARGS=""  extra `mlflow server` options. Note: the default server (4 uvicorn
#                          workers) has no TCP_NODELAY on Linux and stalls ~40 ms per keep-alive
#                          request (Tests/web/MLFLOW-TRAFFIC.md); "--workers 1" avoids that.
#
# Prints one row per run (seconds as measured inside the script) and the median of the
# per-pair ratios trove/mlflow. Exits nonzero if any run fails its checks.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SCRIPT=$ROOT/Tests/web/mlflow_script.py

if [ $# -ne 2 ]; then
  echo "usage: $0 TROVE_URI TROVE_TOKEN" >&2
  exit 2
fi
TROVE_URI=$1
TROVE_TOKEN=$2
RUNS=${RUNS:-3}
WARMUP=${WARMUP:-0}
PY=${PYTHON:-python3}
# mlflow 3 phones home from client and server (mlflow-telemetry.io); keep it off the timings.
export MLFLOW_DISABLE_TELEMETRY=true
read -r -a EXTRA_ARGS <<< "${MLFLOW_SERVER_ARGS:-}"

"$PY" -c 'import mlflow' 2>/dev/null || { echo "mlflow is not installed for $PY (pip install mlflow)" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mlflow-bench.XXXXXX")
SERVER_PID=""

cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    # The server runs in its own session (setsid): its pid is the group id of it and its workers.
    kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- a fresh real MLflow server: SQLite backend, proxied artifacts, both in WORK -------------
PORT=$(free_port)
MLFLOW_URI=http://127.0.0.1:$PORT
setsid "$PY" -m mlflow server \
  --backend-store-uri "sqlite:///$WORK/mlflow.db" \
  --artifacts-destination "$WORK/artifacts" \
  --host 127.0.0.1 --port "$PORT" "${EXTRA_ARGS[@]}" \
  > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
echo "mlflow $("$PY" -c 'import mlflow; print(mlflow.__version__)') server on $MLFLOW_URI ${MLFLOW_SERVER_ARGS:-} (log: $WORK/server.log)" >&2
for i in $(seq 120); do
  curl -sf "$MLFLOW_URI/health" > /dev/null && break
  if ! kill -0 "$SERVER_PID" 2>/dev/null || [ "$i" = 120 ]; then
    echo "mlflow server did not come up:" >&2; tail -20 "$WORK/server.log" >&2; exit 1
  fi
  sleep 1
done

# run_once TARGET N: one script run against TARGET (mlflow|trove); prints its seconds.
EXPERIMENT=mlflow-bench-$(date +%s)-$$
run_once() {
  local target=$1 n=$2 out=$WORK/$1.$2.log
  if [ "$target" = mlflow ]; then
    env -u MLFLOW_TRACKING_TOKEN MLFLOW_TRACKING_URI="$MLFLOW_URI" "$PY" "$SCRIPT" "$EXPERIMENT" > "$out" 2>&1 || {
      echo "run $n against mlflow failed:" >&2; tail -15 "$out" >&2; return 1; }
  else
    MLFLOW_TRACKING_URI="$TROVE_URI" MLFLOW_TRACKING_TOKEN="$TROVE_TOKEN" "$PY" "$SCRIPT" "$EXPERIMENT" > "$out" 2>&1 || {
      echo "run $n against trove failed:" >&2; tail -15 "$out" >&2; return 1; }
  fi
  sed -n 's/^seconds=//p' "$out"
}

for i in $(seq "$WARMUP"); do
  echo "warm-up $i" >&2
  run_once mlflow "w$i" > /dev/null
  run_once trove "w$i" > /dev/null
done

MLFLOW_S=()
TROVE_S=()
for i in $(seq "$RUNS"); do
  m=$(run_once mlflow "$i"); echo "  run $i  mlflow $m s" >&2
  t=$(run_once trove "$i");  echo "  run $i  trove  $t s" >&2
  MLFLOW_S+=("$m")
  TROVE_S+=("$t")
done

"$PY" - "${MLFLOW_S[*]}" "${TROVE_S[*]}" <<'PY'
import statistics, sys
m = [float(x) for x in sys.argv[1].split()]
t = [float(x) for x in sys.argv[2].split()]
print(f"{'run':>4}  {'mlflow s':>9}  {'trove s':>9}  {'trove/mlflow':>12}")
for i, (a, b) in enumerate(zip(m, t), 1):
    print(f"{i:>4}  {a:>9.3f}  {b:>9.3f}  {b / a:>12.3f}")
print(f"{'med':>4}  {statistics.median(m):>9.3f}  {statistics.median(t):>9.3f}  "
      f"{statistics.median(b / a for a, b in zip(m, t)):>12.3f}   (median of the per-run ratios)")
PY
