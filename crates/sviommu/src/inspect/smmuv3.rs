//! `sviommu inspect smmuv3`: an SMMUv3's Stream table, CD tables and translation tables in a
//! memory image, translated and decoded by the hardware model.
//!
//! The inspector builds an [`Smmu`] over the image and programs it as a driver would
//! (SMMU_STRTAB_BASE, SMMU_STRTAB_BASE_CFG, then SMMU_CR0.SMMUEN, through `mmio_write`), with
//! nothing cached. A transaction goes through [`Smmu::translate_observed`]; what the model
//! reports reading is decoded with the `sviommu_smmuv3::spec` views ([`decode`]). `--dump`
//! finds a stream's STE and CDs by asking the same model ([`dump`]).

use std::path::PathBuf;

use sviommu_memory::HostMemory;
use sviommu_pgtable::vmsa;
use sviommu_pgtable::{Access, Stage, WalkObserver, WalkStep};
use sviommu_smmuv3::hw::{Abort, CacheSizes, Silent, Smmu, SmmuParams, Transaction};
use sviommu_smmuv3::spec::regs::{self, cr0, strtab_base, strtab_base_cfg};
use sviommu_smmuv3::spec::{Cd, Granule, Ste};

use super::image::{ImageArgs, ImageMemory, Piece};
use super::parse;
use super::record::{FaultInfo, Hex, RequestRecord, Requester, Stop};
use super::run::{self, Asked, Front, Query, Steps};
use super::InspectError;
use crate::Format;

pub mod decode;
pub mod dump;

/// `sviommu inspect smmuv3`.
#[derive(Clone, Debug, clap::Args)]
#[command(
    group(clap::ArgGroup::new("query").required(true).args(["device", "requests", "dump"])),
    after_long_help = AFTER_HELP
)]
pub struct SmmuArgs {
    #[command(flatten)]
    pub image: ImageArgs,

    /// SMMU_STRTAB_BASE as the driver wrote it.
    ///
    /// Bits 55:6 are the Stream table's address (bit 62, RA, is a cache hint). For example
    /// 0x40000000 is a Stream table at 0x40000000.
    #[arg(long, value_name = "VALUE", value_parser = parse::number)]
    pub strtab_base: u64,

    /// SMMU_STRTAB_BASE_CFG as the driver wrote it.
    ///
    /// Bits 5:0 LOG2SIZE (StreamIDs covered: 2^LOG2SIZE), 10:6 SPLIT (two-level: StreamID bits
    /// resolved by a level-2 table), 17:16 FMT (0 linear, 1 two-level). For example 0x8 is a
    /// linear table of 256 STEs; 0x10210 a two-level table for 16-bit StreamIDs, SPLIT 8.
    #[arg(long, value_name = "VALUE", value_parser = parse::reg32)]
    pub strtab_base_cfg: u32,

    /// SMMU_IDR0 of the SMMU [default: every mode the model has].
    ///
    /// The default has stage 1 and stage 2 (VMSAv8-64, little-endian), two-level Stream and CD
    /// tables, 16-bit ASIDs and VMIDs, hardware Access flag and dirty state.
    #[arg(long, value_name = "VALUE", value_parser = parse::reg32)]
    pub idr0: Option<u32>,

    /// SMMU_IDR1 [default: 16-bit StreamIDs, 20-bit SubstreamIDs, PRIVCFG/INSTCFG overrides].
    #[arg(long, value_name = "VALUE", value_parser = parse::reg32)]
    pub idr1: Option<u32>,

    /// SMMU_IDR3 [default: hierarchical attribute disables (HAD)].
    #[arg(long, value_name = "VALUE", value_parser = parse::reg32)]
    pub idr3: Option<u32>,

    /// SMMU_IDR5 [default: 52-bit OAS, 4K/16K/64K granules, 52-bit VAs with 64K].
    #[arg(long, value_name = "VALUE", value_parser = parse::reg32)]
    pub idr5: Option<u32>,

    /// Translate one transaction from this StreamID (a number, e.g. the PCI RID via IORT).
    #[arg(long, value_name = "SID", value_parser = parse::stream_id, requires = "addr")]
    pub device: Option<u32>,

    /// The transaction's SubstreamID (a PCIe PASID); without it the transaction has none.
    #[arg(long, value_name = "N", value_parser = parse::substream_id, requires = "device")]
    pub ssid: Option<u32>,

    /// The transaction's input address (IOVA, or VA with stage 1).
    #[arg(long, value_name = "ADDR", value_parser = parse::number, requires = "device")]
    pub addr: Option<u64>,

    /// read, write or exec [default: read].
    #[arg(long, value_name = "ACCESS", value_parser = parse::access, requires = "device")]
    pub access: Option<Access>,

    /// A privileged transaction (before the STE's PRIVCFG override).
    #[arg(long = "priv", requires = "device")]
    pub privileged: bool,

    /// Translate every transaction in FILE, one `sid,ssid-or-empty,addr,access` per line.
    ///
    /// For example `5,1,0x7f0000001000,write+priv` (access: read, write or exec, +priv for a
    /// privileged transaction). Blank lines and lines starting with # are skipped; the first
    /// malformed line stops the run with its line number.
    #[arg(long, value_name = "FILE")]
    pub requests: Option<PathBuf>,

    /// Decode this StreamID's STE and CDs, and list the StreamIDs with valid STEs.
    ///
    /// Shows the STE, then each valid CD (SubstreamIDs up to 2^S1CDMax, capped), then every
    /// StreamID whose STE has V set (scan capped; said when reached).
    #[arg(long, value_name = "SID", value_parser = parse::stream_id, conflicts_with = "walk")]
    pub dump: Option<u32>,

    /// Show every structure (L1STD, STE, L1CD, CD) and translation table descriptor the SMMU
    /// read, decoded, in order.
    #[arg(long)]
    pub walk: bool,

    /// text for people; json: one JSON object per request (JSON lines), one for --dump.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

const AFTER_HELP: &str = "\
The SMMU is the sviommu SMMUv3 hardware model, programmed as a driver would program it \
(SMMU_STRTAB_BASE, SMMU_STRTAB_BASE_CFG, then SMMU_CR0.SMMUEN) with nothing cached: what this \
prints is what the model does. SMMU_IDR2 (VATOS) and SMMU_IDR4 (IMPLEMENTATION DEFINED) are \
not modelled.

Images are mapped copy-on-write. The Access flag and dirty state a walk sets land only in the \
model's private copy: the files are never written, and a later request in the same run sees \
them, as it would on the hardware.

A transaction that faults is an answer, not an error: it prints the event (number and name, \
with S2, CLASS and IPA where the record has them) and exits 0; one terminated without an event \
(STE.Config abort) prints the abort. A table read outside every image is the fetch abort the \
architecture names (F_STE_FETCH, F_CD_FETCH, F_WALK_EABT), shown with --walk as the read that \
missed. With --walk, the level-1 descriptors of two-level Stream and CD tables (L1STD, L1CD) \
are shown before the STE and CD they lead to.

Exit status: 0 answered; 1 an input could not be used (image, request file); 2 usage (a bad \
option value).

Example:
  sviommu inspect smmuv3 --image guest.core --strtab-base 0x40000000 --strtab-base-cfg 0x8 \\
      --device 5 --ssid 1 --addr 0x7f0000001040 --access write --walk";

/// What the SMMU is told: its Stream table registers and its ID registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchors {
    /// SMMU_STRTAB_BASE.
    pub strtab_base: u64,
    /// SMMU_STRTAB_BASE_CFG.
    pub strtab_base_cfg: u32,
    /// The ID registers.
    pub params: SmmuParams,
}

impl Anchors {
    /// The anchors the arguments give.
    pub fn from_args(args: &SmmuArgs) -> Self {
        let d = SmmuParams::default();
        Self {
            strtab_base: args.strtab_base,
            strtab_base_cfg: args.strtab_base_cfg,
            params: SmmuParams {
                idr0: args.idr0.unwrap_or(d.idr0),
                idr1: args.idr1.unwrap_or(d.idr1),
                idr3: args.idr3.unwrap_or(d.idr3),
                idr5: args.idr5.unwrap_or(d.idr5),
                ..d
            },
        }
    }
}

/// One transaction to translate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The request file's line, if any.
    pub line: Option<usize>,
    /// StreamID.
    pub sid: u32,
    /// SubstreamID.
    pub ssid: Option<u32>,
    /// Input address.
    pub addr: u64,
    /// Access.
    pub access: Access,
}

/// An SMMU over a memory image, programmed and enabled.
#[derive(Debug)]
pub struct SmmuInspector {
    smmu: Smmu<ImageMemory>,
    strtab_base: u64,
    strtab_base_cfg: u64,
}

/// Sees what the model reads: counts it, and records it decoded when the walk is wanted. It
/// remembers the granules the STE and CD select, to decode descriptors' addresses.
struct Recorder {
    /// The transaction's address selects TTB1 rather than TTB0.
    upper: bool,
    oa52: bool,
    s1_granule: Option<Granule>,
    s2_granule: Option<Granule>,
    steps: Steps,
    /// The STEs and CDs seen, kept even when the walk is not (for `--dump`).
    structures: Vec<(&'static str, u64, [u64; 8])>,
}

impl Recorder {
    fn new(keep: bool, addr: u64, oa52: bool) -> Self {
        Self {
            upper: vmsa::s1::selects_ttb1(addr),
            oa52,
            s1_granule: None,
            s2_granule: None,
            steps: Steps::new(keep),
            structures: Vec::new(),
        }
    }
}

/// SMMUv3's names for the stages (JSON `stage`): `1`, `2`.
pub fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::S1 => "1",
        Stage::S2 => "2",
    }
}

/// The address space a nested stage-1 table's addresses are in.
pub fn table_space(_stage: &str) -> &'static str {
    "IPA"
}

impl WalkObserver for Recorder {
    fn step(&mut self, s: WalkStep) {
        let granule = match s.stage {
            Stage::S1 => self.s1_granule,
            Stage::S2 => self.s2_granule,
        };
        let oa52 = self.oa52;
        self.steps.entry(stage_name(s.stage), s, || decode::entry(s.stage, s.raw, granule, oa52));
    }

    fn structure(&mut self, what: &'static str, mem_addr: u64, words: &[u64]) {
        // STEs and CDs (eight words) select the granules and are kept for `--dump`; the
        // one-word level-1 descriptors (L1STD, L1CD) are only shown.
        if let Ok(w) = <[u64; 8]>::try_from(words) {
            match what {
                decode::STE => self.s2_granule = Ste::from_words(w).s2tg().ok(),
                decode::CD => {
                    let cd = Cd::from_words(w);
                    self.s1_granule = if self.upper { cd.tg1() } else { cd.tg0() }.ok();
                }
                _ => {}
            }
            if self.structures.len() < 8 {
                self.structures.push((what, mem_addr, w));
            }
        }
        self.steps.structure(what, mem_addr, words, || decode::structure(what, words));
    }
}

/// The names of the terminations without an event.
pub fn silent_name(s: Silent) -> &'static str {
    match s {
        Silent::GbpaAbort => "SMMU disabled and SMMU_GBPA.ABORT set",
        Silent::DisabledBeyondOas => "SMMU disabled, bypassing, and the address exceeds the OAS",
        Silent::SteAbort => "STE.Config is abort: no traffic, no event",
    }
}

/// A termination as the report shows it: the event's number, name and the S2, CLASS, IPA and
/// FetchAddr fields its record has; or the silent abort.
pub fn stop(a: &Abort) -> Stop {
    match a {
        Abort::Silent(s) => Stop::Abort(silent_name(*s)),
        Abort::Event(e) | Abort::Stalled(e) => {
            let has = |name: &str| e.id.layout().iter().any(|f| f.name == name);
            Stop::Fault(FaultInfo {
                code: e.id.code(),
                name: e.id.name(),
                record: Some(e.record),
                s2: has("S2").then_some(e.s2),
                class: e.class.filter(|_| has("CLASS")).map(decode::class_name),
                ipa: e.ipa.filter(|_| has("IPA")).map(Hex),
                fetch_addr: e.fetch_addr.filter(|_| has("FetchAddr")).map(Hex),
                fpd: None,
            })
        }
    }
}

/// What one transaction did, with what the model read.
pub(crate) struct Outcome {
    pub record: RequestRecord,
    pub structures: Vec<(&'static str, u64, [u64; 8])>,
}

impl SmmuInspector {
    /// An SMMU over `mem`, its registers set from `anchors` through MMIO as a driver sets them,
    /// then enabled.
    pub fn new(mem: HostMemory, anchors: Anchors) -> Result<Self, InspectError> {
        // Every request is answered from the image, as a cold unit would: a cached STE, CD or
        // translation would hide the reads `--walk` is there to show.
        let params = SmmuParams { caches: CacheSizes::NONE, ..anchors.params };
        let smmu = Smmu::new(ImageMemory::new(mem), params);
        smmu.mmio_write(regs::STRTAB_BASE.0, 8, anchors.strtab_base);
        smmu.mmio_write(regs::STRTAB_BASE_CFG.0, 4, u64::from(anchors.strtab_base_cfg));
        smmu.mmio_write(regs::CR0.0, 4, cr0::SMMUEN.mask());
        if !cr0::SMMUEN.is_set(smmu.mmio_read(regs::CR0ACK.0, 4)) {
            return Err(InspectError::Model("SMMU_CR0ACK.SMMUEN clear after SMMU_CR0.SMMUEN"));
        }
        let strtab_base = smmu.mmio_read(regs::STRTAB_BASE.0, 8);
        let strtab_base_cfg = smmu.mmio_read(regs::STRTAB_BASE_CFG.0, 4);
        Ok(Self { smmu, strtab_base, strtab_base_cfg })
    }

    /// The SMMU's ID registers.
    pub fn params(&self) -> &SmmuParams {
        self.smmu.params()
    }

    /// SMMU_STRTAB_BASE as the SMMU latched it.
    pub fn strtab_base(&self) -> u64 {
        self.strtab_base
    }

    /// SMMU_STRTAB_BASE_CFG as the SMMU latched it (fields it does not implement read 0).
    pub fn strtab_base_cfg(&self) -> u64 {
        self.strtab_base_cfg
    }

    pub(crate) fn memory(&self) -> &ImageMemory {
        self.smmu.memory()
    }

    fn oa52(&self) -> bool {
        regs::idr5::OAS.get(u64::from(self.params().idr5)) >= 0b110
    }

    /// Translates one transaction, recording every read when `walk`.
    pub fn translate(&self, req: &Request, walk: bool) -> RequestRecord {
        self.run(req, walk).record
    }

    pub(crate) fn run(&self, req: &Request, walk: bool) -> Outcome {
        let mut t = Transaction::new(req.sid, req.addr, req.access);
        if let Some(s) = req.ssid {
            t = t.with_ssid(s);
        }
        let recorder = Recorder::new(walk, req.addr, self.oa52());
        let asked = Asked {
            line: req.line,
            requester: Requester::Stream { sid: req.sid, ssid: req.ssid },
            addr: req.addr,
            access: req.access,
        };
        let (record, recorder) = run::record(
            self.memory(),
            asked,
            walk,
            || {
                let (result, recorder) = self.smmu.translate_observed(&t, recorder);
                let answer = match result {
                    Ok(t) => Ok((run::translated(t.output, t.page_lg2, t.perms, false), t.reads)),
                    Err(a) => Err(stop(&a)),
                };
                (answer, recorder)
            },
            |r| &mut r.steps,
        );
        Outcome { record, structures: recorder.structures }
    }

    /// The Stream table's address and format, as the SMMU reads the registers.
    pub fn table_text(&self) -> String {
        let cfg = self.strtab_base_cfg;
        let base = strtab_base::ADDR.in_place(self.strtab_base);
        let log2size = strtab_base_cfg::LOG2SIZE.get(cfg);
        match strtab_base_cfg::FMT.get(cfg) {
            1 => format!(
                "two-level Stream table at {base:#x}, LOG2SIZE {log2size}, SPLIT {}",
                strtab_base_cfg::SPLIT.get(cfg)
            ),
            _ => format!("linear Stream table at {base:#x}, LOG2SIZE {log2size}"),
        }
    }

    /// The header a text report starts with.
    pub fn header(&self, pieces: &[Piece]) -> String {
        let p = self.params();
        let mut s = format!(
            "SMMUv3: {} (STRTAB_BASE {:#x} STRTAB_BASE_CFG {:#x}); IDR0 {:#x} IDR1 {:#x} IDR3 \
             {:#x} IDR5 {:#x}\n",
            self.table_text(),
            self.strtab_base,
            self.strtab_base_cfg,
            p.idr0,
            p.idr1,
            p.idr3,
            p.idr5
        );
        s.push_str(&run::pieces_text(pieces));
        s
    }
}

impl Front for SmmuInspector {
    type Args = SmmuArgs;
    type Id = u32;
    type Request = Request;
    type Dump = dump::Dump;

    const ID_FIELD: &'static str = "sid";

    fn parse_id(s: &str) -> Result<u32, parse::ParseError> {
        parse::stream_id(s)
    }

    fn request(
        line: Option<usize>,
        sid: u32,
        ssid: Option<u32>,
        addr: u64,
        access: Access,
    ) -> Request {
        Request { line, sid, ssid, addr, access }
    }

    fn query(args: &SmmuArgs) -> Query<'_, u32, Request> {
        let access = run::access(args.access, args.privileged);
        let one = args.device.zip(args.addr);
        Query {
            image: &args.image,
            requests: args.requests.as_deref(),
            one: one.map(|(sid, addr)| Request { line: None, sid, ssid: args.ssid, addr, access }),
            dump: args.dump,
            walk: args.walk,
            format: args.format,
        }
    }

    fn open(mem: HostMemory, args: &SmmuArgs) -> Result<Self, InspectError> {
        Self::new(mem, Anchors::from_args(args))
    }

    fn header(&self, pieces: &[Piece]) -> String {
        SmmuInspector::header(self, pieces)
    }

    fn dump(&self, sid: u32) -> dump::Dump {
        dump::dump(self, sid)
    }

    fn translate(&self, req: &Request, walk: bool) -> RequestRecord {
        SmmuInspector::translate(self, req, walk)
    }

    fn table_space(stage: &str) -> &'static str {
        table_space(stage)
    }
}
