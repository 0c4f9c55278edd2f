#!/usr/bin/env bash
# Start a throw-away single-node Slurm cluster (munge + slurmctld + slurmd,
# no cgroups, no accounting) for the tests. Must run as root.
#
#   scripts/slurm-start.sh [STATE_DIR]      (default /tmp/trove-slurm)
#
# Always starts clean: any slurmd/slurmctld started from STATE_DIR is stopped
# first and the controller state is wiped, so job ids restart at 1.
# The last line of stdout is `SLURM_CONF=<STATE_DIR>/slurm.conf`; callers
# export it, e.g.  export "$(scripts/slurm-start.sh | tail -n1)"
# Stop with scripts/slurm-stop.sh [STATE_DIR].
# Ports: 6817 (slurmctld) and 6818 (slurmd) on 127.0.0.1, or TROVE_SLURMCTLD_PORT
# and TROVE_SLURMD_PORT, so two clusters with different state dirs can coexist.
set -euo pipefail

D="${1:-${SLURM_STATE_DIR:-/tmp/trove-slurm}}"
mkdir -p "$D"
D="$(cd "$D" && pwd -P)"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
CONF="$D/slurm.conf"
LOG="$D/log"

die() { echo "slurm-start: error: $*" >&2; exit 1; }

# daemon CMD...: run CMD (which daemonizes) with stdin from /dev/null and every
# inherited fd above 2 closed. munged keeps inherited fds open; a caller's fd
# that stays open in a daemon can make the caller wait forever (Foundation's
# Process on Linux reaps its child only when a socket it passed down closes).
daemon() (
  for f in /proc/"$BASHPID"/fd/*; do
    n="${f##*/}"
    if [ "$n" -gt 2 ]; then eval "exec $n>&-" 2>/dev/null || true; fi
  done
  exec "$@" </dev/null
)

[ "$(id -u)" -eq 0 ] || die "must run as root"
for b in /usr/sbin/munged /usr/sbin/slurmctld /usr/sbin/slurmd /usr/bin/munge /usr/bin/unmunge /usr/bin/sinfo; do
  [ -x "$b" ] || die "$b not found; install with: apt-get install -y slurm-wlm munge"
done

# 1. Stop anything previously started from this state dir (quietly).
"$HERE/slurm-stop.sh" "$D" >/dev/null

# 2. Refuse to start if another Slurm instance holds the ports.
port_in_use() {
  if command -v ss >/dev/null 2>&1; then
    ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}
CTLD_PORT="${TROVE_SLURMCTLD_PORT:-6817}"
SLURMD_PORT="${TROVE_SLURMD_PORT:-6818}"
for port in "$CTLD_PORT" "$SLURMD_PORT"; do
  if port_in_use "$port"; then
    others="$(ps -eo pid=,args= | grep -E '/usr/sbin/slurm(ctld|d)( |$)' | grep -v grep || true)"
    die "port $port on 127.0.0.1 is already in use by a Slurm not started from $D; stop it first (scripts/slurm-stop.sh <its state dir>). Running daemons:
${others:-  (none found; another program holds the port)}"
  fi
done

# 3. Clean state so job ids restart at 1.
rm -rf "$D/ctld" "$D/spool" "$LOG" "$D/munged.started"
mkdir -p "$D/ctld" "$D/spool" "$LOG"

# 4. munge: reuse a working munged, otherwise start one and remember that.
if [ ! -s /etc/munge/munge.key ]; then
  /usr/sbin/mungekey --create --force
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  MUNGE_LOG=/var/log/munge/munged.log
  daemon runuser -u munge -- /usr/sbin/munged \
    || die "munged failed to start; see $MUNGE_LOG"
  echo "$(cat /run/munge/munged.pid 2>/dev/null || true)" > "$D/munged.started"
  ok=0
  for _ in $(seq 1 50); do
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.1
  done
  [ "$ok" -eq 1 ] || die "munged is not answering; see $MUNGE_LOG"
fi

# 5. Config.
H="$(hostname -s)"
cat > "$CONF" <<CONF
ClusterName=trove
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=3600
KillWait=5
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
StateSaveLocation=$D/ctld
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
NodeName=$H NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
export SLURM_CONF="$CONF"

# 6. Daemons.
daemon /usr/sbin/slurmctld -f "$CONF" -c \
  || die "slurmctld failed to start; see $LOG/slurmctld.log"
daemon /usr/sbin/slurmd -f "$CONF" \
  || die "slurmd failed to start; see $LOG/slurmd.log"

# 7. Wait until the node is idle.
for _ in $(seq 1 60); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qx idle; then
    echo "slurm up (state dir $D, logs in $LOG)"
    echo "SLURM_CONF=$CONF"
    exit 0
  fi
  sleep 0.5
done
die "node did not become idle within 30 s; see $LOG/slurmctld.log and $LOG/slurmd.log"
