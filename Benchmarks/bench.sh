#!/usr/bin/env bash
# Trove against its peers on the shared benchmark data, in one run, with ratios.
#
#   Benchmarks/bench.sh [--install] [--datasets "A B C"] [--tools "trove restic xet dvc gitlfs"]
#                       [--scratch DIR] [--no-big]
#
# Builds Trove in release mode, generates the data with ../shared/bench/gen.py and mutate.py
# (seed 20240601) when missing, then for each dataset and tool, starting from an empty store:
# drop the page cache, time `cat` and `openssl dgst -sha256` of v1 (the reference), then ingest
# v1 → v2-shift → v2-in-place (each placed in the work tree untimed, then `sync`), then restore
# (or clone) v2-in-place into a new folder and check it byte for byte. Results go to
# SCRATCH/results.tsv and a Markdown table (Benchmarks/summarize.py) on stdout.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${TROVE_SHARED_BENCH:-$ROOT/../shared/bench}
SCRATCH=${TROVE_BENCH_DIR:-${TMPDIR:-/tmp}/trove-bench}
DATASETS="A B C"
TOOLS="trove restic xet dvc gitlfs"
INSTALL=0
BIG=1
while [ $# -gt 0 ]; do
  case "$1" in
    --install) INSTALL=1 ;;
    --datasets) DATASETS=$2; shift ;;
    --tools) TOOLS=$2; shift ;;
    --scratch) SCRATCH=$2; shift ;;
    --no-big) BIG=0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [ $INSTALL = 1 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git git-lfs restic time openssl >/dev/null
  pip install -q dvc hf-xet
fi
(cd "$ROOT" && swift build -c release 2>&1 | tail -1)
TROVE=$ROOT/.build/release/trove
PY=$(command -v python3)
DATA=$SCRATCH/data RUN=$SCRATCH/run RES=$SCRATCH/results
mkdir -p "$DATA" "$RUN" "$RES"
TSV=$RES/results.tsv
. "$HERE/lib.sh"
setup_run

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

name() { [ "$1" = C ] && echo dataset || echo model.bin; }
place() { # DS VERSION W
  local ds=$1 v=$2 w=$3
  if [ "$ds" = C ]; then
    case $v in
      v1) rm -rf "$w/dataset"; cp -a "$DATA/C_v1" "$w/dataset" ;;
      v2i) cp -a "$DATA/C_patch/files/." "$w/dataset/"; (cd "$w/dataset" && xargs -d '\n' rm -f < "$DATA/C_patch/deleted.txt") ;;
    esac
  else
    case $v in
      v1) cp "$DATA/${ds}_v1.bin" "$w/model.bin" ;;
      v2s) cp "$DATA/${ds}_v2_shift.bin" "$w/model.bin" ;;
      v2i) cp "$DATA/${ds}_v2_inplace.bin" "$w/model.bin" ;;
    esac
  fi
  sync
}
verify() { if [ "$1" = C ]; then diff -rq "$DATA/C_v2" "$2/dataset" >/dev/null; else cmp -s "$DATA/${1}_v2_inplace.bin" "$2/model.bin"; fi; }
versions() { [ "$1" = C ] && echo "v1 v2i" || echo "v1 v2s v2i"; }

# Tool drivers: setup (untimed), ingest VERSION, clone (to $T/clone), store (paths for du).
trove_setup() { mkdir -p "$W" && cd "$W" && "$TROVE" init -q >/dev/null; }
trove_ingest() { echo "cd $W && $TROVE add -q $A && $TROVE commit -q -m $1"; }
trove_clone() { echo "$TROVE -C $W restore -q HEAD --to $T/clone"; }
trove_store() { echo "$W/.trove/packs"; }
restic_setup() { mkdir -p "$W" && restic init -q -r "$T/repo" >/dev/null; }
restic_ingest() { echo "cd $W && restic -q -r $T/repo backup --host bench $A"; }
restic_clone() { echo "restic -q -r $T/repo restore latest --host bench --target $T/clone"; }
restic_store() { echo "$T/repo"; }
xet_setup() { mkdir -p "$W"; }
xet_ingest() { echo "$PY $SHARED/xet_tool.py upload $T/cas $T/manifest_$1.json $W/$A"; }
xet_clone() { echo "mkdir -p $T/clone && $PY $SHARED/xet_tool.py download $T/cas $T/manifest_v2i.json $T/clone"; }
xet_store() { echo "$T/cas"; }
dvc_setup() {
  git init -q "$W" && cd "$W" && dvc init -q && dvc config core.analytics false &&
  dvc remote add -q -d store "$T/dvcstore" && git add -A && git commit -qm init &&
  git init -q --bare "$T/remote.git" && git remote add origin "file://$T/remote.git" && git push -q origin main
}
dvc_ingest() { echo "cd $W && dvc add -q $A && git add $A.dvc .gitignore && git commit -qm $1"; }
dvc_clone() { echo "cd $W && dvc push -q && git push -q origin main && cd $T && git clone -q file://$T/remote.git clone && cd clone && dvc pull -q"; }
dvc_store() { echo "$W/.dvc/cache"; }
gitlfs_setup() {
  git init -q "$W" && cd "$W" && git lfs install --local >/dev/null &&
  if [ "$DS" = C ]; then git lfs track 'dataset/**' >/dev/null; else git lfs track '*.bin' >/dev/null; fi &&
  git add .gitattributes && git commit -qm init &&
  git init -q --bare "$T/remote.git" && git remote add origin "file://$T/remote.git" && git push -q origin main
}
gitlfs_ingest() { echo "cd $W && git add -A && git commit -qm $1"; }
gitlfs_clone() { echo "cd $W && git push -q origin main && cd $T && GIT_LFS_SKIP_SMUDGE=1 git clone -q file://$T/remote.git clone && cd clone && git lfs pull"; }
gitlfs_store() { echo "$W/.git"; }

run_tool() { # DS TOOL
  DS=$1 TOOL=$2 T=$RUN/$2.$1 W=$RUN/$2.$1/work A=$(name "$1")
  export RESTIC_CACHE_DIR=$T/restic-cache DVC_SITE_CACHE_DIR=$T/dvc-site
  rm -rf "$T"; mkdir -p "$T"
  echo "== $TOOL / $DS ($(date +%T), load $(cut -d' ' -f1 /proc/loadavg))" >&2
  local src; if [ "$DS" = C ]; then src=$DATA/C_v1; else src=$DATA/${DS}_v1.bin; fi
  drop_caches
  if [ "$DS" = C ]; then
    measure "$DS" "$TOOL" ref_cat "find $src -type f -print0 | xargs -0 cat > /dev/null"
    measure "$DS" "$TOOL" ref_sha256 "find $src -type f -print0 | xargs -0 openssl dgst -sha256 > /dev/null"
  else
    measure "$DS" "$TOOL" ref_cat "cat $src > /dev/null"
    measure "$DS" "$TOOL" ref_sha256 "openssl dgst -sha256 $src > /dev/null"
  fi
  ( ${TOOL}_setup ) > "$RES/$DS.$TOOL.setup.log" 2>&1 || { echo "  !! setup failed" >&2; return 1; }
  local before=0 v
  for v in $(versions "$DS"); do
    place "$DS" "$v" "$W"
    measure "$DS" "$TOOL" "ingest_$v" "$(${TOOL}_ingest "$v")"
    measure "$DS" "$TOOL" "sync_$v" sync
    local now; now=$(bytes $(${TOOL}_store))
    record "$DS" "$TOOL" "new_bytes_$v" $((now - before))
    before=$now
  done
  record "$DS" "$TOOL" store_bytes "$before"
  if [ "$TOOL" = trove ]; then
    [ "$DS" = C ] && measure "$DS" trove status "cd $W && $TROVE status"
    record "$DS" trove pack_files "$(ls "$W/.trove/packs" | wc -l)"
  fi
  rm -rf "$T/clone"; sync
  measure "$DS" "$TOOL" clone "$(${TOOL}_clone)"
  if verify "$DS" "$T/clone"; then echo "  clone verified" >&2; record "$DS" "$TOOL" clone_ok 1; else echo "  !! clone MISMATCH" >&2; record "$DS" "$TOOL" clone_ok 0; fi
  rm -rf "$T"
}

for ds in $DATASETS; do
  for tool in $TOOLS; do run_tool "$ds" "$tool" || echo "  !! $tool/$ds aborted" >&2; cd "$HERE"; done
done

if [ $BIG = 1 ]; then
  # Memory does not grow with file size: ingest and restore a 4 GiB file.
  T=$RUN/big; rm -rf "$T"; mkdir -p "$T/work"
  cat "$DATA/A_v1.bin" "$DATA/B_v1.bin" "$DATA/A_v2_shift.bin" "$DATA/B_v2_shift.bin" > "$T/work/big.bin"; sync
  (cd "$T/work" && "$TROVE" init -q >/dev/null)
  measure BIG trove ingest_4g "cd $T/work && $TROVE add -q big.bin && $TROVE commit -q -m big"
  measure BIG trove clone "$TROVE -C $T/work restore -q HEAD --to $T/clone"
  cmp -s "$T/work/big.bin" "$T/clone/big.bin" && record BIG trove clone_ok 1 || record BIG trove clone_ok 0
  rm -rf "$T"
fi
"$PY" "$HERE/summarize.py" "$TSV"
