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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FaultInfo {
    /// The code hardware records (VT-d fault reason, SMMUv3 event number).
    pub code: u8,
    /// Its name.
    pub name: &'static str,
    /// VT-d: fault processing is disabled for it (a used entry's FPD): the unit would not
    /// record it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fpd: Option<bool>,
}

/// One request and what the unit did with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// The request file's line, when it came from one.
    pub line: Option<usize>,
    /// The requester, as the architecture writes it (`00:02.0`).
    pub device: String,
    /// PASID / SubstreamID.
    pub pasid: Option<u32>,
    /// The input address.
    pub addr: u64,
    /// The access asked for.
    pub access: Access,
    /// The translation or the fault.
    pub result: Result<Translated, FaultInfo>,
    /// Memory reads the unit made: structures, table entries, and failed attempts.
    pub reads: u32,
    /// Every read, when asked for.
    pub walk: Option<Vec<Step>>,
}

#[derive(Serialize)]
struct RequestJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    device: &'a str,
    pasid: Option<u32>,
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
            device: &self.device,
            pasid: self.pasid,
            addr: Hex(self.addr),
            access: kind_name(self.access),
            privileged: self.access.privileged,
            output: ok.map(|t| Hex(t.output)),
            page_size: ok.map(|t| t.page_size),
            perms: ok.map(|t| t.perms.to_string()),
            interrupt: ok.map(|t| t.interrupt),
            fault: self.result.err(),
            reads: self.reads,
            walk: self.walk.as_deref(),
        };
        serde_json::to_string(&j).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The request as a person writes it: `00:02.0 pasid 1 write 0x1000`.
    pub fn request_text(&self) -> String {
        let mut s = self.device.clone();
        if let Some(p) = self.pasid {
            let _ = write!(s, " pasid {p}");
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
            Err(f) => {
                let mut s = format!("fault {:#04x} ({})", f.code, f.name);
                if f.fpd == Some(true) {
                    s.push_str(", FPD set: not recorded");
                }
                s
            }
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
            s.push_str(&wrap(&fields.text_all(), "      ", TEXT_WIDTH));
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
            format!("  {stage} stage L{level} @ {at}: {:016x}  {}\n", raw.0, fields.text_set())
        }
        Step::Outside { mem_addr, bytes } => {
            format!("  read of {bytes} bytes @ {:#x}: outside the image\n", mem_addr.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(result: Result<Translated, FaultInfo>) -> RequestRecord {
        RequestRecord {
            line: None,
            device: "00:02.0".into(),
            pasid: Some(1),
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
        let f = FaultInfo { code: 0x71, name: "x", fpd: Some(false) };
        let v: serde_json::Value = serde_json::from_str(&record(Err(f)).json()).unwrap();
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
