#!/usr/bin/env bash
# Sync bars of issue 3, Trove beside Git LFS, DVC and restic in one run (Docs/performance.md).
#
#   Benchmarks/sync-bench.sh [--install] [--scratch DIR] [--datasets "A C"]
#
# Remotes live on a loop-mounted ext4 image on the same disk (as ../shared/bench does), so that
# pushes copy bytes (git-lfs hardlinks within one file system). For each tool, from empty
# stores: ingest v1 (untimed) → push (timed, then `sync` timed) → ingest v2 in place
# (untimed) → push (timed) → clone + materialise (timed, checked byte for byte). Trove
# pushes to a shared path and to `trove daemon` over HTTP on 127.0.0.1 (root on the loop FS),
# and clones from the daemon. `openssl dgst -sha256` of v1 is timed before each tool.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${TROVE_SHARED_BENCH:-$ROOT/../shared/bench}
SCRATCH=${TROVE_BENCH_DIR:-${TMPDIR:-/tmp}/trove-bench}
DATASETS="A C"
INSTALL=0
while [ $# -gt 0 ]; do
  case "$1" in
    --install) INSTALL=1 ;;
    --scratch) SCRATCH=$2; shift ;;
    --datasets) DATASETS=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [ $INSTALL = 1 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git git-lfs restic time openssl curl >/dev/null
  pip install -q dvc
fi
(cd "$ROOT" && swift build -c release 2>&1 | tail -1)
TROVE=$ROOT/.build/release/trove
PY=$(command -v python3)
DATA=$SCRATCH/data RUN=$SCRATCH/sync-run RES=$SCRATCH/sync-results REMFS=$SCRATCH/remfs
mkdir -p "$DATA" "$RUN" "$RES" "$REMFS"
TSV=$RES/results.tsv
. "$HERE/lib.sh"
setup_run
mount_remfs

reference() { # DS TOOL
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  if [ "$1" = C ]; then
    measure "$1" "$2" ref_sha256 "find $DATA/C_v1 -type f -print0 | xargs -0 cat > /dev/null; find $DATA/C_v1 -type f -print0 | xargs -0 openssl dgst -sha256 > /dev/null"
  else
    cat "$DATA/${1}_v1.bin" > /dev/null
    measure "$1" "$2" ref_sha256 "openssl dgst -sha256 $DATA/${1}_v1.bin > /dev/null"
  fi
}
place() { # DS VERSION DIR
  if [ "$1" = C ]; then
    case $2 in
      v1) rm -rf "$3/dataset"; cp -a "$DATA/C_v1" "$3/dataset" ;;
      v2) cp -a "$DATA/C_patch/files/." "$3/dataset/"; (cd "$3/dataset" && xargs -d '\n' rm -f < "$DATA/C_patch/deleted.txt") ;;
    esac
  else
    case $2 in v1) cp "$DATA/${1}_v1.bin" "$3/model.bin" ;; v2) cp "$DATA/${1}_v2_inplace.bin" "$3/model.bin" ;; esac
  fi
  sync
}
verify() { if [ "$1" = C ]; then diff -rq "$DATA/C_v2" "$2/dataset" >/dev/null; else cmp -s "$DATA/${1}_v2_inplace.bin" "$2/model.bin"; fi; }
name() { [ "$1" = C ] && echo dataset || echo model.bin; }

run_trove() { # DS
  local ds=$1 T=$RUN/trove.$1 R=$REMFS/trove.$1 W A
  W=$T/work A=$(name "$ds")
  rm -rf "$T" "$R"; mkdir -p "$W" "$R"
  echo "== trove / $ds ($(date +%T), load $(cut -d' ' -f1 /proc/loadavg))" >&2
  reference "$ds" trove
  (cd "$W" && "$TROVE" init -q) && place "$ds" v1 "$W" && (cd "$W" && "$TROVE" add -q "$A" && "$TROVE" commit -q -m v1) && sync
  "$TROVE" init --bare -q "$R/path"
  "$TROVE" daemon project create p --root "$R/daemon" >/dev/null
  local tok; tok=$("$TROVE" daemon token create --root "$R/daemon" --project p --role write 2>/dev/null)
  local port=$((20000 + RANDOM % 20000))
  "$TROVE" daemon --root "$R/daemon" --listen 127.0.0.1:$port > "$RES/$ds.daemon.log" 2>&1 &
  local dpid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.05; done
  export TROVE_TOKEN=$tok
  measure "$ds" trove push_path_v1 "cd $W && $TROVE push -q $R/path heads/main"
  measure "$ds" trove sync_after_push_path_v1 sync
  record "$ds" trove remote_bytes_path_v1 "$(bytes "$R/path/packs")"
  measure "$ds" trove push_http_v1 "cd $W && $TROVE push -q http://127.0.0.1:$port/p heads/main"
  measure "$ds" trove sync_after_push_http_v1 sync
  measure "$ds" trove push_http_noop "cd $W && $TROVE push -q http://127.0.0.1:$port/p heads/main"
  local before; before=$(bytes "$R/path/packs")
  place "$ds" v2 "$W" && (cd "$W" && "$TROVE" add -q "$A" && "$TROVE" commit -q -m v2) && sync
  measure "$ds" trove push_path_v2 "cd $W && $TROVE push -q $R/path heads/main"
  record "$ds" trove remote_new_bytes_path_v2 "$(( $(bytes "$R/path/packs") - before ))"
  measure "$ds" trove push_http_v2 "cd $W && $TROVE push -q http://127.0.0.1:$port/p heads/main"
  rm -rf "$T/clone"; sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  reference "$ds" trove
  measure "$ds" trove clone_http "cd $T && $TROVE clone -q http://127.0.0.1:$port/p clone"
  verify "$ds" "$T/clone" && record "$ds" trove clone_ok 1 || { echo "  !! clone MISMATCH" >&2; record "$ds" trove clone_ok 0; }
  if [ "$ds" = C ]; then
    # A partial clone of 1 % of the paths (one folder of 100): bytes that crossed.
    measure "$ds" trove partial_clone "cd $T && $TROVE clone -q --include dataset/d007 http://127.0.0.1:$port/p partial"
    record "$ds" trove partial_clone_bytes "$(bytes "$T/partial/.trove/packs")"
    record "$ds" trove remote_bytes_http "$(bytes "$R/daemon/projects/p/packs")"
  fi
  record "$ds" trove daemon_hwm_kb "$(grep VmHWM /proc/$dpid/status | awk '{print $2}')"
  kill $dpid; wait $dpid 2>/dev/null
  unset TROVE_TOKEN
  rm -rf "$T" "$R"
}

run_gitlfs() {
  local ds=$1 T=$RUN/gitlfs.$1 R=$REMFS/gitlfs.$1 W
  W=$T/work
  rm -rf "$T" "$R"; mkdir -p "$T" "$R"
  echo "== gitlfs / $ds ($(date +%T))" >&2
  reference "$ds" gitlfs
  git init -q "$W" && cd "$W" && git lfs install --local >/dev/null
  if [ "$ds" = C ]; then git lfs track 'dataset/**' >/dev/null; else git lfs track '*.bin' >/dev/null; fi
  git add .gitattributes && git commit -qm init && git init -q --bare "$R/remote.git" && git remote add origin "file://$R/remote.git" && git push -q origin main
  place "$ds" v1 "$W" && git add -A && git commit -qm v1 && sync
  measure "$ds" gitlfs push_v1 "cd $W && git push -q origin main"
  measure "$ds" gitlfs sync_after_push_v1 sync
  local before; before=$(bytes "$R/remote.git")
  place "$ds" v2 "$W" && git add -A && git commit -qm v2 && sync
  measure "$ds" gitlfs push_v2 "cd $W && git push -q origin main"
  record "$ds" gitlfs remote_new_bytes_v2 "$(( $(bytes "$R/remote.git") - before ))"
  cd "$T"; rm -rf "$T/clone"; sync
  reference "$ds" gitlfs
  measure "$ds" gitlfs clone "cd $T && GIT_LFS_SKIP_SMUDGE=1 git clone -q file://$R/remote.git clone && cd clone && git lfs pull"
  verify "$ds" "$T/clone" && record "$ds" gitlfs clone_ok 1 || record "$ds" gitlfs clone_ok 0
  cd "$HERE"; rm -rf "$T" "$R"
}

run_dvc() {
  local ds=$1 T=$RUN/dvc.$1 R=$REMFS/dvc.$1 W A
  W=$T/work A=$(name "$ds")
  rm -rf "$T" "$R"; mkdir -p "$T" "$R"
  echo "== dvc / $ds ($(date +%T))" >&2
  reference "$ds" dvc
  git init -q "$W" && cd "$W" && dvc init -q && dvc config core.analytics false && dvc remote add -q -d store "$R/dvcstore" && git add -A && git commit -qm init
  place "$ds" v1 "$W" && dvc add -q "$A" && git add -A && git commit -qm v1 && sync
  measure "$ds" dvc push_v1 "cd $W && dvc push -q"
  measure "$ds" dvc sync_after_push_v1 sync
  local before; before=$(bytes "$R/dvcstore")
  place "$ds" v2 "$W" && dvc add -q "$A" && git add -A && git commit -qm v2 && sync
  measure "$ds" dvc push_v2 "cd $W && dvc push -q"
  record "$ds" dvc remote_new_bytes_v2 "$(( $(bytes "$R/dvcstore") - before ))"
  cd "$HERE"; rm -rf "$T" "$R"
}

run_restic() { # the clone reference for C: restic restore
  local ds=$1 T=$RUN/restic.$1 R=$REMFS/restic.$1 W
  W=$T/work
  rm -rf "$T" "$R"; mkdir -p "$W" "$R"
  echo "== restic / $ds ($(date +%T))" >&2
  reference "$ds" restic
  export RESTIC_CACHE_DIR=$T/cache
  restic init -q -r "$R/repo" && place "$ds" v1 "$W" && (cd "$W" && restic -q -r "$R/repo" backup . >/dev/null)
  place "$ds" v2 "$W" && (cd "$W" && restic -q -r "$R/repo" backup . >/dev/null) && sync
  measure "$ds" restic restore "restic -q -r $R/repo restore latest --target $T/clone"
  verify "$ds" "$T/clone" && record "$ds" restic clone_ok 1 || record "$ds" restic clone_ok 0
  rm -rf "$T" "$R"
}

for ds in $DATASETS; do
  run_trove "$ds"
  run_gitlfs "$ds"
  run_dvc "$ds"
  [ "$ds" = C ] && run_restic "$ds"
done
"$PY" "$HERE/sync-summarize.py" "$TSV"
