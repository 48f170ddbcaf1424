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

use super::image::{ImageArgs, ImageMemory, Piece};
use super::parse;
use super::record::{FaultInfo, RequestRecord, Requester, Stop};
use super::run::{self, Asked, Front, Query, Steps};
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
    steps: Steps,
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
        self.steps.entry(stage_name(s.stage), s, || decode::entry(s.stage, s.raw));
    }

    fn structure(&mut self, what: &'static str, mem_addr: u64, words: &[u64]) {
        let (haw, devfn) = (self.haw, self.devfn);
        self.steps.structure(what, mem_addr, words, || decode::structure(what, words, haw, devfn));
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
        let recorder = Recorder { haw: self.params().haw, devfn, steps: Steps::new(walk) };
        let asked = Asked {
            line: req.line,
            requester: Requester::Pci { rid: req.rid, pasid: req.pasid },
            addr: req.addr,
            access: req.access,
        };
        let (record, _) = run::record(
            self.memory(),
            asked,
            walk,
            || {
                let (result, recorder) = self.vtd.translate_observed(&dma, recorder);
                let answer = match result {
                    Ok(t) => {
                        Ok((run::translated(t.output, t.page_lg2, t.perms, t.interrupt), t.reads))
                    }
                    Err(f) => Err(Stop::Fault(FaultInfo {
                        code: f.reason.code(),
                        name: f.reason.name(),
                        fpd: Some(f.fpd),
                        ..FaultInfo::default()
                    })),
                };
                (answer, recorder)
            },
            |r| &mut r.steps,
        );
        record
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
        s.push_str(&run::pieces_text(pieces));
        s
    }
}

impl Front for VtdInspector {
    type Args = VtdArgs;
    type Id = u16;
    type Request = Request;
    type Dump = dump::Dump;

    const ID_FIELD: &'static str = "device";

    fn parse_id(s: &str) -> Result<u16, parse::ParseError> {
        parse::requester_id(s)
    }

    fn request(
        line: Option<usize>,
        rid: u16,
        pasid: Option<u32>,
        addr: u64,
        access: Access,
    ) -> Request {
        Request { line, rid, pasid, addr, access }
    }

    fn query(args: &VtdArgs) -> Query<'_, u16, Request> {
        let access = run::access(args.access, args.privileged);
        let one = args.device.zip(args.addr);
        Query {
            image: &args.image,
            requests: args.requests.as_deref(),
            one: one.map(|(rid, addr)| Request {
                line: None,
                rid,
                pasid: args.pasid,
                addr,
                access,
            }),
            dump: args.dump,
            walk: args.walk,
            format: args.format,
        }
    }

    fn open(mem: HostMemory, args: &VtdArgs) -> Result<Self, InspectError> {
        Self::new(mem, Anchors::from_args(args))
    }

    fn header(&self, pieces: &[Piece]) -> String {
        VtdInspector::header(self, pieces)
    }

    fn dump(&self, rid: u16) -> dump::Dump {
        dump::dump(self, rid)
    }

    fn translate(&self, req: &Request, walk: bool) -> RequestRecord {
        VtdInspector::translate(self, req, walk)
    }

    fn table_space(stage: &str) -> &'static str {
        table_space(stage)
    }
}
