#!/usr/bin/env bash
# Stop exactly the daemons scripts/slurm_up.sh started (slurmd, slurmctld, munged), by their recorded
# PIDs; daemons it did not start are left alone. Idempotent: with nothing recorded it says so.
set -uo pipefail

PIDDIR=${PIDDIR:-/run/localslurm}
say() { echo "slurm_down: $*"; }

[ "$(id -u)" = 0 ] || { echo "slurm_down: error: must run as root (the daemons run as root and munge)" >&2; exit 1; }
stopped=0 failed=0
for d in slurmd slurmctld munged; do
  f="$PIDDIR/$d.pid"
  [ -s "$f" ] || continue
  pid=$(cat "$f")
  # a recorded PID that now belongs to another program is not ours to stop
  if ! kill -0 "$pid" 2>/dev/null || [ "$(ps -o comm= -p "$pid" 2>/dev/null)" != "$d" ]; then
    say "$d ($pid) was not running"
    rm -f "$f"
    continue
  fi
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    say "$d ($pid) did not stop within 10 s"
    failed=1
  else
    say "$d ($pid) stopped"
    stopped=$((stopped + 1))
    rm -f "$f"
  fi
done
[ "$stopped" -gt 0 ] || [ "$failed" -gt 0 ] || say "nothing to stop (no daemons recorded in $PIDDIR)"
exit "$failed"
