#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, to try `fesa run --slurm` (and for the tests): start | stop | status.
#
#   make slurm-deps                                # apt-get install slurm-wlm munge (Debian/Ubuntu, as root)
#   bash examples/slurm/local_cluster.sh start     # munged, slurmctld, slurmd on localhost; waits for an idle node
#   fesa run examples/demo/experiment.yaml --slurm ...
#   bash examples/slurm/local_cluster.sh stop      # ends only the daemons this script started (pid files)
#
# Everything lives under $FESA_SLURM_DIR (default /tmp/fesa-slurm): slurm.conf written for this machine (its CPU
# count and memory, one partition "local"), state, logs and pid files. Installs nothing, touches no system file;
# needs root (slurmd runs jobs as their user) and the slurm-wlm and munge packages.
set -euo pipefail
DIR=${FESA_SLURM_DIR:-/tmp/fesa-slurm}
HOST=$(hostname -s)
export SLURM_CONF=$DIR/slurm.conf

need() { command -v "$1" >/dev/null || { echo "local_cluster.sh: $1 not found: run 'make slurm-deps' (apt-get install slurm-wlm munge)" >&2; exit 2; }; }

write_conf() {
  local cpus mem_mb
  cpus=$(nproc --all)
  mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))  # leave the system a tenth
  mkdir -p "$DIR"/{state,spool,log,run,munge}
  cat > "$DIR/slurm.conf" <<CONF
ClusterName=fesa-local
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=${FESA_SLURMCTLD_PORT:-16817}
SlurmdPort=${FESA_SLURMD_PORT:-16818}
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
MinJobAge=3600
KillWait=5
InactiveLimit=0
DefMemPerCPU=$(( mem_mb / cpus ))
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=local Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
  need munged; need slurmctld; need slurmd; need sinfo
  write_conf
  if ! alive "$DIR/run/munged.pid"; then
    [ -f "$DIR/munge/munge.key" ] || { dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none; chmod 400 "$DIR/munge/munge.key"; }
    munged --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" --pid-file="$DIR/run/munged.pid" \
      --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munge.seed" --force
  fi
  # slurm finds munge's socket through its own option; the daemons and clients read SLURM_CONF.
  grep -q AuthInfo "$DIR/slurm.conf" || echo "AuthInfo=socket=$DIR/munge/munge.socket" >> "$DIR/slurm.conf"
  alive "$DIR/run/slurmctld.pid" || slurmctld -i
  alive "$DIR/run/slurmd.pid" || slurmd
  for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
      echo "local SLURM cluster up: node $HOST, $(nproc --all) CPUs; export SLURM_CONF=$SLURM_CONF"
      return 0
    fi
    sleep 1
  done
  echo "local_cluster.sh: the node did not become idle within 60 s; see $DIR/log/" >&2
  sinfo >&2 || true
  exit 1
}

stop() {
  for d in slurmd slurmctld munged; do
    if alive "$DIR/run/$d.pid"; then
      kill "$(cat "$DIR/run/$d.pid")" && for _ in $(seq 20); do alive "$DIR/run/$d.pid" || break; sleep 0.5; done
    fi
    rm -f "$DIR/run/$d.pid"
  done
  echo "local SLURM cluster stopped"
}

status() {
  for d in munged slurmctld slurmd; do
    if alive "$DIR/run/$d.pid"; then echo "$d: running (pid $(cat "$DIR/run/$d.pid"))"; else echo "$d: stopped"; fi
  done
  alive "$DIR/run/slurmctld.pid" && sinfo
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
