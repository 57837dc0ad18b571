#!/bin/bash
# PID 1 inside the VM after switch_root: a minimal system (no init daemon), then the job
# the host wrote next to this script. The exit code goes back through the results share.
results=$(dirname "$(readlink -f "$0")")
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm
# /run from the host would carry its locks and pid files; /tmp stays (a checkout may live there)
mount -t tmpfs tmpfs /run && mkdir -p /run/netns /run/lock
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
ip link set lo up
hostname dnspacer-vm
export HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
source "$results/job.env"
cd "$DNSPACER_REPO"
echo "guest: kernel $(uname -r), running: $DNSPACER_JOB"
bash -c "$DNSPACER_JOB" 2>&1 | tee "$results/output.log"
echo "${PIPESTATUS[0]}" >"$results/exit"
sync
echo o >/proc/sysrq-trigger
sleep 10
