//! What `inspect` reports, whatever the architecture: one record per request (the request
//! echoed, the translation or the architected fault, the reads, the walk), as text for a person
//! or as one JSON object per line for scripts. The JSON shape is the contract the README
//! documents; `tests/inspect_vtd.rs` holds it to that.

use std::fmt::Write as _;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use sviommu_pgtable::{Access, Perms};

use super::parse::access_name;

/// A number printed as `0x` hex: an address or a raw word. In JSON a string, so no reader
/// rounds it to a double.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hex(pub u64);

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:#x}", self.0))
    }
}

/// One decoded field's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A one-bit field.
    Flag(bool),
    /// A count or an identifier (DID, PDTS), decimal.
    Num(u64),
    /// An address or a bit pattern, hex.
    Hex(u64),
    /// An encoding by its name (`nested`, `48-bit`), or `reserved (0x5)`.
    Name(String),
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Flag(b) => s.serialize_bool(*b),
            Value::Num(n) => s.serialize_u64(*n),
            Value::Hex(h) => Hex(*h).serialize(s),
            Value::Name(n) => s.serialize_str(n),
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Flag(b) => write!(f, "{}", u8::from(*b)),
            Value::Num(n) => write!(f, "{n}"),
            Value::Hex(h) => write!(f, "{h:#x}"),
            Value::Name(n) => f.write_str(n),
        }
    }
}

/// Above this many fields a structure's text shows only the non-zero ones.
pub const MANY_FIELDS: usize = 32;

/// Decoded fields, in the order the spec lists them; a JSON object keyed by the spec mnemonic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields(pub Vec<(&'static str, Value)>);

impl Fields {
    /// The value of the field `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Every field as `NAME=value`.
    pub fn text_all(&self) -> String {
        let mut s = String::new();
        for (name, value) in &self.0 {
            if !s.is_empty() {
                s.push(' ');
            }
            let _ = write!(s, "{name}={value}");
        }
        s
    }

    /// A structure's fields for a person: every field (`text_all`) when there are few, as in
    /// VT-d's entries; only the non-zero ones when there are many (an STE has over 80 fields,
    /// a CD over 40). The JSON always has every field.
    pub fn text_structure(&self) -> String {
        if self.0.len() <= MANY_FIELDS {
            return self.text_all();
        }
        let nonzero = self
            .0
            .iter()
            .filter(|(_, v)| !matches!(v, Value::Flag(false) | Value::Num(0) | Value::Hex(0)));
        let mut s = String::new();
        for (name, value) in nonzero {
            if !s.is_empty() {
                s.push(' ');
            }
            let _ = write!(s, "{name}={value}");
        }
        s.push_str(" (others 0)");
        s
    }

    /// Flags that are set by name, other fields as `NAME=value`: the short form for
    /// page-table entries.
    pub fn text_set(&self) -> String {
        let mut s = String::new();
        for (name, value) in &self.0 {
            let part = match value {
                Value::Flag(false) => continue,
                Value::Flag(true) => (*name).to_owned(),
                v => format!("{name}={v}"),
            };
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(&part);
        }
        s
    }
}

impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// One read a translation made, in the order it made them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Step {
    /// A configuration structure (root, context, PASID entry; STE, CD), read whole.
    Structure {
        /// Its name.
        what: &'static str,
        /// Where it was read.
        mem_addr: Hex,
        /// Its words as read (before any update the walk made).
        words: Vec<Hex>,
        /// Decoded by the spec's view.
        fields: Fields,
        /// Whether a bit the spec reserves is set (the part the request uses).
        reserved_bits: bool,
    },
    /// A page-table entry.
    Entry {
        /// The stage's name (`first`, `second`).
        stage: &'static str,
        /// Spec level number.
        level: i8,
        /// The entry's address in its table space: a GPA for a nested first-stage table.
        table_addr: Hex,
        /// Where it was read.
        mem_addr: Hex,
        /// The entry as read.
        raw: Hex,
        /// Decoded with the page-table format's field declarations.
        fields: Fields,
    },
    /// A read that hit a hole in the image (what the access fault is about).
    Outside {
        /// First byte.
        mem_addr: Hex,
        /// Bytes.
        bytes: u64,
    },
}

/// A request the unit let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translated {
    /// The output address.
    pub output: u64,
    /// The page the translation holds for, in bytes.
    pub page_size: u64,
    /// What the translation allows.
    pub perms: Perms,
    /// Not DMA: an interrupt request, passed on untranslated.
    pub interrupt: bool,
}

/// An architected fault.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FaultInfo {
    /// The code hardware records (VT-d fault reason, SMMUv3 event number).
    pub code: u8,
    /// Its name.
    pub name: &'static str,
    /// VT-d: fault processing is disabled for it (a used entry's FPD): the unit would not
    /// record it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fpd: Option<bool>,
    /// SMMUv3: whether the SMMU records the event in the Event queue (CD.R, STE.S2R,
    /// CR2.RECINVSID); the transaction is terminated either way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<bool>,
    /// SMMUv3: the event record's S2 field (the fault happened at stage 2), where it has one.
    #[serde(rename = "S2", skip_serializing_if = "Option::is_none")]
    pub s2: Option<bool>,
    /// SMMUv3: the event record's CLASS (`CD`, `TT`, `IN`), where it has one.
    #[serde(rename = "CLASS", skip_serializing_if = "Option::is_none")]
    pub class: Option<&'static str>,
    /// SMMUv3: the event record's IPA, where it has one.
    #[serde(rename = "IPA", skip_serializing_if = "Option::is_none")]
    pub ipa: Option<Hex>,
    /// SMMUv3: the event record's FetchAddr (the physical address whose fetch aborted).
    #[serde(rename = "FetchAddr", skip_serializing_if = "Option::is_none")]
    pub fetch_addr: Option<Hex>,
}

/// Why the unit did not translate a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// An architected fault (VT-d fault reason, SMMUv3 event).
    Fault(FaultInfo),
    /// Terminated without any fault record (SMMUv3: STE.Config abort, GBPA.ABORT).
    Abort(&'static str),
}

/// Who made a request, as the architecture names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requester {
    /// VT-d: a PCI requester ID, with the PASID prefix if any.
    Pci {
        /// bus << 8 | devfn.
        rid: u16,
        /// PASID prefix.
        pasid: Option<u32>,
    },
    /// SMMUv3: a StreamID, with the SubstreamID if any.
    Stream {
        /// StreamID.
        sid: u32,
        /// SubstreamID (SSV == 1).
        ssid: Option<u32>,
    },
}

impl Requester {
    /// The device as a person writes it: `00:02.0`, `sid 5`.
    pub fn device_text(&self) -> String {
        match self {
            Requester::Pci { rid, .. } => super::parse::Bdf(*rid).to_string(),
            Requester::Stream { sid, .. } => format!("sid {sid}"),
        }
    }

    /// The PASID / SubstreamID.
    pub fn sub(&self) -> Option<u32> {
        match *self {
            Requester::Pci { pasid, .. } => pasid,
            Requester::Stream { ssid, .. } => ssid,
        }
    }

    /// The architecture's name for the sub-identifier: `pasid`, `ssid`.
    pub fn sub_name(&self) -> &'static str {
        match self {
            Requester::Pci { .. } => "pasid",
            Requester::Stream { .. } => "ssid",
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum RequesterJson {
    Pci { device: String, pasid: Option<u32> },
    Stream { sid: u32, ssid: Option<u32> },
}

/// One request and what the unit did with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// The request file's line, when it came from one.
    pub line: Option<usize>,
    /// The requester and its PASID / SubstreamID.
    pub requester: Requester,
    /// The input address.
    pub addr: u64,
    /// The access asked for.
    pub access: Access,
    /// The translation, or the fault or abort that stopped it.
    pub result: Result<Translated, Stop>,
    /// Memory reads the unit made: structures, table entries, and failed attempts.
    pub reads: u32,
    /// Every read, when asked for.
    pub walk: Option<Vec<Step>>,
}

#[derive(Serialize)]
struct RequestJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    #[serde(flatten)]
    requester: RequesterJson,
    addr: Hex,
    access: &'static str,
    #[serde(rename = "priv")]
    privileged: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<Hex>,
    #[serde(skip_serializing_if = "Option::is_none")]
    page_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    perms: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interrupt: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fault: Option<FaultInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    abort: Option<&'static str>,
    reads: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    walk: Option<&'a [Step]>,
}

/// The kind of access alone (`read`, `write`, `exec`), without `+priv`.
fn kind_name(a: Access) -> &'static str {
    access_name(Access { privileged: false, ..a })
}

impl RequestRecord {
    /// The record as one line of JSON.
    pub fn json(&self) -> String {
        let ok = self.result.as_ref().ok();
        let j = RequestJson {
            line: self.line,
            requester: match self.requester {
                Requester::Pci { rid, pasid } => {
                    RequesterJson::Pci { device: super::parse::Bdf(rid).to_string(), pasid }
                }
                Requester::Stream { sid, ssid } => RequesterJson::Stream { sid, ssid },
            },
            addr: Hex(self.addr),
            access: kind_name(self.access),
            privileged: self.access.privileged,
            output: ok.map(|t| Hex(t.output)),
            page_size: ok.map(|t| t.page_size),
            perms: ok.map(|t| t.perms.to_string()),
            interrupt: ok.map(|t| t.interrupt),
            fault: match self.result {
                Err(Stop::Fault(f)) => Some(f),
                _ => None,
            },
            abort: match self.result {
                Err(Stop::Abort(a)) => Some(a),
                _ => None,
            },
            reads: self.reads,
            walk: self.walk.as_deref(),
        };
        serde_json::to_string(&j).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The request as a person writes it: `00:02.0 pasid 1 write 0x1000`.
    pub fn request_text(&self) -> String {
        let mut s = self.requester.device_text();
        if let Some(p) = self.requester.sub() {
            let _ = write!(s, " {} {p}", self.requester.sub_name());
        }
        let _ = write!(s, " {} {:#x}", access_name(self.access), self.addr);
        s
    }

    /// What became of it: `0x41000040, 4K page, priv:rw- user:rw-` or
    /// `fault 0x71 (SM: first-stage entry not present)`.
    pub fn result_text(&self) -> String {
        match &self.result {
            Ok(t) if t.interrupt => {
                format!("{:#x}, interrupt request (not remapped)", t.output)
            }
            Ok(t) => format!("{:#x}, {} page, {}", t.output, size_name(t.page_size), t.perms),
            Err(Stop::Fault(f)) => {
                let mut s = format!("fault {:#04x} ({})", f.code, f.name);
                if let Some(s2) = f.s2 {
                    let _ = write!(s, " S2={}", u8::from(s2));
                }
                if let Some(class) = f.class {
                    let _ = write!(s, " CLASS={class}");
                }
                if let Some(ipa) = f.ipa {
                    let _ = write!(s, " IPA={:#x}", ipa.0);
                }
                if let Some(fetch) = f.fetch_addr {
                    let _ = write!(s, " FetchAddr={:#x}", fetch.0);
                }
                if f.fpd == Some(true) {
                    s.push_str(", FPD set: not recorded");
                }
                if f.record == Some(false) {
                    s.push_str(", not recorded (CD.R / STE.S2R / CR2.RECINVSID clear)");
                }
                s
            }
            Err(Stop::Abort(why)) => format!("abort, no event ({why})"),
        }
    }

    /// The record as text: one line, or with the walk a block.
    pub fn text(&self, stage_table_space: &dyn Fn(&str) -> &'static str) -> String {
        let reads = format!("{} read{}", self.reads, if self.reads == 1 { "" } else { "s" });
        let line = self.line.map(|l| format!("line {l}: ")).unwrap_or_default();
        let Some(walk) = &self.walk else {
            return format!("{line}{}: {}; {reads}\n", self.request_text(), self.result_text());
        };
        let mut s = format!("{line}{}\n", self.request_text());
        for step in walk {
            s.push_str(&step_text(step, stage_table_space));
        }
        let _ = writeln!(s, "  => {}; {reads}", self.result_text());
        s
    }
}

/// `4K`, `2M`, `1G`.
pub fn size_name(bytes: u64) -> String {
    match bytes.trailing_zeros() {
        30.. => format!("{}G", bytes >> 30),
        20.. => format!("{}M", bytes >> 20),
        _ => format!("{}K", bytes >> 10),
    }
}

/// `text` as lines of at most `width` characters (words never split), each starting with
/// `indent`.
pub fn wrap(text: &str, indent: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && indent.len() + line.len() + 1 + word.len() > width {
            let _ = writeln!(out, "{indent}{line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "{indent}{line}");
    }
    out
}

/// Width of a text report's wrapped lines.
pub const TEXT_WIDTH: usize = 100;

fn words_text(words: &[Hex]) -> String {
    words.iter().map(|w| format!("{:016x}", w.0)).collect::<Vec<_>>().join(" ")
}

/// One step as text. `table_space(stage)` names the address space a stage's table addresses
/// are in when they differ from memory (VT-d: `GPA` for a nested first stage).
fn step_text(step: &Step, table_space: &dyn Fn(&str) -> &'static str) -> String {
    match step {
        Step::Structure { what, mem_addr, words, fields, reserved_bits } => {
            let mut s = format!("  {what} @ {:#x}:\n", mem_addr.0);
            s.push_str(&wrap(&words_text(words), "      ", TEXT_WIDTH));
            s.push_str(&wrap(&fields.text_structure(), "      ", TEXT_WIDTH));
            if *reserved_bits {
                s.push_str("      (reserved bits set)\n");
            }
            s
        }
        Step::Entry { stage, level, table_addr, mem_addr, raw, fields } => {
            let at = if table_addr == mem_addr {
                format!("{:#x}", mem_addr.0)
            } else {
                format!("{} {:#x} = {:#x}", table_space(stage), table_addr.0, mem_addr.0)
            };
            // VT-d names its stages (`first stage`), SMMUv3 numbers them (`stage 1`).
            let stage = if stage.starts_with(|c: char| c.is_ascii_digit()) {
                format!("stage {stage}")
            } else {
                format!("{stage} stage")
            };
            format!("  {stage} L{level} @ {at}: {:016x}  {}\n", raw.0, fields.text_set())
        }
        Step::Outside { mem_addr, bytes } => {
            format!("  read of {bytes} bytes @ {:#x}: outside the image\n", mem_addr.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(result: Result<Translated, Stop>) -> RequestRecord {
        RequestRecord {
            line: None,
            requester: Requester::Pci { rid: 0x10, pasid: Some(1) },
            addr: 0x1000,
            access: Access::WRITE.privileged(),
            result,
            reads: 3,
            walk: None,
        }
    }

    #[test]
    fn json_has_the_documented_keys() {
        let t = Translated { output: 0x5000, page_size: 4096, perms: Perms::ALL, interrupt: false };
        let v: serde_json::Value = serde_json::from_str(&record(Ok(t)).json()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want =
            ["device", "pasid", "addr", "access", "priv", "output", "page_size", "perms"].to_vec();
        want.extend(["interrupt", "reads"]);
        want.sort_unstable();
        assert_eq!(keys, want);
        assert_eq!(
            (&v["access"], &v["priv"], &v["output"]),
            (&"write".into(), &true.into(), &"0x5000".into())
        );
        let f = FaultInfo { code: 0x71, name: "x", fpd: Some(false), ..FaultInfo::default() };
        let v: serde_json::Value =
            serde_json::from_str(&record(Err(Stop::Fault(f))).json()).unwrap();
        assert_eq!(v["fault"], serde_json::json!({"code": 0x71, "name": "x", "fpd": false}));
        assert!(v.get("output").is_none() && v.get("walk").is_none());
    }

    #[test]
    fn fields_keep_the_spec_order_in_json_and_text() {
        let f = Fields(vec![
            ("P", Value::Flag(true)),
            ("FPD", Value::Flag(false)),
            ("PGTT", Value::Name("nested".into())),
            ("DID", Value::Num(7)),
            ("SSPTPTR", Value::Hex(0x1000)),
        ]);
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"P":true,"FPD":false,"PGTT":"nested","DID":7,"SSPTPTR":"0x1000"}"#
        );
        assert_eq!(f.text_all(), "P=1 FPD=0 PGTT=nested DID=7 SSPTPTR=0x1000");
        assert_eq!(f.text_set(), "P PGTT=nested DID=7 SSPTPTR=0x1000");
        assert_eq!(size_name(1 << 21), "2M");
        assert_eq!(wrap("aa bb cc", "  ", 6), "  aa\n  bb\n  cc\n");
        assert_eq!(wrap("aa bb cc", "  ", 7), "  aa bb\n  cc\n");
    }
}
