/*
 * The C ABI from C, as an embedder uses it: guest memory is an array here, reached through the
 * read/write callbacks; tables are written into it by hand from the architecture manuals (not
 * from the crate's own encoders); registers are programmed through sviommu_mmio_write.
 *
 * Prints one line per check and "N passed, N failed" at the end; exits non-zero on a failure.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "sviommu.h"

#define MEM_BYTES (4u << 20)
static uint8_t mem[MEM_BYTES];
static int passed, failed;

#define CHECK(cond, ...)                                                                         \
    do {                                                                                         \
        if (cond) {                                                                              \
            passed++;                                                                            \
        } else {                                                                                 \
            failed++;                                                                            \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                               \
            printf(__VA_ARGS__);                                                                 \
            printf("\n");                                                                        \
        }                                                                                        \
    } while (0)

/* What the callbacks saw. */
struct seen {
    int msis;
    uint64_t msi_addr;
    uint32_t msi_data;
    int messages;
    SviommuMessage last;
    int reads;
};

static int32_t mem_read(void *opaque, uint64_t addr, uint8_t *buf, uint64_t len) {
    struct seen *s = opaque;
    s->reads++;
    if (addr >= MEM_BYTES || len > MEM_BYTES - addr)
        return -1;
    memcpy(buf, mem + addr, len);
    return 0;
}

static int32_t mem_write(void *opaque, uint64_t addr, const uint8_t *buf, uint64_t len) {
    (void)opaque;
    if (addr >= MEM_BYTES || len > MEM_BYTES - addr)
        return -1;
    memcpy(mem + addr, buf, len);
    return 0;
}

static void msi(void *opaque, uint64_t addr, uint32_t data) {
    struct seen *s = opaque;
    s->msis++;
    s->msi_addr = addr;
    s->msi_data = data;
}

static void message(void *opaque, const SviommuMessage *m) {
    struct seen *s = opaque;
    s->messages++;
    s->last = *m;
}

static void put64(uint64_t addr, uint64_t v) { memcpy(mem + addr, &v, 8); }
static uint64_t get64(uint64_t addr) {
    uint64_t v;
    memcpy(&v, mem + addr, 8);
    return v;
}

static uint64_t rd(SviommuUnit *u, uint64_t off, uint32_t size) {
    uint64_t v = 0;
    int32_t rc = sviommu_mmio_read(u, off, size, &v);
    CHECK(rc == SVIOMMU_OK, "mmio read %#llx/%u rc %d", (unsigned long long)off, size, rc);
    return v;
}

static void wr(SviommuUnit *u, uint64_t off, uint32_t size, uint64_t v) {
    int32_t rc = sviommu_mmio_write(u, off, size, v);
    CHECK(rc == SVIOMMU_OK, "mmio write %#llx/%u rc %d", (unsigned long long)off, size, rc);
}

static SviommuResult xlate(SviommuUnit *u, uint32_t requester, uint64_t addr, uint32_t access) {
    SviommuRequest req = {.requester = requester, .addr = addr, .access = access};
    SviommuResult res;
    memset(&res, 0xee, sizeof res);
    int32_t rc = sviommu_translate(u, &req, &res);
    CHECK(rc == SVIOMMU_OK, "translate rc %d", rc);
    return res;
}

/* The boundary refuses what it cannot take, with codes, and changes nothing. */
static void test_refusals(const SviommuCallbacks *cb) {
    SviommuVtdParams p;
    SviommuUnit *u = NULL;
    CHECK(sviommu_vtd_params_default(NULL) == SVIOMMU_ERR_NULL, "null params out");
    CHECK(sviommu_vtd_params_default(&p) == SVIOMMU_OK, "defaults");
    CHECK(sviommu_vtd_create(NULL, cb, &u) == SVIOMMU_ERR_NULL && u == NULL, "null params");
    CHECK(sviommu_vtd_create(&p, cb, NULL) == SVIOMMU_ERR_NULL, "null out");
    SviommuCallbacks no_read = *cb;
    no_read.mem_read = NULL;
    CHECK(sviommu_vtd_create(&p, &no_read, &u) == SVIOMMU_ERR_NULL && u == NULL, "no read cb");
    p.caching_mode = 7; /* not a flag */
    CHECK(sviommu_vtd_create(&p, cb, &u) == SVIOMMU_ERR_INVALID && u == NULL, "bad flag");
    sviommu_vtd_params_default(&p);
    p.pasid_bits = 21;
    CHECK(sviommu_vtd_create(&p, cb, &u) == SVIOMMU_ERR_INVALID && u == NULL, "pasid width");
    SviommuSmmuParams sp;
    sviommu_smmu_params_default(&sp);
    sp.oas_bits = 50;
    CHECK(sviommu_smmu_create(&sp, cb, &u) == SVIOMMU_ERR_INVALID && u == NULL, "bad OAS");

    SviommuResult r;
    SviommuRequest req = {0};
    uint64_t v;
    CHECK(sviommu_translate(NULL, &req, &r) == SVIOMMU_ERR_NULL, "null unit");
    CHECK(sviommu_mmio_read(NULL, 0, 4, &v) == SVIOMMU_ERR_NULL, "null unit read");
    CHECK(sviommu_mmio_write(NULL, 0, 4, 0) == SVIOMMU_ERR_NULL, "null unit write");
    CHECK(sviommu_drain(NULL) == SVIOMMU_ERR_NULL, "null unit drain");
    CHECK(sviommu_destroy(NULL) == SVIOMMU_ERR_NULL, "null destroy");

    sviommu_vtd_params_default(&p);
    CHECK(sviommu_vtd_create(&p, cb, &u) == SVIOMMU_OK && u != NULL, "create");
    CHECK(sviommu_translate(u, NULL, &r) == SVIOMMU_ERR_NULL, "null request");
    CHECK(sviommu_translate(u, &req, NULL) == SVIOMMU_ERR_NULL, "null result");
    req.access = 1u << 7; /* unknown access bit */
    CHECK(sviommu_translate(u, &req, &r) == SVIOMMU_ERR_INVALID, "bad access");
    req.access = 0;
    req.requester = 0x10000; /* a VT-d source-id has 16 bits */
    CHECK(sviommu_translate(u, &req, &r) == SVIOMMU_ERR_INVALID, "bad rid");
    req.requester = 0;
    req.has_pasid = 1;
    req.pasid = 1u << 20;
    CHECK(sviommu_translate(u, &req, &r) == SVIOMMU_ERR_INVALID, "bad pasid");
    req.has_pasid = 2;
    req.pasid = 0;
    CHECK(sviommu_translate(u, &req, &r) == SVIOMMU_ERR_INVALID, "has_pasid not a flag");
    CHECK(sviommu_mmio_write(u, 0x20, 2, 0xffff) == SVIOMMU_ERR_ACCESS, "2-byte write");
    CHECK(sviommu_mmio_write(u, 0x22, 4, 0) == SVIOMMU_ERR_ACCESS, "misaligned write");
    CHECK(sviommu_mmio_read(u, 0x21, 2, &v) == SVIOMMU_ERR_ACCESS, "misaligned read");
    CHECK(sviommu_mmio_read(u, 0, 3, &v) == SVIOMMU_ERR_ACCESS, "3-byte read");
    CHECK(sviommu_mmio_read(u, 0x20, 8, NULL) == SVIOMMU_ERR_NULL, "null value");
    CHECK(rd(u, 0x20, 8) == 0, "RTADDR untouched by the refused writes");
    SviommuStats st;
    CHECK(sviommu_stats(u, NULL) == SVIOMMU_ERR_NULL, "null stats");
    CHECK(sviommu_stats(u, &st) == SVIOMMU_OK, "stats");
    CHECK(st.abi.requests_refused == 4 && st.abi.mmio_refused == 4,
          "refusals counted: %llu requests, %llu mmio",
          (unsigned long long)st.abi.requests_refused, (unsigned long long)st.abi.mmio_refused);
    CHECK(st.abi.panics == 0 && sviommu_panics() == 0, "no panic");
    CHECK(sviommu_destroy(u) == SVIOMMU_OK, "destroy");
}

/*
 * VT-d, legacy mode (Intel VT-d Architecture Specification rev. 4.1): root table, context
 * table, a 4-level second-stage table, then SRTP and TE through GCMD.
 */
enum {
    VTD_GCMD = 0x18, VTD_GSTS = 0x1c, VTD_RTADDR = 0x20, VTD_FSTS = 0x34, VTD_FECTL = 0x38,
    VTD_FEDATA = 0x3c, VTD_FEADDR = 0x40, VTD_FEUADDR = 0x44, VTD_VER = 0x00, VTD_CAP = 0x08,
};
#define GCMD_TE (1u << 31)
#define GCMD_SRTP (1u << 30)
#define SS_R 1ull
#define SS_W 2ull

static void test_vtd(const SviommuCallbacks *cb, struct seen *s) {
    memset(mem, 0, MEM_BYTES);
    SviommuVtdParams p;
    sviommu_vtd_params_default(&p);
    CHECK(p.scalable_mode == 1 && p.agaw_48 == 1 && p.pasid_bits == 20, "default knobs");
    p.caching_mode = 1;
    SviommuUnit *u = NULL;
    CHECK(sviommu_vtd_create(&p, cb, &u) == SVIOMMU_OK, "create VT-d");
    uint32_t arch = 0;
    uint64_t size = 0;
    CHECK(sviommu_arch(u, &arch) == SVIOMMU_OK && arch == SVIOMMU_ARCH_VTD, "arch %u", arch);
    CHECK(sviommu_mmio_size(u, &size) == SVIOMMU_OK && size == 0x1000, "size %#llx",
          (unsigned long long)size);
    /* §11.4.2 CAP.CM is bit 7; SAGAW bits 12:8 with bit 2 (48-bit) set. */
    uint64_t cap = rd(u, VTD_CAP, 8);
    CHECK((cap >> 7) & 1, "CAP.CM set: %#llx", (unsigned long long)cap);
    CHECK((cap >> 8) & (1u << 2), "SAGAW 48-bit: %#llx", (unsigned long long)cap);
    CHECK(rd(u, VTD_CAP, 4) == (cap & 0xffffffffu) && rd(u, VTD_CAP + 4, 4) == cap >> 32,
          "64-bit register as two halves");
    CHECK(rd(u, VTD_CAP, 1) == (cap & 0xff) && rd(u, VTD_CAP + 2, 2) == ((cap >> 16) & 0xffff),
          "narrow reads");
    CHECK(rd(u, VTD_VER, 4) == 0x10, "VER 1.0");

    const uint64_t root = 0x1000, ctx = 0x2000, pml4 = 0x3000, pdpt = 0x4000, pd = 0x5000,
                   pt = 0x6000, page = 0x200000, ro_page = 0x201000;
    const uint16_t rid = 0x0008; /* bus 0, device 1, function 0 */
    /* §9.1 root entry: P (bit 0), CTP (63:12). */
    put64(root + 0 * 16, ctx | 1);
    /* §9.3 legacy context entry: P, TT = 00b (second stage), SSPTPTR; AW = 010b (48-bit,
     * 4-level) in bits 66:64, DID in bits 87:72. */
    put64(ctx + (rid & 0xff) * 16, pml4 | 1);
    put64(ctx + (rid & 0xff) * 16 + 8, 2 | (5ull << 8));
    /* §9.8 second-stage entries: R (0), W (1), address (51:12). IOVA 0x12345000. */
    const uint64_t iova = 0x12345000, iova_ro = 0x12346000;
    put64(pml4 + ((iova >> 39) & 0x1ff) * 8, pdpt | SS_R | SS_W);
    put64(pdpt + ((iova >> 30) & 0x1ff) * 8, pd | SS_R | SS_W);
    put64(pd + ((iova >> 21) & 0x1ff) * 8, pt | SS_R | SS_W);
    put64(pt + ((iova >> 12) & 0x1ff) * 8, page | SS_R | SS_W);
    put64(pt + ((iova_ro >> 12) & 0x1ff) * 8, ro_page | SS_R);

    /* Fault event: §11.4.9.2-4, unmask and give it an address and data. */
    wr(u, VTD_FEDATA, 4, 0x4041);
    wr(u, VTD_FEADDR, 4, 0xfee00000);
    wr(u, VTD_FEUADDR, 4, 0);
    wr(u, VTD_FECTL, 4, 0);

    /* Before TE: DMA passes untranslated (§3.2: remapping disabled). */
    SviommuResult r = xlate(u, rid, 0x1234, 0);
    CHECK(r.outcome == SVIOMMU_OUTCOME_TRANSLATED && r.output == 0x1234, "untranslated");

    /* §10.4.4, §10.4.5: RTADDR, then SRTP; GSTS.RTPS reports it. Then TE. */
    wr(u, VTD_RTADDR, 8, root);
    wr(u, VTD_GCMD, 4, GCMD_SRTP);
    CHECK(rd(u, VTD_GSTS, 4) & GCMD_SRTP, "RTPS");
    wr(u, VTD_GCMD, 4, GCMD_TE);
    CHECK(rd(u, VTD_GSTS, 4) & GCMD_TE, "TES");

    r = xlate(u, rid, iova + 0x678, 0);
    CHECK(r.outcome == SVIOMMU_OUTCOME_TRANSLATED, "outcome %u code %#x", r.outcome, r.fault_code);
    CHECK(r.output == page + 0x678, "output %#llx", (unsigned long long)r.output);
    CHECK(r.page_lg2 == 12, "page_lg2 %u", r.page_lg2);
    CHECK((r.perms & SVIOMMU_PERM_USER_R) && (r.perms & SVIOMMU_PERM_USER_W), "perms %#x",
          r.perms);
    /* Root, context and four second-stage entries. */
    CHECK(r.reads == 6, "reads %u", r.reads);
    r = xlate(u, rid, iova + 0x8, SVIOMMU_ACCESS_WRITE);
    CHECK(r.outcome == SVIOMMU_OUTCOME_TRANSLATED && r.output == page + 0x8 && r.reads == 0,
          "IOTLB hit: outcome %u reads %u", r.outcome, r.reads);

    /* A write to a read-only page: fault reason 05h, recorded, fault event MSI. */
    int msis = s->msis;
    r = xlate(u, rid, iova_ro, SVIOMMU_ACCESS_WRITE);
    CHECK(r.outcome == SVIOMMU_OUTCOME_FAULT && r.fault_code == 0x05 && r.recorded == 1,
          "write fault: outcome %u code %#x recorded %u", r.outcome, r.fault_code, r.recorded);
    CHECK(s->msis == msis + 1 && s->msi_addr == 0xfee00000 && s->msi_data == 0x4041,
          "fault event MSI: %d, %#llx, %#x", s->msis - msis, (unsigned long long)s->msi_addr,
          s->msi_data);
    /* §11.4.9.1 FSTS.PPF (bit 1). */
    CHECK(rd(u, VTD_FSTS, 4) & 2, "PPF");
    /* A read of it is fine. */
    r = xlate(u, rid, iova_ro + 4, 0);
    CHECK(r.outcome == SVIOMMU_OUTCOME_TRANSLATED && r.output == ro_page + 4, "RO read");
    /* A device with no context entry: 02h. */
    r = xlate(u, 0x0010, iova, 0);
    CHECK(r.outcome == SVIOMMU_OUTCOME_FAULT && r.fault_code == 0x02, "no context: code %#x",
          r.fault_code);

    /* §6.5.2 queued invalidation: 128-bit descriptors at 0x8000; GCMD.QIE (bit 26) keeping
     * TE. A device-TLB invalidation (§6.5.2.5, type 03h: SID in 47:32, address in 127:76)
     * reaches the device as a message; the wait descriptor (§6.5.2.8, type 05h, SW bit 5)
     * writes its status word after it. */
    const uint64_t iq = 0x8000, status = 0x9000;
    wr(u, 0x90, 8, iq); /* IQA, QS 0: one 4K page */
    wr(u, VTD_GCMD, 4, GCMD_TE | (1u << 26));
    CHECK(rd(u, VTD_GSTS, 4) & (1u << 26), "QIES");
    put64(iq, 3 | ((uint64_t)rid << 32));
    put64(iq + 8, iova);
    put64(iq + 16, 5 | (1u << 5) | (0x1234ull << 32));
    put64(iq + 24, status);
    int messages = s->messages;
    wr(u, 0x88, 8, 2 << 4); /* IQT: two descriptors */
    CHECK(rd(u, 0x80, 8) == 2 << 4, "IQH caught up: %#llx", (unsigned long long)rd(u, 0x80, 8));
    CHECK(get64(status) == 0x1234, "wait status written");
    CHECK(s->messages == messages + 1 && s->last.kind == SVIOMMU_MSG_DEVTLB_INVALIDATION &&
              s->last.requester == rid && s->last.addr == iova && s->last.size_lg2 == 12 &&
              s->last.has_pasid == 0,
          "device-TLB invalidation: %d messages, kind %u sid %#x addr %#llx size %u",
          s->messages - messages, s->last.kind, s->last.requester,
          (unsigned long long)s->last.addr, s->last.size_lg2);

    SviommuStats st;
    CHECK(sviommu_stats(u, &st) == SVIOMMU_OK && st.arch == SVIOMMU_ARCH_VTD, "stats");
    CHECK(st.abi.translated == 4 && st.abi.faulted == 2, "counted %llu / %llu",
          (unsigned long long)st.abi.translated, (unsigned long long)st.abi.faulted);
    /* caches[2] is the IOTLB: the second request and the read-only read's second walk... */
    CHECK(st.caches[2].hits >= 1, "IOTLB hits %llu", (unsigned long long)st.caches[2].hits);
    CHECK(st.outbox.interrupts >= 1 && st.abi.outputs_delivered >= 1, "outbox counted");
    CHECK(st.abi.memory_errors == 0, "no memory errors");
    /* The queue carried one device-TLB (03h) and one wait (05h) descriptor, nothing else. */
    for (int t = 0; t < SVIOMMU_VTD_DESCRIPTOR_TYPES; t++) {
        CHECK(st.vtd_invalidations[t] == (t == 3 || t == 5), "descriptors of type %d: %llu", t,
              (unsigned long long)st.vtd_invalidations[t]);
    }
    /* The walks: one present legacy context entry with TT 00b read, 48-bit second stage
     * entries from level 4 down; the 05h fault recorded (02h too, if its rid was recorded). */
    SviommuRecordStats rs;
    CHECK(sviommu_record_stats(u, NULL) == SVIOMMU_ERR_NULL, "null record stats");
    CHECK(sviommu_record_stats(u, &rs) == SVIOMMU_OK, "record stats");
    CHECK(rs.vtd_context_tt[0] >= 1 && rs.vtd_context_tt[2] == 0, "context entries by TT");
    CHECK(rs.walk_reads[1][4 + 1] >= 1 && rs.walk_reads[1][5 + 1] == 0 &&
              rs.walk_reads[0][4 + 1] == 0,
          "second-stage reads from level 4");
    CHECK(rs.faults.by_code[0x05] == 1, "05h recorded %llu",
          (unsigned long long)rs.faults.by_code[0x05]);
    /* The same as text: the length first, then a buffer that fits; a short one is cut and
     * terminated. */
    size_t len = 0;
    char text[4096], tiny[8];
    CHECK(sviommu_stats_text(u, NULL, 0, &len) == SVIOMMU_OK && len > 0, "text length");
    CHECK(sviommu_stats_text(u, NULL, 1, &len) == SVIOMMU_ERR_NULL, "null buffer");
    CHECK(len < sizeof text && sviommu_stats_text(u, text, sizeof text, &len) == SVIOMMU_OK &&
              strlen(text) == len,
          "text");
    CHECK(strstr(text, "\ntranslated 4\n") || strncmp(text, "translated 4\n", 13) == 0,
          "translated in text");
    CHECK(strstr(text, "\nfault.0x05 1\n") && strstr(text, "\ncontext_tt.0 "), "faults in text");
    CHECK(sviommu_stats_text(u, tiny, sizeof tiny, &len) == SVIOMMU_OK &&
              strlen(tiny) == sizeof tiny - 1 && len > sizeof tiny,
          "short buffer");
    CHECK(sviommu_destroy(u) == SVIOMMU_OK, "destroy VT-d");
}

/*
 * SMMUv3 (Arm IHI 0070 G.b): a linear Stream table with a bypass STE, a stage-2 STE over a
 * 4K-granule table, an invalid STE; the Event queue with its wired interrupt.
 */
enum {
    SMMU_IDR0 = 0x0, SMMU_CR0 = 0x20, SMMU_CR0ACK = 0x24, SMMU_IRQ_CTRL = 0x50,
    SMMU_IRQ_CTRLACK = 0x54, SMMU_STRTAB_BASE = 0x80, SMMU_STRTAB_BASE_CFG = 0x88,
    SMMU_EVENTQ_BASE = 0xa0, SMMU_EVENTQ_PROD = 0x100a8, SMMU_EVENTQ_CONS = 0x100ac,
};

static void test_smmu(const SviommuCallbacks *cb, struct seen *s) {
    memset(mem, 0, MEM_BYTES);
    SviommuSmmuParams p;
    sviommu_smmu_params_default(&p);
    CHECK(p.stage1 == 1 && p.stage2 == 1 && p.sid_bits == 16 && p.msi == 0, "default knobs");
    SviommuUnit *u = NULL;
    CHECK(sviommu_smmu_create(&p, cb, &u) == SVIOMMU_OK, "create SMMU");
    uint64_t size = 0;
    CHECK(sviommu_mmio_size(u, &size) == SVIOMMU_OK && size == 0x20000, "size");
    /* §6.3.1 IDR0: S2P bit 0, S1P bit 1. */
    CHECK((rd(u, SMMU_IDR0, 4) & 3) == 3, "IDR0 S1P S2P");

    const uint64_t strtab = 0x10000, evq = 0x20000, l1 = 0x30000, l2 = 0x31000, l3 = 0x32000,
                   page = 0x200000, ro_page = 0x201000;
    const uint64_t ste_bytes = 64;
    /* §5.2 STE 2: V, Config = 0b100 (bypass). */
    put64(strtab + 2 * ste_bytes, 1 | (4 << 1));
    /* STE 3: V, Config = 0b110 (stage 2 only); word 2: S2VMID 1, S2T0SZ 25 (39-bit IPA),
     * S2SL0 1 (start at level 1 with 4K), S2TG 0 (4K), S2PS 0b010 (40 bits), S2AA64,
     * S2R (record faults); word 3: S2TTB. */
    put64(strtab + 3 * ste_bytes, 1 | (6 << 1));
    put64(strtab + 3 * ste_bytes + 16,
          1 | (25ull << 32) | (1ull << 38) | (2ull << 48) | (1ull << 51) | (1ull << 58));
    put64(strtab + 3 * ste_bytes + 24, l1);
    /* STE 5 stays all zero: V == 0. */
    /* VMSAv8-64 stage-2 descriptors: table 0b11 + address; page 0b11, S2AP (7:6), AF (10). */
    const uint64_t ipa = 0x12345000, ipa_ro = 0x12346000;
    put64(l1 + ((ipa >> 30) & 0x1ff) * 8, l2 | 3);
    put64(l2 + ((ipa >> 21) & 0x1ff) * 8, l3 | 3);
    put64(l3 + ((ipa >> 12) & 0x1ff) * 8, page | 3 | (3ull << 6) | (1ull << 10));
    put64(l3 + ((ipa_ro >> 12) & 0x1ff) * 8, ro_page | 3 | (1ull << 6) | (1ull << 10));

    /* Disabled, GBPA bypass out of reset: DMA passes. */
    SviommuResult r = xlate(u, 3, 0x5000, 0);
    CHECK(r.outcome == SVIOMMU_OUTCOME_TRANSLATED && r.output == 0x5000, "GBPA bypass");

    /* §6.3.24-25: linear table of 2^4 STEs. Event queue of 2^4 records, its interrupt on. */
    wr(u, SMMU_STRTAB_BASE, 8, strtab);
    wr(u, SMMU_STRTAB_BASE_CFG, 4, 4);
    wr(u, SMMU_EVENTQ_BASE, 8, evq | 4);
    wr(u, SMMU_IRQ_CTRL, 4, 1u << 2);
    CHECK(rd(u, SMMU_IRQ_CTRLACK, 4) == 1u << 2, "IRQ_CTRLACK");
    /* CR0: SMMUEN (0) and EVENTQEN (2); CR0ACK follows. */
    wr(u, SMMU_CR0, 4, 1 | 4);
    CHECK(rd(u, SMMU_CR0ACK, 4) == 5, "CR0ACK");

    r = xlate(u, 2, 0xabc000, SVIOMMU_ACCESS_WRITE);
    CHECK(r.outcome == SVIOMMU_OUTCOME_TRANSLATED && r.output == 0xabc000, "STE bypass");
    r = xlate(u, 3, ipa + 0x10, SVIOMMU_ACCESS_WRITE);
    CHECK(r.outcome == SVIOMMU_OUTCOME_TRANSLATED && r.output == page + 0x10,
          "stage 2: outcome %u code %#x output %#llx", r.outcome, r.fault_code,
          (unsigned long long)r.output);
    CHECK(r.page_lg2 == 12 && (r.perms & SVIOMMU_PERM_USER_W), "stage 2 page and perms");
    /* STE, then three levels. */
    CHECK(r.reads == 4, "reads %u", r.reads);

    /* A write to a read-only page: F_PERMISSION (0x13) at stage 2, IPA in the event. */
    r = xlate(u, 3, ipa_ro + 8, SVIOMMU_ACCESS_WRITE);
    CHECK(r.outcome == SVIOMMU_OUTCOME_FAULT && r.fault_code == 0x13 && r.fault_s2 == 1 &&
              r.recorded == 1 && r.fault_addr == ipa_ro + 8,
          "permission fault: outcome %u code %#x s2 %u addr %#llx", r.outcome, r.fault_code,
          r.fault_s2, (unsigned long long)r.fault_addr);
    /* The Event queue got its record, and the wired interrupt came as a message. */
    CHECK(rd(u, SMMU_EVENTQ_PROD, 4) == 1, "EVENTQ_PROD");
    CHECK((get64(evq) & 0xff) == 0x13 && (get64(evq) >> 32) == 3, "event record %#llx",
          (unsigned long long)get64(evq));
    CHECK(s->messages >= 1 && s->last.kind == SVIOMMU_MSG_WIRED_IRQ &&
              s->last.irq == SVIOMMU_IRQ_EVENTQ,
          "eventq irq: %d messages, kind %u irq %u", s->messages, s->last.kind, s->last.irq);

    /* An invalid STE: C_BAD_STE (0x04). */
    r = xlate(u, 5, 0x1000, 0);
    CHECK(r.outcome == SVIOMMU_OUTCOME_FAULT && r.fault_code == 0x04, "C_BAD_STE: %u %#x",
          r.outcome, r.fault_code);
    CHECK(rd(u, SMMU_EVENTQ_PROD, 4) == 2, "second record");
    /* Config abort: terminated, nothing recorded. */
    put64(strtab + 6 * ste_bytes, 1);
    r = xlate(u, 6, 0x1000, 0);
    CHECK(r.outcome == SVIOMMU_OUTCOME_ABORTED && r.fault_code == SVIOMMU_SILENT_STE_ABORT,
          "STE abort: %u %u", r.outcome, r.fault_code);

    SviommuStats st;
    CHECK(sviommu_stats(u, &st) == SVIOMMU_OK && st.arch == SVIOMMU_ARCH_SMMUV3, "stats");
    CHECK(st.smmu_queues.events_written == 2, "events written %llu",
          (unsigned long long)st.smmu_queues.events_written);
    CHECK(st.abi.translated == 3 && st.abi.faulted == 3, "counted %llu / %llu",
          (unsigned long long)st.abi.translated, (unsigned long long)st.abi.faulted);
    for (int t = 0; t < SVIOMMU_VTD_DESCRIPTOR_TYPES; t++) {
        CHECK(st.vtd_invalidations[t] == 0, "an SMMU counts no VT-d descriptors");
    }
    CHECK(sviommu_destroy(u) == SVIOMMU_OK, "destroy SMMU");
}

int main(void) {
    struct seen s = {0};
    SviommuCallbacks cb = {
        .opaque = &s,
        .mem_read = mem_read,
        .mem_write = mem_write,
        .mem_cmpxchg64 = NULL,
        .msi = msi,
        .message = message,
    };
    test_refusals(&cb);
    test_vtd(&cb, &s);
    test_smmu(&cb, &s);
    CHECK(s.reads > 0, "memory reached through the callback");
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
