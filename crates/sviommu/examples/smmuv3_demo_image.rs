//! Writes the SMMUv3 demo image that the README's `sviommu inspect smmuv3` example reads: a raw
//! memory dump (file offset = physical address) holding a two-level Stream table at 0x100000
//! (SMMU_STRTAB_BASE_CFG 0x10210: 16-bit StreamIDs, SPLIT 8) whose StreamID 16 (the PCI
//! requester 00:02.0) is nested: the guest's two-level CD table, CDs and stage-1 tables live in
//! guest RAM (IPA 0..2 MiB at PA 2 MiB), and the host's stage-2 tables map that RAM. Tables are
//! built with the project's page-table builders and structures with the SMMUv3 spec's setters,
//! as a driver would write them.
//!
//! ```sh
//! cargo run -p sviommu --example smmuv3_demo_image -- /tmp/smmuv3-demo.img
//! ```

use std::path::Path;

use sviommu_memory::{
    Address, FrameAllocator, Gpa, GuestRam, GuestRamRegion, HostMemory, Hpa, PhysMemory,
};
use sviommu_pgtable::vmsa::{Granule as PtGranule, S1Attrs, S2Attrs, VmsaS1, VmsaS2};
use sviommu_pgtable::Build;
use sviommu_smmuv3::spec::regs::strtab_base_cfg;
use sviommu_smmuv3::spec::{Cd, Granule, L1Cd, L1Std, S1Fmt, Ste, StreamConfig};

/// Host structures and tables in 1 MiB..2 MiB; guest RAM (IPA 0..2 MiB) at PA 2 MiB..4 MiB.
pub const HOST: (u64, u64) = (0x10_0000, 0x10_0000);
pub const GUEST_RAM: (u64, u64) = (0x20_0000, 0x20_0000);
/// The stream: 00:02.0's requester ID as its StreamID.
pub const SID: u32 = 0x10;
/// The guest process's SubstreamID (PASID).
pub const SSID: u32 = 1;
/// A writable data page, and a read-only one after it.
pub const VA: u64 = 0x7f00_0000_1000;

/// What the demo built.
#[derive(Debug)]
pub struct Demo {
    pub mem: HostMemory,
    pub strtab_base: u64,
    pub strtab_base_cfg: u64,
}

/// Writes `words` at `addr` of `mem` (host memory, or guest RAM by IPA).
fn write<M: PhysMemory + ?Sized>(mem: &M, addr: u64, words: &[u64]) {
    for (i, w) in (0u64..).zip(words) {
        mem.write_u64(M::Addr::new(addr + 8 * i), *w).unwrap();
    }
}

/// Builds the demo: a two-level Stream table (level 1 at 0x100000, one level-2 array of 256
/// STEs); StreamID 16's STE is nested, with a two-level CD table (4K leaves, S1CDMax 10) in
/// guest RAM whose CD 1 holds the guest's 4-level stage-1 tables (48-bit VAs, 4K granule), and
/// the host's stage 2 (39-bit IPAs from level 1) maps guest RAM in 4K pages.
pub fn build() -> Demo {
    let mem = HostMemory::new(&[(Hpa(HOST.0), HOST.1 + GUEST_RAM.1)]).unwrap();
    let mut frames = FrameAllocator::new(&[(Hpa(HOST.0), HOST.1)]);
    let l1_strtab = frames.alloc(&mem, 12).unwrap().0;
    let l2_stes = frames.alloc(&mem, 14).unwrap().0;

    // The host's stage 2: guest RAM in 4K pages.
    let s2 = VmsaS2::create(&mem, &mut frames, VmsaS2::new(0, PtGranule::K4, 25, 1)).unwrap();
    for ipa in (0..GUEST_RAM.1).step_by(0x1000) {
        s2.map(&mem, &mut frames, ipa, GUEST_RAM.0 + ipa, 12, S2Attrs::ALL).unwrap();
    }

    // The guest's CD tables and stage-1 tables, in guest RAM (frames from IPA 1.5 MiB up).
    let ram = GuestRam::new(
        &mem,
        vec![GuestRamRegion { gpa: Gpa(0), len_bytes: GUEST_RAM.1, hpa: Hpa(GUEST_RAM.0) }],
    );
    let mut guest_frames = FrameAllocator::new(&[(Gpa(0x18_0000), 0x8_0000)]);
    let l1_cds = guest_frames.alloc(&ram, 12).unwrap().0;
    let l2_cds = guest_frames.alloc(&ram, 12).unwrap().0;
    let s1 = VmsaS1::create(&ram, &mut guest_frames, VmsaS1::new(0, PtGranule::K4, 16)).unwrap();
    let data = S1Attrs { user_exec: false, priv_exec: false, attr_indx: 1, ..S1Attrs::ALL };
    s1.map(&ram, &mut guest_frames, VA, 0x4_2000, 12, data).unwrap();
    s1.map(&ram, &mut guest_frames, VA + 0x1000, 0x4_3000, 12, S1Attrs::READ_ONLY).unwrap();

    let mut cd = Cd::default();
    cd.set_v(true);
    cd.set_aa64(true);
    cd.set_a(true);
    cd.set_r(true);
    cd.set_asid(1);
    cd.set_t0sz(16);
    cd.set_tg0(Granule::Size4K);
    cd.set_ir0(1);
    cd.set_or0(1);
    cd.set_sh0(3);
    cd.set_ips(0b101);
    cd.set_epd1(true);
    cd.set_ttb0(s1.ttb);
    write(&ram, l2_cds + 64 * u64::from(SSID % 64), &cd.words());
    let mut l1cd = L1Cd::default();
    l1cd.set_v(true);
    l1cd.set_l2ptr(l2_cds);
    write(&ram, l1_cds + 8 * u64::from(SSID / 64), &[l1cd.word()]);

    let mut ste = Ste::default();
    ste.set_v(true);
    ste.set_config(StreamConfig::Nested);
    ste.set_s1fmt(S1Fmt::TwoLevel4K);
    ste.set_s1contextptr(l1_cds);
    ste.set_s1cdmax(10);
    ste.set_s1cir(1);
    ste.set_s1cor(1);
    ste.set_s1csh(3);
    ste.set_s2vmid(1);
    ste.set_s2t0sz(s2.t0sz);
    ste.set_s2sl0(s2.sl0);
    ste.set_s2tg(Granule::Size4K);
    ste.set_s2ps(0b101);
    ste.set_s2aa64(true);
    ste.set_s2r(true);
    ste.set_s2ttb(s2.ttb);
    write(&mem, l2_stes + 64 * u64::from(SID % 256), &ste.words());
    let mut l1std = L1Std::default();
    l1std.set_span(9);
    l1std.set_l2ptr(l2_stes);
    write(&mem, l1_strtab + 8 * u64::from(SID / 256), &[l1std.word()]);

    let cfg = strtab_base_cfg::LOG2SIZE.set(0, 16);
    let cfg = strtab_base_cfg::SPLIT.set(cfg, 8);
    let strtab_base_cfg = strtab_base_cfg::FMT.set(cfg, 1);
    Demo { mem, strtab_base: l1_strtab, strtab_base_cfg }
}

impl Demo {
    /// Memory from address 0 to the end of guest RAM as one raw file (the first MiB zeros).
    pub fn write_raw(&self, path: &Path) {
        let end = GUEST_RAM.0 + GUEST_RAM.1;
        let mut bytes = vec![0u8; usize::try_from(end).unwrap()];
        let from = usize::try_from(HOST.0).unwrap();
        self.mem.read(Hpa(HOST.0), &mut bytes[from..]).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

#[allow(dead_code)]
fn main() {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: smmuv3_demo_image FILE");
        std::process::exit(2);
    };
    let demo = build();
    demo.write_raw(Path::new(&path));
    println!(
        "wrote {}: STRTAB_BASE {:#x} STRTAB_BASE_CFG {:#x}",
        Path::new(&path).display(),
        demo.strtab_base,
        demo.strtab_base_cfg
    );
}
