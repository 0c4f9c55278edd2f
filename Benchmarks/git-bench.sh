#!/usr/bin/env bash
# Git-integration bars of issue 4: Trove's filter and hooks beside Git LFS, in one run
# (Docs/performance.md §Git).
#
#   Benchmarks/git-bench.sh [--scratch DIR]
#
# One repository per tool, from empty, on the gen.py data (A, B: 1 GiB each; C: 20,000 files):
#   1. `git add model-a.bin && git commit`              (bar: Trove ≤ 1.0× Git LFS)
#   2. `git add dataset` (C), then commit untimed      (bar: ≤ 0.5×)
#   3. `git add model-b.bin && git commit`, then B v2 (1 % in place) on branch b2: new stored
#      bytes of the second commit                      (bar: ≤ 1.5 % of B; Git LFS 100 %)
#   4. push main and b2: to a bare git repository plus `trove daemon` on 127.0.0.1 (Trove, found
#      by the clone through the committed .troveconfig), or the bare repository's file:// LFS
#      store (Git LFS); both on a loop-mounted ext4 image so that bytes are copied
#   5. `git clone` with smudge, cold cache, checked byte for byte   (bar: ≤ 1.0×)
#   6. `git checkout b2` and back to main in the first repository   (bar: ≤ 0.5×)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${TROVE_SHARED_BENCH:-$ROOT/../shared/bench}
SCRATCH=${TROVE_BENCH_DIR:-${TMPDIR:-/tmp}/trove-bench}
while [ $# -gt 0 ]; do
  case "$1" in
    --scratch) SCRATCH=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
(cd "$ROOT" && swift build -c release 2>&1 | tail -1)
export PATH=$ROOT/.build/release:$PATH
TROVE=$ROOT/.build/release/trove
PY=$(command -v python3)
DATA=$SCRATCH/data RUN=$SCRATCH/git-run RES=$SCRATCH/git-results REMFS=$SCRATCH/remfs
mkdir -p "$DATA" "$RUN" "$RES" "$REMFS"
TSV=$RES/results.tsv
. "$HERE/lib.sh"
setup_run
"$TROVE" install --global -q
mount_remfs
drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

run() { # TOOL: trove | gitlfs
  local tool=$1 T=$RUN/$1 R=$REMFS/$1 W store dpid=""
  W=$T/work
  rm -rf "$T" "$R"; mkdir -p "$W" "$R"
  echo "== $tool ($(date +%T), load $(cut -d' ' -f1 /proc/loadavg))" >&2
  git init -q --bare "$R/remote.git"
  git init -q "$W" && cd "$W" && git remote add origin "file://$R/remote.git"
  if [ "$tool" = trove ]; then
    "$TROVE" install -q && "$TROVE" track -q '*.bin' 'dataset/**'
    "$TROVE" daemon project create p --root "$R/daemon" >/dev/null
    export TROVE_TOKEN; TROVE_TOKEN=$("$TROVE" daemon token create --root "$R/daemon" --project p --role write 2>/dev/null)
    local port=$((20000 + RANDOM % 20000))
    "$TROVE" daemon --root "$R/daemon" --listen 127.0.0.1:$port > "$RES/daemon.log" 2>&1 &
    dpid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.05; done
    git config -f .troveconfig remote.origin.url "http://127.0.0.1:$port/p"
    store=$W/.git/trove
  else
    git lfs install --local >/dev/null && git lfs track '*.bin' 'dataset/**' >/dev/null
    store=$W/.git/lfs
  fi
  git add .gitattributes $( [ -f .troveconfig ] && echo .troveconfig ) && git commit -qm setup

  cp "$DATA/A_v1.bin" "$W/model-a.bin"; sync
  measure A "$tool" add_commit "cd $W && git add model-a.bin && git commit -qm A"
  measure A "$tool" sync_after sync
  cp -a "$DATA/C_v1" "$W/dataset"; sync
  measure C "$tool" add "cd $W && git add dataset"
  measure C "$tool" commit "cd $W && git commit -qm C"
  cp "$DATA/B_v1.bin" "$W/model-b.bin"; sync
  measure B "$tool" add_commit "cd $W && git add model-b.bin && git commit -qm B"
  local before; before=$(bytes "$store")
  git checkout -q -b b2 && cp "$DATA/B_v2_inplace.bin" "$W/model-b.bin"; sync
  measure B "$tool" add_commit_v2 "cd $W && git add model-b.bin && git commit -qm B2"
  record B "$tool" new_store_bytes_v2 "$(( $(bytes "$store") - before ))"
  git checkout -q main

  measure ABC "$tool" push "cd $W && git push -q origin main b2"
  # Checkout between the two versions of B (both local), each way, warm cache.
  measure B "$tool" checkout_b2 "cd $W && git checkout -q b2"
  cmp -s "$DATA/B_v2_inplace.bin" "$W/model-b.bin" || echo "  !! $tool checkout b2 MISMATCH" >&2
  measure B "$tool" checkout_main "cd $W && git checkout -q main"
  cmp -s "$DATA/B_v1.bin" "$W/model-b.bin" || echo "  !! $tool checkout main MISMATCH" >&2

  rm -rf "$T/clone"; drop
  measure ABC "$tool" clone "cd $T && git clone -q file://$R/remote.git clone"
  if cmp -s "$DATA/A_v1.bin" "$T/clone/model-a.bin" && cmp -s "$DATA/B_v1.bin" "$T/clone/model-b.bin" && diff -rq "$DATA/C_v1" "$T/clone/dataset" >/dev/null; then
    record ABC "$tool" clone_ok 1
  else
    echo "  !! $tool clone MISMATCH" >&2; record ABC "$tool" clone_ok 0
  fi
  [ -n "$dpid" ] && { kill "$dpid"; wait "$dpid" 2>/dev/null; unset TROVE_TOKEN; }
  cd "$RUN"; rm -rf "$T" "$R"
}

run trove
run gitlfs
"$PY" - "$TSV" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
def v(ds, tool, step, key="wall_s"):
    for r in rows:
        if (r["ds"], r["tool"], r["step"]) == (ds, tool, step):
            return float(r[key] or 0)
    return None
print("| bar | Trove | Git LFS | ratio | bar | pass |\n|---|---|---|---|---|---|")
for label, ds, step, bar in [("A git add + commit", "A", "add_commit", 1.0), ("C git add (20,000 files)", "C", "add", 0.5),
                             ("clone A+B+C with smudge", "ABC", "clone", 1.0), ("checkout b2 (B differs 1 %)", "B", "checkout_b2", 0.5),
                             ("checkout main", "B", "checkout_main", 0.5), ("B add + commit v1", "B", "add_commit", None),
                             ("push main + b2", "ABC", "push", None)]:
    t, g = v(ds, "trove", step), v(ds, "gitlfs", step)
    if t is None or g is None: continue
    r = t / g if g else float("inf")
    print(f"| {label} | {t:.2f} s | {g:.2f} s | {r:.2f}× | {'≤ %.1f×' % bar if bar else '-'} | {('yes' if r <= bar else 'NO') if bar else '-'} |")
t, g = v("B", "trove", "new_store_bytes_v2", "bytes"), v("B", "gitlfs", "new_store_bytes_v2", "bytes")
size = 1 << 30
print(f"| B v2 new stored bytes | {t/1e6:.1f} MB ({100*t/size:.2f} %) | {g/1e6:.1f} MB ({100*g/size:.1f} %) | - | ≤ 1.5 % | {'yes' if t <= 0.015*size else 'NO'} |")
EOF
