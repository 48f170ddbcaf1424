//! What the hw tests share: a machine (host memory, a frame allocator, a unit), structures
//! written into memory word by word, and the MMIO sequence that turns translation on. Nothing
//! here goes through a driver: the tests write tables and registers as raw data.

#![allow(dead_code)]

use sviommu_memory::{FrameAllocator, Gpa, GuestRam, GuestRamRegion, HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::vtd_ss::{self, VtdSecondStage};
use sviommu_pgtable::x86::{self, X86Paging};
use sviommu_pgtable::Build;
use sviommu_vtd::hw::{DmaRequest, Fault, Translation, Vtd, VtdParams};
use sviommu_vtd::spec::inv::{
    CcGranularity, ContextCacheInv, InvWait, IotlbGranularity, IotlbInv, PasidCacheGranularity,
    PasidCacheInv, PasidIotlbGranularity, PasidIotlbInv,
};
use sviommu_vtd::spec::pasid::{self, PasidDirEntry, PasidEntry};
use sviommu_vtd::spec::regs::{self, ecap, gcmd, gsts, iqa, iqt, rtaddr, rtaddr::Ttm};
use sviommu_vtd::spec::root::{
    self, ContextEntry, RootEntry, ScalableContextEntry, ScalableRootEntry,
};
use sviommu_vtd::spec::FaultReason;

/// Host memory the tables come from.
pub const TABLES_HPA: u64 = 0x10_0000;
/// Bytes of it.
pub const TABLES_LEN: u64 = 0x80_0000;
/// Where the guest's RAM (GPA 0 up) sits in host memory.
pub const GUEST_RAM_HPA: u64 = 0x1000_0000;
/// Bytes of guest RAM.
pub const GUEST_RAM_LEN: u64 = 0x100_0000;
/// A host address no memory backs (between the two regions), below every HAW used here.
pub const HOLE: u64 = 0x0800_0000;
/// The invalidation queue the helpers below use: the top 16K of the tables region, kept out of
/// the frame allocator (two pages of queue, a page of status words).
pub const QUEUE_HPA: u64 = TABLES_HPA + TABLES_LEN - 0x4000;
/// Where the helpers' wait descriptors write their status.
pub const STATUS_HPA: u64 = TABLES_HPA + TABLES_LEN - 0x1000;

/// Host memory, its allocator, and a guest's view of its RAM for first-stage tables it owns.
pub struct Machine {
    pub mem: HostMemory,
    pub frames: FrameAllocator<Hpa>,
    pub guest_frames: FrameAllocator<Gpa>,
}

impl Machine {
    pub fn new() -> Self {
        let mem =
            HostMemory::new(&[(Hpa(TABLES_HPA), TABLES_LEN), (Hpa(GUEST_RAM_HPA), GUEST_RAM_LEN)])
                .unwrap();
        let frames = FrameAllocator::new(&[(Hpa(TABLES_HPA), TABLES_LEN - 0x4000)]);
        // The guest's tables come from the low 4M of its RAM.
        let guest_frames = FrameAllocator::new(&[(Gpa(0), 0x40_0000)]);
        Self { mem, frames, guest_frames }
    }

    /// A zeroed 4K page of host memory.
    pub fn page(&mut self) -> u64 {
        self.frames.alloc(&self.mem, 12).unwrap().0
    }

    /// The guest's RAM, as the guest writes it.
    pub fn guest_ram(&self) -> GuestRam<&HostMemory> {
        guest_ram(&self.mem)
    }

    pub fn write<const N: usize>(&self, addr: u64, words: [u64; N]) {
        for (i, w) in words.iter().enumerate() {
            self.mem.write_u64(Hpa(addr + 8 * i as u64), *w).unwrap();
        }
    }

    pub fn read(&self, addr: u64) -> u64 {
        self.mem.read_u64(Hpa(addr)).unwrap()
    }

    // --- legacy mode -------------------------------------------------------------------------

    /// Writes `ce` as `rid`'s legacy context entry, making a context table for the bus if the
    /// root entry has none. Returns the context entry's address.
    pub fn legacy_context(&mut self, rta: u64, rid: u16, ce: ContextEntry) -> u64 {
        let [bus, devfn] = rid.to_be_bytes();
        let re_at = rta + 16 * u64::from(bus);
        let mut re = RootEntry::from_words([self.read(re_at), self.read(re_at + 8)]);
        if !re.p() {
            let ctp = self.page();
            re.set_p(true);
            re.set_ctp(ctp);
            self.write(re_at, re.words());
        }
        let at = re.ctp() + 16 * u64::from(devfn);
        self.write(at, ce.words());
        at
    }

    // --- scalable mode -----------------------------------------------------------------------

    /// Writes `ce` as `rid`'s scalable-mode context entry, making the context table (lower or
    /// upper) if the root entry has none. Returns the context entry's address.
    pub fn sm_context(&mut self, rta: u64, rid: u16, ce: ScalableContextEntry) -> u64 {
        let [bus, devfn] = rid.to_be_bytes();
        let re_at = rta + 16 * u64::from(bus);
        let mut re = ScalableRootEntry::from_words([self.read(re_at), self.read(re_at + 8)]);
        if !re.present_for(devfn) {
            let ctp = self.page();
            if ScalableRootEntry::is_upper(devfn) {
                re.set_up(true);
                re.set_uctp(ctp);
            } else {
                re.set_lp(true);
                re.set_lctp(ctp);
            }
            self.write(re_at, re.words());
        }
        let at = re.ctp_for(devfn) + 32 * u64::from(root::scalable_context_index(devfn));
        self.write(at, ce.words());
        at
    }

    /// Writes `pe` as `pasid`'s PASID-table entry under the directory at `dir`, making the
    /// PASID table if the directory entry has none. Returns the PASID entry's address.
    pub fn pasid_entry(&mut self, dir: u64, pasid: u32, pe: PasidEntry) -> u64 {
        let de_at = dir + 8 * u64::from(pasid::dir_index(pasid));
        let mut de = PasidDirEntry::from_words([self.read(de_at)]);
        if !de.p() {
            let table = self.page();
            de.set_p(true);
            de.set_smptblptr(table);
            self.write(de_at, de.words());
        }
        let at = de.smptblptr() + 64 * u64::from(pasid::table_index(pasid));
        self.write(at, pe.words());
        at
    }

    /// Second-stage tables in host memory.
    pub fn ss(&mut self, levels: vtd_ss::Levels) -> VtdSecondStage {
        VtdSecondStage::create(&self.mem, &mut self.frames, levels).unwrap()
    }

    /// First-stage tables in host memory (PGTT first-stage only).
    pub fn fs(&mut self, levels: x86::Levels) -> X86Paging {
        X86Paging::create(&self.mem, &mut self.frames, levels).unwrap()
    }

    /// First-stage tables in guest RAM (PGTT nested): their addresses are GPAs.
    pub fn guest_fs(&mut self, levels: x86::Levels) -> X86Paging {
        let ram = guest_ram(&self.mem);
        X86Paging::create(&ram, &mut self.guest_frames, levels).unwrap()
    }

    /// Maps the whole of guest RAM in `ss` (GPA -> GUEST_RAM_HPA + GPA) with 2M pages.
    pub fn map_guest_ram(&mut self, ss: &VtdSecondStage, attrs: vtd_ss::VtdSsAttrs) {
        let mut gpa = 0;
        while gpa < GUEST_RAM_LEN {
            ss.map(&self.mem, &mut self.frames, gpa, GUEST_RAM_HPA + gpa, 21, attrs).unwrap();
            gpa += 1 << 21;
        }
    }
}

/// The guest's RAM over `mem`: GPA [0, GUEST_RAM_LEN) at GUEST_RAM_HPA.
pub fn guest_ram(mem: &HostMemory) -> GuestRam<&HostMemory> {
    GuestRam::new(
        mem,
        vec![GuestRamRegion { gpa: Gpa(0), len_bytes: GUEST_RAM_LEN, hpa: Hpa(GUEST_RAM_HPA) }],
    )
}

/// A unit with `params` over `m`'s memory.
pub fn unit(m: &Machine, params: VtdParams) -> Vtd<&HostMemory> {
    Vtd::new(&m.mem, params)
}

/// The MMIO sequence that turns translation on: RTADDR, GCMD.SRTP (wait for GSTS.RTPS), then
/// GCMD.TE (wait for GSTS.TES), as a driver would do it.
pub fn enable<M: PhysMemory<Addr = Hpa>>(vtd: &Vtd<M>, rta: u64, ttm: Ttm) {
    let value = rtaddr::TTM.set(rtaddr::RTA.in_place(rta), u64::from(ttm));
    vtd.mmio_write(regs::RTADDR.0, 8, value);
    vtd.mmio_write(regs::GCMD.0, 4, gcmd::SRTP.mask());
    assert!(gsts::RTPS.is_set(vtd.mmio_read(regs::GSTS.0, 4)), "RTPS after SRTP");
    vtd.mmio_write(regs::GCMD.0, 4, gcmd::TE.mask());
    assert!(gsts::TES.is_set(vtd.mmio_read(regs::GSTS.0, 4)), "TES after TE");
}

/// The fault reason of a request that must fault.
#[track_caller]
pub fn reason(vtd: &Vtd<&HostMemory>, req: DmaRequest) -> FaultReason {
    match vtd.translate(&req) {
        Err(f) => {
            assert_eq!(
                (f.rid, f.pasid, f.addr, f.access),
                (req.rid, req.pasid, req.addr, req.access)
            );
            f.reason
        }
        Ok(t) => panic!("expected a fault, got {t:?}"),
    }
}

/// The fault of a request that must fault.
#[track_caller]
pub fn fault(vtd: &Vtd<&HostMemory>, req: DmaRequest) -> Fault {
    vtd.translate(&req).expect_err("expected a fault")
}

/// The translation of a request that must translate.
#[track_caller]
pub fn ok(vtd: &Vtd<&HostMemory>, req: DmaRequest) -> Translation {
    match vtd.translate(&req) {
        Ok(t) => t,
        Err(f) => panic!("expected a translation, got {:?} ({})", f, f.reason),
    }
}

// --- invalidation ----------------------------------------------------------------------------

/// GCMD bits that keep the enables software wants kept (what a driver ORs into each command).
fn kept_enables(vtd: &Vtd<&HostMemory>) -> u64 {
    let status = vtd.mmio_read(regs::GSTS.0, 4);
    status & (gsts::TES.mask() | gsts::QIES.mask())
}

/// Enables the invalidation queue at QUEUE_HPA (one page; 256-bit descriptors when the unit has
/// scalable mode), as a driver does: IQT = 0, IQA, then GCMD.QIE and wait for GSTS.QIES. Does
/// nothing if it is already enabled.
pub fn enable_queue(vtd: &Vtd<&HostMemory>) {
    if gsts::QIES.is_set(vtd.mmio_read(regs::GSTS.0, 4)) {
        return;
    }
    let dw = ecap::SMTS.is_set(vtd.params().ecap);
    vtd.mmio_write(regs::IQT.0, 8, 0);
    vtd.mmio_write(regs::IQA.0, 8, iqa::DW.with(iqa::IQA.in_place(QUEUE_HPA), dw));
    vtd.mmio_write(regs::GCMD.0, 4, kept_enables(vtd) | gcmd::QIE.mask());
    assert!(gsts::QIES.is_set(vtd.mmio_read(regs::GSTS.0, 4)), "QIES after QIE");
}

/// Writes `descs` at the queue's tail and moves IQT past them (256- or 128-bit, as IQA says).
pub fn submit(vtd: &Vtd<&HostMemory>, descs: &[[u64; 4]]) {
    let a = vtd.mmio_read(regs::IQA.0, 8);
    let width = if iqa::DW.is_set(a) { 32 } else { 16 };
    let size = iqa::queue_bytes(a);
    let base = iqa::IQA.in_place(a);
    let mut tail = iqt::QT.in_place(vtd.mmio_read(regs::IQT.0, 8));
    for d in descs {
        let words = if width == 32 { &d[..] } else { &d[..2] };
        for (i, w) in words.iter().enumerate() {
            vtd.memory().write_u64(Hpa(base + tail + 8 * i as u64), *w).unwrap();
        }
        tail = (tail + width) % size;
    }
    vtd.mmio_write(regs::IQT.0, 8, tail);
}

/// Submits `descs` and a wait descriptor with a status write, and checks that the status was
/// written (the queue ran to its end without an error).
#[track_caller]
pub fn submit_and_wait(vtd: &Vtd<&HostMemory>, descs: &[[u64; 4]]) {
    vtd.memory().write_u64(Hpa(STATUS_HPA), 0).unwrap();
    let mut wait = InvWait::new();
    wait.set_sw(true);
    wait.set_fn(true);
    wait.set_status_data(0x600d);
    wait.set_status_addr(STATUS_HPA);
    let mut all = descs.to_vec();
    all.push(wait.words());
    submit(vtd, &all);
    assert_eq!(vtd.memory().read_u64(Hpa(STATUS_HPA)).unwrap(), 0x600d, "wait status written");
    assert_eq!(
        vtd.mmio_read(regs::IQH.0, 8),
        vtd.mmio_read(regs::IQT.0, 8),
        "the queue ran to its tail"
    );
}

/// Global context-cache, PASID-cache (scalable units) and IOTLB invalidation through the
/// queue, then a wait: what a driver does after changing tables wholesale.
pub fn invalidate_all(vtd: &Vtd<&HostMemory>) {
    enable_queue(vtd);
    let mut cc = ContextCacheInv::new();
    cc.set_g(CcGranularity::Global);
    let mut iotlb = IotlbInv::new();
    iotlb.set_g(IotlbGranularity::Global);
    let mut descs = vec![cc.words()];
    if ecap::SMTS.is_set(vtd.params().ecap) {
        let mut pc = PasidCacheInv::new();
        pc.set_g(PasidCacheGranularity::Global);
        descs.push(pc.words());
    }
    descs.push(iotlb.words());
    submit_and_wait(vtd, &descs);
}

/// Descriptor words, one function per granularity, for tests that name what they invalidate.
pub mod desc {
    use super::*;

    pub fn cc_global() -> [u64; 4] {
        let mut d = ContextCacheInv::new();
        d.set_g(CcGranularity::Global);
        d.words()
    }

    pub fn cc_domain(did: u16) -> [u64; 4] {
        let mut d = ContextCacheInv::new();
        d.set_g(CcGranularity::Domain);
        d.set_did(did);
        d.words()
    }

    pub fn cc_device(did: u16, sid: u16, fm: u8) -> [u64; 4] {
        let mut d = ContextCacheInv::new();
        d.set_g(CcGranularity::Device);
        d.set_did(did);
        d.set_sid(sid);
        d.set_fm(fm);
        d.words()
    }

    pub fn iotlb_global() -> [u64; 4] {
        let mut d = IotlbInv::new();
        d.set_g(IotlbGranularity::Global);
        d.words()
    }

    pub fn iotlb_domain(did: u16) -> [u64; 4] {
        let mut d = IotlbInv::new();
        d.set_g(IotlbGranularity::Domain);
        d.set_did(did);
        d.words()
    }

    pub fn iotlb_pages(did: u16, addr: u64, am: u8, ih: bool) -> [u64; 4] {
        let mut d = IotlbInv::new();
        d.set_g(IotlbGranularity::Page);
        d.set_did(did);
        d.set_addr(addr);
        d.set_am(am);
        d.set_ih(ih);
        d.words()
    }

    pub fn pc_global() -> [u64; 4] {
        let mut d = PasidCacheInv::new();
        d.set_g(PasidCacheGranularity::Global);
        d.words()
    }

    pub fn pc_domain(did: u16) -> [u64; 4] {
        let mut d = PasidCacheInv::new();
        d.set_g(PasidCacheGranularity::Domain);
        d.set_did(did);
        d.words()
    }

    pub fn pc_pasid(did: u16, pasid: u32) -> [u64; 4] {
        let mut d = PasidCacheInv::new();
        d.set_g(PasidCacheGranularity::Pasid);
        d.set_did(did);
        d.set_pasid(pasid);
        d.words()
    }

    pub fn piotlb_pasid(did: u16, pasid: u32) -> [u64; 4] {
        let mut d = PasidIotlbInv::new();
        d.set_g(PasidIotlbGranularity::Pasid);
        d.set_did(did);
        d.set_pasid(pasid);
        d.words()
    }

    pub fn piotlb_pages(did: u16, pasid: u32, addr: u64, am: u8, ih: bool) -> [u64; 4] {
        let mut d = PasidIotlbInv::new();
        d.set_g(PasidIotlbGranularity::Page);
        d.set_did(did);
        d.set_pasid(pasid);
        d.set_addr(addr);
        d.set_am(am);
        d.set_ih(ih);
        d.words()
    }
}

// --- tables as raw entries -------------------------------------------------------------------

/// Address bits of a 4K-granule table or leaf entry (both VT-d formats and x86).
pub const ENTRY_ADDR: u64 = 0x000f_ffff_ffff_f000;

/// The host address of the entry at `depth` (0: the root table's) on `input`'s path through a
/// 4-level table rooted at `root`; `to_host` turns a table pointer into a host address (the
/// identity for host tables, + GUEST_RAM_HPA for a guest's).
pub fn entry_at(m: &Machine, root: u64, input: u64, depth: u32, to_host: fn(u64) -> u64) -> u64 {
    let index = |d: u32| (input >> (39 - 9 * d)) & 0x1ff;
    let mut table = to_host(root);
    for d in 0..depth {
        table = to_host(m.read(table + 8 * index(d)) & ENTRY_ADDR);
    }
    table + 8 * index(depth)
}

/// Host tables' pointers are host addresses.
pub fn host(a: u64) -> u64 {
    a
}

/// A guest's table pointers are guest-physical: guest RAM sits at GUEST_RAM_HPA.
pub fn guest(a: u64) -> u64 {
    a + GUEST_RAM_HPA
}

/// Points the entry at `at` elsewhere, keeping its flags (a driver's in-place remap).
pub fn repoint(m: &Machine, at: u64, to: u64) {
    let old = m.read(at);
    m.write(at, [(old & !ENTRY_ADDR) | to]);
}

/// Copies the 4K page at host address `from` to `to`.
pub fn copy_page(m: &Machine, from: u64, to: u64) {
    for i in 0..512 {
        m.write(to + 8 * i, [m.read(from + 8 * i)]);
    }
}
