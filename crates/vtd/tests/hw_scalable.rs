//! Scalable mode (RTADDR_REG.TTM = 01b, §3.4.3): root, context, PASID-directory and PASID-table
//! entries written with the spec setters or as raw words, page tables built with pgtable,
//! translation turned on by raw MMIO writes. Every PGTT, requests with and without PASID, and a
//! test named after every scalable-mode fault reason the model produces.

mod common;

use common::*;
use sviommu_memory::{Gpa, HostMemory, PhysMemory};
use sviommu_pgtable::vtd_ss::{self, VtdSecondStage, VtdSsAttrs};
use sviommu_pgtable::x86::{self, X86Attrs, X86Paging};
use sviommu_pgtable::{Access, Build, Perms, Walk};
use sviommu_vtd::hw::{CacheParams, DmaRequest, Vtd, VtdParams};
use sviommu_vtd::spec::pasid::{Fspm, PasidDirEntry, PasidEntry, Pgtt};
use sviommu_vtd::spec::regs::{cap, ecap, rtaddr::Ttm};
use sviommu_vtd::spec::root::{ScalableContextEntry, ScalableRootEntry};
use sviommu_vtd::spec::{Aw, FaultReason as R};

/// Bus 3, device 2, function 0 (lower context table).
const RID: u16 = 0x0310;
/// Bus 3, devfn 0x90 (upper context table).
const RID_UPPER: u16 = 0x0390;
/// Directory index 0x0d, table index 5.
const PASID: u32 = 0x345;

// First-stage input addresses (the same for host-owned and guest-owned first stages).
/// User, read-write-execute.
const VA: u64 = 0x4000_0000;
/// User, read-only.
const VA_RO: u64 = 0x4000_1000;
/// Supervisor-only, read-write.
const VA_SUP: u64 = 0x4000_2000;
/// User, no-execute.
const VA_NX: u64 = 0x4000_3000;
/// Maps to the interrupt address range.
const VA_TO_INT: u64 = 0x4000_4000;
/// In the interrupt address range itself, mapped to ordinary memory.
const VA_INT: u64 = 0xfee0_0000;
/// A 2M first-stage page.
const VA_2M: u64 = 0x4020_0000;

/// Where first-stage-only tables send VA (HPA), and nested ones (GPA, inside guest RAM).
const FS_OUT: u64 = 0x5000_0000;
const GPA_OUT: u64 = 0x80_0000;

// Second-stage-only inputs (GPAs); guest RAM [0, 16M) is mapped too, with 2M pages.
/// Read-only 4K page.
const GPA_RO: u64 = 0x200_0000;
/// Write-only 4K page.
const GPA_WO: u64 = 0x200_1000;
const SS_OUT: u64 = 0x6000_0000;
/// Just past guest RAM; the second stage maps it into the interrupt range.
const GPA_TO_INT: u64 = 0x100_0000;

struct Sm {
    m: Machine,
    rta: u64,
    dir: u64,
    ce_at: u64,
    pe_at: u64,
    /// First stage in host memory (PGTT first-stage only).
    fs: X86Paging,
    /// First stage in guest RAM (PGTT nested).
    gfs: X86Paging,
    /// Second stage (PGTT second-stage only and nested).
    ss: VtdSecondStage,
}

fn context(dir: u64) -> ScalableContextEntry {
    let mut ce = ScalableContextEntry::default();
    ce.set_p(true);
    ce.set_paside(true);
    ce.set_pdts(0);
    ce.set_pasiddirptr(dir);
    ce
}

fn fs_map(m: &mut Machine, fs: &X86Paging, guest: bool, out: u64) {
    let sup = X86Attrs { user: false, ..X86Attrs::ALL };
    let nx = X86Attrs { exec: false, ..X86Attrs::ALL };
    let ro = X86Attrs { exec: true, ..X86Attrs::READ_ONLY };
    let maps = [
        (VA, out, 12, X86Attrs::ALL),
        (VA_RO, out + 0x1000, 12, ro),
        (VA_SUP, out + 0x2000, 12, sup),
        (VA_NX, out + 0x3000, 12, nx),
        (VA_INT, out + 0x4000, 12, X86Attrs::ALL),
        (VA_2M, out + 0x20_0000, 21, X86Attrs::ALL),
    ];
    for (va, pa, lg2, attrs) in maps {
        if guest {
            let ram = guest_ram(&m.mem);
            fs.map(&ram, &mut m.guest_frames, va, pa, lg2, attrs).unwrap();
        } else {
            fs.map(&m.mem, &mut m.frames, va, pa, lg2, attrs).unwrap();
        }
    }
    if guest {
        // Nested: a GPA the second stage maps into the interrupt range.
        let ram = guest_ram(&m.mem);
        fs.map(&ram, &mut m.guest_frames, VA_TO_INT, GPA_TO_INT, 12, X86Attrs::ALL).unwrap();
    } else {
        fs.map(&m.mem, &mut m.frames, VA_TO_INT, 0xfee0_0000, 12, X86Attrs::ALL).unwrap();
    }
}

/// Tables for every PGTT; RID's context entry and PASID's (first-stage only) entry in place.
fn sm() -> Sm {
    let mut m = Machine::new();
    let rta = m.page();
    let dir = m.page();
    let ss = m.ss(vtd_ss::Levels::Four);
    m.map_guest_ram(&ss, VtdSsAttrs { exec: false, ..VtdSsAttrs::ALL });
    ss.map(&m.mem, &mut m.frames, GPA_RO, SS_OUT, 12, VtdSsAttrs::READ_ONLY).unwrap();
    let wo = VtdSsAttrs { read: false, write: true, exec: false, snoop: false };
    ss.map(&m.mem, &mut m.frames, GPA_WO, SS_OUT + 0x1000, 12, wo).unwrap();
    // Nested: GPA 16M (just past guest RAM) lands in the interrupt range.
    ss.map(&m.mem, &mut m.frames, GPA_TO_INT, 0xfee0_0000, 12, VtdSsAttrs::ALL).unwrap();
    let fs = m.fs(x86::Levels::Four);
    fs_map(&mut m, &fs, false, FS_OUT);
    let gfs = m.guest_fs(x86::Levels::Four);
    fs_map(&mut m, &gfs, true, GPA_OUT);
    let ce_at = m.sm_context(rta, RID, context(dir));
    let mut t = Sm { m, rta, dir, ce_at, pe_at: 0, fs, gfs, ss };
    let pe = t.pe(Pgtt::FirstStage);
    t.pe_at = t.m.pasid_entry(dir, PASID, pe);
    t
}

impl Sm {
    /// A PASID-table entry for `pgtt` over this setup's tables: SRE, ERE, NXE and WPE set.
    fn pe(&self, pgtt: Pgtt) -> PasidEntry {
        let mut pe = PasidEntry::default();
        pe.set_p(true);
        pe.set_pgtt(pgtt);
        pe.set_did(9);
        pe.set_sre(true);
        pe.set_ere(true);
        pe.set_nxe(true);
        pe.set_wpe(true);
        match pgtt {
            Pgtt::FirstStage => {
                pe.set_fspm(Fspm::FourLevel);
                pe.set_fsptptr(self.fs.root);
            }
            Pgtt::SecondStage => {
                pe.set_aw(Aw::Bits48);
                pe.set_ssptptr(self.ss.root);
            }
            Pgtt::Nested => {
                pe.set_fspm(Fspm::FourLevel);
                pe.set_fsptptr(self.gfs.root);
                pe.set_aw(Aw::Bits48);
                pe.set_ssptptr(self.ss.root);
            }
            Pgtt::PassThrough => {}
        }
        pe
    }

    fn set_pe(&self, pe: PasidEntry) {
        self.m.write(self.pe_at, pe.words());
    }

    fn set_ce(&self, ce: ScalableContextEntry) {
        self.m.write(self.ce_at, ce.words());
    }

    fn on(&self, params: VtdParams) -> Vtd<&HostMemory> {
        let vtd = unit(&self.m, params);
        enable(&vtd, self.rta, Ttm::Scalable);
        vtd
    }

    fn with(&self, pgtt: Pgtt) -> Vtd<&HostMemory> {
        self.set_pe(self.pe(pgtt));
        self.on(VtdParams::default())
    }

    /// A unit without caches, so every translation reads every structure and entry (the
    /// cached counts are hw_cache's).
    fn cold(&self, pgtt: Pgtt) -> Vtd<&HostMemory> {
        self.set_pe(self.pe(pgtt));
        self.on(VtdParams { caches: CacheParams::NONE, ..VtdParams::default() })
    }

    fn root_entry_at(&self) -> u64 {
        self.rta + 16 * 3
    }

    fn dir_entry_at(&self) -> u64 {
        self.dir + 8 * 0x0d
    }
}

fn params(f: impl FnOnce(&mut VtdParams)) -> VtdParams {
    let mut p = VtdParams::default();
    f(&mut p);
    p
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

// ---------------------------------------------------------------------------------------------
// Translations, one PGTT at a time
// ---------------------------------------------------------------------------------------------

#[test]
fn first_stage_only_translates_and_counts_every_read() {
    let t = sm();
    let vtd = t.cold(Pgtt::FirstStage);
    let tr = ok(&vtd, write(VA + 0x123));
    assert_eq!((tr.output, tr.page_lg2, tr.interrupt), (FS_OUT + 0x123, 12, false));
    // Root, context, PASID directory and PASID-table entries, then PML4E, PDPTE, PDE, PTE.
    assert_eq!(tr.reads, 8);
    assert_eq!(tr.perms, Perms::ALL);
    let tr = ok(&vtd, read(VA_2M + 0x1_2345));
    assert_eq!((tr.output, tr.page_lg2, tr.reads), (FS_OUT + 0x21_2345, 21, 7));
    // The walk set A (and D, for the write) in the leaf, as the hardware does.
    let (pte_at, pte) = leaf_of(&t.m, &t.fs, VA);
    assert_eq!(pte & 0x60, 0x60, "A and D in the PTE at {pte_at:#x}");
}

/// The PTE mapping `va` in host-memory first-stage tables, and its address.
fn leaf_of(m: &Machine, fs: &X86Paging, va: u64) -> (u64, u64) {
    let mut table = fs.root;
    for shift in [39, 30, 21] {
        table = m.read(table + 8 * ((va >> shift) & 0x1ff)) & 0x000f_ffff_ffff_f000;
    }
    let at = table + 8 * ((va >> 12) & 0x1ff);
    (at, m.read(at))
}

#[test]
fn first_stage_five_level() {
    let mut t = sm();
    let fs5 = t.m.fs(x86::Levels::Five);
    let va = 0x00ff_0000_0000_1000; // bit 55: beyond 4-level paging, canonical for 5-level
    fs5.map(&t.m.mem, &mut t.m.frames, va, FS_OUT, 12, X86Attrs::ALL).unwrap();
    let mut pe = t.pe(Pgtt::FirstStage);
    pe.set_fspm(Fspm::FiveLevel);
    pe.set_fsptptr(fs5.root);
    t.set_pe(pe);
    let vtd = t.on(VtdParams::default());
    let tr = ok(&vtd, read(va + 8));
    assert_eq!((tr.output, tr.reads), (FS_OUT + 8, 9));
}

#[test]
fn second_stage_only_translates() {
    let t = sm();
    let vtd = t.cold(Pgtt::SecondStage);
    let tr = ok(&vtd, write(GPA_OUT + 0x10));
    assert_eq!((tr.output, tr.page_lg2), (GUEST_RAM_HPA + GPA_OUT + 0x10, 21));
    // Four structure reads and three second-stage entries (a 2M page).
    assert_eq!(tr.reads, 7);
    let tr = ok(&vtd, read(GPA_RO));
    assert_eq!((tr.output, tr.page_lg2, tr.reads), (SS_OUT, 12, 8));
    assert_eq!(tr.perms, Perms::rwx(true, false, true));
}

#[test]
fn nested_reads_every_first_stage_table_through_the_second_stage() {
    let t = sm();
    let vtd = t.cold(Pgtt::Nested);
    let tr = ok(&vtd, write(VA + 0x123));
    assert_eq!((tr.output, tr.page_lg2), (GUEST_RAM_HPA + GPA_OUT + 0x123, 12));
    // Four structures; each of the four first-stage entries costs a three-entry second-stage
    // walk (guest RAM is mapped with 2M pages) plus itself; the output one more walk.
    assert_eq!(tr.reads, 4 + 4 * (3 + 1) + 3);
    // A first-stage 2M page over second-stage 2M pages is a 2M translation.
    let tr = ok(&vtd, read(VA_2M + 0x1_2345));
    assert_eq!((tr.output, tr.page_lg2), (GUEST_RAM_HPA + GPA_OUT + 0x21_2345, 21));
    assert_eq!(tr.reads, 4 + 3 * (3 + 1) + 3);
    // The first stage's A/D bits were written through the second stage, in guest RAM.
    let ram = guest_ram(&t.m.mem);
    let w = t.gfs.translate(&ram, VA, Access::READ);
    assert!(w.outcome.unwrap().dirty, "D set in the guest's PTE");
}

#[test]
fn pass_through_outputs_the_input() {
    let t = sm();
    let vtd = t.with(Pgtt::PassThrough);
    let tr = ok(&vtd, write(0x1234_5678));
    assert_eq!((tr.output, tr.reads, tr.perms), (0x1234_5678, 4, Perms::ALL));
}

#[test]
fn the_upper_context_table_serves_devfn_128_and_up() {
    let mut t = sm();
    let ce = context(t.dir);
    t.m.sm_context(t.rta, RID_UPPER, ce);
    let vtd = t.with(Pgtt::FirstStage);
    let tr = ok(&vtd, DmaRequest::new(RID_UPPER, VA, Access::READ).with_pasid(PASID));
    assert_eq!(tr.output, FS_OUT);
    let re = t.m.read(t.root_entry_at() + 8);
    assert!(ScalableRootEntry::from_words([0, re]).up());
}

// ---------------------------------------------------------------------------------------------
// Requests without PASID, privilege, execute, the interrupt range
// ---------------------------------------------------------------------------------------------

#[test]
fn requests_without_pasid_use_rid_pasid() {
    let t = sm();
    // RID_PASID = 0 (the default) has no entry yet: the PASID table at directory index 0 is
    // not present.
    let vtd = t.with(Pgtt::FirstStage);
    assert_eq!(reason(&vtd, DmaRequest::new(RID, VA, Access::READ)), R::SmPasidDirEntryNotPresent);
    // RID_PASID = PASID: translated as PASID's requests are, without PASIDE.
    let mut ce = context(t.dir);
    ce.set_rid_pasid(PASID);
    ce.set_paside(false);
    t.set_ce(ce);
    // The unit caches context and PASID entries: software invalidates after changing them.
    invalidate_all(&vtd);
    let tr = ok(&vtd, DmaRequest::new(RID, VA, Access::WRITE));
    assert_eq!(tr.output, FS_OUT);
    // A request without PASID is a user request: the supervisor page is out of reach...
    assert_eq!(reason(&vtd, DmaRequest::new(RID, VA_SUP, Access::READ)), R::SmUserAccessDenied);
    // ...and never an execute or privileged one, whatever the device says.
    let tr = ok(&vtd, DmaRequest::new(RID, VA_NX, Access::EXEC.privileged()));
    assert_eq!(tr.output, FS_OUT + 0x3000);
    // RID_PRIV makes it a supervisor request.
    ce.set_rid_priv(true);
    t.set_ce(ce);
    invalidate_all(&vtd);
    assert_eq!(ok(&vtd, DmaRequest::new(RID, VA_SUP, Access::READ)).output, FS_OUT + 0x2000);
}

#[test]
fn supervisor_requests_reach_supervisor_pages() {
    let t = sm();
    let vtd = t.with(Pgtt::FirstStage);
    let tr = ok(&vtd, req(VA_SUP, Access::WRITE.privileged()));
    assert_eq!(tr.output, FS_OUT + 0x2000);
    assert_eq!(tr.perms, Perms::PRIV_R.union(Perms::PRIV_W).union(Perms::PRIV_X));
    // WPE: a supervisor write to a read-only page faults.
    assert_eq!(reason(&vtd, req(VA_RO, Access::WRITE.privileged())), R::SmWriteDenied);
    let mut pe = t.pe(Pgtt::FirstStage);
    pe.set_wpe(false);
    t.set_pe(pe);
    invalidate_all(&vtd);
    assert_eq!(ok(&vtd, req(VA_RO, Access::WRITE.privileged())).output, FS_OUT + 0x1000);
}

#[test]
fn sre_and_ere_restrict_the_translations_rights() {
    let t = sm();
    let mut pe = t.pe(Pgtt::SecondStage);
    pe.set_sre(false);
    pe.set_ere(false);
    t.set_pe(pe);
    let vtd = t.on(VtdParams::default());
    let tr = ok(&vtd, read(GPA_OUT));
    assert_eq!(tr.perms, Perms::USER_R.union(Perms::USER_W));
}

#[test]
fn execute_requests_where_the_entry_allows_them() {
    let t = sm();
    let vtd = t.with(Pgtt::FirstStage);
    assert_eq!(ok(&vtd, req(VA, Access::EXEC)).output, FS_OUT);
    // Without NXE the XD bit is reserved, so a no-execute page is malformed, not denied.
    let mut pe = t.pe(Pgtt::FirstStage);
    pe.set_nxe(false);
    t.set_pe(pe);
    invalidate_all(&vtd);
    assert_eq!(reason(&vtd, req(VA_NX, Access::EXEC)), R::SmFsEntryReserved);
}

#[test]
fn interrupt_range_requests_without_pasid_are_interrupts_with_pasid_they_are_dma() {
    let t = sm();
    let vtd = t.with(Pgtt::FirstStage);
    let tr = ok(&vtd, DmaRequest::new(RID, VA_INT + 4, Access::WRITE));
    assert!(tr.interrupt);
    assert_eq!((tr.output, tr.reads), (VA_INT + 4, 0));
    // With PASID the address is translated like any other.
    let tr = ok(&vtd, write(VA_INT + 4));
    assert!(!tr.interrupt);
    assert_eq!(tr.output, FS_OUT + 0x4004);
}

// ---------------------------------------------------------------------------------------------
// Root entry (38h–3Ah)
// ---------------------------------------------------------------------------------------------

#[test]
fn fault_38_root_entry_access() {
    let t = sm();
    let vtd = unit(&t.m, VtdParams::default());
    enable(&vtd, HOLE, Ttm::Scalable);
    assert_eq!(reason(&vtd, read(VA)), R::SmRootEntryAccess);
}

#[test]
fn fault_39_root_entry_not_present() {
    let t = sm();
    let vtd = t.with(Pgtt::FirstStage);
    // Another bus; then the upper half of this bus, whose lower half is present.
    let f = fault(&vtd, DmaRequest::new(0x0410, VA, Access::READ).with_pasid(PASID));
    assert_eq!((f.reason, f.fpd), (R::SmRootEntryNotPresent, false));
    let upper = DmaRequest::new(RID_UPPER, VA, Access::READ).with_pasid(PASID);
    assert_eq!(reason(&vtd, upper), R::SmRootEntryNotPresent);
}

#[test]
fn fault_3a_root_entry_reserved_in_the_half_used() {
    let t = sm();
    let at = t.root_entry_at();
    let good = [t.m.read(at), t.m.read(at + 8)];
    let vtd = t.on(VtdParams { haw: 39, ..VtdParams::default() });
    // Bit 1 and an LCTP bit above HAW are the lower half's.
    for (word, bit) in [(0, 1), (0, 11), (0, 40)] {
        let mut w = good;
        w[word] |= 1 << bit;
        t.m.write(at, w);
        assert_eq!(reason(&vtd, read(VA)), R::SmRootEntryReserved, "bit {bit} of word {word}");
    }
    // Bit 65 is the upper half's (made present here): the lower half's devfns do not see it.
    let mut w = good;
    w[1] |= 1 << 1 | 1;
    t.m.write(at, w);
    assert_eq!(ok(&vtd, read(VA)).output, FS_OUT);
    let upper = DmaRequest::new(RID_UPPER, VA, Access::READ).with_pasid(PASID);
    assert_eq!(reason(&vtd, upper), R::SmRootEntryReserved);
}

// ---------------------------------------------------------------------------------------------
// Context entry (40h–48h)
// ---------------------------------------------------------------------------------------------

#[test]
fn fault_40_context_entry_access() {
    let t = sm();
    let mut re = ScalableRootEntry::default();
    re.set_lp(true);
    re.set_lctp(HOLE);
    t.m.write(t.root_entry_at(), re.words());
    let vtd = t.with(Pgtt::FirstStage);
    assert_eq!(reason(&vtd, read(VA)), R::SmContextEntryAccess);
}

#[test]
fn fault_41_context_entry_not_present_and_its_fpd() {
    let t = sm();
    let vtd = t.with(Pgtt::FirstStage);
    let f = fault(&vtd, DmaRequest::new(RID + 1, VA, Access::READ).with_pasid(PASID));
    assert_eq!((f.reason, f.fpd), (R::SmContextEntryNotPresent, false));
    let mut ce = ScalableContextEntry::default();
    ce.set_fpd(true);
    t.set_ce(ce);
    let f = fault(&vtd, read(VA));
    assert_eq!((f.reason, f.fpd), (R::SmContextEntryNotPresent, true));
}

#[test]
fn fault_42_context_entry_reserved() {
    let t = sm();
    let good = context(t.dir).words();
    let vtd = t.on(VtdParams { haw: 39, ..VtdParams::default() });
    t.set_pe(t.pe(Pgtt::FirstStage));
    // Bit 5, bit 85, bit 128, bit 255, a PASIDDIRPTR bit above HAW.
    for (word, bit) in [(0, 5), (1, 21), (2, 0), (3, 63), (0, 39)] {
        let mut w = good;
        w[word] |= 1 << bit;
        t.set_ce(ScalableContextEntry::from_words(w));
        assert_eq!(reason(&vtd, read(VA)), R::SmContextEntryReserved, "bit {bit} of word {word}");
    }
}

#[test]
fn fault_43_context_entry_invalid() {
    let t = sm();
    t.set_pe(t.pe(Pgtt::FirstStage));
    let base = context(t.dir);
    let with = |f: fn(&mut ScalableContextEntry)| {
        let mut c = base;
        f(&mut c);
        c
    };
    let cases = [
        (
            "PRE without ECAP.PRS",
            with(|c| c.set_pre(true)),
            params(|p| p.ecap = ecap::PRS.with(p.ecap, false)),
        ),
        (
            "DTE without ECAP.DT",
            with(|c| c.set_dte(true)),
            params(|p| p.ecap = ecap::DT.with(p.ecap, false)),
        ),
        (
            "RID_PRIV without ECAP.RPRIVS",
            with(|c| c.set_rid_priv(true)),
            params(|p| p.ecap = ecap::RPRIVS.with(p.ecap, false)),
        ),
        ("PASIDE without ECAP.PASID", base, params(|p| p.ecap = ecap::PASID.with(p.ecap, false))),
    ];
    for (what, ce, p) in cases {
        t.set_ce(ce);
        let vtd = t.on(p);
        assert_eq!(reason(&vtd, read(VA)), R::SmContextEntryInvalid, "{what}");
    }
}

#[test]
fn fault_45_context_entry_paside_clear() {
    let t = sm();
    let mut ce = context(t.dir);
    ce.set_paside(false);
    t.set_ce(ce);
    let vtd = t.with(Pgtt::FirstStage);
    assert_eq!(reason(&vtd, read(VA)), R::SmContextPasideClear);
}

#[test]
fn fault_46_pasid_beyond_directory() {
    let t = sm();
    let vtd = t.with(Pgtt::FirstStage);
    // PDTS = 0: 128 directory entries, PASIDs 0 to 0x1fff.
    assert_eq!(reason(&vtd, read(VA).with_pasid(0x2000)), R::SmPasidBeyondDirectory);
    assert_eq!(reason(&vtd, read(VA).with_pasid(1 << 20)), R::SmPasidBeyondDirectory);
    // RID_PASID beyond the directory, for a request without PASID.
    let mut ce = context(t.dir);
    ce.set_rid_pasid(0x2000);
    t.set_ce(ce);
    invalidate_all(&vtd);
    assert_eq!(reason(&vtd, DmaRequest::new(RID, VA, Access::READ)), R::SmPasidBeyondDirectory);
    // PDTS = 1 doubles the directory: 0x2000 reaches a (not present) directory entry.
    ce.set_pdts(1);
    t.set_ce(ce);
    invalidate_all(&vtd);
    assert_eq!(reason(&vtd, read(VA).with_pasid(0x2000)), R::SmPasidDirEntryNotPresent);
}

#[test]
fn fault_48_rid_pasid_invalid() {
    let t = sm();
    let mut ce = context(t.dir);
    ce.set_rid_pasid(PASID);
    t.set_ce(ce);
    t.set_pe(t.pe(Pgtt::FirstStage));
    let no_pasid = DmaRequest::new(RID, VA, Access::READ);
    // RID_PASID other than 0 without ECAP.RPS.
    let vtd = t.on(params(|p| p.ecap = ecap::RPS.with(p.ecap, false)));
    assert_eq!(reason(&vtd, no_pasid), R::SmRidPasidInvalid);
    // A RID_PASID wider than the unit's PASIDs (PSS + 1 = 8 bits).
    let vtd = t.on(params(|p| p.ecap = ecap::PSS.set(p.ecap, 7)));
    assert_eq!(reason(&vtd, no_pasid), R::SmRidPasidInvalid);
    // Requests with PASID do not use RID_PASID.
    assert_eq!(ok(&vtd, read(VA)).output, FS_OUT);
}

// ---------------------------------------------------------------------------------------------
// PASID directory entry (50h–52h) and PASID-table entry (58h–5Dh)
// ---------------------------------------------------------------------------------------------

#[test]
fn fault_50_pasid_directory_entry_access() {
    let t = sm();
    let mut ce = context(HOLE);
    ce.set_fpd(true);
    t.set_ce(ce);
    let vtd = t.with(Pgtt::FirstStage);
    let f = fault(&vtd, read(VA));
    // The context entry was read, so its FPD covers the fault.
    assert_eq!((f.reason, f.fpd), (R::SmPasidDirEntryAccess, true));
}

#[test]
fn fault_51_pasid_directory_entry_not_present() {
    let t = sm();
    let vtd = t.with(Pgtt::FirstStage);
    // PASID 0x45: directory index 1.
    assert_eq!(reason(&vtd, read(VA).with_pasid(0x45)), R::SmPasidDirEntryNotPresent);
    // FPD in a not-present directory entry counts.
    t.m.write(t.dir + 8, [PasidDirEntry::FPD.field.mask()]);
    assert!(fault(&vtd, read(VA).with_pasid(0x45)).fpd);
}

#[test]
fn fault_52_pasid_directory_entry_reserved() {
    let t = sm();
    let good = t.m.read(t.dir_entry_at());
    let vtd = t.on(VtdParams { haw: 39, ..VtdParams::default() });
    t.set_pe(t.pe(Pgtt::FirstStage));
    for bit in [2, 11, 45] {
        t.m.write(t.dir_entry_at(), [good | 1 << bit]);
        assert_eq!(reason(&vtd, read(VA)), R::SmPasidDirEntryReserved, "bit {bit}");
    }
}

#[test]
fn fault_58_pasid_entry_access() {
    let t = sm();
    let mut de = PasidDirEntry::default();
    de.set_p(true);
    de.set_fpd(true);
    de.set_smptblptr(HOLE);
    t.m.write(t.dir_entry_at(), de.words());
    let vtd = t.with(Pgtt::FirstStage);
    let f = fault(&vtd, read(VA));
    assert_eq!((f.reason, f.fpd), (R::SmPasidEntryAccess, true));
}

#[test]
fn fault_59_pasid_entry_not_present() {
    let t = sm();
    let vtd = t.with(Pgtt::FirstStage);
    let f = fault(&vtd, read(VA).with_pasid(PASID + 1));
    assert_eq!((f.reason, f.fpd), (R::SmPasidEntryNotPresent, false));
}

#[test]
fn fault_5a_pasid_entry_reserved() {
    let t = sm();
    let vtd = t.on(VtdParams { haw: 39, ..VtdParams::default() });
    // Always-reserved bits: 10, 80, 136, 192, 511.
    for (word, bit) in [(0, 10), (1, 16), (2, 8), (3, 0), (7, 63)] {
        let mut w = t.pe(Pgtt::FirstStage).words();
        w[word] |= 1 << bit;
        t.set_pe(PasidEntry::from_words(w));
        assert_eq!(reason(&vtd, read(VA)), R::SmPasidEntryReserved, "bit {bit} of word {word}");
    }
    // The pointers the PGTT uses, above HAW.
    let mut pe = t.pe(Pgtt::FirstStage);
    pe.set_fsptptr(1 << 40);
    t.set_pe(pe);
    assert_eq!(reason(&vtd, read(VA)), R::SmPasidEntryReserved, "FSPTPTR");
    let mut pe = t.pe(Pgtt::SecondStage);
    pe.set_ssptptr(1 << 40);
    t.set_pe(pe);
    assert_eq!(reason(&vtd, read(GPA_OUT)), R::SmPasidEntryReserved, "SSPTPTR");
    // FPD set in the entry: fault processing disabled for its own reserved bits.
    pe.set_fpd(true);
    t.set_pe(pe);
    assert!(fault(&vtd, read(GPA_OUT)).fpd);
}

#[test]
fn fault_5b_pasid_entry_invalid() {
    let t = sm();
    let fs = t.pe(Pgtt::FirstStage);
    let ss = t.pe(Pgtt::SecondStage);
    let with = |mut pe: PasidEntry, f: &dyn Fn(&mut PasidEntry)| {
        f(&mut pe);
        pe
    };
    let d = VtdParams::default;
    let no = |f: sviommu_vtd::spec::Field| params(move |p| p.ecap = f.with(p.ecap, false));
    let cases: Vec<(&str, PasidEntry, VtdParams)> = vec![
        ("PGTT 000b", with(fs, &|p| p.set_pgtt_raw(0)), d()),
        ("PGTT 101b", with(fs, &|p| p.set_pgtt_raw(5)), d()),
        ("PGTT 111b", with(fs, &|p| p.set_pgtt_raw(7)), d()),
        ("AW 000b", with(ss, &|p| p.set_aw_raw(0)), d()),
        ("AW 100b", with(ss, &|p| p.set_aw_raw(4)), d()),
        (
            "AW 57 not in SAGAW",
            with(ss, &|p| p.set_aw(Aw::Bits57)),
            params(|p| {
                p.cap = cap::SAGAW.set(p.cap, Aw::Bits39.sagaw_bit() | Aw::Bits48.sagaw_bit())
            }),
        ),
        ("FSPM 10b", with(fs, &|p| p.set_fspm_raw(2)), d()),
        (
            "5-level without FS5LP",
            with(fs, &|p| p.set_fspm(Fspm::FiveLevel)),
            params(|p| p.cap = cap::FS5LP.with(p.cap, false)),
        ),
        ("first stage without FSTS", fs, no(ecap::FSTS)),
        ("second stage without SSTS", ss, no(ecap::SSTS)),
        ("nested without NEST", t.pe(Pgtt::Nested), no(ecap::NEST)),
        ("pass-through without PT", t.pe(Pgtt::PassThrough), no(ecap::PT)),
        ("SRE without SRS", fs, no(ecap::SRS)),
        ("ERE without ERS", fs, no(ecap::ERS)),
        ("SSADE without SSADS", with(ss, &|p| p.set_ssade(true)), no(ecap::SSADS)),
        ("EAFE (EAFS is never advertised)", with(fs, &|p| p.set_eafe(true)), d()),
    ];
    for (what, pe, p) in cases {
        t.set_pe(pe);
        let vtd = t.on(p);
        let f = fault(&vtd, read(VA));
        assert_eq!(f.reason, R::SmPasidEntryInvalid, "{what}");
    }
}

#[test]
fn fault_5c_pasid_entry_ere_clear() {
    let t = sm();
    let mut pe = t.pe(Pgtt::FirstStage);
    pe.set_ere(false);
    t.set_pe(pe);
    let vtd = t.on(VtdParams::default());
    assert_eq!(reason(&vtd, req(VA, Access::EXEC)), R::SmPasidEreClear);
    assert_eq!(ok(&vtd, read(VA)).perms, Perms::rwx(true, true, false));
}

#[test]
fn fault_5d_pasid_entry_sre_clear() {
    let t = sm();
    let mut pe = t.pe(Pgtt::SecondStage);
    pe.set_sre(false);
    t.set_pe(pe);
    let vtd = t.on(VtdParams::default());
    assert_eq!(reason(&vtd, req(GPA_OUT, Access::READ.privileged())), R::SmPasidSreClear);
    // RID_PRIV makes a request without PASID a supervisor request too.
    let mut ce = context(t.dir);
    ce.set_rid_pasid(PASID);
    ce.set_rid_priv(true);
    t.set_ce(ce);
    invalidate_all(&vtd);
    assert_eq!(reason(&vtd, DmaRequest::new(RID, GPA_OUT, Access::READ)), R::SmPasidSreClear);
}

// ---------------------------------------------------------------------------------------------
// First stage (70h–73h), nested first-stage fetches (74h–77h)
// ---------------------------------------------------------------------------------------------

#[test]
fn fault_70_first_stage_entry_access() {
    let t = sm();
    // Point the PML4E at the hole.
    t.m.write(t.fs.root + 8 * ((VA >> 39) & 0x1ff), [HOLE | 7]);
    let vtd = t.with(Pgtt::FirstStage);
    assert_eq!(reason(&vtd, read(VA)), R::SmFsEntryAccess);
}

#[test]
fn fault_71_first_stage_entry_not_present() {
    let t = sm();
    let vtd = t.with(Pgtt::FirstStage);
    assert_eq!(reason(&vtd, read(0x7000_0000)), R::SmFsEntryNotPresent);
}

#[test]
fn fault_72_first_stage_entry_reserved() {
    let t = sm();
    let vtd = t.with(Pgtt::FirstStage);
    // PS in a PML4E.
    let at = t.fs.root + 8 * ((VA >> 39) & 0x1ff);
    let e = t.m.read(at);
    t.m.write(at, [e | 1 << 7]);
    assert_eq!(reason(&vtd, read(VA)), R::SmFsEntryReserved);
    t.m.write(at, [e]);
    // An output address bit above HAW in the leaf.
    let (pte_at, pte) = leaf_of(&t.m, &t.fs, VA);
    t.m.write(pte_at, [pte | 1 << 45]);
    let vtd = t.on(VtdParams { haw: 45, ..VtdParams::default() });
    assert_eq!(reason(&vtd, read(VA)), R::SmFsEntryReserved);
}

#[test]
fn fault_73_first_stage_root_access() {
    let mut t = sm();
    // For the nested case: a GPA past guest RAM the second stage sends into the hole.
    let root_gpa = 0x300_0000;
    t.ss.map(&t.m.mem, &mut t.m.frames, root_gpa, HOLE, 12, VtdSsAttrs::ALL).unwrap();
    let mut pe = t.pe(Pgtt::FirstStage);
    pe.set_fsptptr(HOLE);
    t.set_pe(pe);
    let vtd = t.on(VtdParams::default());
    assert_eq!(reason(&vtd, read(VA)), R::SmFsptptrAccess);
    // Nested: the second stage sends the first-stage root's GPA into the hole.
    let mut pe = t.pe(Pgtt::Nested);
    pe.set_fsptptr(root_gpa);
    t.set_pe(pe);
    assert_eq!(reason(&vtd, read(VA)), R::SmFsptptrAccess);
}

#[test]
fn fault_74_nested_first_stage_table_beyond_second_stage() {
    let t = sm();
    let mut pe = t.pe(Pgtt::Nested);
    // A guest address above the 48-bit AGAW; below HAW, so not a reserved field.
    pe.set_fsptptr(1 << 49);
    t.set_pe(pe);
    let vtd = t.on(VtdParams::default());
    assert_eq!(reason(&vtd, read(VA)), R::SmNestedFsAddressBeyondSs);
    // Above what a first-stage table address can hold (bit 60), rather than truncated.
    pe.set_fsptptr(t.gfs.root | 1 << 60);
    t.set_pe(pe);
    assert_eq!(reason(&vtd, read(VA)), R::SmNestedFsAddressBeyondSs);
}

/// Remaps the guest-RAM 2M page holding `gpa` in the second stage as 512 read-write 4K pages,
/// so single table pages can be restricted or unmapped.
fn split_guest_2m(t: &mut Sm, gpa: u64) {
    let base = gpa & !0x1f_ffff;
    let rw = VtdSsAttrs { exec: false, ..VtdSsAttrs::ALL };
    t.ss.unmap(&t.m.mem, base, 1 << 21).unwrap();
    for page in (base..base + (1 << 21)).step_by(0x1000) {
        t.ss.map(&t.m.mem, &mut t.m.frames, page, GUEST_RAM_HPA + page, 12, rw).unwrap();
    }
}

/// The second stage maps `gpa`'s 4K page alone with `attrs`.
fn restrict_guest_page(t: &mut Sm, gpa: u64, attrs: VtdSsAttrs) {
    let page = gpa & !0xfff;
    split_guest_2m(t, page);
    t.ss.unmap(&t.m.mem, page, 0x1000).unwrap();
    t.ss.map(&t.m.mem, &mut t.m.frames, page, GUEST_RAM_HPA + page, 12, attrs).unwrap();
}

/// The GPA of the guest's PDPT on VA's path (where its PML4E points).
fn guest_pdpt(t: &Sm) -> u64 {
    let ram = guest_ram(&t.m.mem);
    let pml4e_at = Gpa(t.gfs.root + 8 * ((VA >> 39) & 0x1ff));
    ram.read_u64(pml4e_at).unwrap() & 0x000f_ffff_ffff_f000
}

const WRITE_ONLY: VtdSsAttrs = VtdSsAttrs { read: false, write: true, exec: false, snoop: false };

#[test]
fn fault_75_nested_first_stage_root_read_denied() {
    let mut t = sm();
    let root = t.gfs.root;
    restrict_guest_page(&mut t, root, WRITE_ONLY);
    let vtd = t.with(Pgtt::Nested);
    assert_eq!(reason(&vtd, read(VA)), R::SmNestedFsRootReadDenied);
}

#[test]
fn fault_76_nested_first_stage_entry_read_denied() {
    let mut t = sm();
    let pdpt = guest_pdpt(&t);
    restrict_guest_page(&mut t, pdpt, WRITE_ONLY);
    let vtd = t.with(Pgtt::Nested);
    assert_eq!(reason(&vtd, read(VA)), R::SmNestedFsEntryReadDenied);
}

#[test]
fn fault_77_nested_first_stage_ad_write_denied() {
    let mut t = sm();
    // The guest's tables (its low 4M) read-only in the second stage: the reads go through,
    // setting the accessed flag does not.
    t.ss.unmap(&t.m.mem, 0, 0x40_0000).unwrap();
    for gpa in [0, 0x20_0000] {
        let hpa = GUEST_RAM_HPA + gpa;
        t.ss.map(&t.m.mem, &mut t.m.frames, gpa, hpa, 21, VtdSsAttrs::READ_ONLY).unwrap();
    }
    let vtd = t.with(Pgtt::Nested);
    assert_eq!(reason(&vtd, read(VA)), R::SmNestedFsEntryWriteDenied);
    // A table whose accessed flags are already set needs no write: restricting only the PDPT
    // page faults on its A update, below the root.
    let mut t = sm();
    let pdpt = guest_pdpt(&t);
    restrict_guest_page(&mut t, pdpt, VtdSsAttrs::READ_ONLY);
    let vtd = t.with(Pgtt::Nested);
    assert_eq!(reason(&vtd, read(VA)), R::SmNestedFsEntryWriteDenied);
}

// ---------------------------------------------------------------------------------------------
// Second stage (78h–7Bh)
// ---------------------------------------------------------------------------------------------

#[test]
fn fault_78_second_stage_entry_access() {
    let t = sm();
    t.m.write(t.ss.root, [HOLE | 7]);
    let vtd = t.with(Pgtt::SecondStage);
    assert_eq!(reason(&vtd, read(GPA_OUT)), R::SmSsEntryAccess);
}

#[test]
fn fault_79_second_stage_entry_not_present() {
    let t = sm();
    let vtd = t.with(Pgtt::SecondStage);
    assert_eq!(reason(&vtd, read(0x300_0000)), R::SmSsEntryNotPresent);
}

#[test]
fn fault_79_nested_second_stage_hole_under_a_first_stage_table() {
    let mut t = sm();
    // The guest's PDPT page unmapped from the second stage: the fault comes while fetching the
    // first stage's level-3 entry, after the root (PML4E) was read.
    let pdpt = guest_pdpt(&t);
    split_guest_2m(&mut t, pdpt);
    t.ss.unmap(&t.m.mem, pdpt, 0x1000).unwrap();
    let vtd = t.with(Pgtt::Nested);
    assert_eq!(reason(&vtd, read(VA)), R::SmSsEntryNotPresent);
    // The same hole under the request's own output.
    let t = sm();
    t.ss.unmap(&t.m.mem, GPA_OUT & !0x1f_ffff, 1 << 21).unwrap();
    let vtd = t.with(Pgtt::Nested);
    assert_eq!(reason(&vtd, read(VA)), R::SmSsEntryNotPresent);
}

#[test]
fn fault_7a_second_stage_entry_reserved() {
    let t = sm();
    let e = t.m.read(t.ss.root);
    t.m.write(t.ss.root, [e | 1 << 62]);
    let vtd = t.with(Pgtt::SecondStage);
    assert_eq!(reason(&vtd, read(GPA_OUT)), R::SmSsEntryReserved);
}

#[test]
fn fault_7b_second_stage_root_access() {
    let t = sm();
    let mut pe = t.pe(Pgtt::SecondStage);
    pe.set_ssptptr(HOLE);
    t.set_pe(pe);
    let vtd = t.on(VtdParams::default());
    assert_eq!(reason(&vtd, read(GPA_OUT)), R::SmSsptptrInvalid);
}

// ---------------------------------------------------------------------------------------------
// General (80h–87h)
// ---------------------------------------------------------------------------------------------

#[test]
fn fault_80_non_canonical() {
    let t = sm();
    let vtd = t.with(Pgtt::FirstStage);
    assert_eq!(reason(&vtd, read(0x0000_8000_0000_0000)), R::SmNonCanonical);
    assert_eq!(reason(&vtd, read(0xfff0_0000_0000_0000)), R::SmNonCanonical);
}

#[test]
fn fault_81_user_access_to_supervisor_page() {
    let t = sm();
    let vtd = t.with(Pgtt::FirstStage);
    for access in [Access::READ, Access::WRITE, Access::EXEC] {
        assert_eq!(reason(&vtd, req(VA_SUP, access)), R::SmUserAccessDenied, "{access:?}");
    }
    let vtd = t.with(Pgtt::Nested);
    assert_eq!(reason(&vtd, read(VA_SUP)), R::SmUserAccessDenied);
}

#[test]
fn fault_82_execute_denied() {
    let t = sm();
    // First stage: XD with NXE.
    let vtd = t.with(Pgtt::FirstStage);
    assert_eq!(reason(&vtd, req(VA_NX, Access::EXEC)), R::SmExecuteDenied);
    // SMEP: a supervisor fetch from a user page.
    let mut pe = t.pe(Pgtt::FirstStage);
    pe.set_smep(true);
    t.set_pe(pe);
    invalidate_all(&vtd);
    assert_eq!(reason(&vtd, req(VA, Access::EXEC.privileged())), R::SmExecuteDenied);
    // Second stage: X clear with SSEE.
    let mut pe = t.pe(Pgtt::SecondStage);
    pe.set_ssee(true);
    t.set_pe(pe);
    invalidate_all(&vtd);
    assert_eq!(reason(&vtd, req(GPA_OUT, Access::EXEC)), R::SmExecuteDenied);
    // Without SSEE the second stage's X bit is not consulted.
    t.set_pe(t.pe(Pgtt::SecondStage));
    invalidate_all(&vtd);
    assert_eq!(ok(&vtd, req(GPA_OUT, Access::EXEC)).output, GUEST_RAM_HPA + GPA_OUT);
}

#[test]
fn fault_83_address_beyond_mgaw() {
    let mut t = sm();
    // Second stage only: an input above the 48-bit AGAW.
    let vtd = t.with(Pgtt::SecondStage);
    assert_eq!(reason(&vtd, read(1 << 48)), R::SmAddressBeyondMgaw);
    // Nested: a first-stage output above it.
    let ram = guest_ram(&t.m.mem);
    t.gfs.map(&ram, &mut t.m.guest_frames, 0x5000_0000, 1 << 50, 12, X86Attrs::ALL).unwrap();
    let vtd = t.with(Pgtt::Nested);
    assert_eq!(reason(&vtd, read(0x5000_0000)), R::SmAddressBeyondMgaw);
    // Pass-through: an address the host cannot hold.
    let vtd = t.with(Pgtt::PassThrough);
    assert_eq!(reason(&vtd, read(1 << 52)), R::SmAddressBeyondMgaw);
}

#[test]
fn fault_85_write_denied() {
    let t = sm();
    let vtd = t.with(Pgtt::FirstStage);
    assert_eq!(reason(&vtd, write(VA_RO)), R::SmWriteDenied);
    let vtd = t.with(Pgtt::SecondStage);
    assert_eq!(reason(&vtd, write(GPA_RO)), R::SmWriteDenied);
}

#[test]
fn fault_86_read_denied() {
    let t = sm();
    let vtd = t.with(Pgtt::SecondStage);
    assert_eq!(reason(&vtd, read(GPA_WO)), R::SmReadDenied);
    assert_eq!(ok(&vtd, write(GPA_WO)).output, SS_OUT + 0x1000);
}

#[test]
fn fault_87_interrupt_address_range() {
    let t = sm();
    // Pass-through of a request with PASID into the range.
    let vtd = t.with(Pgtt::PassThrough);
    assert_eq!(reason(&vtd, write(0xfee0_0010)), R::SmInterruptAddressRange);
    // A first-stage translation into the range.
    let vtd = t.with(Pgtt::FirstStage);
    assert_eq!(reason(&vtd, write(VA_TO_INT)), R::SmInterruptAddressRange);
    // A nested one, where the second stage lands there.
    let vtd = t.with(Pgtt::Nested);
    assert_eq!(reason(&vtd, write(VA_TO_INT)), R::SmInterruptAddressRange);
}

#[test]
fn fpd_in_the_pasid_entry_covers_walk_faults() {
    let t = sm();
    let mut pe = t.pe(Pgtt::FirstStage);
    let vtd = t.on(VtdParams::default());
    t.set_pe(pe);
    invalidate_all(&vtd);
    assert!(!fault(&vtd, read(0x7000_0000)).fpd);
    pe.set_fpd(true);
    t.set_pe(pe);
    invalidate_all(&vtd);
    let f = fault(&vtd, read(0x7000_0000));
    assert_eq!((f.reason, f.fpd), (R::SmFsEntryNotPresent, true));
}

/// What `inspect --walk` builds on: every structure and entry read, in order, and as many as
/// the translation's read count says.
#[test]
fn translate_observed_reports_each_structure_and_entry_it_reads() {
    #[derive(Default)]
    struct Seen {
        structures: Vec<&'static str>,
        entries: u32,
    }
    impl sviommu_pgtable::WalkObserver for Seen {
        fn step(&mut self, _step: sviommu_pgtable::WalkStep) {
            self.entries += 1;
        }
        fn structure(&mut self, what: &'static str, _mem_addr: u64, words: &[u64]) {
            assert!(!words.is_empty());
            self.structures.push(what);
        }
    }
    let t = sm();
    let vtd = t.with(Pgtt::Nested);
    let (tr, seen) = vtd.translate_observed(&write(VA + 0x123), Seen::default());
    let tr = tr.unwrap();
    assert_eq!(
        seen.structures,
        [
            "scalable-mode root entry",
            "scalable-mode context entry",
            "PASID directory entry",
            "PASID-table entry"
        ]
    );
    assert_eq!(seen.entries + 4, tr.reads);
}
