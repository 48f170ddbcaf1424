//! Memory images: what `sviommu inspect` reads tables from.
//!
//! - a raw file, file offset `o` at address `base + o`;
//! - several raw pieces at given addresses (sparse captures);
//! - the ELF core QEMU's `dump-guest-memory` writes, whose `PT_LOAD` segments carry the guest's
//!   physical addresses in `p_paddr`.
//!
//! Whatever the image does not contain is a hole: reading it is `MemoryError::Outside`, never
//! zeros. Images are mapped privately (copy-on-write), so a walk that sets A/D bits changes the
//! model's view and never the file.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

use crate::addr::Hpa;
use crate::host::HostMemory;

/// Why an image could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// An ELF file whose headers do not hold together.
    #[error("{path}: not a usable ELF core: {what}")]
    BadElf {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: &'static str,
    },
    /// An ELF core with no `PT_LOAD` segment, or an empty raw file.
    #[error("{path}: the image holds no memory")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// Two pieces claim the same address.
    #[error("pieces overlap at {addr:#x}")]
    Overlap {
        /// Where they meet.
        addr: u64,
    },
    /// An address range beyond 2^64, or too large for this host to map.
    #[error("{path}: a piece at {addr:#x} does not fit the address space")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Start of the piece.
        addr: u64,
    },
}

/// One contiguous piece of an image: `len` bytes of `path` from `offset`, at address `addr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImagePiece {
    /// The file holding the bytes.
    pub path: PathBuf,
    /// Where in the file they start.
    pub offset: u64,
    /// How many there are.
    pub len: u64,
    /// The physical address of the first.
    pub addr: Hpa,
}

/// What kind of file an image is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageKind {
    /// Raw bytes.
    Raw,
    /// An ELF core (QEMU `dump-guest-memory`).
    ElfCore,
}

const ELF_MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];
const PT_LOAD: u32 = 1;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io { path: path.to_owned(), source }
}

/// Whether the file starts with the ELF magic.
pub fn detect(path: &Path) -> Result<ImageKind, ImageError> {
    let mut magic = [0u8; 4];
    let mut f = File::open(path).map_err(io_err(path))?;
    let n = f.read(&mut magic).map_err(io_err(path))?;
    Ok(if n == 4 && magic == ELF_MAGIC { ImageKind::ElfCore } else { ImageKind::Raw })
}

/// The pieces of a raw file loaded at `base`.
pub fn raw_pieces(path: &Path, base: Hpa) -> Result<Vec<ImagePiece>, ImageError> {
    let len = std::fs::metadata(path).map_err(io_err(path))?.len();
    if len == 0 {
        return Err(ImageError::Empty { path: path.to_owned() });
    }
    Ok(vec![ImagePiece { path: path.to_owned(), offset: 0, len, addr: base }])
}

/// Little-endian field readers over a header buffer; a short buffer is a bad ELF.
struct Fields<'a> {
    bytes: &'a [u8],
    path: &'a Path,
}

impl Fields<'_> {
    fn get<const N: usize>(&self, at: usize) -> Result<[u8; N], ImageError> {
        self.bytes
            .get(at..at + N)
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or(ImageError::BadElf { path: self.path.to_owned(), what: "truncated header" })
    }
    fn u16(&self, at: usize) -> Result<u16, ImageError> {
        self.get::<2>(at).map(u16::from_le_bytes)
    }
    fn u32(&self, at: usize) -> Result<u32, ImageError> {
        self.get::<4>(at).map(u32::from_le_bytes)
    }
    fn u64(&self, at: usize) -> Result<u64, ImageError> {
        self.get::<8>(at).map(u64::from_le_bytes)
    }
}

/// The `PT_LOAD` segments of an ELF core as pieces at their physical addresses (`p_paddr`).
///
/// Both ELF classes are read (QEMU writes ELF32 for small 32-bit guests); only little-endian
/// cores are accepted. A segment whose `p_memsz` exceeds `p_filesz` contributes only the bytes
/// the file holds: the rest was not captured, so it is a hole.
pub fn elf_core_pieces(path: &Path) -> Result<Vec<ImagePiece>, ImageError> {
    let bad = |what| ImageError::BadElf { path: path.to_owned(), what };
    let mut f = File::open(path).map_err(io_err(path))?;
    let file_len = f.metadata().map_err(io_err(path))?.len();
    let mut ident = [0u8; 64];
    let n = f.read(&mut ident).map_err(io_err(path))?;
    let header = Fields { bytes: ident.get(..n).unwrap_or(&[]), path };
    if header.get::<4>(0)? != ELF_MAGIC {
        return Err(bad("no ELF magic"));
    }
    let class64 = match header.get::<1>(4)? {
        [1] => false,
        [2] => true,
        _ => return Err(bad("unknown ELF class")),
    };
    if header.get::<1>(5)? != [1] {
        return Err(bad("not little-endian"));
    }
    let (phoff, phentsize, phnum) = if class64 {
        (header.u64(0x20)?, header.u16(0x36)?, header.u16(0x38)?)
    } else {
        (u64::from(header.u32(0x1c)?), header.u16(0x2a)?, header.u16(0x2c)?)
    };
    let min_entry = if class64 { 56 } else { 32 };
    if usize::from(phentsize) < min_entry {
        return Err(bad("program header entries too small"));
    }
    let table_len = u64::from(phentsize) * u64::from(phnum);
    if phoff.checked_add(table_len).is_none_or(|end| end > file_len) {
        return Err(bad("program headers beyond the end of the file"));
    }
    let mut table = vec![0u8; usize::try_from(table_len).map_err(|_| bad("too many headers"))?];
    f.seek(SeekFrom::Start(phoff)).map_err(io_err(path))?;
    f.read_exact(&mut table).map_err(io_err(path))?;

    let mut pieces = Vec::new();
    for entry in table.chunks_exact(usize::from(phentsize)) {
        let ph = Fields { bytes: entry, path };
        if ph.u32(0)? != PT_LOAD {
            continue;
        }
        let (offset, paddr, filesz) = if class64 {
            (ph.u64(8)?, ph.u64(24)?, ph.u64(32)?)
        } else {
            (u64::from(ph.u32(4)?), u64::from(ph.u32(12)?), u64::from(ph.u32(16)?))
        };
        if filesz == 0 {
            continue;
        }
        if offset.checked_add(filesz).is_none_or(|end| end > file_len) {
            return Err(bad("a PT_LOAD segment runs past the end of the file"));
        }
        pieces.push(ImagePiece { path: path.to_owned(), offset, len: filesz, addr: Hpa(paddr) });
    }
    if pieces.is_empty() {
        return Err(ImageError::Empty { path: path.to_owned() });
    }
    Ok(pieces)
}

impl HostMemory {
    /// Memory made of image pieces, each mapped privately from its file (copy-on-write), or
    /// copied when its file offset is not page-aligned. Everything else is a hole.
    pub fn from_pieces(pieces: &[ImagePiece]) -> Result<Self, ImageError> {
        let mut sorted: Vec<&ImagePiece> = pieces.iter().collect();
        sorted.sort_by_key(|p| p.addr);
        for pair in sorted.windows(2) {
            if let [a, b] = pair {
                if a.addr.0.saturating_add(a.len) > b.addr.0 {
                    return Err(ImageError::Overlap { addr: b.addr.0 });
                }
            }
        }
        let mut regions = Vec::with_capacity(sorted.len());
        for piece in sorted {
            regions.push(map_piece(piece)?);
        }
        let inner = GuestMemoryMmap::from_regions(regions)
            .map_err(|_| ImageError::Overlap { addr: pieces.first().map_or(0, |p| p.addr.0) })?;
        Ok(Self::from_guest_memory(inner))
    }
}

fn map_piece(piece: &ImagePiece) -> Result<GuestRegionMmap<()>, ImageError> {
    let path = piece.path.as_path();
    let too_large = || ImageError::TooLarge { path: piece.path.clone(), addr: piece.addr.0 };
    let len = usize::try_from(piece.len).map_err(|_| too_large())?;
    if piece.addr.0.checked_add(piece.len).is_none() {
        return Err(too_large());
    }
    let file = File::open(path).map_err(io_err(path))?;
    let region = if piece.offset % 4096 == 0 {
        let file_offset = vm_memory::FileOffset::new(file, piece.offset);
        MmapRegion::<()>::build(
            Some(file_offset),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_NORESERVE,
        )
        .map_err(|e| ImageError::Io { path: piece.path.clone(), source: io::Error::other(e) })?
    } else {
        let region = MmapRegion::<()>::new(len).map_err(|e| ImageError::Io {
            path: piece.path.clone(),
            source: io::Error::other(e),
        })?;
        let mut f = file;
        f.seek(SeekFrom::Start(piece.offset)).map_err(io_err(path))?;
        let guest =
            GuestRegionMmap::new(region, GuestAddress(piece.addr.0)).ok_or_else(too_large)?;
        copy_into(&mut f, &guest, len).map_err(io_err(path))?;
        return Ok(guest);
    };
    GuestRegionMmap::new(region, GuestAddress(piece.addr.0)).ok_or_else(too_large)
}

fn copy_into(f: &mut File, region: &GuestRegionMmap<()>, len: usize) -> io::Result<()> {
    use vm_memory::{Bytes, MemoryRegionAddress};
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0usize;
    while done < len {
        let want = (len - done).min(buf.len());
        let chunk = buf.get_mut(..want).unwrap_or_default();
        f.read_exact(chunk)?;
        region.write_slice(chunk, MemoryRegionAddress(done as u64)).map_err(io::Error::other)?;
        done += want;
    }
    Ok(())
}
