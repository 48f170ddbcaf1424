//! The memory `inspect` reads: image files loaded with `sviommu_memory::image`, and a view of
//! them that remembers every access that fell into a hole, so a walk can say which read failed.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;
use sviommu_memory::image::{detect, elf_core_pieces, raw_pieces};
use sviommu_memory::{HostMemory, Hpa, ImageKind, ImagePiece, MemoryError, PhysMemory};

use super::parse::{self, ParseError};
use super::record::Hex;
use super::InspectError;

/// The image options every architecture takes.
#[derive(Clone, Debug, clap::Args)]
pub struct ImageArgs {
    /// A memory image: a raw dump or QEMU ELF core (FILE), or a raw piece at ADDR; repeatable.
    ///
    /// FILE alone is either a raw dump, whose byte at offset N is the physical address
    /// `--image-base` + N, or an ELF core from QEMU's `dump-guest-memory`, recognised by its
    /// magic, whose PT_LOAD segments sit at their physical addresses. FILE@ADDR is a raw piece
    /// at physical address ADDR. Repeat for sparse captures. What no image covers is a hole: a
    /// table read there is the unit's access fault, never zeros.
    #[arg(long = "image", value_name = "FILE[@ADDR]", required = true, value_parser = image_spec)]
    pub images: Vec<ImageSpec>,

    /// Physical address of the first byte of each raw FILE given without @ADDR.
    #[arg(long, value_name = "ADDR", default_value = "0", value_parser = parse::number)]
    pub image_base: u64,
}

/// One `--image` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    /// The file.
    pub path: PathBuf,
    /// `@ADDR`: where a raw piece starts.
    pub at: Option<u64>,
}

fn image_spec(s: &str) -> Result<ImageSpec, ParseError> {
    parse::image_spec(s).map(|(path, at)| ImageSpec { path, at })
}

/// One piece of the loaded image, for the report header.
#[derive(Clone, Debug, Serialize)]
pub struct Piece {
    /// First physical address.
    pub addr: Hex,
    /// Bytes.
    pub len: u64,
    /// Where it came from.
    pub file: String,
    /// `raw` or `elf`.
    pub kind: &'static str,
}

/// Loads the images `args` names.
pub fn load(args: &ImageArgs) -> Result<(HostMemory, Vec<Piece>), InspectError> {
    let mut pieces: Vec<(ImagePiece, &'static str)> = Vec::new();
    for spec in &args.images {
        let kind = detect(&spec.path)?;
        match (kind, spec.at) {
            (ImageKind::ElfCore, Some(_)) => {
                return Err(InspectError::ElfAtAddress { path: spec.path.clone() })
            }
            (ImageKind::ElfCore, None) => {
                pieces.extend(elf_core_pieces(&spec.path)?.into_iter().map(|p| (p, "elf")));
            }
            (ImageKind::Raw, at) => {
                let base = Hpa(at.unwrap_or(args.image_base));
                pieces.extend(raw_pieces(&spec.path, base)?.into_iter().map(|p| (p, "raw")));
            }
        }
    }
    let only: Vec<ImagePiece> = pieces.iter().map(|(p, _)| p.clone()).collect();
    let mem = HostMemory::from_pieces(&only)?;
    let mut shown: Vec<Piece> = pieces
        .into_iter()
        .map(|(p, kind)| Piece {
            addr: Hex(p.addr.0),
            len: p.len,
            file: p.path.display().to_string(),
            kind,
        })
        .collect();
    shown.sort_by_key(|p| p.addr.0);
    Ok((mem, shown))
}

/// An access that touched a hole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Miss {
    /// First byte.
    pub addr: u64,
    /// Bytes.
    pub len: u64,
}

/// The image as the model sees it: [`HostMemory`], plus a record of every access that failed,
/// so a walk can show the read that hit a hole (the model reports only the fault reason).
#[derive(Debug)]
pub struct ImageMemory {
    mem: HostMemory,
    misses: Mutex<Vec<Miss>>,
}

impl ImageMemory {
    /// A view of `mem`.
    pub fn new(mem: HostMemory) -> Self {
        Self { mem, misses: Mutex::new(Vec::new()) }
    }

    /// The accesses that failed since the last call.
    pub fn take_misses(&self) -> Vec<Miss> {
        std::mem::take(&mut *self.misses.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn note<T>(&self, r: Result<T, MemoryError>, addr: Hpa, len: u64) -> Result<T, MemoryError> {
        if r.is_err() {
            let mut misses = self.misses.lock().unwrap_or_else(PoisonError::into_inner);
            // Bounded: one walk fails at most once, but an embedder might never take them.
            if misses.len() < 64 {
                misses.push(Miss { addr: addr.0, len });
            }
        }
        r
    }
}

impl PhysMemory for ImageMemory {
    type Addr = Hpa;

    fn read_u64(&self, addr: Hpa) -> Result<u64, MemoryError> {
        self.note(self.mem.read_u64(addr), addr, 8)
    }
    fn write_u64(&self, addr: Hpa, value: u64) -> Result<(), MemoryError> {
        self.note(self.mem.write_u64(addr, value), addr, 8)
    }
    fn compare_exchange_u64(
        &self,
        addr: Hpa,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        self.note(self.mem.compare_exchange_u64(addr, current, new), addr, 8)
    }
    fn read(&self, addr: Hpa, buf: &mut [u8]) -> Result<(), MemoryError> {
        let len = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        self.note(self.mem.read(addr, buf), addr, len)
    }
    fn write(&self, addr: Hpa, buf: &[u8]) -> Result<(), MemoryError> {
        let len = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        self.note(self.mem.write(addr, buf), addr, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misses_are_recorded_once_and_taken() {
        let mem = ImageMemory::new(HostMemory::new(&[(Hpa(0x1000), 0x1000)]).unwrap());
        assert_eq!(mem.read_u64(Hpa(0x1008)), Ok(0));
        assert!(mem.read_u64(Hpa(0x3000)).is_err());
        let mut buf = [0u8; 64];
        assert!(mem.read(Hpa(0x1fe0), &mut buf).is_err(), "runs past the end");
        assert_eq!(
            mem.take_misses(),
            [Miss { addr: 0x3000, len: 8 }, Miss { addr: 0x1fe0, len: 64 }]
        );
        assert!(mem.take_misses().is_empty());
    }
}
