#!/usr/bin/env bash
# Stops the throwaway Slurm started by tests/slurm/start.sh DIR: cancels its
# jobs, stops slurmd, slurmctld and munged by the pid files in DIR/run, then
# ends whatever is left that carries the marker CLX_SLURM_DIR=DIR in its
# environment (job steps, srun, train ranks of that Slurm). Nothing else is
# touched. Usage: stop.sh DIR. Safe to run when nothing is running.
set -uo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
[ -d "$1" ] || exit 0
DIR=$(cd "$1" && pwd)
[ -f "$DIR/.clx-slurm" ] || { echo "slurm-stop: $DIR was not made by start.sh; leaving it alone" >&2; exit 1; }

# Processes of this test Slurm, never this script or its callers.
ancestors=" "
p=$$
while [ -n "$p" ] && [ "$p" -gt 1 ]; do
  ancestors+="$p "
  p=$(awk '/^PPid:/ {print $2}' "/proc/$p/status" 2>/dev/null)
done
marked() {
  local proc pid
  for proc in /proc/[0-9]*; do
    pid=${proc#/proc/}
    [[ $ancestors == *" $pid "* ]] && continue
    tr '\0' '\n' 2>/dev/null < "$proc/environ" | grep -qxF "CLX_SLURM_DIR=$DIR" && echo "$pid"
  done
}
# pid from DIR/run/NAME.pid, only if that process is NAME and carries the marker.
daemon_pid() {
  local file="$DIR/run/$1.pid" pid
  [ -f "$file" ] || return 1
  pid=$(tr -dc '0-9' < "$file")
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  grep -q "$1" "/proc/$pid/comm" "/proc/$pid/cmdline" 2>/dev/null || return 1
  tr '\0' '\n' 2>/dev/null < "/proc/$pid/environ" | grep -qxF "CLX_SLURM_DIR=$DIR" || return 1
  echo "$pid"
}
# stop_pids SECONDS PID...: SIGTERM, wait up to SECONDS, then SIGKILL.
stop_pids() {
  local seconds=$1 pid alive
  shift
  [ $# -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null
  for _ in $(seq 1 $((seconds * 10))); do
    alive=""
    for pid in "$@"; do [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && return 0
    sleep 0.1
  done
  kill -KILL "$@" 2>/dev/null
  sleep 0.2
}

# Jobs first, while slurmctld can still cancel them.
if [ -f "$DIR/etc/slurm.conf" ] && daemon_pid slurmctld >/dev/null; then
  jobs=$(SLURM_CONF="$DIR/etc/slurm.conf" timeout 10 squeue -h -o %i 2>/dev/null)
  if [ -n "$jobs" ]; then
    # shellcheck disable=SC2086  # one argument per job id
    SLURM_CONF="$DIR/etc/slurm.conf" timeout 10 scancel $jobs 2>/dev/null
    for _ in $(seq 1 50); do
      [ -z "$(SLURM_CONF="$DIR/etc/slurm.conf" timeout 5 squeue -h -t R,CG -o %i 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
fi
for daemon in slurmd slurmctld munged; do
  pid=$(daemon_pid "$daemon") && stop_pids 10 "$pid"
done
left=$(marked)
# shellcheck disable=SC2086
[ -n "$left" ] && stop_pids 5 $left
rm -f "$DIR"/run/*.pid
exit 0
