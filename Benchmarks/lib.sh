# Shared by bench.sh and sync-bench.sh (sourced): rows of RES/…/results.tsv.
# Needs RES and TSV set by the caller.

# measure DS TOOL STEP CMD: one row (wall, user, sys, max RSS, exit); the command's output goes
# to RES/DS.TOOL.STEP.log.
measure() {
  local ds=$1 tool=$2 step=$3; shift 3
  local tf=$RES/.time out=$RES/$ds.$tool.$step.log
  /usr/bin/time -f '%e %U %S %M %x' -o "$tf" bash -c "$*" > "$out" 2>&1
  read -r wall user sys rss ex < <(tail -1 "$tf")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n' "$ds" "$tool" "$step" "$wall" "$user" "$sys" "$rss" "$ex" >> "$TSV"
  printf '  %-7s %-2s %-16s %7ss  user %-6s sys %-6s rss %7s KiB  exit %s\n' "$tool" "$ds" "$step" "$wall" "$user" "$sys" "$rss" "$ex" >&2
  [ "$ex" = 0 ] || { echo "  !! $tool $ds $step failed:" >&2; tail -5 "$out" >&2; }
}
# record DS TOOL STEP VALUE: a row with a value (bytes, counts) and no timing.
record() { printf '%s\t%s\t%s\t\t\t\t\t\t%s\n' "$1" "$2" "$3" "$4" >> "$TSV"; }
bytes() { du -sb "$@" 2>/dev/null | awk '{s+=$1} END {printf "%.0f\n", s}'; }

# setup_run: the TSV header, an isolated git config for the peers, the benchmark data
# (generated with ../shared/bench when missing). Needs SCRATCH, DATA, SHARED, PY, TSV.
setup_run() {
  printf 'ds\ttool\tstep\twall_s\tuser_s\tsys_s\tmaxrss_kb\texit\tbytes\n' > "$TSV"
  export GIT_CONFIG_GLOBAL=$SCRATCH/gitconfig GIT_CONFIG_NOSYSTEM=1 RESTIC_PASSWORD=bench DVC_NO_ANALYTICS=1 HF_XET_TELEMETRY_ENABLED=false TROVE_PROGRESS=0
  git config --global user.name bench; git config --global user.email bench@example.invalid
  git config --global init.defaultBranch main; git config --global gc.autoDetach false
  (cd "$SCRATCH" && git lfs install >/dev/null 2>&1)
  if [ ! -f "$DATA/.done" ]; then
    echo "generating data in $DATA" >&2
    "$PY" "$SHARED/gen.py" "$DATA" && "$PY" "$SHARED/mutate.py" "$DATA" && touch "$DATA/.done"
  fi
}

# mount_remfs: remotes on a loop-mounted ext4 image on the same disk (as ../shared/bench
# does), so that pushes copy bytes (git-lfs hardlinks within one file system). Needs SCRATCH, REMFS.
mount_remfs() {
  if ! mountpoint -q "$REMFS"; then
    truncate -s 16G "$SCRATCH/remote.img" && mkfs.ext4 -q -F "$SCRATCH/remote.img" && mount -o loop,discard "$SCRATCH/remote.img" "$REMFS" \
      || echo "WARN: no loop mount; remotes share the file system" >&2
  fi
}
