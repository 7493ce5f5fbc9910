#!/usr/bin/env bash
# Starts a throwaway one-node Slurm (munged, slurmctld, slurmd, all as root,
# all on 127.0.0.1) whose every file lives under DIR, and waits until its node
# is idle. Usage: start.sh DIR. Afterwards `source DIR/env.sh` points sinfo,
# sbatch, srun, scontrol and scancel at it; tests/slurm/stop.sh DIR stops it.
#
# DIR is wiped first (only if it is empty or was made by this script), and
# daemons left by an earlier run in DIR are stopped by their pid files first.
# Environment: CLX_SLURM_CPUS (default: the cores here, at least 2),
# CLX_SLURM_PORT (slurmctld port, default 16817; slurmd gets the next one;
# the first free pair from there is taken), CLX_SLURM_MPI (MpiDefault;
# default pmix when Slurm has the plugin, else pmi2, else none).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
mkdir -p "$1"
DIR=$(cd "$1" && pwd)
say() { echo "slurm-start: $*"; }
die() { echo "slurm-start: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (slurmd launches the jobs)"
for tool in munged slurmctld slurmd sinfo srun sbatch scontrol; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install slurm-wlm munge)"
done

# Anything an earlier run left in DIR: stop it, then start from an empty folder.
bash "$HERE/stop.sh" "$DIR" >/dev/null 2>&1 || true
if [ -n "$(ls -A "$DIR")" ] && [ ! -f "$DIR/.clx-slurm" ]; then
  die "$DIR is not empty and was not made by $0; refusing to wipe it"
fi
find "$DIR" -mindepth 1 -delete
touch "$DIR/.clx-slurm"
mkdir -p "$DIR"/{etc,state,spool,run,log,munge,pmix}
chmod 700 "$DIR/state" "$DIR/spool"
chmod 711 "$DIR/munge"   # munged wants its socket folder searchable by all

# Daemons get the marker CLX_SLURM_DIR=DIR in their environment, so stop.sh
# can tell them (and what they started) from anything else on the machine.
# fd 9 is closed for them: the test holds a lock on it.
daemon_env=(env CLX_SLURM_DIR="$DIR" SLURM_CONF="$DIR/etc/slurm.conf")

# --- munge: a fresh key and a private socket ---
if command -v mungekey >/dev/null; then
  mungekey --create --keyfile="$DIR/munge/munge.key" >/dev/null
else
  dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
fi
chmod 400 "$DIR/munge/munge.key"
"${daemon_env[@]}" munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
  --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" \
  </dev/null >>"$DIR/log/munged.out" 2>&1 9>&- || die "munged did not start: $(tail -3 "$DIR/log/munged.log" "$DIR/log/munged.out" 2>/dev/null)"
for _ in $(seq 1 50); do [ -S "$DIR/munge/munge.socket" ] && break; sleep 0.1; done
[ -S "$DIR/munge/munge.socket" ] || die "munged made no socket: $(tail -3 "$DIR/log/munged.log")"
if command -v munge >/dev/null && command -v unmunge >/dev/null; then
  munge --socket="$DIR/munge/munge.socket" -n | unmunge --socket="$DIR/munge/munge.socket" >/dev/null \
    || die "munge credential round trip failed"
fi

# --- slurm.conf ---
port_busy() {  # something listens on TCP port $1 (any address)
  if command -v ss >/dev/null; then
    [ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}
ctld_port=${CLX_SLURM_PORT:-16817}
for _ in $(seq 1 50); do
  port_busy "$ctld_port" || port_busy $((ctld_port + 1)) || break
  ctld_port=$((ctld_port + 2))
done
cpus=${CLX_SLURM_CPUS:-$(nproc)}
[ "$cpus" -ge 2 ] || cpus=2
# Listen on loopback only where the host name resolves to it (as on the test
# machine); otherwise NoCtldInAddrAny would bind slurmctld to another address.
comm_params="#CommunicationParameters= (host name does not resolve to loopback)"
if getent hosts "$(hostname)" 2>/dev/null | awk '{print $1; exit}' | grep -q '^127\.'; then
  comm_params="CommunicationParameters=NoCtldInAddrAny,NoInAddrAny"
fi
render() {
  sed -e "s|@DIR@|$DIR|g" -e "s|@CTLD_PORT@|$ctld_port|g" -e "s|@SLURMD_PORT@|$((ctld_port + 1))|g" \
      -e "s|@CPUS@|$cpus|g" -e "s|@MEMORY_MB@|2048|g" -e "s|@SELECT_TYPE@|select/cons_tres|g" \
      -e "s|@MPI_DEFAULT@|$1|g" -e "s|@COMM_PARAMS@|$comm_params|g" -e "s|@FIRST_JOB_ID@|$first_job_id|g" \
      "$HERE/slurm.conf.in" > "$DIR/etc/slurm.conf"
}
first_job_id=$((1000 + RANDOM * 16 + RANDOM % 16))
# The PMIx plugin's per-step folders (spmix_appdir_UID_JOB.STEP) go under DIR,
# not /tmp, where a folder left by an earlier run would make srun fail with
# "File exists" (mpi.conf is read from beside slurm.conf).
mkdir -p "$DIR/pmix"
echo "PMIxCliTmpDirBase=$DIR/pmix" > "$DIR/etc/mpi.conf"
render none
cp "$HERE/cgroup.conf" "$DIR/etc/cgroup.conf"
: > "$DIR/etc/plugstack.conf"
export SLURM_CONF="$DIR/etc/slurm.conf"
mpi=${CLX_SLURM_MPI:-}
if [ -z "$mpi" ]; then
  mpi_types=$(srun --mpi=list 2>&1 || true)
  if grep -qw pmix <<<"$mpi_types"; then mpi=pmix
  elif grep -qw pmi2 <<<"$mpi_types"; then mpi=pmi2
  else mpi=none; fi
fi
render "$mpi"
echo "export SLURM_CONF=$DIR/etc/slurm.conf" > "$DIR/env.sh"

# --- slurmctld and slurmd ---
"${daemon_env[@]}" slurmctld -f "$SLURM_CONF" -c </dev/null >>"$DIR/log/slurmctld.out" 2>&1 9>&- \
  || die "slurmctld did not start: $(tail -5 "$DIR/log/slurmctld.log" "$DIR/log/slurmctld.out" 2>/dev/null)"
up=""
for _ in $(seq 1 100); do scontrol ping 2>/dev/null | grep -q UP && { up=1; break; }; sleep 0.2; done
[ -n "$up" ] || die "slurmctld does not answer: $(tail -5 "$DIR/log/slurmctld.log")"
"${daemon_env[@]}" slurmd -f "$SLURM_CONF" -N localhost </dev/null >>"$DIR/log/slurmd.out" 2>&1 9>&- \
  || die "slurmd did not start: $(tail -5 "$DIR/log/slurmd.log" "$DIR/log/slurmd.out" 2>/dev/null)"
state=""
for _ in $(seq 1 150); do
  state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
  [ "$state" = idle ] && break
  sleep 0.2
done
[ "$state" = idle ] || die "node localhost is '$state', not idle, after 30 s: $(tail -5 "$DIR/log/slurmd.log")"
say "one-node Slurm up in $DIR (slurmctld 127.0.0.1:$ctld_port, slurmd :$((ctld_port + 1)), $cpus CPUs, MpiDefault=$mpi)"
