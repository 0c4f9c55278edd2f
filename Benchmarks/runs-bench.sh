#!/usr/bin/env bash
# Run-recording figures of issue 5 (Docs/performance.md §Runs), release build:
#   - overhead of `trove run -- true` per run (100 runs, minus 100 × /bin/true);
#   - a run reporting 1,000,000 metric points: stored bytes of its series, and the time of
#     `trove runs metrics ID loss --stats` (open the store, find the run, read and decode);
#   - a notebook run beside papermill on the same 3-cell notebook;
#   - a 4-task Slurm array sweep beside plain `sbatch --wait --array` (single-node Slurm from
#     scripts/slurm-start.sh; skipped when not root or Slurm is missing);
#   - `trove runs` and `trove runs --json` over 10,000 recorded runs (RUNS_10K=0 skips).
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

# A notebook: trove run beside papermill (same notebook, same parameter).
python3 - <<'PY'
import nbformat
nb = nbformat.v4.new_notebook()
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nb.cells = [nbformat.v4.new_code_cell("lr = 0.1", metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell("import math\nprint('lr', lr, math.sqrt(lr))"),
            nbformat.v4.new_code_cell("x = sum(range(1000))\nx")]
nbformat.write(nb, "nb.ipynb")
PY
for k in 1 2 3; do
  /usr/bin/time -f "papermill nb.ipynb (3 cells): %e s" papermill -k python3 --log-level ERROR nb.ipynb out.ipynb -p lr 0.5 2>&1 | grep -v -i warn | tail -1
  /usr/bin/time -f "trove run nb.ipynb (3 cells): %e s" trove run -q nb.ipynb -p lr=0.5 2>&1 | tail -1
done

# Slurm: a 4-task array sweep of `true`, beside sbatch of the same array.
if [ "$(id -u)" -eq 0 ] && [ -x /usr/sbin/slurmctld ]; then
  export "$(bash "$ROOT/scripts/slurm-start.sh" "$SCRATCH/slurm" 2>/dev/null </dev/null | tail -n1)"
  for k in 1 2; do
    t0=$(date +%s.%N); sbatch --wait --parsable -o /dev/null --array=0-3 --wrap true >/dev/null; t1=$(date +%s.%N)
    trove sweep -q --launcher slurm -p i=0,1,2,3 --wait -- true; t2=$(date +%s.%N)
    python3 -c "print(f'4-task Slurm array: sbatch --wait {${t1}-${t0}:.2f} s, trove sweep --launcher slurm --wait {${t2}-${t1}:.2f} s')"
  done
  bash "$ROOT/scripts/slurm-stop.sh" "$SCRATCH/slurm" >/dev/null 2>&1 </dev/null
fi

# 10,000 recorded runs: trove runs and trove runs --json.
if [ "${RUNS_10K:-1}" != 0 ]; then
  rm -rf "$SCRATCH/10k" && mkdir -p "$SCRATCH/10k" && cd "$SCRATCH/10k" && trove init -q
  t0=$(date +%s.%N); trove sweep -q -p a=$(seq -s, 1 100) -p b=$(seq -s, 1 100) --parallel 2 -- true; t1=$(date +%s.%N)
  python3 -c "print(f'recording 10,000 runs (100x100 sweep, --parallel 2): {${t1}-${t0}:.1f} s')"
  trove runs > /dev/null
  for k in 1 2 3; do /usr/bin/time -f "trove runs over 10,000 runs: %e s" trove runs > /dev/null; done
  for k in 1 2 3; do /usr/bin/time -f "trove runs --json over 10,000 runs: %e s" trove runs --json > /dev/null; done
fi
