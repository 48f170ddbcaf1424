//! The caches (§6.2), one test per cache: change the tables in memory, see the old result (the
//! hardware keeps what it cached), check that invalidations that do not match leave it, and
//! that the narrowest matching one removes it. Then what caches save (exact read counts, cold
//! and warm), caching mode (§6.1: not-present results cached only with CAP.CM), dirty entries,
//! and threads translating while another invalidates.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use sviommu_memory::HostMemory;
use sviommu_pgtable::vtd_ss::{self, VtdSecondStage, VtdSsAttrs};
use sviommu_pgtable::x86::{self, X86Attrs, X86Paging};
use sviommu_pgtable::{Access, Build, WalkObserver, WalkStep};
use sviommu_tlb::TAGS_PER_GROUP;
use sviommu_vtd::hw::{Apply, CacheGeometry, CacheParams, DmaRequest, Profile, Vtd, VtdParams};
use sviommu_vtd::spec::pasid::{Fspm, PasidEntry, Pgtt};
use sviommu_vtd::spec::regs::{self, cap, ccmd, gcmd, gsts, iotlb_reg, iva_reg, rtaddr::Ttm};
use sviommu_vtd::spec::root::{ContextEntry, ScalableContextEntry, TranslationType};
use sviommu_vtd::spec::{Aw, FaultReason as R};

/// Bus 3, device 2, function 0; and function 1 of the same device.
const RID: u16 = 0x0310;
const RID_FN1: u16 = 0x0311;
const PASID: u32 = 0x345;
const OTHER_PASID: u32 = 0x346;
const DID: u16 = 9;
const OTHER_DID: u16 = 10;

/// First-stage inputs: eight 4K pages under one page table.
const VA: u64 = 0x4000_0000;
/// First-stage outputs (host addresses; nothing reads them) and where remaps send them.
const FS_OUT: u64 = 0x5000_0000;
const MOVED: u64 = 0x5800_0000;
/// Second-stage inputs: eight 4K pages under one page table (PGTT second-stage and legacy).
const GPA: u64 = 0x200_0000;
const SS_OUT: u64 = 0x6000_0000;
/// Nested: the first stage sends VA here (guest RAM), which the second stage maps.
const GPA_OUT: u64 = 0x80_0000;
/// A guest page no table uses: where a test builds a moved copy of a guest table.
const GPA_SPARE: u64 = 0x30_0000;

fn params(f: impl FnOnce(&mut VtdParams)) -> VtdParams {
    let mut p = VtdParams::default();
    f(&mut p);
    p
}

fn caching_mode() -> VtdParams {
    params(|p| p.cap = cap::CM.with(p.cap, true))
}

fn req(addr: u64, access: Access) -> DmaRequest {
    DmaRequest::new(RID, addr, access).with_pasid(PASID)
}

fn read(addr: u64) -> DmaRequest {
    req(addr, Access::READ)
}

fn write(addr: u64) -> DmaRequest {
    req(addr, Access::WRITE)
}

/// Scalable mode: host first stage (VA + i*4K -> FS_OUT + i*4K), guest first stage (VA + i*4K
/// -> GPA_OUT + i*4K), second stage (GPA + i*4K -> SS_OUT + i*4K; guest RAM's first 4M with
/// 4K pages, the rest with 2M pages).
struct Sm {
    m: Machine,
    rta: u64,
    /// The PASID directory.
    dir: u64,
    pe_at: u64,
    fs: X86Paging,
    gfs: X86Paging,
    ss: VtdSecondStage,
}

fn sm() -> Sm {
    let mut m = Machine::new();
    let rta = m.page();
    let dir = m.page();
    let ss = m.ss(vtd_ss::Levels::Four);
    let rw = VtdSsAttrs { exec: false, ..VtdSsAttrs::ALL };
    for i in 0..1024 {
        ss.map(&m.mem, &mut m.frames, i << 12, GUEST_RAM_HPA + (i << 12), 12, rw).unwrap();
    }
    for gpa in (0x40_0000..GUEST_RAM_LEN).step_by(1 << 21) {
        ss.map(&m.mem, &mut m.frames, gpa, GUEST_RAM_HPA + gpa, 21, rw).unwrap();
    }
    for i in 0..8 {
        ss.map(&m.mem, &mut m.frames, GPA + (i << 12), SS_OUT + (i << 12), 12, rw).unwrap();
    }
    let fs = m.fs(x86::Levels::Four);
    let gfs = m.guest_fs(x86::Levels::Four);
    let ram = guest_ram(&m.mem);
    for i in 0..8 {
        let va = VA + (i << 12);
        fs.map(&m.mem, &mut m.frames, va, FS_OUT + (i << 12), 12, X86Attrs::ALL).unwrap();
        gfs.map(&ram, &mut m.guest_frames, va, GPA_OUT + (i << 12), 12, X86Attrs::ALL).unwrap();
    }
    drop(ram);
    let mut ce = ScalableContextEntry::default();
    ce.set_p(true);
    ce.set_paside(true);
    ce.set_pasiddirptr(dir);
    ce.set_rid_pasid(PASID);
    m.sm_context(rta, RID, ce);
    let mut t = Sm { m, rta, dir, pe_at: 0, fs, gfs, ss };
    let pe = t.pe(Pgtt::FirstStage);
    t.pe_at = t.m.pasid_entry(dir, PASID, pe);
    // A second PASID with an entry of its own (the same tables).
    t.m.pasid_entry(dir, OTHER_PASID, pe);
    t
}

impl Sm {
    fn pe(&self, pgtt: Pgtt) -> PasidEntry {
        let mut pe = PasidEntry::default();
        pe.set_p(true);
        pe.set_pgtt(pgtt);
        pe.set_did(DID);
        pe.set_fspm(Fspm::FourLevel);
        pe.set_aw(Aw::Bits48);
        pe.set_ssptptr(self.ss.root);
        pe.set_fsptptr(if pgtt == Pgtt::Nested { self.gfs.root } else { self.fs.root });
        pe
    }

    fn set_pe(&self, pe: PasidEntry) {
        self.m.write(self.pe_at, pe.words());
    }

    /// A unit with `params` translating with PGTT `pgtt`, its queue enabled.
    fn unit(&self, pgtt: Pgtt, params: VtdParams) -> Vtd<&HostMemory> {
        self.set_pe(self.pe(pgtt));
        start(&self.m.mem, self.rta, Ttm::Scalable, params)
    }
}

/// A unit over `mem` translating with the root table at `rta`, its queue enabled. (A function
/// of the memory alone, so a test can still allocate tables while the unit lives.)
fn start(mem: &HostMemory, rta: u64, ttm: Ttm, params: VtdParams) -> Vtd<&HostMemory> {
    let vtd = Vtd::new(mem, params);
    enable(&vtd, rta, ttm);
    enable_queue(&vtd);
    vtd
}

/// A zeroed page from `m`'s allocator.
fn page(m: &mut sviommu_memory::FrameAllocator<sviommu_memory::Hpa>, mem: &HostMemory) -> u64 {
    m.alloc(mem, 12).unwrap().0
}

/// Legacy mode: a 4-level second stage (GPA + i*4K -> SS_OUT + i*4K) in domain DID.
struct Legacy {
    m: Machine,
    rta: u64,
    ce_at: u64,
    ss: VtdSecondStage,
}

fn legacy_context(ss: &VtdSecondStage) -> ContextEntry {
    let mut ce = ContextEntry::default();
    ce.set_p(true);
    ce.set_tt(TranslationType::UntranslatedOnly);
    ce.set_ssptptr(ss.root);
    ce.set_aw(Aw::Bits48);
    ce.set_did(DID);
    ce
}

fn legacy() -> Legacy {
    let mut m = Machine::new();
    let rta = m.page();
    let ss = m.ss(vtd_ss::Levels::Four);
    let rw = VtdSsAttrs { exec: false, ..VtdSsAttrs::ALL };
    for i in 0..8 {
        ss.map(&m.mem, &mut m.frames, GPA + (i << 12), SS_OUT + (i << 12), 12, rw).unwrap();
    }
    let ce_at = m.legacy_context(rta, RID, legacy_context(&ss));
    Legacy { m, rta, ce_at, ss }
}

impl Legacy {
    /// A unit with `params` over these tables (its queue disabled: legacy drivers use the
    /// registers).
    fn unit(&self, params: VtdParams) -> Vtd<&HostMemory> {
        let vtd = unit(&self.m, params);
        enable(&vtd, self.rta, Ttm::Legacy);
        vtd
    }
}

fn legacy_read(addr: u64) -> DmaRequest {
    DmaRequest::new(RID, addr, Access::READ)
}

/// §11.4.7: a register-based context-cache invalidation; returns CAIG once ICC has cleared.
fn ccmd(vtd: &Vtd<&HostMemory>, cirg: u64, did: u16, sid: u16, fm: u8) -> u64 {
    let mut v = ccmd::ICC.with(0, true);
    v = ccmd::CIRG.set(v, cirg);
    v = ccmd::DID.set(v, did.into());
    v = ccmd::SID.set(v, sid.into());
    v = ccmd::FM.set(v, fm.into());
    vtd.mmio_write(regs::CCMD.0, 8, v);
    let back = vtd.mmio_read(regs::CCMD.0, 8);
    assert!(!ccmd::ICC.is_set(back), "ICC clears when the invalidation is done");
    ccmd::CAIG.get(back)
}

/// §11.4.8: a register-based IOTLB invalidation (IVA for page-selective); returns IAIG once
/// IVT has cleared. Written as two 32-bit halves, as a 32-bit driver would.
fn iotlb_reg(vtd: &Vtd<&HostMemory>, iirg: u64, did: u16, addr: u64, am: u8, ih: bool) -> u64 {
    let e = vtd.params().ecap;
    let iva = iva_reg::IH.with(iva_reg::AM.set(iva_reg::ADDR.in_place(addr), am.into()), ih);
    vtd.mmio_write(regs::iva(e).0, 8, iva);
    let v = iotlb_reg::DID.set(iotlb_reg::IIRG.set(iotlb_reg::IVT.with(0, true), iirg), did.into());
    vtd.mmio_write(regs::iotlb(e).0, 4, v & 0xffff_ffff);
    vtd.mmio_write(regs::iotlb(e).0 + 4, 4, v >> 32);
    let back = vtd.mmio_read(regs::iotlb(e).0, 8);
    assert!(!iotlb_reg::IVT.is_set(back), "IVT clears when the invalidation is done");
    iotlb_reg::IAIG.get(back)
}

// ---------------------------------------------------------------------------------------------
// One test per cache: stale until the narrowest matching invalidation
// ---------------------------------------------------------------------------------------------

#[test]
fn context_cache_keeps_a_changed_entry_until_a_device_selective_invalidation() {
    let t = legacy();
    let vtd = t.unit(VtdParams::default());
    assert_eq!(ok(&vtd, legacy_read(GPA)).output, SS_OUT);
    // The driver makes the context entry not present and forgets to invalidate.
    let mut ce = legacy_context(&t.ss);
    ce.set_p(false);
    t.m.write(t.ce_at, ce.words());
    assert_eq!(ok(&vtd, legacy_read(GPA)).output, SS_OUT, "stale: the context cache holds it");
    // Invalidations that do not select it.
    assert_eq!(ccmd(&vtd, 3, DID, RID_FN1, 0), 3, "another function");
    assert_eq!(ccmd(&vtd, 3, OTHER_DID, RID, 0), 3, "the device, another domain");
    assert_eq!(ccmd(&vtd, 2, OTHER_DID, 0, 0), 2, "another domain");
    assert_eq!(iotlb_reg(&vtd, 1, 0, 0, 0, false), 1, "the IOTLB, globally");
    let tr = ok(&vtd, legacy_read(GPA));
    assert_eq!(tr.output, SS_OUT, "still the cached context entry");
    assert_eq!(tr.reads, 4, "the IOTLB went: the walk ran, with the cached context entry");
    // The narrowest that selects it: this device in this domain.
    assert_eq!(ccmd(&vtd, 3, DID, RID, 0), 3);
    assert_eq!(reason(&vtd, legacy_read(GPA)), R::ContextEntryNotPresent);
}

#[test]
fn a_function_mask_widens_device_selective_context_invalidation() {
    let t = legacy();
    let vtd = t.unit(VtdParams::default());
    assert_eq!(ok(&vtd, legacy_read(GPA)).output, SS_OUT);
    let mut ce = legacy_context(&t.ss);
    ce.set_p(false);
    t.m.write(t.ce_at, ce.words());
    // FM = 00b compares the whole SID: function 1 is not function 0.
    assert_eq!(ccmd(&vtd, 3, DID, RID_FN1, 0), 3);
    assert_eq!(ok(&vtd, legacy_read(GPA)).output, SS_OUT);
    // FM = 01b ignores function bit 2 only: 0x0314 still is not 0x0310's function 1.
    assert_eq!(ccmd(&vtd, 3, DID, RID_FN1, 1), 3);
    assert_eq!(ok(&vtd, legacy_read(GPA)).output, SS_OUT);
    // FM = 11b ignores the whole function number: every function of device 2.
    assert_eq!(ccmd(&vtd, 3, DID, RID_FN1, 3), 3);
    assert_eq!(reason(&vtd, legacy_read(GPA)), R::ContextEntryNotPresent);
}

#[test]
fn pasid_cache_keeps_a_changed_entry_until_a_pasid_selective_invalidation() {
    for profile in BOTH {
        pasid_cache(profile);
    }
}

fn pasid_cache(profile: Profile) {
    let t = sm();
    let vtd = t.unit(Pgtt::FirstStage, with_profile(profile));
    assert_eq!(ok(&vtd, read(VA)).output, FS_OUT);
    let mut pe = t.pe(Pgtt::FirstStage);
    pe.set_p(false);
    t.set_pe(pe);
    assert_eq!(ok(&vtd, read(VA)).output, FS_OUT, "stale");
    submit_and_wait(
        &vtd,
        &[
            desc::pc_pasid(DID, OTHER_PASID),
            desc::pc_pasid(OTHER_DID, PASID),
            desc::pc_domain(OTHER_DID),
            // The IOTLB and the context cache: the walk runs again from the cached entry.
            desc::piotlb_pasid(DID, PASID),
            desc::cc_global(),
        ],
    );
    let tr = ok(&vtd, read(VA));
    assert_eq!(tr.output, FS_OUT, "the PASID cache still holds the entry");
    // Root and context entries, then the first-stage walk (its paging-structure entries went).
    assert_eq!(tr.reads, 2 + 4);
    let served = || vtd.translate(&read(VA)).is_ok();
    submit_then_wait(&vtd, &[desc::pc_pasid(DID, PASID)], true, served);
    assert_eq!(reason(&vtd, read(VA)), R::SmPasidEntryNotPresent);
}

#[test]
fn iotlb_keeps_a_remapped_page_until_a_page_selective_invalidation() {
    let t = sm();
    let vtd = t.unit(Pgtt::FirstStage, VtdParams::default());
    let page = VA + 0x3000;
    let cold = ok(&vtd, write(page + 0x10));
    assert_eq!(cold.output, FS_OUT + 0x3010);
    // The driver remaps the page and does not invalidate.
    repoint(&t.m, entry_at(&t.m, t.fs.root, page, 3, host), MOVED);
    let warm = ok(&vtd, write(page + 0x20));
    assert_eq!((warm.output, warm.reads), (FS_OUT + 0x3020, 0), "stale, from the IOTLB");
    submit_and_wait(
        &vtd,
        &[
            desc::piotlb_pages(DID, PASID, page + 0x1000, 0, true),
            desc::piotlb_pages(DID, OTHER_PASID, page, 0, false),
            desc::piotlb_pages(OTHER_DID, PASID, page, 0, false),
            desc::piotlb_pasid(DID, OTHER_PASID),
            // A second-stage page-selective invalidation does not reach first-stage-only
            // translations.
            desc::iotlb_pages(DID, page, 0, false),
            desc::pc_pasid(DID, PASID),
        ],
    );
    assert_eq!(ok(&vtd, write(page)).output, FS_OUT + 0x3000, "still cached");
    // The narrowest that selects it: this page, leaves only.
    submit_and_wait(&vtd, &[desc::piotlb_pages(DID, PASID, page, 0, true)]);
    let fresh = ok(&vtd, write(page + 0x30));
    assert_eq!(fresh.output, MOVED + 0x30);
    assert_eq!(fresh.reads, 1, "the paging-structure cache kept the page table: one PTE read");
}

#[test]
fn first_stage_paging_structure_cache_keeps_a_replaced_table_until_ih_is_clear() {
    for profile in BOTH {
        first_stage_psc(profile);
    }
}

fn first_stage_psc(profile: Profile) {
    let mut t = sm();
    t.set_pe(t.pe(Pgtt::FirstStage));
    let vtd = start(&t.m.mem, t.rta, Ttm::Scalable, with_profile(profile));
    assert_eq!(ok(&vtd, read(VA)).output, FS_OUT);
    // The driver replaces the page table under VA's 2M region with a copy in which VA + 5000h
    // goes elsewhere, and invalidates nothing.
    let pde_at = entry_at(&t.m, t.fs.root, VA, 2, host);
    let old_pt = t.m.read(pde_at) & ENTRY_ADDR;
    let new_pt = page(&mut t.m.frames, &t.m.mem);
    copy_page(&t.m, old_pt, new_pt);
    repoint(&t.m, new_pt + 8 * 5, MOVED);
    repoint(&t.m, pde_at, new_pt);
    let page = VA + 0x5000;
    let tr = ok(&vtd, read(page));
    assert_eq!((tr.output, tr.reads), (FS_OUT + 0x5000, 1), "resumed at the old page table");
    submit_and_wait(
        &vtd,
        &[
            // Leaves only: the paging-structure entries stay.
            desc::piotlb_pages(DID, PASID, page, 0, true),
            // Another 2M region, another PASID, another domain.
            desc::piotlb_pages(DID, PASID, VA + (1 << 21), 0, false),
            desc::piotlb_pages(DID, OTHER_PASID, page, 0, false),
            desc::piotlb_pages(OTHER_DID, PASID, page, 0, false),
            // The second stage's.
            desc::iotlb_pages(DID, page, 0, false),
        ],
    );
    assert_eq!(ok(&vtd, read(page)).output, FS_OUT + 0x5000, "still the old table");
    let narrowest = desc::piotlb_pages(DID, PASID, page, 0, false);
    submit_then_wait(&vtd, &[narrowest], FS_OUT + 0x5000, || ok(&vtd, read(page)).output);
    // Again, to drop what the probe's walk cached.
    submit_and_wait(&vtd, &[narrowest]);
    let tr = ok(&vtd, read(page));
    assert_eq!(tr.output, MOVED);
    // Every table on the path went (their spans meet the page): a walk from the root.
    assert_eq!(tr.reads, 4);
}

#[test]
fn second_stage_paging_structure_cache_keeps_a_replaced_table_until_ih_is_clear() {
    let mut t = legacy();
    let vtd = Vtd::new(&t.m.mem, VtdParams::default());
    enable(&vtd, t.rta, Ttm::Legacy);
    assert_eq!(ok(&vtd, legacy_read(GPA)).output, SS_OUT);
    let pde_at = entry_at(&t.m, t.ss.root, GPA, 2, host);
    let old_pt = t.m.read(pde_at) & ENTRY_ADDR;
    let new_pt = page(&mut t.m.frames, &t.m.mem);
    copy_page(&t.m, old_pt, new_pt);
    let index = (GPA >> 12) & 0x1ff;
    repoint(&t.m, new_pt + 8 * (index + 5), MOVED);
    repoint(&t.m, pde_at, new_pt);
    let page = GPA + 0x5000;
    let tr = ok(&vtd, legacy_read(page));
    assert_eq!((tr.output, tr.reads), (SS_OUT + 0x5000, 1), "resumed at the old page table");
    // Register-based, page-selective with IH (leaves only); another domain; another range.
    assert_eq!(iotlb_reg(&vtd, 3, DID, page, 0, true), 3);
    assert_eq!(iotlb_reg(&vtd, 3, OTHER_DID, page, 0, false), 3);
    assert_eq!(iotlb_reg(&vtd, 3, DID, GPA + (1 << 21), 0, false), 3);
    assert_eq!(iotlb_reg(&vtd, 2, OTHER_DID, 0, 0, false), 2);
    assert_eq!(ok(&vtd, legacy_read(page)).output, SS_OUT + 0x5000, "still the old table");
    assert_eq!(iotlb_reg(&vtd, 3, DID, page, 0, false), 3);
    let tr = ok(&vtd, legacy_read(page));
    assert_eq!((tr.output, tr.reads), (MOVED, 4));
}

#[test]
fn second_stage_leaf_cache_keeps_a_moved_guest_table_until_its_gpa_is_invalidated() {
    for profile in BOTH {
        second_stage_leaf(profile);
    }
}

fn second_stage_leaf(profile: Profile) {
    let t = sm();
    let vtd = t.unit(Pgtt::Nested, with_profile(profile));
    assert_eq!(ok(&vtd, read(VA)).output, GUEST_RAM_HPA + GPA_OUT);
    // The host moves the guest's page table to another host page (a copy, in which VA + 5000h
    // goes to another GPA) by changing the second stage, and invalidates nothing.
    let pt_gpa = t.m.read(entry_at(&t.m, t.gfs.root, VA, 2, guest)) & ENTRY_ADDR;
    let spare = GUEST_RAM_HPA + GPA_SPARE;
    copy_page(&t.m, guest(pt_gpa), spare);
    repoint(&t.m, spare + 8 * 5, GPA_OUT + 0x10_0000);
    repoint(&t.m, entry_at(&t.m, t.ss.root, pt_gpa, 3, host), spare);
    let page = VA + 0x5000;
    let tr = ok(&vtd, read(page));
    assert_eq!(tr.output, GUEST_RAM_HPA + GPA_OUT + 0x5000, "the cached second-stage leaf");
    assert_eq!(tr.reads, 1, "one first-stage PTE, read through the cached leaf");
    submit_and_wait(
        &vtd,
        &[
            // Another GPA (this takes the domain's nested translations with it), another
            // domain, the first stage's caches of this PASID.
            desc::iotlb_pages(DID, GPA_SPARE + 0x1000, 0, true),
            desc::iotlb_pages(OTHER_DID, pt_gpa, 0, false),
            desc::piotlb_pasid(DID, PASID),
        ],
    );
    let tr = ok(&vtd, read(page));
    assert_eq!(tr.output, GUEST_RAM_HPA + GPA_OUT + 0x5000, "still the old host page");
    // The narrowest that selects it: the table's GPA, a leaf change.
    let stale = GUEST_RAM_HPA + GPA_OUT + 0x5000;
    let narrowest = desc::iotlb_pages(DID, pt_gpa, 0, true);
    submit_then_wait(&vtd, &[narrowest], stale, || ok(&vtd, read(page)).output);
    let tr = ok(&vtd, read(page));
    assert_eq!(tr.output, GUEST_RAM_HPA + GPA_OUT + 0x10_0000);
}

// ---------------------------------------------------------------------------------------------
// What the caches save
// ---------------------------------------------------------------------------------------------

/// Reads of a translation of `r` that must succeed.
fn reads(vtd: &Vtd<&HostMemory>, r: DmaRequest) -> u32 {
    ok(vtd, r).reads
}

#[test]
fn warm_translations_read_less_than_cold_ones() {
    let t = sm();
    let none = VtdParams { caches: CacheParams::NONE, ..VtdParams::default() };

    // First stage only: 4 structures + 4 entries cold; then nothing; then the PTE alone.
    let cold = t.unit(Pgtt::FirstStage, none);
    assert_eq!([reads(&cold, read(VA)), reads(&cold, read(VA))], [8, 8]);
    let vtd = t.unit(Pgtt::FirstStage, VtdParams::default());
    assert_eq!(reads(&vtd, read(VA)), 8);
    assert_eq!(reads(&vtd, read(VA + 0x10)), 0, "IOTLB hit");
    assert_eq!(reads(&vtd, read(VA + 0x1000)), 1, "paging-structure cache hit");

    // Second stage only: the same shape.
    let vtd = t.unit(Pgtt::SecondStage, VtdParams::default());
    assert_eq!(reads(&vtd, read(GPA)), 8);
    assert_eq!(reads(&vtd, read(GPA + 0x10)), 0);
    assert_eq!(reads(&vtd, read(GPA + 0x1000)), 1);

    // Nested: 4 structures, 4 x (4 + 1) for the first-stage entries (the guest's tables sit
    // under 4K second-stage pages here), 3 for the output (a 2M second-stage page): 27 without
    // caches.
    let cold = t.unit(Pgtt::Nested, none);
    assert_eq!(reads(&cold, read(VA)), 4 + 4 * (4 + 1) + 3);
    // With caches even the first walk profits: after the first second-stage walk (4) the
    // other table fetches resume at the second-stage page table (1 each), and the output's
    // second-stage walk at the page directory it shares (1).
    let vtd = t.unit(Pgtt::Nested, VtdParams::default());
    assert_eq!(reads(&vtd, read(VA)), 4 + (4 + 1) + 3 * (1 + 1) + 1);
    assert_eq!(reads(&vtd, read(VA + 0x10)), 0, "IOTLB hit");
    // Another page under the same first-stage table: the first-stage paging-structure cache
    // gives the table's GPA, the second-stage leaf cache its host page; the output's GPA is in
    // the same 2M second-stage page. One read: the first-stage PTE.
    assert_eq!(reads(&vtd, read(VA + 0x1000)), 1);

    let s = vtd.cache_stats();
    assert!(s.iotlb.hits >= 1 && s.fs_psc.hits >= 1 && s.ss_leaf.hits >= 1, "{s:?}");
    assert_eq!(cold.cache_stats(), Default::default(), "a unit without caches counts nothing");
}

#[test]
fn legacy_warm_translations() {
    let t = legacy();
    let vtd = t.unit(VtdParams::default());
    assert_eq!(reads(&vtd, legacy_read(GPA)), 2 + 4);
    assert_eq!(reads(&vtd, legacy_read(GPA + 8)), 0);
    assert_eq!(reads(&vtd, legacy_read(GPA + 0x1000)), 1);
}

#[test]
fn a_write_to_a_clean_cached_page_walks_again_to_set_d() {
    let t = sm();
    let vtd = t.unit(Pgtt::FirstStage, VtdParams::default());
    let pte_at = entry_at(&t.m, t.fs.root, VA, 3, host);
    assert_eq!(reads(&vtd, read(VA)), 8);
    assert_eq!(t.m.read(pte_at) & 0x40, 0, "a read leaves D clear");
    // The cached entry is not dirty: the write walks (from the paging-structure cache) and
    // sets D; after that a write hits.
    assert_eq!(reads(&vtd, write(VA)), 1);
    assert_eq!(t.m.read(pte_at) & 0x40, 0x40, "D set by the write's walk");
    assert_eq!(reads(&vtd, write(VA)), 0);
    assert_eq!(reads(&vtd, read(VA)), 0);
}

#[test]
fn every_cache_can_be_left_out() {
    let t = sm();
    for (name, p) in [
        ("context", params(|p| p.caches.context = CacheParams::NONE.context)),
        ("pasid", params(|p| p.caches.pasid = CacheParams::NONE.pasid)),
        ("iotlb", params(|p| p.caches.iotlb = CacheParams::NONE.iotlb)),
    ] {
        let vtd = t.unit(Pgtt::FirstStage, p);
        assert_eq!(reads(&vtd, read(VA)), 8, "{name}");
        let warm = reads(&vtd, read(VA));
        let expect = match name {
            "context" | "pasid" => 2,
            _ => 1,
        };
        assert_eq!(warm, expect, "{name}: what a warm translation reads without it");
    }
}

// ---------------------------------------------------------------------------------------------
// Caching mode (§6.1, CAP.CM)
// ---------------------------------------------------------------------------------------------

/// PASID 0x347: in PASID's PASID table, two entries on; not present until a test writes it.
const ABSENT: u32 = 0x347;

impl Sm {
    /// Writes ABSENT's PASID-table entry (a first-stage one, like PASID's).
    fn make_absent_present(&self) {
        self.m.write(self.pe_at + 2 * 64, self.pe(Pgtt::FirstStage).words());
    }
}

#[test]
fn without_caching_mode_not_present_results_are_not_cached() {
    let mut t = sm();
    t.set_pe(t.pe(Pgtt::FirstStage));
    let vtd = start(&t.m.mem, t.rta, Ttm::Scalable, VtdParams::default());
    let hole = VA + 0x10_0000;
    assert_eq!(reason(&vtd, read(hole)), R::SmFsEntryNotPresent);
    // Not present to present needs no invalidation without caching mode...
    t.fs.map(&t.m.mem, &mut t.m.frames, hole, MOVED, 12, X86Attrs::ALL).unwrap();
    assert_eq!(ok(&vtd, read(hole)).output, MOVED);
    // ...for a PASID-table entry too.
    assert_eq!(reason(&vtd, read(VA).with_pasid(ABSENT)), R::SmPasidEntryNotPresent);
    t.make_absent_present();
    assert_eq!(ok(&vtd, read(VA).with_pasid(ABSENT)).output, FS_OUT);
}

#[test]
fn with_caching_mode_not_present_results_are_cached_until_invalidated() {
    let mut t = sm();
    t.set_pe(t.pe(Pgtt::SecondStage));
    let vtd = start(&t.m.mem, t.rta, Ttm::Scalable, caching_mode());
    let hole = GPA + 0x10_0000;
    assert_eq!(reason(&vtd, read(hole)), R::SmSsEntryNotPresent);
    let rw = VtdSsAttrs { exec: false, ..VtdSsAttrs::ALL };
    t.ss.map(&t.m.mem, &mut t.m.frames, hole, MOVED, 12, rw).unwrap();
    let f = fault(&vtd, read(hole));
    assert_eq!((f.reason, f.fpd), (R::SmSsEntryNotPresent, false), "the cached not-present");
    // Another page is not selected; the page is.
    submit_and_wait(&vtd, &[desc::iotlb_pages(DID, hole + 0x1000, 0, true)]);
    assert_eq!(reason(&vtd, read(hole)), R::SmSsEntryNotPresent);
    submit_and_wait(&vtd, &[desc::iotlb_pages(DID, hole, 0, true)]);
    assert_eq!(ok(&vtd, read(hole)).output, MOVED);

    // A not-present PASID-table entry: cached; another PASID does not select it; its own
    // PASID does, with the DID of the entry software makes present (the cached entry's DID
    // field means nothing).
    assert_eq!(reason(&vtd, read(VA).with_pasid(ABSENT)), R::SmPasidEntryNotPresent);
    t.make_absent_present();
    assert_eq!(reason(&vtd, read(VA).with_pasid(ABSENT)), R::SmPasidEntryNotPresent);
    submit_and_wait(&vtd, &[desc::pc_pasid(DID, OTHER_PASID)]);
    assert_eq!(reason(&vtd, read(VA).with_pasid(ABSENT)), R::SmPasidEntryNotPresent);
    submit_and_wait(&vtd, &[desc::pc_pasid(DID, ABSENT)]);
    assert_eq!(ok(&vtd, read(VA).with_pasid(ABSENT)).output, FS_OUT);
}

/// §6.1: caching mode asks software to invalidate after changing not-present entries "other
/// than first-stage" ones, and Linux maps into a first-stage domain without flushing: a
/// first-stage not-present result is never cached, so the next DMA finds the new entry.
#[test]
fn with_caching_mode_first_stage_not_present_results_are_not_cached() {
    let mut t = sm();
    let hole = VA + 0x10_0000;
    let vtd = start(&t.m.mem, t.rta, Ttm::Scalable, caching_mode());
    t.set_pe(t.pe(Pgtt::FirstStage));
    assert_eq!(reason(&vtd, read(hole)), R::SmFsEntryNotPresent);
    t.fs.map(&t.m.mem, &mut t.m.frames, hole, MOVED, 12, X86Attrs::ALL).unwrap();
    assert_eq!(ok(&vtd, read(hole)).output, MOVED, "no invalidation needed");

    // Nested: the same for the guest's first stage (the second stage maps GPA_SPARE).
    let hole = hole + 0x1000;
    t.set_pe(t.pe(Pgtt::Nested));
    let vtd = start(&t.m.mem, t.rta, Ttm::Scalable, caching_mode());
    assert_eq!(reason(&vtd, read(hole)), R::SmFsEntryNotPresent);
    let ram = guest_ram(&t.m.mem);
    t.gfs.map(&ram, &mut t.m.guest_frames, hole, GPA_SPARE, 12, X86Attrs::ALL).unwrap();
    let out = ok(&vtd, read(hole)).output;
    assert_eq!(out, GUEST_RAM_HPA + GPA_SPARE, "no invalidation needed");
}

#[test]
fn with_caching_mode_a_not_present_context_entry_is_tagged_with_domain_0() {
    let t = legacy();
    let mut ce = legacy_context(&t.ss);
    ce.set_p(false);
    t.m.write(t.ce_at, ce.words());
    let vtd = t.unit(caching_mode());
    assert_eq!(reason(&vtd, legacy_read(GPA)), R::ContextEntryNotPresent);
    t.m.write(t.ce_at, legacy_context(&t.ss).words());
    assert_eq!(reason(&vtd, legacy_read(GPA)), R::ContextEntryNotPresent, "cached");
    // The domain the entry now names does not select it; domain 0 does (§6.1).
    assert_eq!(ccmd(&vtd, 3, DID, RID, 0), 3);
    assert_eq!(reason(&vtd, legacy_read(GPA)), R::ContextEntryNotPresent);
    assert_eq!(ccmd(&vtd, 3, 0, RID, 0), 3);
    assert_eq!(ok(&vtd, legacy_read(GPA)).output, SS_OUT);

    // Without caching mode the same change needs no invalidation.
    t.m.write(t.ce_at, ce.words());
    let vtd = t.unit(VtdParams::default());
    assert_eq!(reason(&vtd, legacy_read(GPA)), R::ContextEntryNotPresent);
    t.m.write(t.ce_at, legacy_context(&t.ss).words());
    assert_eq!(ok(&vtd, legacy_read(GPA)).output, SS_OUT);
}

// ---------------------------------------------------------------------------------------------
// Register-based invalidation (§6.5.1)
// ---------------------------------------------------------------------------------------------

#[test]
fn register_invalidation_reports_what_it_did() {
    let t = legacy();
    let vtd = t.unit(VtdParams::default());
    // CAIG / IAIG: the granularity performed; 00b for a request ignored.
    assert_eq!(ccmd(&vtd, 1, 0, 0, 0), 1);
    assert_eq!(ccmd(&vtd, 2, DID, 0, 0), 2);
    assert_eq!(ccmd(&vtd, 3, DID, RID, 0), 3);
    assert_eq!(ccmd(&vtd, 0, DID, RID, 0), 0, "CIRG 00b is reserved");
    assert_eq!(iotlb_reg(&vtd, 1, 0, 0, 0, false), 1);
    assert_eq!(iotlb_reg(&vtd, 2, DID, 0, 0, false), 2);
    assert_eq!(iotlb_reg(&vtd, 3, DID, GPA, 18, false), 3, "AM = MAMV");
    assert_eq!(iotlb_reg(&vtd, 0, DID, 0, 0, false), 0, "IIRG 00b is reserved");

    // AM above CAP.MAMV: ignored, and the page stays cached.
    assert_eq!(ok(&vtd, legacy_read(GPA)).output, SS_OUT);
    repoint(&t.m, entry_at(&t.m, t.ss.root, GPA, 3, host), MOVED);
    assert_eq!(iotlb_reg(&vtd, 3, DID, GPA, 19, false), 0);
    assert_eq!(ok(&vtd, legacy_read(GPA)).output, SS_OUT);
    // AM = 1: the two pages at GPA (ADDR's low bit below the mask ignored).
    assert_eq!(iotlb_reg(&vtd, 3, DID, GPA + 0x1000, 1, false), 3);
    assert_eq!(ok(&vtd, legacy_read(GPA)).output, MOVED);
}

#[test]
fn register_invalidation_is_refused_while_the_queue_is_enabled() {
    let t = legacy();
    let vtd = t.unit(VtdParams::default());
    assert_eq!(ok(&vtd, legacy_read(GPA)).output, SS_OUT);
    repoint(&t.m, entry_at(&t.m, t.ss.root, GPA, 3, host), MOVED);
    enable_queue(&vtd);
    assert_eq!(ccmd(&vtd, 1, 0, 0, 0), 0, "ignored while QIES");
    assert_eq!(iotlb_reg(&vtd, 1, 0, 0, 0, false), 0);
    assert_eq!(ok(&vtd, legacy_read(GPA)).output, SS_OUT, "nothing was invalidated");
    // Queue off (GCMD.QIE clear, TE kept): registers work again.
    vtd.mmio_write(regs::GCMD.0, 4, gcmd::TE.mask());
    assert!(!gsts::QIES.is_set(vtd.mmio_read(regs::GSTS.0, 4)));
    assert_eq!(iotlb_reg(&vtd, 1, 0, 0, 0, false), 1);
    assert_eq!(ok(&vtd, legacy_read(GPA)).output, MOVED);
}

// ---------------------------------------------------------------------------------------------
// Concurrency: translations never see a mapping older than the last completed invalidation
// ---------------------------------------------------------------------------------------------

/// Holds a walk after it has read the first-stage PTE until the invalidator has completed the
/// next round: the walk that read the old mapping then tries to cache it after the invalidation
/// that removed it, which the epoch must refuse.
struct Stall<'a> {
    done: &'a AtomicU64,
    attempted: &'a AtomicU64,
    seen: u64,
    /// The last round: nothing comes after it to wait for.
    last: u64,
}

impl WalkObserver for Stall<'_> {
    fn step(&mut self, step: WalkStep) {
        if step.level != 1 || self.seen >= self.last {
            return;
        }
        self.attempted.store(self.seen + 1, Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.done.load(Ordering::Acquire) == self.seen && Instant::now() < deadline {
            std::thread::yield_now();
        }
    }
}

/// Stores `value` into the atomic when dropped: a thread that panics still releases the others.
struct OnExit<'a>(&'a AtomicU64, u64);

impl Drop for OnExit<'_> {
    fn drop(&mut self) {
        self.0.store(self.1, Ordering::Release);
    }
}

#[test]
fn translations_racing_queued_invalidations_never_see_an_invalidated_mapping() {
    const ROUNDS: u64 = 100;
    let t = sm();
    let vtd = t.unit(Pgtt::FirstStage, VtdParams::default());
    let pte_at = entry_at(&t.m, t.fs.root, VA, 3, host);
    let out = |round: u64| FS_OUT + (round << 12);
    // Round r's mapping is out(r); `done` is the last round whose invalidation completed.
    let done = AtomicU64::new(0);
    // The stalling translator's last attempt: it started in round `attempted - 1` and has read
    // its PTE (or finished).
    let attempted = AtomicU64::new(0);
    let check = |seen: u64, output: u64| {
        // The mapping when the translation started, or a newer one the driver wrote since.
        assert!(output >= out(seen), "round {seen}: stale {output:#x}");
        assert_eq!(output & 0xfff, 0);
    };
    std::thread::scope(|s| {
        // A translator that stalls mid-walk.
        s.spawn(|| {
            let _release = OnExit(&attempted, u64::MAX);
            stalling(&done, &attempted, ROUNDS, &vtd, check);
        });
        // One that does not, under the other PASID (the same tables): its walks fill entries
        // of its own, so they never turn the stalling translator's next walk into a hit.
        s.spawn(|| loop {
            let seen = done.load(Ordering::Acquire);
            let other = DmaRequest::new(RID, VA, Access::READ).with_pasid(OTHER_PASID);
            check(seen, ok(&vtd, other).output);
            if seen == ROUNDS {
                break;
            }
        });
        let _release = OnExit(&done, ROUNDS);
        for round in 1..=ROUNDS {
            // Let the stalling translator get into (or through) a walk of this round.
            let deadline = Instant::now() + Duration::from_secs(1);
            while attempted.load(Ordering::Acquire) < round && Instant::now() < deadline {
                std::thread::yield_now();
            }
            repoint(&t.m, pte_at, out(round));
            submit_and_wait(
                &vtd,
                &[
                    desc::piotlb_pages(DID, PASID, VA, 0, true),
                    desc::piotlb_pages(DID, OTHER_PASID, VA, 0, true),
                ],
            );
            done.store(round, Ordering::Release);
        }
    });
    assert_eq!(ok(&vtd, read(VA)).output, out(ROUNDS));
    let stale = vtd.cache_stats().iotlb.stale_inserts;
    // Each round's stalled walk ends after the invalidation and is refused (half, to spare the
    // test a round whose one-second wait ran out on a loaded machine).
    assert!(stale >= ROUNDS / 2, "{stale} walks finished after an invalidation and were refused");
}

/// The stalling translator's loop.
fn stalling(
    done: &AtomicU64,
    attempted: &AtomicU64,
    rounds: u64,
    vtd: &Vtd<&HostMemory>,
    check: impl Fn(u64, u64),
) {
    loop {
        let seen = done.load(Ordering::Acquire);
        let stall = Stall { done, attempted, seen, last: rounds };
        let (tr, _) = vtd.translate_observed(&read(VA), stall);
        check(seen, tr.unwrap().output);
        attempted.store(seen + 1, Ordering::Release);
        if seen >= rounds {
            break;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Behaviour profiles (`VtdParams::profile`): forgiving carries out each invalidation when the
// queue reads it; strict when the next invalidation wait descriptor completes (§6.5.2.8), or at
// a seeded point before it, and narrows a page-selective IOTLB invalidation of nested
// translations to their guest physical page.
// ---------------------------------------------------------------------------------------------

fn with_profile(profile: Profile) -> VtdParams {
    params(|p| p.profile = profile)
}

const BOTH: [Profile; 2] = [Profile::Forgiving, Profile::STRICT];

#[test]
fn strict_holds_an_iotlb_invalidation_until_its_wait_descriptor() {
    for profile in BOTH {
        let t = sm();
        let vtd = t.unit(Pgtt::FirstStage, with_profile(profile));
        let page = VA + 0x3000;
        assert_eq!(ok(&vtd, read(page)).output, FS_OUT + 0x3000);
        repoint(&t.m, entry_at(&t.m, t.fs.root, page, 3, host), MOVED);
        // The invalidation, without a wait descriptor behind it.
        submit(&vtd, &[desc::piotlb_pages(DID, PASID, page, 0, true)]);
        let expect = if profile.is_strict() { FS_OUT + 0x3000 } else { MOVED };
        assert_eq!(ok(&vtd, read(page)).output, expect, "{profile}: before the wait");
        assert_eq!(vtd.deferred_stats().pending, u64::from(profile.is_strict()));
        submit_and_wait(&vtd, &[]);
        assert_eq!(ok(&vtd, read(page)).output, MOVED, "{profile}: after the wait");
    }
}

#[test]
fn strict_holds_a_pasid_cache_invalidation_until_its_wait_descriptor() {
    for profile in BOTH {
        let t = sm();
        let vtd = t.unit(Pgtt::FirstStage, with_profile(profile));
        ok(&vtd, read(VA));
        let mut gone = t.pe(Pgtt::FirstStage);
        gone.set_p(false);
        t.set_pe(gone);
        submit(&vtd, &[desc::pc_pasid(DID, PASID), desc::piotlb_pasid(DID, PASID)]);
        let served = vtd.translate(&read(VA)).is_ok();
        assert_eq!(served, profile.is_strict(), "{profile}: the cached entry serves");
        submit_and_wait(&vtd, &[]);
        assert_eq!(reason(&vtd, read(VA)), R::SmPasidEntryNotPresent, "{profile}");
    }
}

#[test]
fn strict_narrows_nested_page_invalidations_to_the_guest_physical_page() {
    for profile in BOTH {
        let t = sm();
        let vtd = t.unit(Pgtt::Nested, with_profile(profile));
        let page = VA + 0x3000;
        assert_eq!(ok(&vtd, read(page)).output, GUEST_RAM_HPA + GPA_OUT + 0x3000);
        assert_eq!(ok(&vtd, read(page)).reads, 0, "cached");
        // A second-stage page the translation does not use: forgiving drops every nested
        // translation of the domain; strict keeps this one.
        submit_and_wait(&vtd, &[desc::iotlb_pages(DID, GPA_OUT + 0x5000, 0, true)]);
        let kept = ok(&vtd, read(page)).reads == 0;
        assert_eq!(kept, profile.is_strict(), "{profile}: an unrelated GPA");
        // Its own guest physical page removes it in both (never its input address).
        submit_and_wait(&vtd, &[desc::iotlb_pages(DID, page, 0, true)]);
        let by_input = ok(&vtd, read(page)).reads == 0;
        assert_eq!(by_input, profile.is_strict(), "{profile}: by the first-stage input");
        submit_and_wait(&vtd, &[desc::iotlb_pages(DID, GPA_OUT + 0x3000, 0, true)]);
        assert!(ok(&vtd, read(page)).reads > 0, "{profile}: its own GPA removes it");
    }
}

#[test]
fn esrtps_makes_srtp_invalidate_every_cache() {
    for esrtps in [false, true] {
        let t = sm();
        let vtd = t.unit(Pgtt::FirstStage, params(|p| p.cap = cap::ESRTPS.with(p.cap, esrtps)));
        ok(&vtd, read(VA));
        let mut gone = t.pe(Pgtt::FirstStage);
        gone.set_p(false);
        t.set_pe(gone);
        // SRTP again, TE and QIE kept, no invalidation descriptor.
        let kept = vtd.mmio_read(regs::GSTS.0, 4) & (gsts::TES.mask() | gsts::QIES.mask());
        vtd.mmio_write(regs::GCMD.0, 4, kept | gcmd::SRTP.mask());
        assert!(gsts::RTPS.is_set(vtd.mmio_read(regs::GSTS.0, 4)));
        assert_eq!(vtd.translate(&read(VA)).is_err(), esrtps, "ESRTPS {esrtps}");
    }
}

/// Under `seed`, with a page-selective invalidation pending, the index of the first of `n`
/// translations that saw the new mapping (if one did before the wait).
fn first_fresh(seed: u64, n: usize) -> Option<usize> {
    let t = sm();
    let vtd = t.unit(Pgtt::FirstStage, with_profile(Profile::Strict(Apply::Seeded(seed))));
    ok(&vtd, read(VA));
    repoint(&t.m, entry_at(&t.m, t.fs.root, VA, 3, host), MOVED);
    submit(&vtd, &[desc::piotlb_pages(DID, PASID, VA, 0, true)]);
    let seen: Vec<u64> = (0..n).map(|_| ok(&vtd, read(VA)).output).collect();
    let first = seen.iter().position(|&o| o == MOVED);
    if let Some(i) = first {
        assert!(seen.iter().skip(i).all(|&o| o == MOVED), "never stale again");
    }
    submit_and_wait(&vtd, &[]);
    assert_eq!(ok(&vtd, read(VA)).output, MOVED, "seed {seed}: by the wait at the latest");
    first
}

#[test]
fn seeded_mode_applies_each_invalidation_before_its_wait_repeatably() {
    let runs: Vec<_> = (1..=8).map(|seed| first_fresh(seed, 12)).collect();
    for (seed, r) in (1..=8).zip(&runs) {
        assert_eq!(*r, first_fresh(seed, 12), "seed {seed} repeats");
    }
    assert!(runs.iter().any(Option::is_some), "some seed applies early: {runs:?}");
    assert!(runs.windows(2).any(|w| w[0] != w[1]), "seeds differ: {runs:?}");
}

/// Submits `descs` without a wait descriptor and checks what `probe` sees against `stale`:
/// forgiving has carried them out when the queue read them; strict (at its sync) has not.
/// Then a wait descriptor completes them in both.
#[track_caller]
fn submit_then_wait<T: PartialEq + std::fmt::Debug>(
    vtd: &Vtd<&HostMemory>,
    descs: &[[u64; 4]],
    stale: T,
    probe: impl Fn() -> T,
) {
    submit(vtd, descs);
    let seen = probe();
    match vtd.params().profile {
        Profile::Forgiving => assert_ne!(seen, stale, "forgiving: done when read"),
        Profile::Strict(Apply::AtSync) => assert_eq!(seen, stale, "strict: held until the wait"),
        Profile::Strict(Apply::Seeded(_)) => {}
    }
    submit_and_wait(vtd, &[]);
}

#[test]
fn strict_holds_a_context_cache_invalidation_until_its_wait_descriptor() {
    for profile in BOTH {
        let t = sm();
        let vtd = t.unit(Pgtt::FirstStage, with_profile(profile));
        ok(&vtd, read(VA));
        // The bus's root entry goes (both context-table pointers not present).
        t.m.write(t.rta + 16 * u64::from(RID >> 8), [0u64, 0]);
        let served = || vtd.translate(&read(VA)).is_ok();
        submit_then_wait(&vtd, &[desc::cc_global()], true, served);
        assert_eq!(reason(&vtd, read(VA)), R::SmRootEntryNotPresent, "{profile}");
    }
}

// ---------------------------------------------------------------------------------------------
// Range invalidation: only the range's sets are searched, exactly the range goes
// ---------------------------------------------------------------------------------------------

/// The three ways a page-selective invalidation reaches the IOTLB: by register in legacy mode
/// and by descriptor on second-stage-only and first-stage PASID entries.
#[derive(Clone, Copy, Debug)]
enum PageSelective {
    LegacyRegister,
    SecondStageDescriptor,
    FirstStageDescriptor,
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Eight cached pages, one page-selective invalidation of `2^am` pages around page
    /// `first`, in IOTLBs of one set (every way in it), a few sets and many sets: exactly the
    /// pages in the aligned range walk again and the others still hit, whether the unit
    /// searched only the sets the range's keys hash to or (a range with more keys than the
    /// cache has sets, or second-stage entries tagged with PASIDs) every set.
    #[test]
    fn page_selective_invalidation_removes_exactly_its_range(
        way in proptest::sample::select(vec![
            PageSelective::LegacyRegister,
            PageSelective::SecondStageDescriptor,
            PageSelective::FirstStageDescriptor,
        ]),
        (sets, ways) in proptest::sample::select(vec![(1usize, 64usize), (4, 16), (128, 8)]),
        first in 0u64..8,
        am in 0u8..5,
        ih in proptest::prelude::any::<bool>(),
    ) {
        let geometry = CacheParams { iotlb: CacheGeometry::new(sets, ways), ..CacheParams::default() };
        let params = VtdParams { caches: geometry, ..VtdParams::default() };
        let (legacy, sm) = match way {
            PageSelective::LegacyRegister => (Some(legacy()), None),
            _ => (None, Some(sm())),
        };
        let (vtd, base, request): (_, u64, fn(u64) -> DmaRequest) = match way {
            PageSelective::LegacyRegister => {
                (legacy.as_ref().map(|t| t.unit(params)).unwrap(), GPA, legacy_read)
            }
            PageSelective::SecondStageDescriptor => {
                (sm.as_ref().map(|t| t.unit(Pgtt::SecondStage, params)).unwrap(), GPA, read)
            }
            PageSelective::FirstStageDescriptor => {
                (sm.as_ref().map(|t| t.unit(Pgtt::FirstStage, params)).unwrap(), VA, read)
            }
        };
        let page = |i: u64| base + (i << 12);
        for i in 0..8 {
            ok(&vtd, request(page(i)));
            proptest::prop_assert_eq!(reads(&vtd, request(page(i) + 8)), 0, "page {} cached", i);
        }
        let addr = page(first);
        let mut everything = false;
        match way {
            PageSelective::LegacyRegister => {
                // IAIG: the granularity the unit carried out (it may widen, §11.4.8).
                everything = iotlb_reg(&vtd, 3, DID, addr, am, ih) != 3;
            }
            PageSelective::SecondStageDescriptor => {
                submit_and_wait(&vtd, &[desc::iotlb_pages(DID, addr, am, ih)]);
            }
            PageSelective::FirstStageDescriptor => {
                submit_and_wait(&vtd, &[desc::piotlb_pages(DID, PASID, addr, am, ih)]);
            }
        }
        let range = |a: u64| a >> (12 + u32::from(am));
        for i in 0..8 {
            let inside = everything || range(page(i)) == range(addr);
            let walked = reads(&vtd, request(page(i) + 16)) > 0;
            proptest::prop_assert_eq!(walked, inside, "page {} (range of 2^{} pages at {:#x})", i, am, addr);
        }
    }
}

/// What a PASID of [`second_stage_pages_under_many_pasids`] translates with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tagged {
    /// PGTT second-stage only in DID: what the invalidation selects by page.
    SecondStage,
    /// PGTT second-stage only in OTHER_DID: never selected.
    OtherDomain,
    /// PGTT nested in DID: the domain's entries can no longer be named (every set).
    Nested,
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Scalable mode, one domain's second stage used through several PASIDs (RID_PASID among
    /// them; more than the unit keeps apart in some cases), maybe a nested PASID of the same
    /// domain and a PASID of another domain: each of eight pages cached under two of the
    /// PASIDs, then one page-selective IOTLB invalidation of the domain. Under every PASID
    /// exactly the domain's pages in the range walk again, and the other domain's still hit
    /// (the oracle: the range and the domain, nothing the unit keeps).
    #[test]
    fn second_stage_pages_under_many_pasids(
        tags in proptest::collection::vec(
            proptest::sample::select(vec![Tagged::SecondStage, Tagged::SecondStage, Tagged::OtherDomain, Tagged::Nested]),
            1..11,
        ),
        (sets, ways) in proptest::sample::select(vec![(1usize, 64usize), (4, 32), (128, 8)]),
        first in 0u64..8,
        am in 0u8..5,
        ih in proptest::prelude::any::<bool>(),
    ) {
        let mut t = sm();
        // PASID (RID_PASID) is the first, second-stage in DID; the others follow.
        let pasids: Vec<(u32, Tagged)> = std::iter::once((PASID, Tagged::SecondStage))
            .chain(tags.iter().enumerate().map(|(i, &k)| (0x400 + i as u32, k)))
            .collect();
        for &(pasid, kind) in pasids.iter().skip(1) {
            let mut pe = t.pe(if kind == Tagged::Nested { Pgtt::Nested } else { Pgtt::SecondStage });
            if kind == Tagged::OtherDomain {
                pe.set_did(OTHER_DID);
            }
            let dir = t.dir;
            t.m.pasid_entry(dir, pasid, pe);
        }
        let geometry = CacheParams { iotlb: CacheGeometry::new(sets, ways), ..CacheParams::default() };
        let vtd = t.unit(Pgtt::SecondStage, VtdParams { caches: geometry, ..VtdParams::default() });
        let request = |pasid: u32, kind: Tagged, addr: u64| {
            let input = if kind == Tagged::Nested { VA - GPA + addr } else { addr };
            let r = DmaRequest::new(RID, input, Access::READ);
            if pasid == PASID { r } else { r.with_pasid(pasid) }
        };
        let page = |i: u64| GPA + (i << 12);
        let n = pasids.len() as u64;
        let cached: Vec<(u64, u32, Tagged)> = (0..8u64)
            .flat_map(|i| [i % n, (i + 1) % n].map(|j| (i, pasids[j as usize])))
            .map(|(i, (pasid, kind))| (i, pasid, kind))
            .collect();
        for &(i, pasid, kind) in &cached {
            ok(&vtd, request(pasid, kind, page(i)));
        }
        for &(i, pasid, kind) in &cached {
            let warm = reads(&vtd, request(pasid, kind, page(i) + 8));
            proptest::prop_assert_eq!(warm, 0, "page {} at PASID {:#x} cached", i, pasid);
        }
        let addr = page(first);
        submit_and_wait(&vtd, &[desc::iotlb_pages(DID, addr, am, ih)]);
        // What the registry reports: a tag per second-stage PASID it keeps, and whether the
        // domain fell back to every set (a nested PASID, or more PASIDs than it keeps).
        let distinct = |want: Tagged| {
            let mut p: Vec<u32> =
                cached.iter().filter(|c| c.2 == want).map(|c| c.1).collect();
            p.sort_unstable();
            p.dedup();
            p.len()
        };
        let (ours, others) = (distinct(Tagged::SecondStage), distinct(Tagged::OtherDomain));
        let fell_back = distinct(Tagged::Nested) > 0 || ours > TAGS_PER_GROUP;
        let tags = vtd.cache_stats().tags;
        proptest::prop_assert_eq!(tags.fell_back, u64::from(fell_back), "{:?}", tags);
        proptest::prop_assert_eq!(tags.recorded, (ours.min(TAGS_PER_GROUP) + others) as u64);
        let range = |a: u64| a >> (12 + u32::from(am));
        for &(i, pasid, kind) in &cached {
            let walked = reads(&vtd, request(pasid, kind, page(i) + 16)) > 0;
            match kind {
                Tagged::SecondStage => {
                    let inside = range(page(i)) == range(addr);
                    proptest::prop_assert_eq!(walked, inside, "page {} at PASID {:#x}", i, pasid);
                }
                Tagged::OtherDomain => {
                    proptest::prop_assert!(!walked, "page {} of the other domain went", i);
                }
                // Forgiving removes every nested translation of the domain, strict those whose
                // guest-physical addresses meet the range: either may walk.
                Tagged::Nested => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The invalidation sanitizer (strict): a hit on an entry built from a word that changed since
// is a violation naming the command the driver owed. Each case runs a driver sequence with
// the invalidation (no violation in either profile), without it (stale in both; reported in
// strict only), and with it but no wait descriptor (forgiving is fresh; strict is stale and
// names the missing wait descriptor).
// ---------------------------------------------------------------------------------------------

use sviommu_vtd::hw::{Missing, Violation};

/// The one violation the unit reported since the last call, under strict; none under
/// forgiving.
#[track_caller]
fn reported(vtd: &Vtd<&HostMemory>) -> Option<Violation> {
    let mut v = vtd.violations();
    if !vtd.params().profile.is_strict() {
        assert!(v.is_empty(), "forgiving reports nothing: {v:?}");
        return None;
    }
    assert_eq!(v.len(), 1, "one violation: {v:?}");
    v.pop()
}

#[track_caller]
fn clean(vtd: &Vtd<&HostMemory>) {
    let v = vtd.violations();
    assert!(
        v.is_empty(),
        "no violation: {:#?}",
        v.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
}

/// How a case's driver finishes its change.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Driver {
    /// The invalidation and a wait descriptor.
    Invalidates,
    /// Nothing.
    Forgets,
    /// The invalidation, no wait descriptor.
    NoWait,
}

const DRIVERS: [Driver; 3] = [Driver::Invalidates, Driver::Forgets, Driver::NoWait];

/// Runs `descs` as `d` says, then translates with `probe`: the old result (`stale`) or the new
/// one; checks what each profile must see and report, and returns the violation.
#[track_caller]
fn case<T: PartialEq + std::fmt::Debug>(
    vtd: &Vtd<&HostMemory>,
    d: Driver,
    descs: &[[u64; 4]],
    stale: T,
    probe: impl Fn() -> T,
) -> Option<Violation> {
    let strict = vtd.params().profile.is_strict();
    match d {
        Driver::Invalidates => submit_and_wait(vtd, descs),
        Driver::Forgets => {}
        Driver::NoWait => submit(vtd, descs),
    }
    let seen = probe();
    let expect_stale = d == Driver::Forgets || (d == Driver::NoWait && strict);
    assert_eq!(seen == stale, expect_stale, "{d:?} under {}: saw {seen:?}", vtd.params().profile);
    if d == Driver::Invalidates {
        clean(vtd);
        return None;
    }
    let v = reported(vtd);
    if let Some(v) = &v {
        assert_eq!(v.unsynced, d == Driver::NoWait, "{v}");
    }
    v
}

#[test]
fn sanitizer_names_a_missing_pasid_based_iotlb_invalidation() {
    for (profile, d) in BOTH.into_iter().flat_map(|p| DRIVERS.map(|d| (p, d))) {
        let t = sm();
        let vtd = t.unit(Pgtt::FirstStage, with_profile(profile));
        let page = VA + 0x3000;
        // Twice: the second is a hit on an entry whose PTE the unit itself set A in.
        assert_eq!(ok(&vtd, read(page)).output, FS_OUT + 0x3000);
        assert_eq!(ok(&vtd, read(page)).reads, 0);
        clean(&vtd);
        let pte = entry_at(&t.m, t.fs.root, page, 3, host);
        let old = t.m.read(pte);
        repoint(&t.m, pte, MOVED);
        let inv = desc::piotlb_pages(DID, PASID, page, 0, true);
        let Some(v) = case(&vtd, d, &[inv], FS_OUT + 0x3000, || ok(&vtd, read(page)).output) else {
            continue;
        };
        assert_eq!(v.cache, "IOTLB");
        assert_eq!((v.word.addr, v.word.value & !0x60, v.now), (pte, old & !0x60, t.m.read(pte)));
        let want = Missing::PasidIotlbPages { did: DID, pasid: PASID, addr: page, am: 0 };
        assert_eq!(v.missing, want, "{v}");
    }
}

#[test]
fn sanitizer_names_the_right_address_when_the_driver_invalidates_another() {
    let t = sm();
    let vtd = t.unit(Pgtt::FirstStage, with_profile(Profile::STRICT));
    let page = VA + 0x3000;
    ok(&vtd, read(page));
    repoint(&t.m, entry_at(&t.m, t.fs.root, page, 3, host), MOVED);
    // The wrong page, and the right page in the wrong PASID.
    let wrong = [
        desc::piotlb_pages(DID, PASID, page + 0x1000, 0, true),
        desc::piotlb_pages(DID, OTHER_PASID, page, 0, true),
    ];
    submit_and_wait(&vtd, &wrong);
    assert_eq!(ok(&vtd, read(page)).output, FS_OUT + 0x3000, "stale");
    let v = reported(&vtd).unwrap();
    assert!(!v.unsynced);
    assert_eq!(v.missing, Missing::PasidIotlbPages { did: DID, pasid: PASID, addr: page, am: 0 });
    let text = v.to_string();
    assert!(
        text.contains("PASID-based IOTLB invalidation") && text.contains("ADDR 0x40003000"),
        "{text}"
    );
    // Reported once per entry; the right command then clears it.
    ok(&vtd, read(page));
    assert_eq!(vtd.sanitizer_stats().violations, 1);
    submit_and_wait(&vtd, &[desc::piotlb_pages(DID, PASID, page, 0, true)]);
    assert_eq!(ok(&vtd, read(page)).output, MOVED);
    clean(&vtd);
}

#[test]
fn sanitizer_names_a_missing_pasid_cache_invalidation() {
    for (profile, d) in BOTH.into_iter().flat_map(|p| DRIVERS.map(|d| (p, d))) {
        let t = sm();
        let vtd = t.unit(Pgtt::FirstStage, with_profile(profile));
        ok(&vtd, read(VA));
        let mut gone = t.pe(Pgtt::FirstStage);
        gone.set_p(false);
        t.set_pe(gone);
        let descs = [desc::pc_pasid(DID, PASID), desc::piotlb_pasid(DID, PASID)];
        let served = || vtd.translate(&read(VA)).is_ok();
        let Some(v) = case(&vtd, d, &descs, true, served) else { continue };
        assert_eq!(v.cache, "PASID cache", "{v}");
        assert_eq!(v.word.addr, t.pe_at, "{v}");
        assert_eq!(v.missing, Missing::PasidCache { did: Some(DID), pasid: PASID }, "{v}");
    }
}

#[test]
fn sanitizer_names_a_missing_context_cache_invalidation() {
    for (profile, d) in BOTH.into_iter().flat_map(|p| DRIVERS.map(|d| (p, d))) {
        let t = sm();
        let vtd = t.unit(Pgtt::FirstStage, with_profile(profile));
        ok(&vtd, read(VA));
        // The bus's root entry goes: the context entry was built from its lower half.
        let re_at = t.rta + 16 * u64::from(RID >> 8);
        t.m.write(re_at, [0u64, 0]);
        let served = || vtd.translate(&read(VA)).is_ok();
        let Some(v) = case(&vtd, d, &[desc::cc_device(0, RID, 0)], true, served) else {
            continue;
        };
        assert_eq!((v.cache, v.word.addr, v.now), ("context cache", re_at, 0), "{v}");
        assert_eq!(v.missing, Missing::ContextCache { sid: RID, did: None }, "{v}");
    }
}

#[test]
fn sanitizer_ignores_the_root_entry_half_another_device_uses() {
    let mut t = sm();
    let table = t.m.page();
    let vtd = t.unit(Pgtt::FirstStage, with_profile(Profile::STRICT));
    ok(&vtd, read(VA));
    // The upper half (devfns 128..255) changes: RID's context entry did not use it.
    let re_at = t.rta + 16 * u64::from(RID >> 8);
    t.m.write(re_at + 8, [table | 1]);
    assert_eq!(ok(&vtd, read(VA)).output, FS_OUT);
    clean(&vtd);
}

#[test]
fn sanitizer_names_a_missing_page_selective_iotlb_invalidation_of_a_second_stage() {
    for (profile, d) in BOTH.into_iter().flat_map(|p| DRIVERS.map(|d| (p, d))) {
        let t = sm();
        let vtd = t.unit(Pgtt::SecondStage, with_profile(profile));
        let page = GPA + 0x2000;
        ok(&vtd, read(page));
        let pte = entry_at(&t.m, t.ss.root, page, 3, host);
        repoint(&t.m, pte, MOVED);
        let inv = desc::iotlb_pages(DID, page, 0, true);
        let Some(v) = case(&vtd, d, &[inv], SS_OUT + 0x2000, || ok(&vtd, read(page)).output) else {
            continue;
        };
        assert_eq!((v.cache, v.word.addr), ("IOTLB", pte), "{v}");
        assert_eq!(v.missing, Missing::IotlbPages { did: DID, addr: page, am: 0 }, "{v}");
    }
}

#[test]
fn sanitizer_names_the_guest_physical_page_of_a_nested_translation() {
    for (profile, d) in BOTH.into_iter().flat_map(|p| DRIVERS.map(|d| (p, d))) {
        let t = sm();
        let vtd = t.unit(Pgtt::Nested, with_profile(profile));
        let page = VA + 0x3000;
        let gpa = GPA_OUT + 0x3000;
        ok(&vtd, read(page));
        // The host moves the guest's 2M page: its second-stage leaf (a PDE) changes.
        let pte = entry_at(&t.m, t.ss.root, gpa, 2, host);
        repoint(&t.m, pte, MOVED);
        let inv = desc::iotlb_pages(DID, gpa, 0, true);
        let stale = GUEST_RAM_HPA + gpa;
        let Some(v) = case(&vtd, d, &[inv], stale, || ok(&vtd, read(page)).output) else {
            continue;
        };
        assert_eq!((v.cache, v.word.addr), ("IOTLB", pte), "{v}");
        // A range of the guest physical addresses the entry used, this page among them.
        let Missing::IotlbPages { did, addr, am } = v.missing else { panic!("{v}") };
        assert!(did == DID && addr <= gpa && gpa - addr < 0x1000 << am, "{v}");
    }
}

#[test]
fn sanitizer_names_a_missing_paging_structure_invalidation() {
    // The first-stage paging-structure cache (IH set: leaves only, so the table stays).
    for (profile, d) in BOTH.into_iter().flat_map(|p| DRIVERS.map(|d| (p, d))) {
        let mut t = sm();
        t.set_pe(t.pe(Pgtt::FirstStage));
        let vtd = start(&t.m.mem, t.rta, Ttm::Scalable, with_profile(profile));
        ok(&vtd, read(VA));
        // The driver moves the page table (a copy in which VA + 5000h goes elsewhere).
        let pde_at = entry_at(&t.m, t.fs.root, VA, 2, host);
        let old_pt = t.m.read(pde_at) & ENTRY_ADDR;
        let new_pt = page(&mut t.m.frames, &t.m.mem);
        copy_page(&t.m, old_pt, new_pt);
        repoint(&t.m, new_pt + 8 * 5, MOVED);
        repoint(&t.m, pde_at, new_pt);
        let target = VA + 0x5000;
        let inv = desc::piotlb_pages(DID, PASID, VA, 9, false);
        let stale = FS_OUT + 0x5000;
        let Some(v) = case(&vtd, d, &[inv], stale, || ok(&vtd, read(target)).output) else {
            continue;
        };
        assert_eq!((v.cache, v.word.addr), ("first-stage paging-structure cache", pde_at), "{v}");
        assert_eq!(
            v.missing,
            Missing::PasidIotlbPages { did: DID, pasid: PASID, addr: VA, am: 9 },
            "{v}"
        );
    }
}

#[test]
fn sanitizer_under_caching_mode_blames_second_stage_holes_not_first_stage_ones() {
    let mut t = sm();
    t.set_pe(t.pe(Pgtt::SecondStage));
    let cm_strict = params(|p| {
        p.cap = cap::CM.with(p.cap, true);
        p.profile = Profile::STRICT;
    });
    let vtd = start(&t.m.mem, t.rta, Ttm::Scalable, cm_strict);
    let hole = GPA + 0x10_0000;
    assert_eq!(reason(&vtd, read(hole)), R::SmSsEntryNotPresent);
    let rw = VtdSsAttrs { exec: false, ..VtdSsAttrs::ALL };
    t.ss.map(&t.m.mem, &mut t.m.frames, hole, MOVED, 12, rw).unwrap();
    assert_eq!(reason(&vtd, read(hole)), R::SmSsEntryNotPresent, "the cached not-present");
    let v = reported(&vtd).unwrap();
    assert_eq!(v.missing, Missing::IotlbPages { did: DID, addr: hole, am: 0 }, "{v}");
    assert_eq!(v.word.value, 0, "it was not present");

    // First stage: not present -> present needs no invalidation under CM (§6.1).
    let hole = VA + 0x10_0000;
    t.set_pe(t.pe(Pgtt::FirstStage));
    let vtd = start(&t.m.mem, t.rta, Ttm::Scalable, cm_strict);
    assert_eq!(reason(&vtd, read(hole)), R::SmFsEntryNotPresent);
    t.fs.map(&t.m.mem, &mut t.m.frames, hole, MOVED, 12, X86Attrs::ALL).unwrap();
    assert_eq!(ok(&vtd, read(hole)).output, MOVED);
    assert_eq!(ok(&vtd, read(hole)).output, MOVED);
    clean(&vtd);
}

#[test]
fn sanitizer_reads_are_not_the_translations_reads() {
    let t = sm();
    let vtd = t.unit(Pgtt::FirstStage, with_profile(Profile::STRICT));
    let cold = ok(&vtd, read(VA));
    let warm = ok(&vtd, read(VA));
    assert_eq!((cold.reads, warm.reads), (2 + 2 + 4, 0), "as forgiving counts them");
    // The hit re-read the four first-stage entries the IOTLB entry was built from, and the
    // context and PASID entries' words.
    let s = vtd.sanitizer_stats();
    assert!(s.reads >= 4, "{s:?}");
    assert_eq!((s.violations, s.dropped), (0, 0));
    let forgiving = t.unit(Pgtt::FirstStage, VtdParams::default());
    ok(&forgiving, read(VA));
    ok(&forgiving, read(VA));
    assert_eq!(forgiving.sanitizer_stats(), Default::default(), "forgiving re-reads nothing");
}
