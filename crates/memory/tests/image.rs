//! Images: raw files, sparse pieces and ELF cores in QEMU's layout, written by the test.

use std::io::Write;
use std::path::{Path, PathBuf};

use sviommu_memory::image::{detect, elf_core_pieces, raw_pieces};
use sviommu_memory::{HostMemory, Hpa, ImageError, ImageKind, ImagePiece, MemoryError, PhysMemory};

fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sviommu-image-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::File::create(&path).unwrap().write_all(bytes).unwrap();
    path
}

fn words(n: u64, seed: u64) -> Vec<u8> {
    (0..n).flat_map(|i| (seed + i).to_le_bytes()).collect()
}

#[test]
fn raw_file_at_a_base_reads_back_and_stays_unmodified() {
    let bytes = words(1024, 100); // 8 KiB
    let path = scratch("raw.bin", &bytes);
    assert_eq!(detect(&path).unwrap(), ImageKind::Raw);
    let mem = HostMemory::from_pieces(&raw_pieces(&path, Hpa(0x10_0000)).unwrap()).unwrap();
    assert_eq!(mem.read_u64(Hpa(0x10_0000)), Ok(100));
    assert_eq!(mem.read_u64(Hpa(0x10_1ff8)), Ok(100 + 1023));
    assert!(matches!(mem.read_u64(Hpa(0x10_2000)), Err(MemoryError::Outside { .. })));
    assert!(matches!(mem.read_u64(Hpa(0xff000)), Err(MemoryError::Outside { .. })));
    // A/D updates land in the model's private copy, never in the file.
    mem.write_u64(Hpa(0x10_0000), 7).unwrap();
    assert_eq!(mem.read_u64(Hpa(0x10_0000)), Ok(7));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn sparse_pieces_leave_holes_and_refuse_overlap() {
    let a = scratch("a.bin", &words(512, 1));
    let b = scratch("b.bin", &words(512, 1000));
    let piece =
        |path: &Path, addr| ImagePiece { path: path.to_owned(), offset: 0, len: 4096, addr };
    let mem =
        HostMemory::from_pieces(&[piece(&b, Hpa(0x8000_0000)), piece(&a, Hpa(0x1000))]).unwrap();
    assert_eq!(mem.read_u64(Hpa(0x1000)), Ok(1));
    assert_eq!(mem.read_u64(Hpa(0x8000_0008)), Ok(1001));
    assert!(mem.read_u64(Hpa(0x2000)).is_err(), "between the pieces is a hole");
    let clash = HostMemory::from_pieces(&[piece(&a, Hpa(0x1000)), piece(&b, Hpa(0x1800))]);
    assert!(matches!(clash, Err(ImageError::Overlap { addr: 0x1800 })));
}

/// An ELF64 core as QEMU's dump-guest-memory lays it out: ELF header, a PT_NOTE, then one
/// PT_LOAD per RAM block with the guest-physical address in p_paddr. The first segment's data
/// is deliberately not page-aligned in the file, so the copy path is used too.
fn qemu_like_core(segments: &[(u64, Vec<u8>)]) -> Vec<u8> {
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
    let mut data_at = 64 + 56 * phnum as u64 + 24; // after headers and a small note
    let mut headers = Vec::new();
    let ph = |kind: u32, offset: u64, paddr: u64, size: u64| {
        let mut h = vec![0u8; 56];
        h[0..4].copy_from_slice(&kind.to_le_bytes());
        h[8..16].copy_from_slice(&offset.to_le_bytes());
        h[24..32].copy_from_slice(&paddr.to_le_bytes());
        h[32..40].copy_from_slice(&size.to_le_bytes());
        h[40..48].copy_from_slice(&size.to_le_bytes());
        h
    };
    headers.extend(ph(4, 64 + 56 * phnum as u64, 0, 24)); // PT_NOTE
    let mut data = Vec::new();
    for (i, (paddr, bytes)) in segments.iter().enumerate() {
        if i == 1 {
            // Later segments page-aligned, as a mapping would like.
            let pad = (4096 - data_at % 4096) % 4096;
            data.extend(std::iter::repeat_n(0u8, pad as usize));
            data_at += pad;
        }
        headers.extend(ph(1, data_at, *paddr, bytes.len() as u64));
        data.extend(bytes);
        data_at += bytes.len() as u64;
    }
    out.extend(headers);
    out.extend([0u8; 24]);
    out.extend(data);
    out
}

#[test]
fn qemu_elf_core_loads_pt_load_segments_at_their_physical_addresses() {
    let low = words(512, 5);
    let high = words(1024, 9000);
    let path = scratch("core.elf", &qemu_like_core(&[(0x0, low), (0x1_0000_0000, high)]));
    assert_eq!(detect(&path).unwrap(), ImageKind::ElfCore);
    let pieces = elf_core_pieces(&path).unwrap();
    let layout: Vec<(Hpa, u64)> = pieces.iter().map(|p| (p.addr, p.len)).collect();
    assert_eq!(layout, [(Hpa(0), 4096), (Hpa(0x1_0000_0000), 8192)]);
    assert_ne!(pieces[0].offset % 4096, 0, "the first segment exercises the copy path");
    assert_eq!(pieces[1].offset % 4096, 0, "the second exercises the private mapping");
    let mem = HostMemory::from_pieces(&pieces).unwrap();
    assert_eq!(mem.read_u64(Hpa(0x8)), Ok(6));
    assert_eq!(mem.read_u64(Hpa(0x1_0000_1ff8)), Ok(9000 + 1023));
    assert!(mem.read_u64(Hpa(0x1000)).is_err(), "beyond the first segment is a hole");
}

#[test]
fn broken_elf_files_are_named_errors() {
    let mut core = qemu_like_core(&[(0, words(512, 0))]);
    // A PT_LOAD that runs past the end of the file.
    core.truncate(core.len() - 100);
    let path = scratch("short.elf", &core);
    assert!(matches!(
        elf_core_pieces(&path),
        Err(ImageError::BadElf { what, .. }) if what.contains("past the end")
    ));
    let path = scratch("tiny.elf", b"\x7fELF\x02");
    assert!(matches!(elf_core_pieces(&path), Err(ImageError::BadElf { .. })));
    let mut big_endian = qemu_like_core(&[(0, words(512, 0))]);
    big_endian[5] = 2;
    let path = scratch("be.elf", &big_endian);
    assert!(matches!(
        elf_core_pieces(&path),
        Err(ImageError::BadElf { what: "not little-endian", .. })
    ));
    let path = scratch("empty.bin", b"");
    assert!(matches!(raw_pieces(&path, Hpa(0)), Err(ImageError::Empty { .. })));
    assert!(matches!(detect(Path::new("/nonexistent/sviommu")), Err(ImageError::Io { .. })));
}
