#!/usr/bin/env bash
# A throw-away single-node SLURM cluster for the integration test.
#   slurm_cluster.sh install          install slurm-wlm and munge from Debian (root; idempotent)
#   slurm_cluster.sh start <dir>      write the config, start munged, slurmctld, slurmd; wait until idle
#   slurm_cluster.sh stop <dir>       stop the daemons started by `start` (by PID) and remove the config
# Daemons keep their state, logs and PID files under <dir>. The config goes to /etc/slurm/slurm.conf,
# where job steps find it (they do not inherit SLURM_CONF); an existing foreign config is never touched.
set -euo pipefail
# the daemons live in /usr/sbin, which a plain user PATH (PATH=/usr/local/bin:/usr/bin:/bin) leaves out
export PATH="$PATH:/usr/sbin:/sbin"
CONF=/etc/slurm/slurm.conf
MARK="# prefixlab test cluster"

install() {
    if command -v slurmctld >/dev/null && command -v munged >/dev/null; then return 0; fi
    if [ "$(id -u)" != 0 ]; then echo "slurm_cluster: need root to install slurm-wlm and munge" >&2; exit 3; fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q slurm-wlm munge >/dev/null; }
}

# A test run killed before its stop leaves its daemons and our config behind; a new cluster's
# daemons then fail to start, and jobs go to the old controller, which records them in the old
# run's directory (the test then counts 0 jobs). Stop what that run left.
stop_stale() {
    local old
    old=$(sed -n 's|^StateSaveLocation=\(.*\)/state$|\1|p' "$CONF")
    echo "slurm_cluster: stopping the daemons of an earlier run that did not stop ($old)" >&2
    stop "$old"
    # its PID files may have gone with its directory; the config was ours, so these daemons are too
    pkill -x slurmd || true
    pkill -x slurmctld || true
    for _ in $(seq 1 40); do
        if ! pgrep -x slurmd >/dev/null && ! pgrep -x slurmctld >/dev/null; then return 0; fi
        sleep 0.25
    done
}

start() {
    local dir=$1
    mkdir -p "$dir/state" "$dir/spool" /run/munge /var/log/munge /var/lib/munge
    if [ -e "$CONF" ] && ! grep -q "$MARK" "$CONF"; then
        echo "slurm_cluster: $CONF exists and is not ours; refusing to overwrite it" >&2; exit 4
    fi
    if [ -e "$CONF" ]; then stop_stale; fi
    if pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; then
        echo "slurm_cluster: a slurmctld or slurmd runs that this script did not start; stop it first" >&2; exit 6
    fi
    [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null; }
    chown munge:munge /run/munge /etc/munge/munge.key /var/log/munge /var/lib/munge
    chmod 400 /etc/munge/munge.key
    local cpus mem
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 2048 ))
    cat > "$CONF" <<CONF_EOF
$MARK (written by tests/slurm/slurm_cluster.sh; removed by its stop command)
ClusterName=prefixlab
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
MinJobAge=60
ReturnToService=2
SchedulerType=sched/backfill
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF_EOF
    if ! pgrep -x munged >/dev/null; then
        runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
        echo started > "$dir/munged.ours"
    fi
    /usr/sbin/slurmctld -f "$CONF"
    /usr/sbin/slurmd -f "$CONF"
    for _ in $(seq 1 60); do
        if sinfo -h -o %T 2>/dev/null | grep -qx idle; then return 0; fi
        sleep 0.5
    done
    echo "slurm_cluster: node did not become idle; see $dir/slurmctld.log and $dir/slurmd.log" >&2
    exit 5
}

stop() {
    local dir=$1
    for daemon in slurmd slurmctld; do
        if [ -s "$dir/$daemon.pid" ]; then kill "$(cat "$dir/$daemon.pid")" 2>/dev/null || true; fi
    done
    if [ -e "$dir/munged.ours" ] && [ -s /run/munge/munged.pid ]; then kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true; fi
    if [ -e "$CONF" ] && grep -q "$MARK" "$CONF"; then rm -f "$CONF"; fi
}

case "${1:-}" in
    install) install ;;
    start) start "${2:?state directory}" ;;
    stop) stop "${2:?state directory}" ;;
    *) echo "usage: $0 install | start <dir> | stop <dir>" >&2; exit 2 ;;
esac
