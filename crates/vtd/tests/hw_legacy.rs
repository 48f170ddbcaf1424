//! Legacy mode (RTADDR_REG.TTM = 00b, §3.4.2): root and context entries written as raw words,
//! second-stage tables built with pgtable, translation turned on by raw MMIO writes. Every
//! legacy fault reason the model produces has a test named after it.

mod common;

use common::*;
use sviommu_pgtable::vtd_ss::{Levels, VtdSecondStage, VtdSsAttrs};
use sviommu_pgtable::{Access, Build, Perms};
use sviommu_vtd::hw::{CacheParams, DmaRequest, VtdParams};
use sviommu_vtd::spec::regs::{self, cap, ecap, gcmd, rtaddr::Ttm};
use sviommu_vtd::spec::root::{ContextEntry, RootEntry, TranslationType};
use sviommu_vtd::spec::{Aw, FaultReason as R};

/// Bus 3, device 2, function 0.
const RID: u16 = 0x0310;
const IOVA: u64 = 0x1000;
const HPA_4K: u64 = 0x4000_0000;
const IOVA_RO: u64 = 0x2000;
const IOVA_2M: u64 = 0x40_0000;
const HPA_2M: u64 = 0x6000_0000;

struct Legacy {
    m: Machine,
    rta: u64,
    ss: VtdSecondStage,
    ce_at: u64,
}

fn context(ss: &VtdSecondStage) -> ContextEntry {
    let mut ce = ContextEntry::default();
    ce.set_p(true);
    ce.set_tt(TranslationType::UntranslatedOnly);
    ce.set_ssptptr(ss.root);
    ce.set_aw(Aw::Bits39);
    ce.set_did(7);
    ce
}

/// A 3-level (39-bit) second stage mapping IOVA -> HPA_4K read-write, IOVA_RO read-only and
/// IOVA_2M -> HPA_2M as a 2M page; RID's context entry points at it.
fn legacy() -> Legacy {
    let mut m = Machine::new();
    let rta = m.page();
    let ss = m.ss(Levels::Three);
    let rw = VtdSsAttrs { exec: false, ..VtdSsAttrs::ALL };
    ss.map(&m.mem, &mut m.frames, IOVA, HPA_4K, 12, rw).unwrap();
    ss.map(&m.mem, &mut m.frames, IOVA_RO, HPA_4K + 0x1000, 12, VtdSsAttrs::READ_ONLY).unwrap();
    ss.map(&m.mem, &mut m.frames, IOVA_2M, HPA_2M, 21, rw).unwrap();
    let ce_at = m.legacy_context(rta, RID, context(&ss));
    Legacy { m, rta, ss, ce_at }
}

fn read(addr: u64) -> DmaRequest {
    DmaRequest::new(RID, addr, Access::READ)
}

fn write(addr: u64) -> DmaRequest {
    DmaRequest::new(RID, addr, Access::WRITE)
}

impl Legacy {
    fn on(&self, params: VtdParams) -> sviommu_vtd::hw::Vtd<&sviommu_memory::HostMemory> {
        let vtd = unit(&self.m, params);
        enable(&vtd, self.rta, Ttm::Legacy);
        vtd
    }

    fn set_context(&self, ce: ContextEntry) {
        self.m.write(self.ce_at, ce.words());
    }

    fn root_entry_at(&self) -> u64 {
        self.rta + 16 * 3
    }
}

// ---------------------------------------------------------------------------------------------
// Translations
// ---------------------------------------------------------------------------------------------

#[test]
fn second_stage_translates_and_counts_every_read() {
    let t = legacy();
    // Without caches, so every translation reads everything (cached counts: hw_cache).
    let vtd = t.on(VtdParams { caches: CacheParams::NONE, ..VtdParams::default() });
    let tr = ok(&vtd, write(IOVA + 0x123));
    assert_eq!((tr.output, tr.page_lg2, tr.interrupt), (HPA_4K + 0x123, 12, false));
    // Root entry, context entry, three second-stage entries.
    assert_eq!(tr.reads, 5);
    assert_eq!(tr.perms, Perms::rwx(true, true, true), "no execute control: X follows R");
    let tr = ok(&vtd, read(IOVA_2M + 0x1_2345));
    assert_eq!((tr.output, tr.page_lg2, tr.reads), (HPA_2M + 0x1_2345, 21, 4));
    let tr = ok(&vtd, read(IOVA_RO));
    assert_eq!(tr.perms, Perms::rwx(true, false, true));
}

#[test]
fn privilege_and_execute_are_ignored_without_a_pasid_prefix() {
    let t = legacy();
    let vtd = t.on(VtdParams::default());
    let req = DmaRequest::new(RID, IOVA, Access::EXEC.privileged());
    assert_eq!(ok(&vtd, req).output, HPA_4K);
    // A privileged write is checked as the write it is.
    let req = DmaRequest::new(RID, IOVA_RO, Access::WRITE.privileged());
    assert_eq!(reason(&vtd, req), R::WriteDenied);
}

#[test]
fn pass_through_outputs_the_input() {
    let t = legacy();
    let mut ce = context(&t.ss);
    ce.set_tt(TranslationType::PassThrough);
    // Pass-through ignores SSPTPTR: even one above HAW is not a reserved field.
    ce.set_ssptptr(1 << 60);
    t.set_context(ce);
    let vtd = t.on(VtdParams::default());
    let tr = ok(&vtd, write(0x1234_5678));
    assert_eq!((tr.output, tr.reads, tr.perms), (0x1234_5678, 2, Perms::ALL));
}

#[test]
fn translation_disabled_passes_every_request_untranslated() {
    let t = legacy();
    let vtd = unit(&t.m, VtdParams::default());
    // Out of reset TE is clear: nothing is read, the output is the input.
    let tr = ok(&vtd, write(IOVA));
    assert_eq!((tr.output, tr.reads, tr.interrupt), (IOVA, 0, false));
    assert_eq!(ok(&vtd, read(IOVA).with_pasid(5)).output, IOVA);
}

#[test]
fn interrupt_range_requests_without_pasid_are_not_remapped() {
    let mut t = legacy();
    // Even with a mapping for the range (which software must not make).
    let rw = VtdSsAttrs { exec: false, ..VtdSsAttrs::ALL };
    t.ss.map(&t.m.mem, &mut t.m.frames, 0xfee0_0000, 0x7000_0000, 12, rw).unwrap();
    let vtd = t.on(VtdParams::default());
    let tr = ok(&vtd, write(0xfee0_1000));
    assert!(tr.interrupt);
    assert_eq!((tr.output, tr.reads), (0xfee0_1000, 0));
}

#[test]
fn a_new_root_table_takes_effect_only_at_srtp() {
    let mut t = legacy();
    let empty_rta = t.m.page();
    let vtd = t.on(VtdParams::default());
    assert_eq!(ok(&vtd, read(IOVA)).output, HPA_4K);
    // RTADDR written, not latched: the old table still translates.
    vtd.mmio_write(regs::RTADDR.0, 8, empty_rta);
    assert_eq!(ok(&vtd, read(IOVA)).output, HPA_4K);
    // SRTP, TE kept as it is. Without ESRTPS the caches still hold what the old table gave,
    // until software invalidates them globally (§6.5).
    vtd.mmio_write(regs::GCMD.0, 4, gcmd::SRTP.mask() | gcmd::TE.mask());
    assert_eq!(ok(&vtd, read(IOVA)).output, HPA_4K);
    invalidate_all(&vtd);
    // The empty table now decides.
    assert_eq!(reason(&vtd, read(IOVA)), R::RootEntryNotPresent);
}

// ---------------------------------------------------------------------------------------------
// Root table and root entry
// ---------------------------------------------------------------------------------------------

#[test]
fn fault_01_root_entry_not_present() {
    let t = legacy();
    let vtd = t.on(VtdParams::default());
    let f = fault(&vtd, DmaRequest::new(0x0410, IOVA, Access::READ));
    assert_eq!((f.reason, f.fpd), (R::RootEntryNotPresent, false));
}

#[test]
fn fault_08_root_table_access() {
    let t = legacy();
    let vtd = unit(&t.m, VtdParams::default());
    enable(&vtd, HOLE, Ttm::Legacy);
    assert_eq!(reason(&vtd, read(IOVA)), R::RootTableAccess);
}

#[test]
fn fault_0a_root_entry_reserved() {
    let t = legacy();
    let at = t.root_entry_at();
    let good = RootEntry::from_words([t.m.read(at), t.m.read(at + 8)]);
    // Bit 1, bit 64, and a CTP bit above a 39-bit HAW.
    for (word, bit) in [(0, 1), (1, 0), (0, 40)] {
        let mut w = good.words();
        w[word] |= 1 << bit;
        t.m.write(at, w);
        let vtd = t.on(VtdParams { haw: 39, ..VtdParams::default() });
        assert_eq!(reason(&vtd, read(IOVA)), R::RootEntryReserved, "bit {bit} of word {word}");
    }
}

// ---------------------------------------------------------------------------------------------
// Context entry
// ---------------------------------------------------------------------------------------------

#[test]
fn fault_02_context_entry_not_present_and_its_fpd() {
    let t = legacy();
    let vtd = t.on(VtdParams::default());
    let f = fault(&vtd, DmaRequest::new(RID + 1, IOVA, Access::READ));
    assert_eq!((f.reason, f.fpd), (R::ContextEntryNotPresent, false));
    // §9.3: FPD counts even in a not-present entry.
    let mut ce = ContextEntry::default();
    ce.set_fpd(true);
    t.set_context(ce);
    let f = fault(&vtd, read(IOVA));
    assert_eq!((f.reason, f.fpd), (R::ContextEntryNotPresent, true));
}

#[test]
fn fault_03_context_entry_invalid() {
    let t = legacy();
    let base = context(&t.ss);
    let cases: [(&str, ContextEntry, VtdParams); 5] = [
        (
            "TT = 11b",
            {
                let mut c = base;
                c.set_tt_raw(3);
                c
            },
            VtdParams::default(),
        ),
        (
            "AW = 000b",
            {
                let mut c = base;
                c.set_aw_raw(0);
                c
            },
            VtdParams::default(),
        ),
        ("AW not in SAGAW", base, {
            let mut p = VtdParams::default();
            p.cap = cap::SAGAW.set(p.cap, Aw::Bits48.sagaw_bit());
            p
        }),
        (
            "TT = 01b without DT",
            {
                let mut c = base;
                c.set_tt(TranslationType::All);
                c
            },
            {
                let mut p = VtdParams::default();
                p.ecap = ecap::DT.with(p.ecap, false);
                p
            },
        ),
        (
            "pass-through without PT",
            {
                let mut c = base;
                c.set_tt(TranslationType::PassThrough);
                c
            },
            {
                let mut p = VtdParams::default();
                p.ecap = ecap::PT.with(p.ecap, false);
                p
            },
        ),
    ];
    for (what, ce, params) in cases {
        t.set_context(ce);
        let vtd = t.on(params);
        assert_eq!(reason(&vtd, read(IOVA)), R::ContextEntryInvalid, "{what}");
    }
    // With DT advertised (the default unit), TT = 01b translates untranslated requests as
    // TT = 00b does.
    t.set_context({
        let mut c = base;
        c.set_tt(TranslationType::All);
        c
    });
    let vtd = t.on(VtdParams::default());
    assert_eq!(ok(&vtd, read(IOVA)).output, HPA_4K);
}

#[test]
fn fault_09_context_table_access() {
    let t = legacy();
    let mut re = RootEntry::default();
    re.set_p(true);
    re.set_ctp(HOLE);
    t.m.write(t.root_entry_at(), re.words());
    let vtd = t.on(VtdParams::default());
    assert_eq!(reason(&vtd, read(IOVA)), R::ContextTableAccess);
}

#[test]
fn fault_0b_context_entry_reserved() {
    let t = legacy();
    let good = context(&t.ss);
    // Bit 4, bit 71, bit 88, and an SSPTPTR bit above a 39-bit HAW.
    for (word, bit) in [(0, 4), (1, 7), (1, 24), (0, 45)] {
        let mut w = good.words();
        w[word] |= 1 << bit;
        t.set_context(ContextEntry::from_words(w));
        let vtd = t.on(VtdParams { haw: 39, ..VtdParams::default() });
        let f = fault(&vtd, read(IOVA));
        assert_eq!((f.reason, f.fpd), (R::ContextEntryReserved, false), "bit {bit} of word {word}");
    }
    // FPD set: the fault is one fault processing is disabled for.
    let mut w = good.words();
    w[0] |= 1 << 4 | 1 << 1;
    t.set_context(ContextEntry::from_words(w));
    let vtd = t.on(VtdParams::default());
    assert!(fault(&vtd, read(IOVA)).fpd);
}

#[test]
fn fault_31_request_with_pasid_in_legacy_mode() {
    let t = legacy();
    let vtd = t.on(VtdParams::default());
    assert_eq!(reason(&vtd, read(IOVA).with_pasid(1)), R::SmLegacyRequestWithPasid);
}

#[test]
fn fault_30_root_table_address_invalid() {
    let t = legacy();
    // TTM = 10b is reserved.
    let vtd = unit(&t.m, VtdParams::default());
    vtd.mmio_write(regs::RTADDR.0, 8, t.rta | 2 << 10);
    vtd.mmio_write(regs::GCMD.0, 4, gcmd::SRTP.mask());
    vtd.mmio_write(regs::GCMD.0, 4, gcmd::TE.mask());
    assert_eq!(reason(&vtd, read(IOVA)), R::SmRootTableAddressInvalid);
    // Scalable mode on a unit without SMTS.
    let mut p = VtdParams::default();
    p.ecap = ecap::SMTS.with(p.ecap, false);
    let vtd = unit(&t.m, p);
    enable(&vtd, t.rta, Ttm::Scalable);
    assert_eq!(reason(&vtd, read(IOVA)), R::SmRootTableAddressInvalid);
    // Abort-DMA mode on a unit without ADMS.
    let vtd = unit(&t.m, VtdParams::default());
    enable(&vtd, t.rta, Ttm::AbortDma);
    assert_eq!(reason(&vtd, read(IOVA)), R::SmRootTableAddressInvalid);
    // A root table above HAW.
    let vtd = unit(&t.m, VtdParams { haw: 39, ..VtdParams::default() });
    enable(&vtd, 1 << 40, Ttm::Legacy);
    assert_eq!(reason(&vtd, read(IOVA)), R::SmRootTableAddressInvalid);
}

#[test]
fn abort_dma_mode_blocks_everything() {
    let t = legacy();
    let mut p = VtdParams::default();
    p.ecap = ecap::ADMS.with(p.ecap, true);
    let vtd = unit(&t.m, p);
    enable(&vtd, t.rta, Ttm::AbortDma);
    assert_eq!(reason(&vtd, read(IOVA)), R::RootEntryNotPresent);
}

// ---------------------------------------------------------------------------------------------
// Second stage
// ---------------------------------------------------------------------------------------------

#[test]
fn fault_04_address_beyond_agaw() {
    let t = legacy();
    let vtd = t.on(VtdParams::default());
    // AW = 39-bit.
    assert_eq!(reason(&vtd, read(1 << 39)), R::AddressBeyondAgaw);
    // MGAW below the AGAW limits it further.
    let mut p = VtdParams::default();
    p.cap = cap::MGAW.set(p.cap, 30 - 1);
    let vtd = t.on(p);
    assert_eq!(reason(&vtd, read(IOVA_2M | 1 << 30)), R::AddressBeyondAgaw);
}

#[test]
fn fault_05_write_denied() {
    let t = legacy();
    let vtd = t.on(VtdParams::default());
    assert_eq!(reason(&vtd, write(IOVA_RO)), R::WriteDenied);
    // A not-present entry denies the write too (legacy mode has no not-present reason).
    assert_eq!(reason(&vtd, write(0x10_0000)), R::WriteDenied);
}

#[test]
fn fault_06_read_denied() {
    let t = legacy();
    let vtd = t.on(VtdParams::default());
    assert_eq!(reason(&vtd, read(0x10_0000)), R::ReadDenied);
    // A write-only page.
    let mut t = t;
    let wo = VtdSsAttrs { read: false, write: true, exec: false, snoop: false };
    t.ss.map(&t.m.mem, &mut t.m.frames, 0x3000, 0x5000_0000, 12, wo).unwrap();
    let vtd = t.on(VtdParams::default());
    assert_eq!(reason(&vtd, read(0x3000)), R::ReadDenied);
    assert_eq!(ok(&vtd, write(0x3000)).output, 0x5000_0000);
}

#[test]
fn fault_07_second_stage_entry_access() {
    let t = legacy();
    // The SSPTPTR itself outside memory.
    let mut ce = context(&t.ss);
    ce.set_ssptptr(HOLE);
    t.set_context(ce);
    let vtd = t.on(VtdParams::default());
    assert_eq!(reason(&vtd, read(IOVA)), R::SsEntryAccess);
    // A lower table pointer outside memory: point the level-3 entry at the hole.
    t.set_context(context(&t.ss));
    t.m.write(t.ss.root, [HOLE | 3]);
    let vtd = t.on(VtdParams::default());
    assert_eq!(reason(&vtd, read(IOVA)), R::SsEntryAccess);
}

#[test]
fn fault_0c_second_stage_entry_reserved() {
    let t = legacy();
    // Bit 62 (TM before rev 3.2) in the level-3 entry.
    let e = t.m.read(t.ss.root);
    t.m.write(t.ss.root, [e | 1 << 62]);
    let vtd = t.on(VtdParams::default());
    assert_eq!(reason(&vtd, read(IOVA)), R::SsEntryReserved);
    // SNP (bit 11) in a leaf without snoop control.
    t.m.write(t.ss.root, [e]);
    let mut p = VtdParams::default();
    p.ecap = ecap::SC.with(p.ecap, false);
    // The level-3 entry points at the page directory; its entry 0 at the page table, whose
    // entry 1 maps IOVA.
    let page_table = t.m.read(e & !0xfff) & !0xfff;
    let pte_at = page_table + 8;
    t.m.write(pte_at, [t.m.read(pte_at) | 1 << 11]);
    let vtd = t.on(p);
    assert_eq!(reason(&vtd, read(IOVA)), R::SsEntryReserved);
    let vtd = t.on(VtdParams::default());
    assert_eq!(ok(&vtd, read(IOVA)).output, HPA_4K, "SNP is a leaf attribute with SC");
}

#[test]
fn fault_0e_interrupt_address_range() {
    let mut t = legacy();
    let rw = VtdSsAttrs { exec: false, ..VtdSsAttrs::ALL };
    t.ss.map(&t.m.mem, &mut t.m.frames, 0x8000, 0xfee0_0000, 12, rw).unwrap();
    let vtd = t.on(VtdParams::default());
    assert_eq!(reason(&vtd, write(0x8004)), R::InterruptAddressRange);
}

#[test]
fn fpd_in_the_context_entry_covers_second_stage_faults() {
    let t = legacy();
    let mut ce = context(&t.ss);
    ce.set_fpd(true);
    t.set_context(ce);
    let vtd = t.on(VtdParams::default());
    let f = fault(&vtd, read(0x10_0000));
    assert_eq!((f.reason, f.fpd), (R::ReadDenied, true));
}
