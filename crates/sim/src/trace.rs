//! Traces: the DMA requests and host actions a scenario issued, in the order it issued them,
//! together with the scenario they ran on, so a replay builds the same machine and sends the
//! same requests. Two forms of one content (`docs/TRACE.md` is the format's reference): a
//! compact binary one (a versioned header with a magic, lengths that are checked, fixed
//! 16-byte records, a checksum) and a CSV one people can read and edit. A truncated or
//! corrupt trace is a [`TraceError`] naming the byte offset or record (binary) or the line and
//! column (CSV); nothing is replayed.

use std::fmt::Write as _;

use crate::scenario::{AccessKind, Source};

/// The binary form's first eight bytes.
pub const MAGIC: [u8; 8] = *b"SVIOTRC\0";
/// The format version this crate writes; it reads this one and every earlier one (version 1
/// has no ATS records).
pub const VERSION: u16 = 2;
/// The oldest version this crate reads.
pub const OLDEST_VERSION: u16 = 1;
/// Bytes of one binary record.
pub const RECORD_BYTES: usize = 16;
/// The CSV form's first line (this version's; the first line without its number is what
/// every version shares).
pub const CSV_MAGIC: &str = "# sviommu trace, version 2";
/// What every CSV trace's first line starts with, before its version number.
const CSV_MAGIC_STEM: &str = "# sviommu trace, version ";
/// The CSV form's column header.
pub const CSV_HEADER: &str = "kind,device,pasid,addr,step";
/// PASIDs are 20 bits (PCIe); SMMUv3 SubstreamIDs too.
const PASID_LIMIT: u32 = 1 << 20;
/// The device field of an action record.
const NO_DEVICE: u16 = u16::MAX;

/// One thing the scenario did, in order: the order is the trace's time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// A device sent a DMA request.
    Dma {
        /// Index into [`Trace::devices`].
        device: u16,
        /// Its PASID (SubstreamID).
        pasid: Option<u32>,
        /// Input address.
        addr: u64,
        /// Read or write.
        access: AccessKind,
    },
    /// A device with ATS and PRI asked the unit to translate an address (an `ats` step's
    /// address): a translation request and, when the answer grants too little, a page
    /// request, the host's page response and the retry (version 2).
    Ats {
        /// Index into [`Trace::devices`].
        device: u16,
        /// Its PASID.
        pasid: Option<u32>,
        /// The address.
        addr: u64,
        /// The access it asks for.
        access: AccessKind,
    },
    /// The host carried out the scenario's step with this index (`map`, `unmap`, `flush`,
    /// `invalidate`, `bind`, `unbind`).
    Action {
        /// Index into the scenario's `[[step]]`s, from 0.
        step: u32,
    },
}

/// Where each record came from, to name it in errors found after reading.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Origin {
    /// Binary: the records start at this byte offset.
    Binary(u64),
    /// CSV: each record's line (from 1).
    Csv(Vec<usize>),
    /// Made in memory (recorded, not read).
    Memory,
}

/// A trace: the scenario, its devices by name, and the records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// Where the scenario came from (its file name when recorded).
    pub scenario_name: String,
    /// The scenario's TOML text.
    pub scenario: String,
    /// Device names, in the scenario's order; records index into it.
    pub devices: Vec<String>,
    /// What happened, in order.
    pub records: Vec<Record>,
    /// The file this trace was read from.
    pub file: String,
    origin: Origin,
}

/// A trace that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be read or written.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// Neither form's magic.
    #[error(
        "{file}: not an sviommu trace (a binary trace starts with \"SVIOTRC\\0\", a CSV one with `{CSV_MAGIC}`)"
    )]
    NotATrace {
        /// The file.
        file: String,
    },
    /// A version this build does not read.
    #[error(
        "{file}: trace format version {found}; this sviommu reads versions {OLDEST_VERSION} to {VERSION}"
    )]
    Version {
        /// The file.
        file: String,
        /// The version in the header.
        found: u16,
    },
    /// The file ends inside something.
    #[error(
        "{file}: byte offset {offset}: truncated in {what}: needs {needed} bytes, {left} left"
    )]
    Truncated {
        /// The file.
        file: String,
        /// Where the cut item starts.
        offset: u64,
        /// What was being read.
        what: String,
        /// Bytes it needs.
        needed: u64,
        /// Bytes left in the file.
        left: u64,
    },
    /// A header field or the checksum is wrong.
    #[error("{file}: byte offset {offset}: {message}")]
    Corrupt {
        /// The file.
        file: String,
        /// Where.
        offset: u64,
        /// What is wrong.
        message: String,
    },
    /// A record is wrong.
    #[error("{file}: {at}: {message}")]
    BadRecord {
        /// The file.
        file: String,
        /// `record N at byte offset X` or `line N`.
        at: String,
        /// What is wrong.
        message: String,
    },
    /// A CSV line is wrong.
    #[error("{file}:{line}:{column}: {field}: {message}")]
    Csv {
        /// The file.
        file: String,
        /// Line, from 1.
        line: usize,
        /// Column, from 1.
        column: usize,
        /// The column's name.
        field: &'static str,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A replay setting the unit's caches cannot have.
    #[error("{key} (a flag or the replay's config file): {message}")]
    Config {
        /// `iotlb` or `walk_cache`.
        key: &'static str,
        /// What is wrong and what the cache can have.
        message: String,
    },
    /// The scenario inside the trace is refused.
    #[error("the trace's scenario: {0}")]
    Scenario(#[from] crate::ScenarioError),
}

/// FNV-1a, 64 bits: the binary form's checksum (not cryptographic: it catches damage).
pub(crate) fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(seed, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// FNV-1a's starting value.
pub(crate) const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

impl Trace {
    /// A trace made in memory.
    pub fn new(source: &Source, devices: Vec<String>, records: Vec<Record>) -> Self {
        Self {
            scenario_name: source.name.clone(),
            scenario: source.text.clone(),
            devices,
            records,
            file: "<memory>".to_owned(),
            origin: Origin::Memory,
        }
    }

    /// The scenario as a [`Source`], named after the trace.
    pub fn source(&self) -> Source {
        Source {
            name: format!("{} (in trace {})", self.scenario_name, self.file),
            text: self.scenario.clone(),
        }
    }

    /// An error about record `index`.
    pub fn record_error(&self, index: usize, message: impl Into<String>) -> TraceError {
        let at = match &self.origin {
            Origin::Binary(first) => format!(
                "record {index} at byte offset {}",
                first + (index as u64) * RECORD_BYTES as u64
            ),
            Origin::Csv(lines) => {
                format!("line {} (record {index})", lines.get(index).copied().unwrap_or(0))
            }
            Origin::Memory => format!("record {index}"),
        };
        TraceError::BadRecord { file: self.file.clone(), at, message: message.into() }
    }

    /// The binary form.
    pub fn to_binary(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64 + self.scenario.len() + self.records.len() * 16);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        for text in [&self.scenario_name, &self.scenario] {
            b.extend_from_slice(&u32::try_from(text.len()).unwrap_or(u32::MAX).to_le_bytes());
            b.extend_from_slice(text.as_bytes());
        }
        b.extend_from_slice(&u16::try_from(self.devices.len()).unwrap_or(0).to_le_bytes());
        for d in &self.devices {
            let name = d.as_bytes().get(..d.len().min(255)).unwrap_or_default();
            b.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
            b.extend_from_slice(name);
        }
        b.extend_from_slice(&(self.records.len() as u64).to_le_bytes());
        for r in &self.records {
            let (kind, flags, device, word, addr) = match *r {
                Record::Dma { device, pasid, addr, access }
                | Record::Ats { device, pasid, addr, access } => (
                    // DMA 0 read, 1 write; ATS 3 read, 4 write.
                    u8::from(access == AccessKind::Write)
                        + if matches!(r, Record::Ats { .. }) { 3 } else { 0 },
                    u8::from(pasid.is_some()),
                    device,
                    pasid.unwrap_or(0),
                    addr,
                ),
                Record::Action { step } => (2, 0, NO_DEVICE, step, 0),
            };
            b.push(kind);
            b.push(flags);
            b.extend_from_slice(&device.to_le_bytes());
            b.extend_from_slice(&word.to_le_bytes());
            b.extend_from_slice(&addr.to_le_bytes());
        }
        let sum = fnv1a(FNV_START, &b);
        b.extend_from_slice(&sum.to_le_bytes());
        b
    }

    /// The CSV form.
    pub fn to_csv(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{CSV_MAGIC}");
        let _ = writeln!(s, "# scenario: {}", self.scenario_name);
        for line in self.scenario.lines() {
            let _ = writeln!(s, "#| {line}");
        }
        let _ = writeln!(s, "{CSV_HEADER}");
        for r in &self.records {
            match *r {
                Record::Dma { device, pasid, addr, access }
                | Record::Ats { device, pasid, addr, access } => {
                    let ats = if matches!(r, Record::Ats { .. }) { "ats-" } else { "" };
                    let name = self.devices.get(usize::from(device)).map_or("?", String::as_str);
                    let pasid = pasid.map_or_else(String::new, |p| p.to_string());
                    let _ = writeln!(s, "{ats}{access},{name},{pasid},{addr:#x},");
                }
                Record::Action { step } => {
                    let _ = writeln!(s, "action,,,,{step}");
                }
            }
        }
        s
    }

    /// Reads either form from `bytes` (the binary one by its magic, else CSV).
    pub fn parse(file: &str, bytes: &[u8]) -> Result<Self, TraceError> {
        if bytes.starts_with(&MAGIC) {
            return Self::from_binary(file, bytes);
        }
        match std::str::from_utf8(bytes) {
            Ok(text) if text.starts_with(CSV_MAGIC_STEM) => Self::from_csv(file, text),
            _ if bytes.len() < MAGIC.len() && MAGIC.starts_with(bytes) && !bytes.is_empty() => {
                Err(TraceError::Truncated {
                    file: file.to_owned(),
                    offset: 0,
                    what: "the magic".to_owned(),
                    needed: MAGIC.len() as u64,
                    left: bytes.len() as u64,
                })
            }
            _ => Err(TraceError::NotATrace { file: file.to_owned() }),
        }
    }

    /// Reads the file at `path`.
    pub fn read(path: &std::path::Path) -> Result<Self, TraceError> {
        let file = path.display().to_string();
        let bytes =
            std::fs::read(path).map_err(|source| TraceError::Io { file: file.clone(), source })?;
        Self::parse(&file, &bytes)
    }

    /// Whether `bytes` look like a trace (either form's magic), not a scenario.
    pub fn looks_like_trace(bytes: &[u8]) -> bool {
        bytes.starts_with(&MAGIC) || bytes.starts_with(CSV_MAGIC_STEM.as_bytes())
    }

    fn from_binary(file: &str, bytes: &[u8]) -> Result<Self, TraceError> {
        let mut r = Reader { file, bytes, at: 0 };
        r.take(MAGIC.len(), "the magic")?;
        let version = u16::from_le_bytes(r.array("the version")?);
        if !(OLDEST_VERSION..=VERSION).contains(&version) {
            return Err(TraceError::Version { file: file.to_owned(), found: version });
        }
        let flags_at = r.at;
        let flags = u16::from_le_bytes(r.array("the flags")?);
        if flags != 0 {
            return Err(
                r.corrupt(flags_at, format!("flags {flags:#x}: version {version} defines none"))
            );
        }
        let scenario_name = r.text("the scenario name")?;
        let scenario = r.text("the scenario")?;
        let count = u16::from_le_bytes(r.array("the device count")?);
        let mut devices = Vec::with_capacity(usize::from(count));
        for i in 0..count {
            let at = r.at;
            let what = format!("device name {i}");
            let len = usize::from(r.array::<1>(&what)?[0]);
            let name = std::str::from_utf8(r.take(len, &what)?).map(str::to_owned);
            let name = name.map_err(|_| r.corrupt(at, format!("{what} is not UTF-8")))?;
            devices.push(name);
        }
        let count_at = r.at;
        let records = u64::from_le_bytes(r.array("the record count")?);
        let first = r.at as u64;
        let left = (bytes.len() - r.at) as u64;
        let body = records.checked_mul(RECORD_BYTES as u64).and_then(|n| n.checked_add(8));
        match body {
            Some(n) if n == left => {}
            Some(n) if n > left => {
                // Name the first record that is cut, or the checksum.
                let whole = left / RECORD_BYTES as u64;
                let (offset, what, needed) = if whole < records {
                    (
                        first + whole * RECORD_BYTES as u64,
                        format!("record {whole} of {records}"),
                        RECORD_BYTES as u64,
                    )
                } else {
                    (first + records * RECORD_BYTES as u64, "the checksum".to_owned(), 8)
                };
                let left = bytes.len() as u64 - offset;
                return Err(TraceError::Truncated {
                    file: file.to_owned(),
                    offset,
                    what,
                    needed,
                    left,
                });
            }
            _ => {
                return Err(r.corrupt(
                    count_at,
                    format!(
                        "record count {records} does not match the {left} bytes that follow \
                         ({RECORD_BYTES} per record and an 8-byte checksum)"
                    ),
                ))
            }
        }
        let n = usize::try_from(records).unwrap_or(usize::MAX);
        let mut out = Vec::with_capacity(n);
        let trace_err = |i: usize, message: String| TraceError::BadRecord {
            file: file.to_owned(),
            at: format!("record {i} at byte offset {}", first + (i as u64) * RECORD_BYTES as u64),
            message,
        };
        for i in 0..n {
            let raw: [u8; RECORD_BYTES] = r.array(&format!("record {i}"))?;
            out.push(decode_record(&raw, devices.len(), version).map_err(|m| trace_err(i, m))?);
        }
        let sum_at = r.at;
        let stored = u64::from_le_bytes(r.array("the checksum")?);
        let computed = fnv1a(FNV_START, bytes.get(..sum_at).unwrap_or_default());
        if stored != computed {
            return Err(r.corrupt(
                sum_at as u64,
                format!("checksum {stored:#018x}, the contents give {computed:#018x}: the file is damaged"),
            ));
        }
        Ok(Self {
            scenario_name,
            scenario,
            devices,
            records: out,
            file: file.to_owned(),
            origin: Origin::Binary(first),
        })
    }

    fn from_csv(file: &str, text: &str) -> Result<Self, TraceError> {
        let first = text.lines().next().unwrap_or_default();
        let number = first.strip_prefix(CSV_MAGIC_STEM).unwrap_or_default().trim();
        let version = match number.parse::<u16>() {
            Ok(v) if (OLDEST_VERSION..=VERSION).contains(&v) => v,
            Ok(found) => return Err(TraceError::Version { file: file.to_owned(), found }),
            Err(_) => {
                return Err(TraceError::Csv {
                    file: file.to_owned(),
                    line: 1,
                    column: CSV_MAGIC_STEM.len() + 1,
                    field: "version",
                    message: format!("`{number}`: expected a format version number"),
                })
            }
        };
        let mut scenario_name = String::new();
        let mut scenario = String::new();
        let mut header_seen = false;
        let mut records = Vec::new();
        let mut lines_of = Vec::new();
        let mut devices: Option<Vec<String>> = None;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let err = |column: usize, field: &'static str, message: String| TraceError::Csv {
                file: file.to_owned(),
                line: n,
                column,
                field,
                message,
            };
            if let Some(rest) = line.strip_prefix("#|") {
                if header_seen {
                    return Err(err(
                        1,
                        "scenario",
                        "scenario lines come before the column header".to_owned(),
                    ));
                }
                scenario.push_str(rest.strip_prefix(' ').unwrap_or(rest));
                scenario.push('\n');
                continue;
            }
            if let Some(rest) = line.strip_prefix("# scenario:") {
                scenario_name = rest.trim().to_owned();
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            if !header_seen {
                if line.trim() != CSV_HEADER {
                    return Err(err(
                        1,
                        "header",
                        format!("expected the column header `{CSV_HEADER}`"),
                    ));
                }
                header_seen = true;
                continue;
            }
            let devs = match &devices {
                Some(d) => d,
                None => {
                    let src = Source {
                        name: format!("{scenario_name} (in trace {file})"),
                        text: scenario.clone(),
                    };
                    let s = crate::scenario::parse(&src)?;
                    devices.insert(s.devices.iter().map(|d| d.name.get_ref().clone()).collect())
                }
            };
            records.push(csv_record(line, devs, version >= 2).map_err(|(c, f, m)| err(c, f, m))?);
            lines_of.push(n);
        }
        if !header_seen {
            let line = text.lines().count().max(1);
            return Err(TraceError::Csv {
                file: file.to_owned(),
                line,
                column: 1,
                field: "header",
                message: format!("the file ends before the column header `{CSV_HEADER}`"),
            });
        }
        let devices = match devices {
            Some(d) => d,
            None => {
                let src = Source { name: scenario_name.clone(), text: scenario.clone() };
                crate::scenario::parse(&src)?
                    .devices
                    .iter()
                    .map(|d| d.name.get_ref().clone())
                    .collect()
            }
        };
        Ok(Self {
            scenario_name,
            scenario,
            devices,
            records,
            file: file.to_owned(),
            origin: Origin::Csv(lines_of),
        })
    }
}

/// One binary record of a trace of format `version`, checked; the message says what is wrong.
fn decode_record(raw: &[u8; RECORD_BYTES], devices: usize, version: u16) -> Result<Record, String> {
    let [kind, flags, d0, d1, w0, w1, w2, w3, a @ ..] = *raw;
    let device = u16::from_le_bytes([d0, d1]);
    let word = u32::from_le_bytes([w0, w1, w2, w3]);
    let addr = u64::from_le_bytes(a);
    let ats = version >= 2;
    match kind {
        0 | 1 | 3 | 4 if kind < 3 || ats => {
            if flags & !1 != 0 {
                return Err(format!("flags {flags:#x}: only bit 0 (PASID present) is defined"));
            }
            if usize::from(device) >= devices {
                return Err(format!("device {device}: the trace names {devices} devices"));
            }
            let pasid = (flags & 1 != 0).then_some(word);
            if pasid.is_some_and(|p| p >= PASID_LIMIT) || (pasid.is_none() && word != 0) {
                return Err(format!(
                    "PASID field {word:#x}: a PASID is 20 bits, and 0 when absent"
                ));
            }
            let access = if kind % 3 == 0 { AccessKind::Read } else { AccessKind::Write };
            Ok(if kind < 3 {
                Record::Dma { device, pasid, addr, access }
            } else {
                Record::Ats { device, pasid, addr, access }
            })
        }
        2 => {
            if flags != 0 || device != NO_DEVICE || addr != 0 {
                return Err("an action record has flags 0, device 0xffff and address 0".to_owned());
            }
            Ok(Record::Action { step: word })
        }
        k if ats => Err(format!(
            "record kind {k}: expected 0 (read), 1 (write), 2 (action), 3 (ATS read) or 4 (ATS write)"
        )),
        k => Err(format!(
            "record kind {k}: expected 0 (read), 1 (write) or 2 (action) in a version 1 trace"
        )),
    }
}

/// One CSV record line of a trace that may hold ATS records (`ats`: version 2 on); an error
/// is (column, field, message).
fn csv_record(
    line: &str,
    devices: &[String],
    ats: bool,
) -> Result<Record, (usize, &'static str, String)> {
    const FIELDS: [&str; 5] = ["kind", "device", "pasid", "addr", "step"];
    let mut cols: Vec<(usize, &str)> = Vec::with_capacity(5);
    let mut start = 0;
    for part in line.split(',') {
        cols.push((line.get(..start).map_or(0, |p| p.chars().count()) + 1, part.trim()));
        start += part.len() + 1;
    }
    if cols.len() != FIELDS.len() {
        let column = line.chars().count() + 1;
        return Err((
            column,
            "kind",
            format!("{} fields; a record has 5: {CSV_HEADER}", cols.len()),
        ));
    }
    let col = |i: usize| cols.get(i).copied().unwrap_or((1, ""));
    let number =
        |i: usize, field: &'static str, limit: u64| -> Result<u64, (usize, &'static str, String)> {
            let (c, v) = col(i);
            let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
                Some(h) => u64::from_str_radix(h, 16),
                None => v.parse::<u64>(),
            };
            match parsed {
                Ok(n) if n <= limit => Ok(n),
                Ok(n) => Err((c, field, format!("{n:#x} is above {limit:#x}"))),
                Err(_) => Err((c, field, format!("`{v}` is not a number (decimal or 0x hex)"))),
            }
        };
    let empty =
        |i: usize, field: &'static str, kind: &str| -> Result<(), (usize, &'static str, String)> {
            let (c, v) = col(i);
            if v.is_empty() {
                Ok(())
            } else {
                Err((c, field, format!("must be empty in a `{kind}` record")))
            }
        };
    let (kc, kind) = col(0);
    match kind {
        "read" | "write" | "ats-read" | "ats-write" if ats || !kind.starts_with("ats") => {
            let (dc, dev) = col(1);
            let device = devices.iter().position(|d| d == dev).ok_or_else(|| {
                (
                    dc,
                    "device",
                    format!(
                        "no device `{dev}` in the trace's scenario (devices: {})",
                        devices.join(", ")
                    ),
                )
            })?;
            let pasid = if col(2).1.is_empty() {
                None
            } else {
                Some(number(2, "pasid", u64::from(PASID_LIMIT - 1))?)
            };
            let addr = number(3, "addr", u64::MAX)?;
            empty(4, "step", kind)?;
            let device = u16::try_from(device).unwrap_or(NO_DEVICE);
            let pasid = pasid.and_then(|p| u32::try_from(p).ok());
            let access = if kind.ends_with("read") { AccessKind::Read } else { AccessKind::Write };
            Ok(if kind.starts_with("ats") {
                Record::Ats { device, pasid, addr, access }
            } else {
                Record::Dma { device, pasid, addr, access }
            })
        }
        "action" => {
            empty(1, "device", kind)?;
            empty(2, "pasid", kind)?;
            empty(3, "addr", kind)?;
            let step = number(4, "step", u64::from(u32::MAX))?;
            Ok(Record::Action { step: u32::try_from(step).unwrap_or(u32::MAX) })
        }
        other if ats => Err((
            kc,
            "kind",
            format!("`{other}`: expected read, write, action, ats-read or ats-write"),
        )),
        other => Err((
            kc,
            "kind",
            format!("`{other}`: expected read, write or action in a version 1 trace"),
        )),
    }
}

/// A cursor over the binary form that names what it cuts.
struct Reader<'a> {
    file: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], TraceError> {
        let left = self.bytes.len().saturating_sub(self.at);
        let Some(out) = self.at.checked_add(n).and_then(|end| self.bytes.get(self.at..end)) else {
            return Err(TraceError::Truncated {
                file: self.file.to_owned(),
                offset: self.at as u64,
                what: what.to_owned(),
                needed: n as u64,
                left: left as u64,
            });
        };
        self.at += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], TraceError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn text(&mut self, what: &str) -> Result<String, TraceError> {
        let at = self.at;
        let len = u32::from_le_bytes(self.array(&format!("{what}'s length"))?);
        let bytes = self.take(usize::try_from(len).unwrap_or(usize::MAX), what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| self.corrupt(at, format!("{what} is not UTF-8")))
    }

    fn corrupt(&self, offset: impl TryInto<u64>, message: String) -> TraceError {
        TraceError::Corrupt {
            file: self.file.to_owned(),
            offset: offset.try_into().unwrap_or(u64::MAX),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Trace {
        let source = Source {
            name: "t.toml".to_owned(),
            text: "title = \"t\"\n[[device]]\nname = \"A\"\nbdf = \"00:02.0\"\n".to_owned(),
        };
        Trace::new(
            &source,
            vec!["A".to_owned()],
            vec![
                Record::Dma { device: 0, pasid: None, addr: 0x1000, access: AccessKind::Read },
                Record::Action { step: 3 },
                Record::Dma { device: 0, pasid: Some(5), addr: 0x2000, access: AccessKind::Write },
            ],
        )
    }

    #[test]
    fn both_forms_read_back_what_was_written() {
        let t = sample();
        let b = Trace::parse("t.bin", &t.to_binary()).unwrap();
        let c = Trace::parse("t.csv", t.to_csv().as_bytes()).unwrap();
        for back in [&b, &c] {
            assert_eq!((&back.records, &back.devices), (&t.records, &t.devices));
            assert_eq!((&back.scenario, &back.scenario_name), (&t.scenario, &t.scenario_name));
        }
        assert_eq!(b.to_csv(), c.to_csv());
    }

    #[test]
    fn every_cut_of_the_binary_form_is_a_typed_error() {
        let bin = sample().to_binary();
        for n in 1..bin.len() {
            let e = Trace::parse("t.bin", &bin[..n]).unwrap_err();
            assert!(matches!(e, TraceError::Truncated { .. }), "cut at {n}: {e}");
        }
        // A cut inside the second record names it.
        let first = bin.len() - 8 - 3 * RECORD_BYTES;
        let e = Trace::parse("t.bin", &bin[..first + RECORD_BYTES + 5]).unwrap_err().to_string();
        assert!(e.contains(&format!("byte offset {}", first + RECORD_BYTES)), "{e}");
        assert!(e.contains("record 1 of 3"), "{e}");
    }

    #[test]
    fn a_changed_byte_is_refused() {
        let bin = sample().to_binary();
        for i in 0..bin.len() {
            let mut b = bin.clone();
            b[i] ^= 0x40;
            assert!(Trace::parse("t.bin", &b).is_err(), "byte {i} flipped was accepted");
        }
        // A bad record kind names its record and offset.
        let first = bin.len() - 8 - 3 * RECORD_BYTES;
        let mut b = bin.clone();
        b[first + 2 * RECORD_BYTES] = 7;
        let e = Trace::parse("t.bin", &b).unwrap_err().to_string();
        assert!(e.contains(&format!("record 2 at byte offset {}", first + 32)), "{e}");
        assert!(e.contains("record kind 7"), "{e}");
    }

    /// A version 1 trace (no ATS records) still reads, in both forms; an ATS record in a
    /// version 1 trace is refused at its record or line; version 2 round-trips ATS records.
    #[test]
    fn version_1_traces_still_read_and_version_2_holds_ats_records() {
        let t = sample();
        // The same content written as version 1: the version field, and the checksum over it.
        let mut v1 = t.to_binary();
        v1[8..10].copy_from_slice(&1u16.to_le_bytes());
        let body = v1.len() - 8;
        let sum = fnv1a(FNV_START, &v1[..body]);
        v1[body..].copy_from_slice(&sum.to_le_bytes());
        let csv1 = t.to_csv().replacen(CSV_MAGIC, "# sviommu trace, version 1", 1);
        assert_ne!(csv1, t.to_csv());
        for back in
            [Trace::parse("v1.bin", &v1).unwrap(), Trace::parse("v1.csv", csv1.as_bytes()).unwrap()]
        {
            assert_eq!(back.records, t.records);
        }
        // An ATS record (kind 3) in version 1.
        let first = v1.len() - 8 - 3 * RECORD_BYTES;
        v1[first] = 3;
        let sum = fnv1a(FNV_START, &v1[..body]);
        v1[body..].copy_from_slice(&sum.to_le_bytes());
        let e = Trace::parse("v1.bin", &v1).unwrap_err().to_string();
        assert!(e.contains("record 0 at byte offset") && e.contains("in a version 1 trace"), "{e}");
        let csv = csv1.replacen("read,A,,0x1000,", "ats-read,A,,0x1000,", 1);
        let e = Trace::parse("v1.csv", csv.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("v1.csv:8:1: kind: `ats-read`") && e.contains("version 1"), "{e}");
        // A version from the future.
        let csv = t.to_csv().replacen(CSV_MAGIC, "# sviommu trace, version 9", 1);
        let e = Trace::parse("v9.csv", csv.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("version 9; this sviommu reads versions 1 to 2"), "{e}");
        // Version 2 with ATS records, both forms.
        let mut t = sample();
        t.records.push(Record::Ats {
            device: 0,
            pasid: Some(1),
            addr: 0x3000,
            access: AccessKind::Write,
        });
        t.records.push(Record::Ats {
            device: 0,
            pasid: None,
            addr: 0x4000,
            access: AccessKind::Read,
        });
        let b = Trace::parse("t.bin", &t.to_binary()).unwrap();
        let c = Trace::parse("t.csv", t.to_csv().as_bytes()).unwrap();
        assert_eq!((&b.records, &c.records), (&t.records, &t.records));
        assert!(t.to_csv().contains("\nats-write,A,1,0x3000,\nats-read,A,,0x4000,\n"));
    }

    #[test]
    fn a_bad_csv_field_names_line_and_column() {
        let csv = sample().to_csv().replace("write,A,5,0x2000,", "write,A,5,0xzz,");
        let e = Trace::parse("t.csv", csv.as_bytes()).unwrap_err().to_string();
        let line = csv.lines().position(|l| l.contains("0xzz")).unwrap() + 1;
        assert!(e.starts_with(&format!("t.csv:{line}:11: addr: `0xzz` is not a number")), "{e}");
        let csv = sample().to_csv().replace("read,A,", "read,B,");
        let e = Trace::parse("t.csv", csv.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("t.csv:8:6: device: no device `B`"), "{e}");
    }
}
