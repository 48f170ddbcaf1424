//! `sviommu inspect vtd`: a VT-d unit's tables in a memory image, translated and decoded by
//! the hardware model.
//!
//! The inspector builds a [`Vtd`] over the image and programs it as a driver would (RTADDR,
//! then GCMD.SRTP, then GCMD.TE, through `mmio_write`), with empty caches. A request goes
//! through [`Vtd::translate_observed`]; what the model reports reading is decoded with the
//! `sviommu_vtd::spec` views ([`decode`]). `--dump` reads the structures of one device itself,
//! again decoding only through the spec views ([`dump`]).

use std::path::PathBuf;

use sviommu_memory::HostMemory;
use sviommu_pgtable::{Access, Stage, WalkObserver, WalkStep};
use sviommu_vtd::hw::{CacheParams, DmaRequest, Vtd, VtdParams};
use sviommu_vtd::spec::regs::{self, gcmd, gsts, rtaddr, rtaddr::Ttm};

use super::image::{self, ImageArgs, ImageMemory, Piece};
use super::parse;
use super::record::{FaultInfo, Hex, RequestRecord, Requester, Step, Stop, Translated};
use super::InspectError;
use crate::Format;

pub mod decode;
pub mod dump;

/// `sviommu inspect vtd`.
#[derive(Clone, Debug, clap::Args)]
#[command(
    group(clap::ArgGroup::new("query").required(true).args(["device", "requests", "dump"])),
    after_long_help = AFTER_HELP
)]
pub struct VtdArgs {
    #[command(flatten)]
    pub image: ImageArgs,

    /// RTADDR_REG as the driver wrote it, TTM bits included.
    ///
    /// Bits 63:12 are the root table's address, bits 11:10 (TTM) the mode: 00 legacy,
    /// 01 scalable, 11 abort-DMA. For example 0x7f3e0400 is a scalable-mode root table at
    /// 0x7f3e0000.
    #[arg(long, value_name = "VALUE", value_parser = parse::number)]
    pub rtaddr: u64,

    /// CAP_REG of the unit [default: every width the model has].
    ///
    /// The default unit has SAGAW 39/48/57-bit, MGAW 57, 2M and 1G second-stage pages, 5-level
    /// first-stage paging and 1G first-stage pages.
    #[arg(long, value_name = "VALUE", value_parser = parse::number)]
    pub cap: Option<u64>,

    /// ECAP_REG of the unit [default: every mode the model has].
    ///
    /// The default unit has legacy and scalable mode, first and second stage, nested,
    /// pass-through, 20-bit PASIDs, RID_PASID, RID_PRIV, supervisor and execute requests and
    /// second-stage A/D.
    #[arg(long, value_name = "VALUE", value_parser = parse::number)]
    pub ecap: Option<u64>,

    /// Host address width in bits (the ACPI DMAR table's HAW field + 1).
    ///
    /// Pointer bits at and above it are reserved.
    #[arg(long, value_name = "BITS", default_value_t = 52,
          value_parser = clap::value_parser!(u8).range(12..=52))]
    pub haw: u8,

    /// Translate one request from this device: bus:dev.fn, 0000:bus:dev.fn, or a requester ID.
    #[arg(long, value_name = "BDF", value_parser = parse::requester_id, requires = "addr")]
    pub device: Option<u16>,

    /// The request's PASID (a PASID TLP prefix); without it the request has none.
    #[arg(long, value_name = "N", value_parser = parse::pasid, requires = "device")]
    pub pasid: Option<u32>,

    /// The request's address (IOVA, or GVA for a PASID with first-stage tables).
    #[arg(long, value_name = "ADDR", value_parser = parse::number, requires = "device")]
    pub addr: Option<u64>,

    /// read, write or exec [default: read].
    #[arg(long, value_name = "ACCESS", value_parser = parse::access, requires = "device")]
    pub access: Option<Access>,

    /// A supervisor (privileged) request.
    ///
    /// VT-d takes privilege and execute from the PASID prefix, so the unit ignores both on a
    /// request without PASID.
    #[arg(long = "priv", requires = "device")]
    pub privileged: bool,

    /// Translate every request in FILE, one `device,pasid-or-empty,addr,access` per line.
    ///
    /// For example `00:02.0,1,0x7f0000001000,write+priv` (access: read, write or exec, +priv
    /// for a supervisor request). Blank lines and lines starting with # are skipped; the first
    /// malformed line stops the run with its line number.
    #[arg(long, value_name = "FILE")]
    pub requests: Option<PathBuf>,

    /// Decode this device's root, context and PASID entries, and list the devices present.
    ///
    /// Shows the root entry, the context entry and every present PASID-directory and
    /// PASID-table entry of the device (up to a cap, said when reached), and every device that
    /// has a present context entry.
    #[arg(long, value_name = "BDF", value_parser = parse::requester_id, conflicts_with = "walk")]
    pub dump: Option<u16>,

    /// Show every structure and page-table entry the unit read, decoded, in order.
    #[arg(long)]
    pub walk: bool,

    /// text for people; json: one JSON object per request (JSON lines), one for --dump.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

const AFTER_HELP: &str = "\
The unit is the sviommu VT-d hardware model, programmed as a driver would program it (RTADDR, \
then GCMD.SRTP, then GCMD.TE) with empty caches: what this prints is what the model does.

Images are mapped copy-on-write. The accessed and dirty bits a walk sets land only in the \
model's private copy: the files are never written, and a later request in the same run sees \
them, as it would on the hardware.

A request that faults is an answer, not an error: it prints the fault reason (Appendix A code \
and name) and exits 0. A table read outside every image is the unit's access fault (for \
example 0x58, PASID entry access error), shown with --walk as the read that missed.

Exit status: 0 answered; 1 an input could not be used (image, request file); 2 usage (a bad \
option value, such as a malformed BDF).

Example:
  sviommu inspect vtd --image guest.core --rtaddr 0x7f3e0400 \\
      --device 00:02.0 --pasid 1 --addr 0x7f0000001040 --access write --walk";

/// What the unit is told: its registers and its host address width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchors {
    /// RTADDR_REG, TTM included.
    pub rtaddr: u64,
    /// CAP_REG, ECAP_REG, HAW.
    pub params: VtdParams,
}

impl Anchors {
    /// The anchors the arguments give.
    pub fn from_args(args: &VtdArgs) -> Self {
        let d = VtdParams::default();
        Self {
            rtaddr: args.rtaddr,
            params: VtdParams {
                cap: args.cap.unwrap_or(d.cap),
                ecap: args.ecap.unwrap_or(d.ecap),
                haw: args.haw,
                ..d
            },
        }
    }
}

/// One request to translate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The request file's line, if any.
    pub line: Option<usize>,
    /// Requester ID.
    pub rid: u16,
    /// PASID prefix.
    pub pasid: Option<u32>,
    /// Input address.
    pub addr: u64,
    /// Access.
    pub access: Access,
}

/// A VT-d unit over a memory image, programmed and ready.
#[derive(Debug)]
pub struct VtdInspector {
    vtd: Vtd<ImageMemory>,
    /// RTADDR_REG as the unit holds it (reserved bits read 0).
    rtaddr: u64,
}

/// Sees what the model reads: counts it, and records it decoded when the walk is wanted.
struct Recorder {
    haw: u8,
    devfn: u8,
    keep: bool,
    reads: u32,
    steps: Vec<Step>,
}

/// VT-d's names for the stages.
pub fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::S1 => "first",
        Stage::S2 => "second",
    }
}

/// The address space a stage's table addresses are in when they are not memory addresses: only
/// a nested first stage's are, and they are guest physical addresses.
pub fn table_space(_stage: &str) -> &'static str {
    "GPA"
}

impl WalkObserver for Recorder {
    fn step(&mut self, s: WalkStep) {
        self.reads = self.reads.saturating_add(1);
        if self.keep {
            self.steps.push(Step::Entry {
                stage: stage_name(s.stage),
                level: s.level,
                table_addr: Hex(s.table_addr),
                mem_addr: Hex(s.mem_addr),
                raw: Hex(s.raw),
                fields: decode::entry(s.stage, s.raw),
            });
        }
    }

    fn structure(&mut self, what: &'static str, mem_addr: u64, words: &[u64]) {
        self.reads = self.reads.saturating_add(1);
        if self.keep {
            let (fields, reserved_bits) =
                decode::structure(what, words, self.haw, self.devfn).unwrap_or_default();
            self.steps.push(Step::Structure {
                what,
                mem_addr: Hex(mem_addr),
                words: words.iter().map(|&w| Hex(w)).collect(),
                fields,
                reserved_bits,
            });
        }
    }
}

impl VtdInspector {
    /// A unit over `mem`, its registers set from `anchors` through MMIO as a driver sets them,
    /// translation enabled.
    pub fn new(mem: HostMemory, anchors: Anchors) -> Result<Self, InspectError> {
        // Every request is answered from the image, as a cold unit would: a cached context
        // entry or translation would hide the reads `--walk` is there to show.
        let params = VtdParams { caches: CacheParams::NONE, ..anchors.params };
        let vtd = Vtd::new(ImageMemory::new(mem), params);
        vtd.mmio_write(regs::RTADDR.0, 8, anchors.rtaddr);
        vtd.mmio_write(regs::GCMD.0, 4, gcmd::SRTP.mask());
        if !gsts::RTPS.is_set(vtd.mmio_read(regs::GSTS.0, 4)) {
            return Err(InspectError::Model("GSTS.RTPS clear after GCMD.SRTP"));
        }
        vtd.mmio_write(regs::GCMD.0, 4, gcmd::TE.mask());
        if !gsts::TES.is_set(vtd.mmio_read(regs::GSTS.0, 4)) {
            return Err(InspectError::Model("GSTS.TES clear after GCMD.TE"));
        }
        let rtaddr = vtd.mmio_read(regs::RTADDR.0, 8);
        Ok(Self { vtd, rtaddr })
    }

    /// The unit's parameters.
    pub fn params(&self) -> &VtdParams {
        self.vtd.params()
    }

    /// RTADDR_REG as the unit latched it.
    pub fn rtaddr(&self) -> u64 {
        self.rtaddr
    }

    /// The mode RTADDR.TTM selects, by name.
    pub fn mode(&self) -> &'static str {
        match Ttm::try_from(rtaddr::TTM.get(self.rtaddr)) {
            Ok(Ttm::Legacy) => "legacy",
            Ok(Ttm::Scalable) => "scalable",
            Ok(Ttm::AbortDma) => "abort-DMA",
            Err(_) => "reserved TTM",
        }
    }

    /// The root table's address.
    pub fn root_table(&self) -> u64 {
        rtaddr::RTA.in_place(self.rtaddr)
    }

    pub(crate) fn memory(&self) -> &ImageMemory {
        self.vtd.memory()
    }

    /// Translates one request, recording every read when `walk`.
    pub fn translate(&self, req: &Request, walk: bool) -> RequestRecord {
        let mut dma = DmaRequest::new(req.rid, req.addr, req.access);
        if let Some(p) = req.pasid {
            dma = dma.with_pasid(p);
        }
        let [_, devfn] = req.rid.to_be_bytes();
        let recorder =
            Recorder { haw: self.params().haw, devfn, keep: walk, reads: 0, steps: Vec::new() };
        drop(self.memory().take_misses());
        let (result, mut recorder) = self.vtd.translate_observed(&dma, recorder);
        let misses = self.memory().take_misses();
        let failed = u32::try_from(misses.len()).unwrap_or(u32::MAX);
        if walk {
            recorder.steps.extend(
                misses.iter().map(|m| Step::Outside { mem_addr: Hex(m.addr), bytes: m.len }),
            );
        }
        let (result, reads) = match result {
            Ok(t) => (
                Ok(Translated {
                    output: t.output,
                    page_size: 1u64.checked_shl(t.page_lg2.into()).unwrap_or(0),
                    perms: t.perms,
                    interrupt: t.interrupt,
                }),
                t.reads,
            ),
            Err(f) => (
                Err(Stop::Fault(FaultInfo {
                    code: f.reason.code(),
                    name: f.reason.name(),
                    fpd: Some(f.fpd),
                    ..FaultInfo::default()
                })),
                recorder.reads.saturating_add(failed),
            ),
        };
        RequestRecord {
            line: req.line,
            requester: Requester::Pci { rid: req.rid, pasid: req.pasid },
            addr: req.addr,
            access: req.access,
            result,
            reads,
            walk: walk.then_some(recorder.steps),
        }
    }

    /// The header a text report starts with.
    pub fn header(&self, pieces: &[Piece]) -> String {
        let p = self.params();
        let mut s = format!(
            "VT-d unit: {} mode, root table at {:#x} (RTADDR {:#x}); CAP {:#x} ECAP {:#x} HAW {}\n",
            self.mode(),
            self.root_table(),
            self.rtaddr,
            p.cap,
            p.ecap,
            p.haw
        );
        for piece in pieces {
            let end = piece.addr.0.saturating_add(piece.len);
            s.push_str(&format!(
                "image: {:#x}..{:#x} from {} ({})\n",
                piece.addr.0, end, piece.file, piece.kind
            ));
        }
        s
    }
}

/// Runs `sviommu inspect vtd`, writing the report to `out`.
pub fn run(args: &VtdArgs, out: &mut dyn std::io::Write) -> Result<(), InspectError> {
    let (mem, pieces) = image::load(&args.image)?;
    let inspector = VtdInspector::new(mem, Anchors::from_args(args))?;
    let text = args.format == Format::Text;
    if text {
        out.write_all(inspector.header(&pieces).as_bytes())?;
    }
    if let Some(rid) = args.dump {
        let d = dump::dump(&inspector, rid);
        let s = if text { d.text() } else { format!("{}\n", d.json()) };
        out.write_all(s.as_bytes())?;
        return Ok(());
    }
    let requests = match (&args.requests, args.device, args.addr) {
        (Some(path), _, _) => read_requests(path)?,
        (None, Some(rid), Some(addr)) => {
            let access = args.access.unwrap_or(Access::READ);
            let access = if args.privileged { access.privileged() } else { access };
            vec![Request { line: None, rid, pasid: args.pasid, addr, access }]
        }
        _ => return Err(InspectError::NoQuery),
    };
    let how = super::Answering { text, walk: args.walk, from_file: args.requests.is_some() };
    super::answer(&requests, |r, walk| inspector.translate(r, walk), &table_space, how, out)
}

/// Reads and parses a request file; every device field must be a BDF.
pub fn read_requests(path: &std::path::Path) -> Result<Vec<Request>, InspectError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| InspectError::Requests { path: path.to_owned(), source })?;
    parse_requests(&text)
        .map_err(|error| InspectError::RequestLine { path: path.to_owned(), error })
}

/// Parses request lines; every device field must be a BDF.
pub fn parse_requests(text: &str) -> Result<Vec<Request>, parse::ParseError> {
    parse::request_lines(text)?
        .into_iter()
        .map(|l| {
            let rid = parse::requester_id(&l.device).map_err(|e| parse::ParseError::Line {
                line: l.line,
                field: "device",
                error: Box::new(e),
            })?;
            Ok(Request { line: Some(l.line), rid, pasid: l.pasid, addr: l.addr, access: l.access })
        })
        .collect()
}
