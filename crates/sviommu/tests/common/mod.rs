//! What the inspect tests (and the `vtd_demo_image` example) share: memory with VT-d structures
//! written into it word by word with the spec's setters, written out as the files `inspect`
//! reads (a raw dump, raw pieces, or an ELF core in QEMU's `dump-guest-memory` layout).

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use sviommu_memory::{FrameAllocator, Gpa, GuestRam, GuestRamRegion, HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::vtd_ss::{self, VtdSecondStage, VtdSsAttrs};
use sviommu_pgtable::x86::{self, X86Attrs, X86Paging};
use sviommu_pgtable::Build;
use sviommu_vtd::spec::pasid::{self, PasidDirEntry, PasidEntry};
use sviommu_vtd::spec::regs::{rtaddr, rtaddr::Ttm};
use sviommu_vtd::spec::root::{
    self, ContextEntry, RootEntry, ScalableContextEntry, ScalableRootEntry,
};
use sviommu_vtd::spec::{Aw, Fspm, Pgtt};

/// Host memory laid out as regions (holes between them), with a frame allocator for tables.
pub struct Image {
    pub mem: HostMemory,
    pub regions: Vec<(u64, u64)>,
    pub frames: FrameAllocator<Hpa>,
}

impl Image {
    /// Memory made of `regions`; tables come from `pool`.
    pub fn new(regions: &[(u64, u64)], pool: (u64, u64)) -> Self {
        let ranges: Vec<(Hpa, u64)> = regions.iter().map(|&(a, l)| (Hpa(a), l)).collect();
        Self {
            mem: HostMemory::new(&ranges).unwrap(),
            regions: regions.to_vec(),
            frames: FrameAllocator::new(&[(Hpa(pool.0), pool.1)]),
        }
    }

    /// A zeroed 4K page for a table.
    pub fn page(&mut self) -> u64 {
        self.frames.alloc(&self.mem, 12).unwrap().0
    }

    pub fn write(&self, addr: u64, words: &[u64]) {
        for (i, w) in words.iter().enumerate() {
            self.mem.write_u64(Hpa(addr + 8 * i as u64), *w).unwrap();
        }
    }

    pub fn read(&self, addr: u64) -> u64 {
        self.mem.read_u64(Hpa(addr)).unwrap()
    }

    /// The bytes of `[addr, addr + len)`.
    pub fn bytes(&self, addr: u64, len: u64) -> Vec<u8> {
        let mut buf = vec![0u8; len as usize];
        self.mem.read(Hpa(addr), &mut buf).unwrap();
        buf
    }

    /// Writes `rid`'s legacy context entry, making the bus's context table if needed.
    pub fn legacy_context(&mut self, rta: u64, rid: u16, ce: ContextEntry) -> u64 {
        let [bus, devfn] = rid.to_be_bytes();
        let re_at = rta + RootEntry::BYTES * u64::from(bus);
        let mut re = RootEntry::from_words([self.read(re_at), self.read(re_at + 8)]);
        if !re.p() {
            let ctp = self.page();
            re.set_p(true);
            re.set_ctp(ctp);
            self.write(re_at, &re.words());
        }
        let at = re.ctp() + ContextEntry::BYTES * u64::from(devfn);
        self.write(at, &ce.words());
        at
    }

    /// Writes `rid`'s scalable-mode context entry, making the context table if needed.
    pub fn sm_context(&mut self, rta: u64, rid: u16, ce: ScalableContextEntry) -> u64 {
        let [bus, devfn] = rid.to_be_bytes();
        let re_at = rta + ScalableRootEntry::BYTES * u64::from(bus);
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
            self.write(re_at, &re.words());
        }
        let index = u64::from(root::scalable_context_index(devfn));
        let at = re.ctp_for(devfn) + ScalableContextEntry::BYTES * index;
        self.write(at, &ce.words());
        at
    }

    /// Writes `pasid`'s PASID-table entry under the directory at `dir`.
    pub fn pasid_entry(&mut self, dir: u64, pasid: u32, pe: PasidEntry) -> u64 {
        let de_at = dir + PasidDirEntry::BYTES * u64::from(pasid::dir_index(pasid));
        let mut de = PasidDirEntry::from_words([self.read(de_at)]);
        if !de.p() {
            let table = self.page();
            de.set_p(true);
            de.set_smptblptr(table);
            self.write(de_at, &de.words());
        }
        let at = de.smptblptr() + PasidEntry::BYTES * u64::from(pasid::table_index(pasid));
        self.write(at, &pe.words());
        at
    }

    /// Writes the whole of memory as one raw file from address `base` (holes as zeros: only
    /// for layouts whose regions are contiguous from `base`).
    pub fn write_raw(&self, path: &Path, base: u64) {
        let end = self.regions.iter().map(|&(a, l)| a + l).max().unwrap();
        let mut bytes = vec![0u8; (end - base) as usize];
        for &(a, l) in &self.regions {
            let at = (a - base) as usize;
            bytes[at..at + l as usize].copy_from_slice(&self.bytes(a, l));
        }
        std::fs::write(path, bytes).unwrap();
    }

    /// Writes each region to its own raw file in `dir`; returns the `--image` arguments.
    pub fn write_pieces(&self, dir: &Path) -> Vec<String> {
        self.regions
            .iter()
            .enumerate()
            .map(|(i, &(a, l))| {
                let path = dir.join(format!("piece{i}.bin"));
                std::fs::write(&path, self.bytes(a, l)).unwrap();
                format!("{}@{a:#x}", path.display())
            })
            .collect()
    }

    /// Writes memory as an ELF core in QEMU's layout: one PT_LOAD per region.
    pub fn write_elf_core(&self, path: &Path) {
        let segments: Vec<(u64, Vec<u8>)> =
            self.regions.iter().map(|&(a, l)| (a, self.bytes(a, l))).collect();
        std::fs::write(path, qemu_like_core(&segments)).unwrap();
    }
}

/// An ELF64 core as QEMU's dump-guest-memory lays it out: ELF header, a PT_NOTE, then one
/// PT_LOAD per RAM block with the guest-physical address in p_paddr (and p_vaddr 0). The first
/// segment's data is deliberately not page-aligned in the file.
pub fn qemu_like_core(segments: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let phnum = segments.len() + 1;
    let mut out = vec![0u8; 64];
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 2; // ELFCLASS64
    out[5] = 1; // ELFDATA2LSB
    out[6] = 1; // EV_CURRENT
    out[0x10..0x12].copy_from_slice(&4u16.to_le_bytes()); // ET_CORE
    out[0x12..0x14].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    out[0x20..0x28].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    out[0x34..0x36].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    out[0x36..0x38].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    out[0x38..0x3a].copy_from_slice(&(phnum as u16).to_le_bytes());
    let note_len = 24u64;
    let mut data_at = 64 + 56 * phnum as u64 + note_len;
    let ph = |kind: u32, offset: u64, paddr: u64, size: u64| {
        let mut h = vec![0u8; 56];
        h[0..4].copy_from_slice(&kind.to_le_bytes());
        h[8..16].copy_from_slice(&offset.to_le_bytes());
        h[24..32].copy_from_slice(&paddr.to_le_bytes());
        h[32..40].copy_from_slice(&size.to_le_bytes());
        h[40..48].copy_from_slice(&size.to_le_bytes());
        h
    };
    let mut headers = ph(4, 64 + 56 * phnum as u64, 0, note_len); // PT_NOTE
    let mut data = Vec::new();
    for (i, (paddr, bytes)) in segments.iter().enumerate() {
        if i > 0 {
            let pad = (4096 - data_at % 4096) % 4096;
            data.extend(std::iter::repeat_n(0u8, pad as usize));
            data_at += pad;
        }
        headers.extend(ph(1, data_at, *paddr, bytes.len() as u64));
        data.extend(bytes);
        data_at += bytes.len() as u64;
    }
    out.extend(headers);
    out.extend(vec![0u8; note_len as usize]);
    out.extend(data);
    out
}

/// RTADDR_REG for a root table at `rta` in mode `ttm`.
pub fn rtaddr_of(rta: u64, ttm: Ttm) -> u64 {
    rtaddr::TTM.set(rtaddr::RTA.in_place(rta), u64::from(ttm))
}

/// A scratch directory for this test process.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sviommu-inspect-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::File::create(path).unwrap().write_all(bytes).unwrap();
}

// ---------------------------------------------------------------------------------------------
// The demo image: the README's `--walk` example and the CLI tests' tables.
// ---------------------------------------------------------------------------------------------

/// Host tables live in 1 MiB..2 MiB; the guest's RAM (GPA 0..2 MiB) at HPA 2 MiB..4 MiB.
pub const DEMO_TABLES: (u64, u64) = (0x10_0000, 0x10_0000);
pub const DEMO_GUEST_RAM: (u64, u64) = (0x20_0000, 0x20_0000);
/// The requester of the demo device, 00:02.0.
pub const DEMO_RID: u16 = 0x0010;
/// A second device, 00:03.0, whose requests pass through.
pub const DEMO_RID_PT: u16 = 0x0018;
/// PASID 1: the guest process, nested (first stage in guest RAM over the host's second stage).
pub const DEMO_PASID_NESTED: u32 = 1;
/// PASID 2: a kernel-style first-stage table in host memory.
pub const DEMO_PASID_FS: u32 = 2;
/// Virtual addresses the first stages map.
pub const DEMO_VA: u64 = 0x7f00_0000_1000;
/// A read-only page at DEMO_VA + 0x1000.
pub const DEMO_VA_RO: u64 = DEMO_VA + 0x1000;

/// What the demo built, for tests.
pub struct Demo {
    pub image: Image,
    pub rtaddr: u64,
    /// The PASID-table entry of PASID 2 (its address), to aim hostile pointers at.
    pub fs_pasid_entry: u64,
}

/// Builds the demo layout: a scalable-mode root table at 0x100000 with
/// - 00:02.0: PASIDs enabled; requests without PASID use PASID 0, second stage only (the
///   host's IOVA map: guest RAM, GPA 0..2 MiB in 4K pages, at HPA 2 MiB); PASID 1 nested (the
///   guest's 4-level tables in guest RAM over that second stage); PASID 2 first stage only (a
///   4-level table in host memory);
/// - 00:03.0: no PASIDs, pass-through.
///
/// Memory is 1 MiB..4 MiB; written raw from address 0, the first megabyte is zeros.
pub fn demo() -> Demo {
    let mut image = Image::new(&[DEMO_TABLES, DEMO_GUEST_RAM], DEMO_TABLES);
    let rta = image.page();
    // The host's second stage: guest RAM in 4K pages.
    let ss = VtdSecondStage::create(&image.mem, &mut image.frames, vtd_ss::Levels::Four).unwrap();
    let mut gpa = 0;
    while gpa < DEMO_GUEST_RAM.1 {
        let hpa = DEMO_GUEST_RAM.0 + gpa;
        ss.map(&image.mem, &mut image.frames, gpa, hpa, 12, VtdSsAttrs::ALL).unwrap();
        gpa += 0x1000;
    }
    // The guest's process tables, in guest RAM (table frames from GPA 1 MiB up).
    let ram = GuestRam::new(
        &image.mem,
        vec![GuestRamRegion {
            gpa: Gpa(0),
            len_bytes: DEMO_GUEST_RAM.1,
            hpa: Hpa(DEMO_GUEST_RAM.0),
        }],
    );
    let mut guest_frames = FrameAllocator::new(&[(Gpa(0x10_0000), 0x10_0000)]);
    let guest = X86Paging::create(&ram, &mut guest_frames, x86::Levels::Four).unwrap();
    let data = X86Attrs { writable: true, user: true, exec: false, global: false };
    guest.map(&ram, &mut guest_frames, DEMO_VA, 0x4_2000, 12, data).unwrap();
    guest.map(&ram, &mut guest_frames, DEMO_VA_RO, 0x4_3000, 12, X86Attrs::READ_ONLY).unwrap();
    // A first stage in host memory (PGTT first-stage): outputs are host addresses.
    let fs = X86Paging::create(&image.mem, &mut image.frames, x86::Levels::Four).unwrap();
    fs.map(&image.mem, &mut image.frames, DEMO_VA, 0x3f_e000, 12, data).unwrap();
    fs.map(&image.mem, &mut image.frames, DEMO_VA_RO, 0x3f_f000, 12, X86Attrs::READ_ONLY).unwrap();

    let dir = image.page();
    let mut ce = ScalableContextEntry::default();
    ce.set_p(true);
    ce.set_paside(true);
    ce.set_pasiddirptr(dir);
    image.sm_context(rta, DEMO_RID, ce);

    let base = |pgtt| {
        let mut pe = PasidEntry::default();
        pe.set_p(true);
        pe.set_pgtt(pgtt);
        pe.set_did(1);
        pe.set_aw(Aw::Bits48);
        pe.set_fspm(Fspm::FourLevel);
        pe.set_nxe(true);
        pe.set_wpe(true);
        pe.set_sre(true);
        pe.set_ere(true);
        pe
    };
    let mut pe = base(Pgtt::SecondStage);
    pe.set_ssptptr(ss.root);
    image.pasid_entry(dir, 0, pe);
    let mut pe = base(Pgtt::Nested);
    pe.set_ssptptr(ss.root);
    pe.set_fsptptr(guest.root);
    image.pasid_entry(dir, DEMO_PASID_NESTED, pe);
    let mut pe = base(Pgtt::FirstStage);
    pe.set_did(2);
    pe.set_fsptptr(fs.root);
    let fs_pasid_entry = image.pasid_entry(dir, DEMO_PASID_FS, pe);

    // 00:03.0: no PASIDs; requests without PASID use PASID 0 of its own directory: pass-through.
    let dir_pt = image.page();
    let mut ce = ScalableContextEntry::default();
    ce.set_p(true);
    ce.set_pasiddirptr(dir_pt);
    image.sm_context(rta, DEMO_RID_PT, ce);
    let mut pe = PasidEntry::default();
    pe.set_p(true);
    pe.set_pgtt(Pgtt::PassThrough);
    pe.set_did(3);
    image.pasid_entry(dir_pt, 0, pe);

    Demo { image, rtaddr: rtaddr_of(rta, Ttm::Scalable), fs_pasid_entry }
}

/// The `text` block the README shows after the command line `cmd` (which it must contain).
pub fn readme_block<'r>(readme: &'r str, cmd: &str) -> &'r str {
    let start = readme.find(cmd).expect("the README's command line changed");
    let block = &readme[start..];
    let text_start = block.find("```text\n").unwrap() + "```text\n".len();
    &block[text_start..text_start + block[text_start..].find("```").unwrap()]
}

/// A successful run's standard output, with the image `path` shown as `shown_path`.
pub fn output_as_shown(out: std::process::Output, path: &Path, shown_path: &str) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().replace(&path.display().to_string(), shown_path)
}
