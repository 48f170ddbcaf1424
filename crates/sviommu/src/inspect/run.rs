//! The one run loop of `inspect`, whatever the architecture: load the image, program the model,
//! then dump one device's structures or answer each request (from the command line or a request
//! file) with a record, as text or JSON lines.
//!
//! An architecture says only what differs, as a [`Front`]: how its requesters are named and
//! parsed, how its model is set up from the arguments, how it runs and describes one request.
//! What a request's record holds besides the model's answer (the reads counted, the reads that
//! hit a hole) is worked out here too, by [`Steps`] and [`record`].

use std::path::Path;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use sviommu_memory::HostMemory;
use sviommu_pgtable::{Access, Perms, WalkStep};

use super::image::{self, ImageArgs, ImageMemory, Piece};
use super::parse::{self, ParseError};
use super::record::{Fields, Hex, RequestRecord, Requester, Step, Stop, Translated};
use super::InspectError;
use crate::Format;

/// What every architecture's command line asks, in shared terms.
#[derive(Clone, Copy, Debug)]
pub struct Query<'a, Id, R> {
    /// The memory image.
    pub image: &'a ImageArgs,
    /// `--requests FILE`.
    pub requests: Option<&'a Path>,
    /// The one request `--device` and `--addr` ask (with its PASID or SubstreamID, access and
    /// privilege).
    pub one: Option<R>,
    /// `--dump`: the requester whose structures to show.
    pub dump: Option<Id>,
    /// `--walk`.
    pub walk: bool,
    /// `--format`.
    pub format: Format,
}

/// The access `--access` and `--priv` ask: read when not given, privileged with `--priv`.
pub fn access(access: Option<Access>, privileged: bool) -> Access {
    let access = access.unwrap_or(Access::READ);
    if privileged {
        access.privileged()
    } else {
        access
    }
}

/// A report that is shown as text or as one JSON object (what `--dump` prints).
pub trait Report: serde::Serialize {
    /// For people.
    fn text(&self) -> String;

    /// One JSON object, without a newline.
    fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// One architecture's front end: what the shared loop ([`run`]) asks of it.
pub trait Front: Sized {
    /// The subcommand's arguments.
    type Args;
    /// What names a requester: a PCI requester ID (VT-d), a StreamID (SMMUv3).
    type Id: Copy;
    /// One request to translate.
    type Request;
    /// What `--dump` shows.
    type Dump: Report;

    /// The requester field's name in a request file's messages (`device`, `sid`).
    const ID_FIELD: &'static str;

    /// Parses a request file's requester field.
    fn parse_id(s: &str) -> Result<Self::Id, ParseError>;
    /// A request from its parts; `line` is the request file's.
    fn request(
        line: Option<usize>,
        id: Self::Id,
        sub: Option<u32>,
        addr: u64,
        access: Access,
    ) -> Self::Request;
    /// The shared part of the arguments.
    fn query(args: &Self::Args) -> Query<'_, Self::Id, Self::Request>;
    /// The model over `mem`, programmed as the arguments say, as a driver would.
    fn open(mem: HostMemory, args: &Self::Args) -> Result<Self, InspectError>;
    /// The header a text report starts with.
    fn header(&self, pieces: &[Piece]) -> String;
    /// One requester's structures.
    fn dump(&self, id: Self::Id) -> Self::Dump;
    /// Translates one request, recording every read when `walk`.
    fn translate(&self, req: &Self::Request, walk: bool) -> RequestRecord;
    /// The address space a stage's table addresses are in when they are not memory addresses.
    fn table_space(stage: &str) -> &'static str;
}

/// Runs `sviommu inspect ARCH` for the front end `F`, writing the report to `out`.
pub fn run<F: Front>(args: &F::Args, out: &mut dyn std::io::Write) -> Result<(), InspectError> {
    let q = F::query(args);
    let (mem, pieces) = image::load(q.image)?;
    let front = F::open(mem, args)?;
    let text = q.format == Format::Text;
    if text {
        out.write_all(front.header(&pieces).as_bytes())?;
    }
    if let Some(id) = q.dump {
        let d = front.dump(id);
        let s = if text { d.text() } else { format!("{}\n", d.json()) };
        out.write_all(s.as_bytes())?;
        return Ok(());
    }
    let requests = match (q.requests, q.one) {
        (Some(path), _) => read_requests::<F>(path)?,
        (None, Some(one)) => vec![one],
        (None, None) => return Err(InspectError::NoQuery),
    };
    // A request file in text without --walk is one table; otherwise one record per request.
    if text && q.requests.is_some() && !q.walk {
        let records: Vec<RequestRecord> =
            requests.iter().map(|r| front.translate(r, false)).collect();
        out.write_all(requests_table(&records).as_bytes())?;
        return Ok(());
    }
    for r in &requests {
        let record = front.translate(r, q.walk);
        let s = if text { record.text(&F::table_space) } else { format!("{}\n", record.json()) };
        out.write_all(s.as_bytes())?;
    }
    Ok(())
}

/// Reads and parses a request file; every device field must name one of `F`'s requesters.
pub fn read_requests<F: Front>(path: &Path) -> Result<Vec<F::Request>, InspectError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| InspectError::Requests { path: path.to_owned(), source })?;
    parse_requests::<F>(&text)
        .map_err(|error| InspectError::RequestLine { path: path.to_owned(), error })
}

/// Parses request lines; every device field must name one of `F`'s requesters.
pub fn parse_requests<F: Front>(text: &str) -> Result<Vec<F::Request>, ParseError> {
    parse::request_lines(text)?
        .into_iter()
        .map(|l| {
            let id = F::parse_id(&l.device).map_err(|e| ParseError::Line {
                line: l.line,
                field: F::ID_FIELD,
                error: Box::new(e),
            })?;
            Ok(F::request(Some(l.line), id, l.pasid, l.addr, l.access))
        })
        .collect()
}

/// Many requests as one table (text, without --walk).
pub fn requests_table(records: &[RequestRecord]) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    let (device, sub) = match records.first().map(|r| r.requester) {
        Some(Requester::Stream { .. }) => ("sid", "ssid"),
        _ => ("device", "pasid"),
    };
    table.set_header(["line", device, sub, "access", "address", "result", "reads"]);
    for r in records {
        table.add_row([
            Cell::new(r.line.map_or("-".into(), |l| l.to_string()))
                .set_alignment(CellAlignment::Right),
            Cell::new(match r.requester {
                Requester::Pci { rid, .. } => parse::Bdf(rid).to_string(),
                Requester::Stream { sid, .. } => sid.to_string(),
            }),
            Cell::new(r.requester.sub().map_or("-".into(), |p| p.to_string())),
            Cell::new(parse::access_name(r.access)),
            Cell::new(format!("{:#x}", r.addr)),
            Cell::new(r.result_text()),
            Cell::new(r.reads).set_alignment(CellAlignment::Right),
        ]);
    }
    format!("{table}\n")
}

/// The image lines of a text header: one per piece loaded.
pub fn pieces_text(pieces: &[Piece]) -> String {
    let mut s = String::new();
    for piece in pieces {
        let end = piece.addr.0.saturating_add(piece.len);
        s.push_str(&format!(
            "image: {:#x}..{:#x} from {} ({})\n",
            piece.addr.0, end, piece.file, piece.kind
        ));
    }
    s
}

/// What every architecture's observer keeps of a walk: it counts each read, and keeps each one
/// decoded when the walk is to be shown.
#[derive(Debug, Default)]
pub(crate) struct Steps {
    keep: bool,
    reads: u32,
    steps: Vec<Step>,
}

impl Steps {
    /// Counting; keeping the reads too when `keep`.
    pub fn new(keep: bool) -> Self {
        Self { keep, ..Self::default() }
    }

    /// A page-table entry read in stage `stage` (the architecture's name for it); `fields`
    /// decodes it, only when kept.
    pub fn entry(&mut self, stage: &'static str, s: WalkStep, fields: impl FnOnce() -> Fields) {
        self.reads = self.reads.saturating_add(1);
        if self.keep {
            self.steps.push(Step::Entry {
                stage,
                level: s.level,
                table_addr: Hex(s.table_addr),
                mem_addr: Hex(s.mem_addr),
                raw: Hex(s.raw),
                fields: fields(),
            });
        }
    }

    /// A structure read whole; `decode` gives its fields and whether a reserved bit is set
    /// (`None`: shown raw), only when kept.
    pub fn structure(
        &mut self,
        what: &'static str,
        mem_addr: u64,
        words: &[u64],
        decode: impl FnOnce() -> Option<(Fields, bool)>,
    ) {
        self.reads = self.reads.saturating_add(1);
        if self.keep {
            let (fields, reserved_bits) = decode().unwrap_or_default();
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

/// A request as its record echoes it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Asked {
    pub line: Option<usize>,
    pub requester: Requester,
    pub addr: u64,
    pub access: Access,
}

/// How the model answered: the translation with the reads the model counted, or the stop.
pub(crate) type Answer = Result<(Translated, u32), Stop>;

/// A translation as the record shows it: its page size from its log2 (0 if it does not fit).
pub(crate) fn translated(output: u64, page_lg2: u8, perms: Perms, interrupt: bool) -> Translated {
    let page_size = 1u64.checked_shl(page_lg2.into()).unwrap_or(0);
    Translated { output, page_size, perms, interrupt }
}

/// Runs one request through the model over `mem` (`translate`, which hands its observer back,
/// whose [`Steps`] `steps_of` finds) and makes its record. A stopped request counts what the observer saw plus the reads that hit
/// a hole in the image (a read that fails is an attempt the model made); with `walk`, those come
/// last in the walk, as `Outside` steps.
pub(crate) fn record<O>(
    mem: &ImageMemory,
    asked: Asked,
    walk: bool,
    translate: impl FnOnce() -> (Answer, O),
    steps_of: impl FnOnce(&mut O) -> &mut Steps,
) -> (RequestRecord, O) {
    drop(mem.take_misses());
    let (answer, mut observer) = translate();
    let misses = mem.take_misses();
    let failed = u32::try_from(misses.len()).unwrap_or(u32::MAX);
    let steps = steps_of(&mut observer);
    if walk {
        steps
            .steps
            .extend(misses.iter().map(|m| Step::Outside { mem_addr: Hex(m.addr), bytes: m.len }));
    }
    let (result, reads) = match answer {
        Ok((t, reads)) => (Ok(t), reads),
        Err(stop) => (Err(stop), steps.reads.saturating_add(failed)),
    };
    let record = RequestRecord {
        line: asked.line,
        requester: asked.requester,
        addr: asked.addr,
        access: asked.access,
        result,
        reads,
        walk: walk.then(|| std::mem::take(&mut steps.steps)),
    };
    (record, observer)
}
