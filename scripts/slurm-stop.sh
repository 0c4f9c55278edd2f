#!/usr/bin/env bash
# Stop the single-node Slurm cluster started by scripts/slurm-start.sh.
#
#   scripts/slurm-stop.sh [STATE_DIR]       (default /tmp/trove-slurm)
#
# Stops slurmd, then slurmctld (by the pid files in STATE_DIR), then munged,
# but munged only if slurm-start.sh started it (marker STATE_DIR/munged.started).
# SIGTERM first, SIGKILL after 5 s. Safe to run when nothing is running.
set -euo pipefail

D="${1:-${SLURM_STATE_DIR:-/tmp/trove-slurm}}"
if [ ! -d "$D" ]; then echo "slurm stopped (no state dir $D)"; exit 0; fi
D="$(cd "$D" && pwd -P)"

# cmdline_of PID: sets CMDLINE to the process's command line joined by spaces
# ("" if gone). No subshell: /proc scans stay fast where fork is slow.
cmdline_of() {
  local -a a=()
  mapfile -d '' a 2>/dev/null < "/proc/$1/cmdline" || true
  CMDLINE="${a[*]}"
}

# alive PID: the process exists and is not a zombie (PID 1 in some
# containers does not reap, so dead daemons can linger as zombies).
alive() {
  local line
  read -r line 2>/dev/null < "/proc/$1/stat" || return 1   # "pid (comm) S ..."
  line="${line##*) }"
  [ "${line%% *}" != Z ] && [ "${line%% *}" != X ]
}

# stop_pid NAME PIDFILE EXPECT: stop the pid in PIDFILE if its command line
# contains EXPECT (guards against a stale pid file pointing at a reused pid).
stop_pid() {
  local name="$1" pidfile="$2" expect="$3" pid
  [ -s "$pidfile" ] || return 0
  pid="$(tr -dc '0-9' < "$pidfile")"
  cmdline_of "${pid:-0}"
  if [ -z "$pid" ] || ! alive "$pid" || [[ "$CMDLINE" != *"$expect"* ]]; then
    rm -f "$pidfile"; return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    alive "$pid" || { echo "stopped $name (pid $pid)"; rm -f "$pidfile"; return 0; }
    sleep 0.1
  done
  echo "$name (pid $pid) ignored SIGTERM for 5 s; sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    echo "slurm-stop: error: $name (pid $pid) survived SIGKILL" >&2; return 1
  fi
  rm -f "$pidfile"
  echo "killed $name (pid $pid)"
}

# stepd_pids: slurmstepd processes of this cluster. They outlive slurmd, have
# no conf path on their command line, but keep $D/log/slurmd.log open (fd 3)
# and run with cwd $D/log.
stepd_pids() {
  local p pid
  for p in /proc/[0-9]*; do
    pid="${p#/proc/}"
    cmdline_of "$pid"
    [[ "$CMDLINE" == slurmstepd:* ]] || continue
    alive "$pid" || continue
    if [ "$(readlink "$p/cwd" 2>/dev/null || true)" = "$D/log" ] \
       || find "$p/fd" -lname "$D/log/slurmd.log" 2>/dev/null | grep -q .; then
      echo "$pid"
    fi
  done
}

# tree PID...: the pids and all their descendants.
tree() {
  ps -eo pid=,ppid= | awk -v roots="$*" '
    { par[$1] = $2; pids[NR] = $1 }
    END {
      n = split(roots, r, " "); for (i = 1; i <= n; i++) in_[r[i]] = 1
      do { changed = 0
        for (i in pids) { p = pids[i]; if (!(p in in_) && (par[p] in in_)) { in_[p] = 1; changed = 1 } }
      } while (changed)
      for (p in in_) print p
    }'
}

stop_pid slurmd "$D/slurmd.pid" slurmd

# Jobs still running: SIGTERM their slurmstepd and job processes, SIGKILL after 5 s.
stepds="$(stepd_pids | tr '\n' ' ')"
if [ -n "${stepds// /}" ]; then
  # shellcheck disable=SC2086
  procs="$(tree $stepds | tr '\n' ' ')"
  # shellcheck disable=SC2086
  kill -TERM $procs 2>/dev/null || true
  for _ in $(seq 1 50); do
    left=""; for pid in $procs; do alive "$pid" && left="$left $pid"; done
    [ -z "$left" ] && break
    sleep 0.1
  done
  # shellcheck disable=SC2086
  [ -n "$left" ] && kill -KILL $left 2>/dev/null || true
  echo "stopped leftover job processes (slurmstepd pids: ${stepds% })"
fi

stop_pid slurmctld "$D/slurmctld.pid" slurmctld

if [ -f "$D/munged.started" ]; then
  # Another cluster (other state dir, other ports) may still use this munged:
  # then hand the marker over to it instead of stopping munged.
  other=""
  for p in /proc/[0-9]*; do
    cmdline_of "${p#/proc/}"
    if [[ "$CMDLINE" =~ ^/usr/sbin/slurm(ctld|d)\ -f\ ([^ ]+)/slurm\.conf ]] && alive "${p#/proc/}"; then
      other="${BASH_REMATCH[2]}"; break
    fi
  done
  if [ -n "$other" ] && [ -d "$other" ]; then
    mv -f "$D/munged.started" "$other/munged.started"
    echo "left munged running for the cluster in $other"
  else
    stop_pid munged /run/munge/munged.pid munged
    rm -f "$D/munged.started"
  fi
fi
echo "slurm stopped (state dir $D)"
