/*
 * The guest's half of qemu/throughput.sh: timed direct reads of the virtio-blk disk.
 *
 *   bench-read DEV DISK_MIB SEQ_MIB RAND_READS SEED
 *       in the guest: SEQ_MIB sequential 1 MiB reads from offset 0 (wrapping to 0 at the
 *       end of the disk's DISK_MIB), then RAND_READS 4 KiB reads
 *       at pseudo-random 4 KiB-aligned offsets (xorshift64* from SEED) over DISK_MIB, all with
 *       O_DIRECT, so each is a request to the device and its DMA, never the page cache.
 *       Prints one line: the nanoseconds spent inside the reads (CLOCK_MONOTONIC, the guest's
 *       own clock; the checksums are computed outside the timed spans) and the checksums.
 *   bench-read --expect FILE DISK_MIB SEQ_MIB RAND_READS SEED
 *       on the host: the same checksums over the image file, read with plain pread.
 *
 * The checksum is FNV-1a over the little-endian 64-bit words, in read order.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MIB (1u << 20)
#define BLOCK 4096u

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h ^= w;
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t next(uint64_t *x)
{
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return *x * 0x2545f4914f6cdd1dull;
}

/* Reads exactly n bytes at off; a short read or an error ends the program. */
static void read_at(int fd, unsigned char *buf, size_t n, off_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + got, n - got, off + (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            printf("SVIOMMU-BENCH status=read-error offset=%lld error=%s\n",
                   (long long)(off + (off_t)got), r < 0 ? strerror(errno) : "end of device");
            exit(1);
        }
        got += (size_t)r;
    }
}

int main(int argc, char **argv)
{
    int expect = argc > 1 && strcmp(argv[1], "--expect") == 0;
    if (argc != 6 + expect) {
        fprintf(stderr, "usage: bench-read [--expect] DEV DISK_MIB SEQ_MIB RAND_READS SEED\n");
        return 2;
    }
    argv += expect;
    const char *dev = argv[1];
    uint64_t disk_mib = strtoull(argv[2], NULL, 0);
    uint64_t seq_mib = strtoull(argv[3], NULL, 0);
    uint64_t rand_reads = strtoull(argv[4], NULL, 0);
    uint64_t seed = strtoull(argv[5], NULL, 0) | 1;
    if (disk_mib == 0) {
        fprintf(stderr, "bench-read: DISK_MIB must not be 0\n");
        return 2;
    }
    int fd = open(dev, O_RDONLY | (expect ? 0 : O_DIRECT));
    if (fd < 0) {
        printf("SVIOMMU-BENCH status=open-error error=%s\n", strerror(errno));
        return 1;
    }
    /* O_DIRECT wants the buffer aligned to the logical block; a page is enough. */
    unsigned char *buf;
    if (posix_memalign((void **)&buf, BLOCK, MIB) != 0) {
        printf("SVIOMMU-BENCH status=no-memory\n");
        return 1;
    }
    uint64_t seq_ns = 0, seq_sum = 0xcbf29ce484222325ull;
    for (uint64_t i = 0; i < seq_mib; i++) {
        uint64_t t0 = now_ns();
        read_at(fd, buf, MIB, (off_t)(i % disk_mib * MIB));
        seq_ns += now_ns() - t0;
        seq_sum = fnv(seq_sum, buf, MIB);
    }
    uint64_t blocks = disk_mib * (MIB / BLOCK), x = seed;
    uint64_t rand_ns = 0, rand_sum = 0xcbf29ce484222325ull;
    for (uint64_t i = 0; i < rand_reads; i++) {
        off_t off = (off_t)(next(&x) % blocks * BLOCK);
        uint64_t t0 = now_ns();
        read_at(fd, buf, BLOCK, off);
        rand_ns += now_ns() - t0;
        rand_sum = fnv(rand_sum, buf, BLOCK);
    }
    if (expect)
        printf("seq_sum=%016" PRIx64 " rand_sum=%016" PRIx64 "\n", seq_sum, rand_sum);
    else
        printf("SVIOMMU-BENCH status=done seq_mib=%" PRIu64 " seq_ns=%" PRIu64
               " seq_sum=%016" PRIx64 " rand_reads=%" PRIu64 " rand_ns=%" PRIu64
               " rand_sum=%016" PRIx64 "\n",
               seq_mib, seq_ns, seq_sum, rand_reads, rand_ns, rand_sum);
    return 0;
}
