//! `--dump SID`: one stream's STE and CDs, decoded by the spec views, and the StreamIDs whose
//! STEs are valid.
//!
//! There is no second Stream-table or CD-table walker here: every STE and CD is found by asking
//! the model, with a read transaction to address 0 from that StreamID (and SubstreamID), and
//! taking the structures it reports reading. The tables may be hostile, so every scan is a
//! fixed range with a cap, said when reached: at most [`MAX_CDS`] SubstreamIDs are tried,
//! [`MAX_SCAN`] StreamIDs scanned and [`MAX_STREAMS`] listed.

use std::fmt::Write as _;

use serde::Serialize;
use sviommu_pgtable::Access;
use sviommu_smmuv3::spec::regs::{idr1, strtab_base_cfg};
use sviommu_smmuv3::spec::{Cd, Ste};

use super::{decode, Request, SmmuInspector};
use crate::inspect::record::{wrap, Fields, Hex, RequestRecord, Stop, TEXT_WIDTH};
use crate::inspect::run::Report;

/// SubstreamIDs whose CDs are looked at, at most.
pub const MAX_CDS: u32 = 256;
/// StreamIDs scanned for valid STEs, at most.
pub const MAX_SCAN: u32 = 1 << 16;
/// StreamIDs listed, at most.
pub const MAX_STREAMS: usize = 1024;

/// One structure as the model read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// `STE` or `CD`.
    pub what: &'static str,
    /// CDs: the SubstreamID it serves (null: the CD of transactions without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssid: Option<u32>,
    /// Where it is.
    pub mem_addr: Hex,
    /// Its words.
    pub words: Vec<Hex>,
    /// Decoded by the spec's view.
    pub fields: Fields,
    /// A bit the spec marks Reserved, RES0 is set.
    pub reserved_bits: bool,
}

/// What `--dump` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dump {
    /// The StreamID.
    pub sid: u32,
    /// The Stream table, as the registers describe it.
    pub stream_table: String,
    /// The STE, then each valid CD in SubstreamID order.
    pub entries: Vec<Entry>,
    /// StreamIDs with a valid STE (V == 1), in order.
    pub stream_ids: Vec<u32>,
    /// Where a scan stopped early, and why a structure is missing.
    pub notes: Vec<String>,
}

fn entry(what: &'static str, ssid: Option<u32>, addr: u64, words: [u64; 8]) -> Entry {
    let (fields, reserved_bits) = decode::structure(what, &words).unwrap_or_default();
    Entry {
        what,
        ssid,
        mem_addr: Hex(addr),
        words: words.iter().map(|&w| Hex(w)).collect(),
        fields,
        reserved_bits,
    }
}

fn probe(insp: &SmmuInspector, sid: u32, ssid: Option<u32>) -> super::Outcome {
    insp.run(&Request { line: None, sid, ssid, addr: 0, access: Access::READ }, false)
}

fn why(r: &RequestRecord) -> String {
    match &r.result {
        Err(Stop::Fault(f)) => format!("{:#04x} {}", f.code, f.name),
        Err(Stop::Abort(a)) => (*a).to_owned(),
        Ok(_) => "translated".into(),
    }
}

/// The dump of `sid`'s structures and the list of valid StreamIDs.
pub fn dump(insp: &SmmuInspector, sid: u32) -> Dump {
    let mut d = Dump {
        sid,
        stream_table: insp.table_text(),
        entries: Vec::new(),
        stream_ids: Vec::new(),
        notes: Vec::new(),
    };
    let o = probe(insp, sid, None);
    match o.structures.iter().find(|(w, ..)| *w == decode::STE) {
        Some(&(_, addr, words)) => {
            d.entries.push(entry(decode::STE, None, addr, words));
            let ste = Ste::from_words(words);
            if ste.v() && ste.config().is_ok_and(|c| c.stage1()) {
                cds(insp, sid, &ste, &mut d);
            }
        }
        None => d.notes.push(format!("the STE was not read: {}", why(&o.record))),
    }
    streams(insp, &mut d);
    d
}

/// Each valid CD of the stream, SubstreamIDs below 2^S1CDMax (capped).
fn cds(insp: &SmmuInspector, sid: u32, ste: &Ste, d: &mut Dump) {
    let cdmax = ste.s1cdmax();
    let count = if cdmax == 0 { 1 } else { 1u64 << cdmax.min(32) };
    let tried = u32::try_from(count.min(u64::from(MAX_CDS))).unwrap_or(MAX_CDS);
    let mut invalid = 0u32;
    for i in 0..tried {
        let ssid = (cdmax != 0).then_some(i);
        let mut o = probe(insp, sid, ssid);
        // §5.2 S1DSS == 0b10: SubstreamID 0 is refused, and CD 0 serves transactions without
        // a SubstreamID; ask for it that way.
        if i == 0 && ssid.is_some() && !o.structures.iter().any(|(w, ..)| *w == decode::CD) {
            o = probe(insp, sid, None);
        }
        match o.structures.iter().find(|(w, ..)| *w == decode::CD) {
            Some(&(_, addr, words)) if Cd::from_words(words).v() => {
                d.entries.push(entry(decode::CD, ssid, addr, words));
            }
            Some(_) => invalid += 1,
            None if cdmax == 0 => {
                d.notes.push(format!("the CD was not read: {}", why(&o.record)));
            }
            None => invalid += 1,
        }
    }
    if invalid > 0 {
        d.notes.push(format!("{invalid} SubstreamID(s) without a valid CD not shown"));
    }
    if count > u64::from(MAX_CDS) {
        d.notes.push(format!(
            "S1CDMax {cdmax}: only SubstreamIDs 0..{MAX_CDS} looked at (the cap); translate a \
             SubstreamID to see one beyond"
        ));
    }
}

/// StreamIDs below the table's size whose STE has V set.
fn streams(insp: &SmmuInspector, d: &mut Dump) {
    let log2size = strtab_base_cfg::LOG2SIZE.get(insp.strtab_base_cfg());
    let sidsize = idr1::SIDSIZE.get(u64::from(insp.params().idr1));
    let size = 1u64 << log2size.min(sidsize).min(32);
    let scan = u32::try_from(size.min(u64::from(MAX_SCAN))).unwrap_or(MAX_SCAN);
    let mut more = 0usize;
    for sid in 0..scan {
        let o = probe(insp, sid, None);
        let valid = o
            .structures
            .iter()
            .find(|(w, ..)| *w == decode::STE)
            .is_some_and(|&(_, _, words)| Ste::from_words(words).v());
        if valid {
            if d.stream_ids.len() < MAX_STREAMS {
                d.stream_ids.push(sid);
            } else {
                more += 1;
            }
        }
    }
    if size > u64::from(MAX_SCAN) {
        d.notes.push(format!("StreamIDs scanned up to the cap of {MAX_SCAN}"));
    }
    if more > 0 {
        d.notes.push(format!(
            "{more} more StreamIDs with valid STEs not listed (the cap is {MAX_STREAMS})"
        ));
    }
}

impl Report for Dump {
    fn text(&self) -> String {
        let mut s = format!("sid {}\n", self.sid);
        for e in &self.entries {
            let label = e.ssid.map(|n| format!(" [SubstreamID {n}]")).unwrap_or_default();
            let _ = writeln!(s, "  {}{label} @ {:#x}:", e.what, e.mem_addr.0);
            let words: Vec<String> = e.words.iter().map(|w| format!("{:016x}", w.0)).collect();
            s.push_str(&wrap(&words.join(" "), "      ", TEXT_WIDTH));
            s.push_str(&wrap(&e.fields.text_structure(), "      ", TEXT_WIDTH));
            if e.reserved_bits {
                s.push_str("      (reserved bits set)\n");
            }
        }
        let _ = writeln!(s, "StreamIDs with a valid STE: {}", self.stream_ids.len());
        for chunk in self.stream_ids.chunks(16) {
            let ids: Vec<String> = chunk.iter().map(u32::to_string).collect();
            let _ = writeln!(s, "  {}", ids.join(" "));
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        s
    }
}
