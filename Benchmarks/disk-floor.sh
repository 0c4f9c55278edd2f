#!/usr/bin/env bash
# What this machine's disk and CPU allow at best, for the bars of issues 2 and 3 that are timed
# against `openssl dgst -sha256` or `git lfs push` (Docs/performance.md §Floors). No Trove code
# runs: `dd` with direct I/O moves the bytes each operation must move, at the same time where
# Trove overlaps them, and the figure is set beside the bar.
#
#   Benchmarks/disk-floor.sh [--scratch DIR] [--rounds N]
#
# - restore of A: read 1 GiB of packs (written with direct I/O, so not cached) while writing
#   the 1 GiB file;
# - clone of A from a daemon: the daemon reads 1 GiB while the client writes its packs and
#   the file (2 GiB);
# - push of A to a path (remote on a loop-mounted ext4 image, as sync-bench.sh has it): read
#   1 GiB of packs while writing 1 GiB to the remote, durably (Trove fsyncs; `git lfs push`
#   does not, and is timed without its `sync`);
# - ingest of A: SHA-256 twice (the file id and the chunk ids, DESIGN.md §Identities) over
#   1 GiB at `openssl speed`'s rate, on two cores; and, apart, writing its 1 GiB of packs
#   durably (direct I/O, fsync), which no durable ingest avoids.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SCRATCH=${TROVE_BENCH_DIR:-${TMPDIR:-/tmp}/trove-bench}
ROUNDS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --scratch) SCRATCH=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
DATA=$SCRATCH/data REMFS=$SCRATCH/remfs F=$SCRATCH/floor
A=$DATA/A_v1.bin
[ -f "$A" ] || { echo "no $A: run Benchmarks/bench.sh or sync-bench.sh first (they generate the data)" >&2; exit 2; }
mkdir -p "$F" "$REMFS"
. "$HERE/lib.sh"
mount_remfs
mkdir -p "$REMFS/floor"

secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }
rd() { dd if="$1" of=/dev/null bs=8M iflag=direct; }
wr() { dd if=/dev/zero of="$1" bs=8M count=128 oflag=direct conv=fsync; }
cold() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
sha() { cat "$A" > /dev/null; secs openssl dgst -sha256 "$A"; }
restore() { cold; secs bash -c "dd if='$A' of=/dev/null bs=8M iflag=direct & dd if=/dev/zero of='$F/out' bs=8M count=128 oflag=direct conv=fsync; wait"; }
clone() { cold; secs bash -c "dd if='$A' of=/dev/null bs=8M iflag=direct & dd if=/dev/zero of='$F/pack' bs=8M count=128 oflag=direct conv=fsync & dd if=/dev/zero of='$F/out' bs=8M count=128 oflag=direct conv=fsync; wait"; }
push() { cold; secs bash -c "dd if='$A' of=/dev/null bs=8M iflag=direct & dd if=/dev/zero of='$REMFS/floor/pack' bs=8M count=128 oflag=direct conv=fsync; wait"; }
ingest_write() { cold; secs wr "$F/pack"; }
lfs_like() { cold; cat "$A" > /dev/null; secs cp "$A" "$REMFS/floor/copy"; }

rate=$(openssl speed -seconds 2 -evp sha256 -bytes 65536 2>/dev/null | awk '/^sha256/ {v=$NF; sub("k","",v); print v*1000}')
printf 'round\tsha256_s\trestore_floor_s\tclone_floor_s\tpush_floor_s\tcp_to_remote_s\tingest_cpu_floor_s\tingest_write_floor_s\n'
for r in $(seq "$ROUNDS"); do
  s=$(sha); rs=$(restore); cl=$(clone); pu=$(push); cp_=$(lfs_like); iw=$(ingest_write)
  ing=$(echo "2 * 1073741824 / $rate / 2" | bc -l)
  printf '%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\n' "$r" "$s" "$rs" "$cl" "$pu" "$cp_" "$ing" "$iw"
  printf '  restore ≥ %.2f× sha256 (bar 1.5×), clone ≥ %.2f× (bar 2.0×), push to a path ≥ %.2f× a page-cache copy (bar 1.2× git lfs push), ingest CPU ≥ %.2f× and its pack writes alone ≥ %.2f× (bar 1.5×)\n' \
    "$(echo "$rs / $s" | bc -l)" "$(echo "$cl / $s" | bc -l)" "$(echo "$pu / $cp_" | bc -l)" "$(echo "$ing / $s" | bc -l)" "$(echo "$iw / $s" | bc -l)" >&2
  rm -f "$F/out" "$F/pack" "$REMFS/floor/pack" "$REMFS/floor/copy"
done
