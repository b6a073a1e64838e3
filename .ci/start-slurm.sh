#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine (Debian's slurm-wlm + munge), for the tests of
# the `slurm` back-end. Idempotent: installs what is missing, rewrites the config only when it
# changes, starts only the daemons that are not running, then waits until the node is idle.
# Needs root (CI containers run as root); no systemd needed. Usage: .ci/start-slurm.sh
set -euo pipefail

say() { echo "start-slurm: $*"; }
if [ "$(id -u)" -ne 0 ]; then
  say "needs root (it installs packages and starts daemons); skipped" >&2
  exit 1
fi

# 1. Packages
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  say "installing slurm-wlm and munge"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
else
  say "slurm-wlm and munge already installed ($(slurmctld -V))"
fi

# 2. munge: a key, its run folder, the daemon
if [ ! -s /etc/munge/munge.key ]; then
  say "creating /etc/munge/munge.key"
  mkdir -p /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown munge:munge /etc/munge /etc/munge/munge.key
chmod 700 /etc/munge
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge
chmod 755 /run/munge
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  say "munged already running"
else
  say "starting munged"
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 1 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
fi

# 3. slurm.conf for one node: this host, 2 CPUs, its real memory
HOST="$(hostname -s)"
MEM_MB="$(free -m | awk '/^Mem:/ {print int($2 * 0.9)}')"
CONF=/etc/slurm/slurm.conf
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
NEW_CONF="$(cat <<EOF
# Written by .ci/start-slurm.sh: a one-node cluster on this machine, for addrop's tests.
ClusterName=addrop-ci
SlurmctldHost=${HOST}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=10
MinJobAge=60
NodeName=${HOST} CPUs=2 RealMemory=${MEM_MB} State=UNKNOWN
PartitionName=debug Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
EOF
)"
if [ -f "$CONF" ] && [ "$(cat "$CONF")" = "$NEW_CONF" ]; then
  say "$CONF unchanged (node ${HOST}, CPUs=2, RealMemory=${MEM_MB} MB)"
  CHANGED=0
else
  say "writing $CONF (node ${HOST}, CPUs=2, RealMemory=${MEM_MB} MB)"
  printf '%s\n' "$NEW_CONF" > "$CONF"
  CHANGED=1
fi
# An empty cgroup.conf keeps slurmd from looking for cgroup mounts.
[ -s /etc/slurm/cgroup.conf ] || echo "# no cgroups: ProctrackType=proctrack/linuxproc, TaskPlugin=task/none" > /etc/slurm/cgroup.conf

# 4. Daemons
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if running /run/slurmctld.pid; then
  if [ "$CHANGED" = 1 ]; then say "reconfiguring slurmctld"; scontrol reconfigure || true; fi
  say "slurmctld already running"
else
  say "starting slurmctld"
  /usr/sbin/slurmctld
fi
if running /run/slurmd.pid; then
  say "slurmd already running"
else
  say "starting slurmd"
  /usr/sbin/slurmd
fi

# 5. Wait for the node to be idle (bring it back if an earlier run left it down or drained)
for i in $(seq 1 60); do
  STATE="$(sinfo -h -n "$HOST" -o '%t' 2>/dev/null | head -n1 || true)"
  case "$STATE" in
    idle|mix|alloc) say "node ${HOST} is ${STATE}; partition:"; sinfo; exit 0 ;;
    down*|drain*|drng*) scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true ;;
  esac
  sleep 1
done
say "node ${HOST} did not become idle (state: ${STATE:-unknown}); see /var/log/slurm/" >&2
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
