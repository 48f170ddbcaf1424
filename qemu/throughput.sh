#!/bin/sh
# The cost a guest sees (issue 16): virtio-blk read throughput inside the x86 q35 guest under
# TCG, with no IOMMU, with QEMU's own intel-iommu and with our VT-d model (sviommu-vtd), each in
# strict (iommu.strict=1), lazy (iommu.strict=0) and pass-through (iommu=pt), Linux's
# intel-iommu driver in legacy mode (intel_iommu=on,sm_off) on both units, 48-bit (4-level)
# second stage on both, caching mode off on both.
#
#   qemu/throughput.sh          three boots of each of the seven configurations, round-robin,
#                               then the table (Markdown) on stdout
#
# Each boot runs qemu/bench-read.c in the guest (guest-init.sh, told by sviommu.bench=): SEQ_MIB
# of sequential 1 MiB reads, then RAND_READS 4 KiB reads at pseudo-random offsets, all O_DIRECT,
# timed by the guest's own clock around the reads only, into a 1 MiB buffer of 4 KiB pages. Both checksums must equal what the host
# computes from the image file, or the script stops with exit status 1; so does a boot that
# fails. Every boot of a run reads the same offsets (one seed per run). The ratio of a
# configuration is the median over the rounds of (its MB/s / no IOMMU's MB/s in the same round).
#
# The results: results.tsv in the run folder (round, configuration, ns for the 1 MiB reads, ns
# for the random reads, load average, then our model's translations, IOTLB hits, leaf walks,
# IOTLB invalidations, wait descriptors, register accesses, and the buffer's physical runs).
#
# Environment: BOOTS (rounds, 3), DISK_MIB (256), SEQ_MIB (1024: four passes over the disk),
# RAND_READS (6000), TIMEOUT (seconds per boot, 300), OUT (the run's folder, default
# target/throughput/<UTC time>). Everything else comes from qemu/build.sh (built if missing).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
boots=${BOOTS:-3}
disk_mib=${DISK_MIB:-256}
seq_mib=${SEQ_MIB:-1024}
rand_reads=${RAND_READS:-6000}
timeout_s=${TIMEOUT:-300}
out=${OUT:-$repo/target/throughput/$(date -u +%Y%m%dT%H%M%SZ)}

say() { echo "throughput.sh: $*" >&2; }
die() {
    say "$*"
    exit 1
}

# --- what build.sh built --------------------------------------------------------------------
artefacts=$(sh "$here/build.sh") || die "qemu/build.sh failed (its messages are above)"
get() { echo "$artefacts" | sed -n "s/^$1=//p"; }
qemu=$(get qemu)
kernel=$(get kernel)
initrd=$(get initrd)
firmware=$(get firmware)
[ -x "$qemu" ] && [ -f "$kernel" ] && [ -f "$initrd" ] || die "qemu/build.sh printed no qemu/kernel/initrd"
"$qemu" -device help 2>&1 | grep -q '"intel-iommu"' || die "$qemu has no intel-iommu device"

mkdir -p "$out"
say "run folder: $out"

# --- the guest's program, its init, and the benchmark initramfs ------------------------------
# Linux unpacks concatenated archives in order: bench-read first, then the initramfs build.sh
# made (busybox, the virtio modules, guest-init.sh as /init).
stage="$out/initrd.d"
rm -rf "$stage" && mkdir -p "$stage/bin"
gcc -O2 -Wall -Wextra -Werror -static -o "$stage/bin/bench-read" "$here/bench-read.c" ||
    die "cannot build qemu/bench-read.c statically (needs gcc and libc6-dev)"
gcc -O2 -Wall -Wextra -Werror -o "$out/bench-read-host" "$here/bench-read.c"
(cd "$stage" && find . | cpio -o -H newc --quiet) >"$out/bench.cpio"
cat "$out/bench.cpio" "$initrd" >"$out/initrd"
rm -rf "$stage" "$out/bench.cpio"

# --- the disk: random bytes the guest cannot guess, and the checksums it must report ---------
disk="$out/disk.img"
head -c $((disk_mib * 1048576)) /dev/urandom >"$disk"
seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
expect=$("$out/bench-read-host" --expect "$disk" "$disk_mib" "$seq_mib" "$rand_reads" "$seed") ||
    die "the host's checksums: bench-read --expect failed"
want_seq=$(echo "$expect" | sed -n 's/.*seq_sum=\([0-9a-f]*\).*/\1/p')
want_rand=$(echo "$expect" | sed -n 's/.*rand_sum=\([0-9a-f]*\).*/\1/p')
[ -n "$want_seq" ] && [ -n "$want_rand" ] || die "the host's checksums: $expect"

# --- one boot --------------------------------------------------------------------------------
# config NAME: sets $device (QEMU's -device for the unit, empty for none) and $iommu_args.
config() {
    case $1 in
        none) device="" iommu_args="" ;;
        qemu-*) device="intel-iommu,intremap=off,aw-bits=48" ;;
        ours-*) device="sviommu-vtd,aw-bits=48,caching-mode=off" ;;
    esac
    case $1 in
        *-strict) iommu_args="intel_iommu=on,sm_off iommu.strict=1" ;;
        *-lazy) iommu_args="intel_iommu=on,sm_off iommu.strict=0" ;;
        *-pt) iommu_args="intel_iommu=on,sm_off iommu=pt" ;;
    esac
}

# boot ROUND NAME: one boot; appends a line to results.tsv.
boot() {
    round=$1 name=$2
    config "$name"
    log="$out/$round-$name.log"
    stats="$out/$round-$name.stats"
    rm -f "$stats"
    set --
    for f in $(echo "$firmware" | tr ':' ' '); do set -- "$@" -L "$f"; done
    if [ -n "$device" ]; then
        case $name in ours-*) device="$device,stats=$stats" ;; esac
        set -- "$@" -device "$device"
    fi
    load=$(cut -d' ' -f1 /proc/loadavg)
    status=0
    timeout "$timeout_s" "$qemu" "$@" -M q35 -accel tcg -m 512M -smp 1 -nodefaults \
        -no-user-config -display none -serial stdio -no-reboot \
        -kernel "$kernel" -initrd "$out/initrd" \
        -append "console=ttyS0 panic=-1 loglevel=4 $iommu_args sviommu.bench=$disk_mib,$seq_mib,$rand_reads,$seed" \
        -drive "file=$disk,if=none,id=d0,format=raw,readonly=on" \
        -device virtio-blk-pci,drive=d0,disable-legacy=on,iommu_platform=on,addr=0x1 \
        </dev/null >"$log" 2>&1 || status=$?
    line=$(tr -d '\r' <"$log" | sed -n 's/.*SVIOMMU-BENCH //p' | tail -n1)
    field() { echo "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
    if [ "$status" != 0 ] || [ "$(field status)" != done ]; then
        say "boot $round of $name failed (QEMU's exit status $status; 124 is the $timeout_s s time-out)"
        say "guest said: ${line:-nothing}; the console's end ($log):"
        tail -n 25 "$log" >&2
        exit 1
    fi
    if [ "$(field seq_sum)" != "$want_seq" ] || [ "$(field rand_sum)" != "$want_rand" ]; then
        die "boot $round of $name read other data than the image holds: guest seq $(field seq_sum) rand $(field rand_sum), host seq $want_seq rand $want_rand"
    fi
    st() { sed -n "s/^$1 //p" "$stats" 2>/dev/null | head -n1; }
    case $name in
        ours-*)
            [ -s "$stats" ] || die "boot $round of $name wrote no statistics ($stats)"
            [ "$(st faulted)" = 0 ] && [ "$(st panics)" = 0 ] ||
                die "boot $round of $name: the model recorded faults $(st faulted), panics $(st panics)"
            ;;
    esac
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$(field seq_ns)" \
        "$(field rand_ns)" "$load" "$(st translated)" "$(st cache.iotlb.hits)" \
        "$(st walk.s2.level1)" "$(st inv.iotlb)" "$(st inv.wait)" "$(st mmio_accesses)" \
        "$(field buffer_runs)" >>"$out/results.tsv"
    say "round $round $name: $(field seq_ns) ns for $seq_mib MiB, $(field rand_ns) ns for $rand_reads 4K reads (load $load, buffer in $(field buffer_runs) physical runs)"
}

configs="none qemu-strict qemu-lazy qemu-pt ours-strict ours-lazy ours-pt"
: >"$out/results.tsv"
started=$(date +%s)
r=1
while [ "$r" -le "$boots" ]; do
    for c in $configs; do boot "$r" "$c"; done
    r=$((r + 1))
done
took=$(($(date +%s) - started))

# --- the table -------------------------------------------------------------------------------
echo "Run $(date -u +%Y-%m-%dT%H:%MZ): $boots boots of each configuration, round-robin, in $took s;"
echo "$(nproc) cores, load average (1 min) $(awk -F'\t' 'NR==1{lo=hi=$5} {if($5<lo)lo=$5; if($5>hi)hi=$5} END{print lo "-" hi}' "$out/results.tsv") at the boots' starts;"
echo "$("$qemu" --version | head -n1), guest $(basename "$(dirname "$kernel")"), TCG, 1 vCPU, 512 MiB;"
echo "disk $disk_mib MiB, $seq_mib MiB of 1 MiB reads, $rand_reads 4 KiB random reads per boot, all O_DIRECT;"
echo "the guest's 1 MiB buffer (4 KiB pages) formed $(awk -F'\t' 'NR==1{lo=hi=$12} {if($12<lo)lo=$12; if($12>hi)hi=$12} END{print lo "-" hi}' "$out/results.tsv") physically contiguous runs."
echo
awk -F'\t' -v seq_mib="$seq_mib" -v rand_reads="$rand_reads" -v configs="$configs" '
function median(a, n,    i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function spread(a, n,    i, lo, hi) {
    lo = hi = a[1]
    for (i = 2; i <= n; i++) { if (a[i] < lo) lo = a[i]; if (a[i] > hi) hi = a[i] }
    return sprintf("%.2f-%.2f", lo, hi)
}
{
    seq[$2, $1] = seq_mib * 1048576 / $3 * 1000   # MB/s (10^6 bytes)
    rnd[$2, $1] = rand_reads * 4096 / $4 * 1000
    tr[$2] = $6; hit[$2] = $7; walk[$2] = $8; inv[$2] = $9; wait[$2] = $10
    if ($1 > rounds) rounds = $1
}
END {
    print "| configuration | 1 MiB reads: ratio (min-max) | MB/s | 4 KiB random: ratio (min-max) | MB/s |"
    print "|---|---:|---:|---:|---:|"
    n = split(configs, cs, " ")
    for (k = 1; k <= n; k++) {
        c = cs[k]
        for (r = 1; r <= rounds; r++) {
            s[r] = seq[c, r]; q[r] = rnd[c, r]
            sr[r] = seq[c, r] / seq["none", r]; qr[r] = rnd[c, r] / rnd["none", r]
        }
        ms = median(s, rounds); mq = median(q, rounds)
        srs = spread(sr, rounds); qrs = spread(qr, rounds)
        printf "| %s | %.2f (%s) | %.0f | %.2f (%s) | %.1f |\n", c, median(sr, rounds), srs, ms, median(qr, rounds), qrs, mq
    }
    print ""
    print "Our model, last round, whole boot (the reads and the boot before them):"
    print ""
    print "| configuration | translations | per MiB read | IOTLB hits per translation | second-stage walks | IOTLB invalidations | wait descriptors |"
    print "|---|---:|---:|---:|---:|---:|---:|"
    mib = seq_mib + rand_reads * 4096 / 1048576
    for (k = 1; k <= n; k++) {
        c = cs[k]
        if (c !~ /^ours/) continue
        printf "| %s | %d | %.0f | %.2f | %d | %d | %d |\n", c, tr[c], tr[c] / mib, tr[c] ? hit[c] / tr[c] : 0, walk[c], inv[c], wait[c]
    }
}' "$out/results.tsv"
echo
echo "(Per-boot numbers: $out/results.tsv; consoles and statistics beside it.)"
# The image is 256 MiB by default: kept only when a boot failed (the script has exited by then).
rm -f "$disk"
