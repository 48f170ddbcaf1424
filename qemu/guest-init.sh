#!/bin/busybox sh
# The guest's init (built into the initramfs by qemu/build.sh). Loads the virtio modules, then
# drives the virtio-blk disk the host made (iommu_platform=on: every ring and buffer access is a
# DMA request through the IOMMU):
#   - reads 1 MiB the host wrote at 1 MiB and prints its MD5 (the host compares it with its own);
#   - writes 1 MiB of random data at 2 MiB, drops the page cache, reads it back through the
#     device and compares (the host also reads the image after power-off);
# prints one result line, and powers off. With sviommu.pause=1 on the command line it waits for
# the host first (below); with sviommu.bench=... it runs qemu/throughput.sh's timed reads instead
# of the checks (further below).
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
load() {
    for m in $(cat /mod/order); do
        insmod "/mod/$m" || echo "SVIOMMU-INIT insmod $m failed"
    done
}
# `sviommu boot --corrupt-context`: the host corrupts the disk's context entry (VT-d) or STE
# (SMMUv3) while this waits for a line on the console; then the disk's first DMA faults (the
# driver may never finish probing, so it loads in the background), and this reports once Linux
# has printed the fault (intel-iommu's "fault reason", arm-smmu-v3's "event 0xNN received").
# virtio_pci loads first: binding its driver is when arm-smmu-v3 (DT: of_dma_configure at probe)
# writes the function's STE; intel-iommu wrote its context entry at boot. virtio_blk, whose
# probe makes the first DMA, loads after the pause.
if grep -q sviommu.pause=1 /proc/cmdline; then
    for m in $(grep -v virtio_blk /mod/order); do
        insmod "/mod/$m" || echo "SVIOMMU-INIT insmod $m failed"
    done
    echo "SVIOMMU-PAUSED"
    read -r go
    insmod /mod/virtio_blk.ko &
    n=0
    seen='fault reason|event 0x[0-9a-f]* received'
    while ! dmesg | grep -qE "$seen" && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
    if dmesg | grep -qE "$seen"; then status=faulted; else status=no-fault; fi
    echo "SVIOMMU-RESULT status=$status"
    poweroff -f
fi
load
n=0
while [ ! -b /dev/vda ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
if [ ! -b /dev/vda ]; then
    echo "SVIOMMU-RESULT status=no-disk"
    poweroff -f
fi
# qemu/throughput.sh: sviommu.bench=DISK_MIB,SEQ_MIB,RAND_READS,SEED runs bench-read (the
# script appends it to the initramfs), which prints its SVIOMMU-BENCH line.
bench=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^sviommu\.bench=//p' | tr ',' ' ')
if [ -n "$bench" ]; then
    if [ -x /bin/bench-read ]; then
        # shellcheck disable=SC2086 # four numbers, split on purpose
        /bin/bench-read /dev/vda $bench
    else
        echo "SVIOMMU-BENCH status=no-bench-read"
    fi
    poweroff -f
fi
mib=1048576
dd if=/dev/vda of=/tmp/host bs=$mib skip=1 count=1 2>/dev/null
dd if=/dev/urandom of=/tmp/pattern bs=$mib count=1 2>/dev/null
dd if=/tmp/pattern of=/dev/vda bs=$mib seek=2 count=1 conv=fsync 2>/dev/null
echo 3 >/proc/sys/vm/drop_caches
blockdev --flushbufs /dev/vda
dd if=/dev/vda of=/tmp/back bs=$mib skip=2 count=1 2>/dev/null
read_md5=$(md5sum </tmp/host | cut -d' ' -f1)
wrote_md5=$(md5sum </tmp/pattern | cut -d' ' -f1)
back_md5=$(md5sum </tmp/back | cut -d' ' -f1)
if [ "$wrote_md5" = "$back_md5" ]; then status=ok; else status=mismatch; fi
echo "SVIOMMU-RESULT status=$status read=$read_md5 wrote=$wrote_md5 back=$back_md5"
sync
poweroff -f
