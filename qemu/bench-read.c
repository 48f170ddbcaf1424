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
 *
 * The buffer is 1 MiB of 4 KiB pages no two of which are physically contiguous, so each 1 MiB
 * read reaches the device as 256 segments, each its own DMA mapping (virtio maps every segment
 * separately). Left to chance the count varied from boot to boot, and the cost with it: a
 * buffer inside a transparent huge page (Debian's kernel makes them always) is one segment,
 * and freshly faulted pages come out in anything from a few dozen runs to 256. The guest
 * reports the runs it got (from /proc/self/pagemap).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
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

/* The frame behind the page at p (0 if pagemap cannot say). */
static uint64_t frame(int pagemap, const void *p)
{
    uint64_t e;
    if (pread(pagemap, &e, 8, (off_t)((uintptr_t)p / BLOCK * 8)) != 8 || !(e >> 63))
        return 0;
    return e & ((1ull << 55) - 1);
}

/* 1 MiB whose pages are taken from a pool of four times as many, each chosen so that its frame
 * does not follow its predecessor's, and moved into place with mremap. NULL on failure. */
static unsigned char *scattered_buffer(void)
{
    enum { PAGES = MIB / BLOCK, POOL = 4 * PAGES };
    int pm = open("/proc/self/pagemap", O_RDONLY);
    unsigned char *pool = mmap(NULL, POOL * BLOCK, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *buf = mmap(NULL, MIB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pm < 0 || pool == MAP_FAILED || buf == MAP_FAILED ||
        madvise(pool, POOL * BLOCK, MADV_NOHUGEPAGE) != 0)
        return NULL;
    static uint64_t frames[POOL];
    for (size_t j = 0; j < POOL; j++) {
        pool[j * BLOCK] = 1;
        frames[j] = frame(pm, pool + j * BLOCK);
    }
    uint64_t prev = 0;
    for (size_t i = 0; i < PAGES; i++) {
        size_t j = 0;
        while (j < POOL && (frames[j] == 0 || (i > 0 && frames[j] == prev + 1)))
            j++;
        if (j == POOL)
            return NULL;
        if (mremap(pool + j * BLOCK, BLOCK, BLOCK, MREMAP_MAYMOVE | MREMAP_FIXED,
                   buf + i * BLOCK) == MAP_FAILED)
            return NULL;
        prev = frames[j];
        frames[j] = 0; /* used */
    }
    close(pm);
    return buf;
}

/* The physically contiguous runs the buffer's pages form (-1 if pagemap cannot say). */
static long page_runs(const unsigned char *buf)
{
    int fd = open("/proc/self/pagemap", O_RDONLY);
    if (fd < 0)
        return -1;
    long runs = 0;
    uint64_t prev = 0;
    for (size_t i = 0; i < MIB / BLOCK; i++) {
        uint64_t e;
        off_t at = (off_t)((uintptr_t)(buf + i * BLOCK) / BLOCK * 8);
        if (pread(fd, &e, 8, at) != 8 || !(e >> 63)) {
            close(fd);
            return -1;
        }
        uint64_t pfn = e & ((1ull << 55) - 1);
        if (i == 0 || pfn != prev + 1)
            runs++;
        prev = pfn;
    }
    close(fd);
    return runs;
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
    unsigned char *buf = expect ? malloc(MIB) : scattered_buffer();
    if (!buf) {
        printf("SVIOMMU-BENCH status=no-buffer error=%s\n", strerror(errno));
        return 1;
    }
    long runs = expect ? 0 : page_runs(buf);
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
        printf("SVIOMMU-BENCH status=done buffer_runs=%ld seq_mib=%" PRIu64 " seq_ns=%" PRIu64
               " seq_sum=%016" PRIx64 " rand_reads=%" PRIu64 " rand_ns=%" PRIu64
               " rand_sum=%016" PRIx64 "\n",
               runs, seq_mib, seq_ns, seq_sum, rand_reads, rand_ns, rand_sum);
    return 0;
}
