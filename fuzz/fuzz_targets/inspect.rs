//! `sviommu inspect` on arbitrary images, as the command runs it: image files on disk (raw
//! pieces at an address, or ELF cores with arbitrary program headers, or raw bytes that happen
//! to start with the ELF magic), register values, a request file, `--dump`, `--walk`, text or
//! JSON. The library entry point the binary calls (`sviommu::inspect::run`) does the rest:
//! loading, programming the model, translating, decoding, printing.
//!
//! Arguments are the values the command line's parsers can produce (a HAW of 12 to 52, any
//! 32-bit PASID or StreamID); everything else (image bytes, headers, request lines) is
//! arbitrary. An unusable image or request file is an `InspectError`; never a panic.

#![no_main]

use std::path::{Path, PathBuf};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sviommu::inspect::image::{ImageArgs, ImageSpec};
use sviommu::inspect::parse::access_name;
use sviommu::inspect::smmuv3::SmmuArgs;
use sviommu::inspect::vtd::VtdArgs;
use sviommu::inspect::{run, Arch};
use sviommu::Format;
use sviommu_fuzz::{Acc, Addr};

/// One program header of a made-up ELF core.
#[derive(Debug, Arbitrary)]
struct Phdr {
    /// PT_LOAD (1) most of the time.
    not_load: Option<u32>,
    offset: Addr,
    paddr: Addr,
    filesz: Addr,
}

#[derive(Debug, Arbitrary)]
enum Image {
    /// A raw file: at `--image-base` (no `@`), or at `FILE@ADDR`.
    Raw { bytes: Vec<u8>, at: Option<Addr> },
    /// An ELF core built from arbitrary program headers, followed by `data`.
    Elf { class64: bool, phdrs: Vec<Phdr>, data: Vec<u8> },
}

/// One request line: `device,pasid-or-empty,addr,access`.
#[derive(Debug, Arbitrary)]
struct Line {
    id: u32,
    sub: Option<u32>,
    addr: Addr,
    acc: Acc,
}

#[derive(Debug, Arbitrary)]
enum Query {
    One {
        id: u32,
        sub: Option<u32>,
        addr: Addr,
        acc: Acc,
    },
    /// A request file of well-formed lines.
    Lines(Vec<Line>),
    /// A request file of any text.
    Text(String),
    Dump(u32),
}

#[derive(Debug, Arbitrary)]
enum Unit {
    Vtd {
        rtaddr: Addr,
        cap: Option<u64>,
        ecap: Option<u64>,
        haw: u8,
    },
    Smmuv3 {
        strtab_base: Addr,
        strtab_base_cfg: u32,
        idr0: Option<u32>,
        idr1: Option<u32>,
        idr3: Option<u32>,
        idr5: Option<u32>,
    },
}

#[derive(Debug, Arbitrary)]
struct Input {
    unit: Unit,
    images: Vec<Image>,
    image_base: Addr,
    query: Query,
    walk: bool,
    json: bool,
}

fn elf(class64: bool, phdrs: &[Phdr], data: &[u8]) -> Vec<u8> {
    let (ehsize, phentsize) = if class64 { (64u16, 56u16) } else { (52, 32) };
    let mut f = vec![0u8; usize::from(ehsize)];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = if class64 { 2 } else { 1 };
    f[5] = 1; // little-endian
    f[6] = 1;
    f[16] = 4; // ET_CORE
    let phnum = u16::try_from(phdrs.len()).unwrap_or(u16::MAX);
    if class64 {
        f[0x20..0x28].copy_from_slice(&u64::from(ehsize).to_le_bytes());
        f[0x36..0x38].copy_from_slice(&phentsize.to_le_bytes());
        f[0x38..0x3a].copy_from_slice(&phnum.to_le_bytes());
    } else {
        f[0x1c..0x20].copy_from_slice(&u32::from(ehsize).to_le_bytes());
        f[0x2a..0x2c].copy_from_slice(&phentsize.to_le_bytes());
        f[0x2c..0x2e].copy_from_slice(&phnum.to_le_bytes());
    }
    for p in phdrs.iter().take(usize::from(phnum)) {
        let mut e = vec![0u8; usize::from(phentsize)];
        let p_type = p.not_load.unwrap_or(1);
        e[..4].copy_from_slice(&p_type.to_le_bytes());
        let (offset, paddr, filesz) = (p.offset.get(), p.paddr.get(), p.filesz.get());
        if class64 {
            e[8..16].copy_from_slice(&offset.to_le_bytes());
            e[24..32].copy_from_slice(&paddr.to_le_bytes());
            e[32..40].copy_from_slice(&filesz.to_le_bytes());
        } else {
            // ELF32 fields are 32 bits: the low half of each.
            e[4..8].copy_from_slice(&(offset as u32).to_le_bytes());
            e[12..16].copy_from_slice(&(paddr as u32).to_le_bytes());
            e[16..20].copy_from_slice(&(filesz as u32).to_le_bytes());
        }
        f.extend_from_slice(&e);
    }
    f.extend_from_slice(data);
    f
}

/// A directory of this process's own, for the files `inspect` reads.
fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sviommu-fuzz-inspect-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("fuzz harness: cannot make {}: {e}", dir.display()));
    dir
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes)
        .unwrap_or_else(|e| panic!("fuzz harness: cannot write {}: {e}", path.display()));
}

fuzz_target!(|input: Input| {
    let dir = scratch();
    let mut images = Vec::new();
    for (i, img) in input.images.iter().take(4).enumerate() {
        let path = dir.join(format!("image{i}"));
        match img {
            Image::Raw { bytes, at } => {
                write(&path, bytes);
                images.push(ImageSpec { path, at: at.map(Addr::get) });
            }
            Image::Elf { class64, phdrs, data } => {
                write(&path, &elf(*class64, phdrs, data));
                images.push(ImageSpec { path, at: None });
            }
        }
    }
    if images.is_empty() {
        // The command line requires one `--image`: an empty file, which is refused.
        let path = dir.join("image0");
        write(&path, &[]);
        images.push(ImageSpec { path, at: None });
    }
    let image = ImageArgs { images, image_base: input.image_base.get() };
    let requests_path = dir.join("requests");
    let (one, requests, dump) = match &input.query {
        Query::One { id, sub, addr, acc } => (Some((*id, *sub, addr.get(), *acc)), None, None),
        Query::Lines(lines) => {
            let text: String = lines
                .iter()
                .map(|l| {
                    let sub = l.sub.map(|s| format!("{s:#x}")).unwrap_or_default();
                    let id = match input.unit {
                        // A requester ID, written as bus:dev.fn.
                        Unit::Vtd { .. } => {
                            let rid = l.id as u16;
                            format!("{:02x}:{:02x}.{}", rid >> 8, (rid >> 3) & 0x1f, rid & 7)
                        }
                        Unit::Smmuv3 { .. } => l.id.to_string(),
                    };
                    format!("{id},{sub},{:#x},{}\n", l.addr.get(), access_name(l.acc.into()))
                })
                .collect();
            write(&requests_path, text.as_bytes());
            (None, Some(requests_path), None)
        }
        Query::Text(text) => {
            write(&requests_path, text.as_bytes());
            (None, Some(requests_path), None)
        }
        Query::Dump(id) => (None, None, Some(*id)),
    };
    let format = if input.json { Format::Json } else { Format::Text };
    // `--dump` conflicts with `--walk` on the command line.
    let walk = input.walk && dump.is_none();
    let arch = match input.unit {
        Unit::Vtd { rtaddr, cap, ecap, haw } => Arch::Vtd(VtdArgs {
            image,
            rtaddr: rtaddr.get(),
            cap,
            ecap,
            haw: 12 + haw % 41,
            device: one.map(|o| o.0 as u16),
            pasid: one.and_then(|o| o.1),
            addr: one.map(|o| o.2),
            access: one.map(|o| o.3.into()),
            privileged: one.is_some_and(|o| o.3.privileged),
            requests,
            dump: dump.map(|d| d as u16),
            walk,
            format,
        }),
        Unit::Smmuv3 { strtab_base, strtab_base_cfg, idr0, idr1, idr3, idr5 } => {
            Arch::Smmuv3(SmmuArgs {
                image,
                strtab_base: strtab_base.get(),
                strtab_base_cfg,
                idr0,
                idr1,
                idr3,
                idr5,
                device: one.map(|o| o.0),
                ssid: one.and_then(|o| o.1),
                addr: one.map(|o| o.2),
                access: one.map(|o| o.3.into()),
                privileged: one.is_some_and(|o| o.3.privileged),
                requests,
                dump,
                walk,
                format,
            })
        }
    };
    let mut out = Vec::new();
    let _ = run(&arch, &mut out);
});
