#!/bin/busybox sh
# The guest's init for qemu/throughput.sh (rdinit=/bench-init; the ordinary boots keep
# guest-init.sh as /init). Loads the virtio modules the initramfs carries, waits for the
# virtio-blk disk, runs bench-read with the parameters on the command line
# (sviommu.bench=DISK_MIB,SEQ_MIB,RAND_READS,SEED), which prints its SVIOMMU-BENCH line, and
# powers off.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /mod/order); do
    insmod "/mod/$m" || echo "SVIOMMU-BENCH status=insmod-failed module=$m"
done
n=0
while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
if [ ! -b /dev/vda ]; then
    echo "SVIOMMU-BENCH status=no-disk"
    poweroff -f
fi
args=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^sviommu\.bench=//p' | tr ',' ' ')
# shellcheck disable=SC2086 # four numbers, split on purpose
/bin/bench-read /dev/vda $args
poweroff -f
