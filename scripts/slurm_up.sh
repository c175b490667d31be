#!/usr/bin/env bash
# Bring up a single-node SLURM cluster on this machine (Debian/Ubuntu, as root) for testing the
# Snakemake SLURM profile: munge + slurmctld + slurmd, one partition "debug", fake GPUs (gres.conf over
# dummy character devices, so --gpus requests schedule; there is no CUDA inside). No slurmdbd, hence no
# sacct: use `slurm-status-command: squeue` (workflow/profiles/slurm does). Idempotent: when the
# daemons it started are still up it only reports the node. Stop it with scripts/slurm_down.sh.
#
# Environment: PIDDIR (where PIDs are recorded, default /run/localslurm), FAKE_GPUS (default 2),
# SLURM_UP_FORCE=1 (overwrite an /etc/slurm/slurm.conf this script did not write).
set -euo pipefail

PIDDIR=${PIDDIR:-/run/localslurm}
FAKE_GPUS=${FAKE_GPUS:-2}
MARKER="# written by pgraft scripts/slurm_up.sh"
CONF=/etc/slurm/slurm.conf
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

say() { echo "slurm_up: $*"; }
die() { echo "slurm_up: error: $*" >&2; exit 1; }
ours_alive() { [ -s "$PIDDIR/$1.pid" ] && kill -0 "$(cat "$PIDDIR/$1.pid")" 2>/dev/null; }
node_state() { sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -1 || true; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs Debian packages, writes /etc/slurm and starts daemons); try: sudo $0"
[ "$FAKE_GPUS" -ge 1 ] 2>/dev/null || die "FAKE_GPUS must be a positive integer (got '$FAKE_GPUS')"
HOST=$(hostname -s)

# already up? (the daemons this script started are alive and the node answers)
if ours_alive slurmctld && ours_alive slurmd; then
  case "$(node_state)" in
    idle*|mixed*|alloc*) say "already up (slurmctld $(cat "$PIDDIR/slurmctld.pid"), slurmd $(cat "$PIDDIR/slurmd.pid"))"; sinfo; exit 0;;
  esac
fi
# half up (a daemon died): stop what is left of ours, then start afresh
if ours_alive slurmctld || ours_alive slurmd; then
  say "found a partly running cluster started earlier; restarting it"
  PIDDIR="$PIDDIR" "$HERE/slurm_down.sh"
fi
for d in slurmctld slurmd; do
  if pid=$(pgrep -x "$d" | head -1) && [ -n "$pid" ]; then
    die "a $d this script did not start is running (pid $pid): stop it first, or use that cluster directly"
  fi
done

# packages
missing=()
for pair in slurmctld:slurmctld slurmd:slurmd sinfo:slurm-client munged:munge; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get: install slurmctld, slurmd, slurm-client and munge by hand"
  say "installing ${missing[*]} (apt-get)"
  apt-get update -qq >/tmp/slurm_up.apt.log 2>&1 || { tail -5 /tmp/slurm_up.apt.log >&2; die "apt-get update failed (no network or no apt sources?); log: /tmp/slurm_up.apt.log"; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge \
    >>/tmp/slurm_up.apt.log 2>&1 || { tail -5 /tmp/slurm_up.apt.log >&2; die "apt-get install slurmctld slurmd slurm-client munge failed; log: /tmp/slurm_up.apt.log"; }
fi

# configuration (never overwrite a slurm.conf someone else wrote)
if [ -s "$CONF" ] && ! grep -qF "$MARKER" "$CONF" && [ "${SLURM_UP_FORCE:-0}" != 1 ]; then
  die "$CONF exists and was not written by this script (a real cluster's?); set SLURM_UP_FORCE=1 to overwrite it"
fi
NCPU=$(nproc)
MEM=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 - 1024 ))
mkdir -p "$PIDDIR" /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
cat > "$CONF" <<CONF
$MARKER: a single-node test cluster
ClusterName=localcluster
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# finished jobs stay visible to squeue/scontrol for 10 minutes (no accounting database here)
MinJobAge=600
SlurmctldPidFile=${PIDDIR}/slurmctld.pid
SlurmdPidFile=${PIDDIR}/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
GresTypes=gpu
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${NCPU} RealMemory=${MEM} Gres=gpu:${FAKE_GPUS} State=UNKNOWN
PartitionName=debug Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
CONF
# fake GPUs: dummy character devices (major/minor of /dev/null); without mknod, count-only GRES
gres="NodeName=${HOST} Name=gpu File=/dev/fakegpu[0-$((FAKE_GPUS - 1))]"
for i in $(seq 0 $((FAKE_GPUS - 1))); do
  [ -e "/dev/fakegpu$i" ] || mknod "/dev/fakegpu$i" c 1 3 2>/dev/null || { gres="NodeName=${HOST} Name=gpu Count=${FAKE_GPUS}"; break; }
done
echo "$gres" > /etc/slurm/gres.conf

# munge: reuse a working munged, else start one and record its PID
if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
  say "munged already running; using it"
else
  [ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
  chown munge:munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
  chmod 400 /etc/munge/munge.key
  chmod 755 /run/munge
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid || die "munged failed to start (see /var/log/munge/munged.log)"
  for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 || die "munge does not answer (see /var/log/munge/munged.log)"
  cp /run/munge/munged.pid "$PIDDIR/munged.pid"
fi

# slurm daemons (each daemonizes and writes its PID file)
/usr/sbin/slurmctld || die "slurmctld failed to start; tail of /var/log/slurm/slurmctld.log: $(tail -3 /var/log/slurm/slurmctld.log 2>/dev/null)"
/usr/sbin/slurmd || die "slurmd failed to start; tail of /var/log/slurm/slurmd.log: $(tail -3 /var/log/slurm/slurmd.log 2>/dev/null)"
st=""
for _ in $(seq 150); do
  st=$(node_state)
  case "$st" in
    idle*|mixed*|alloc*) break;;
    drain*|down*|inval*) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true;;
  esac
  sleep 0.2
done
case "$st" in
  idle*|mixed*|alloc*) ;;
  *) die "node $HOST did not become idle (state '${st:-no answer}'); see /var/log/slurm/slurmctld.log and slurmd.log, stop with scripts/slurm_down.sh";;
esac
say "up: node $HOST, $NCPU CPUs, ${MEM} MB, $FAKE_GPUS fake GPUs, partition debug (PIDs in $PIDDIR)"
sinfo
