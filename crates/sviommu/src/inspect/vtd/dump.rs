//! `--dump BDF`: one device's root, context, PASID-directory and PASID-table entries, decoded
//! by the spec views, and the devices that have present context entries.
//!
//! The tables may be hostile (garbage, every entry present, every pointer at the same page), so
//! every scan is bounded and says when it stopped early: at most [`MAX_DEVICES`] devices are
//! listed, [`MAX_PASID_TABLES`] PASID tables read and [`MAX_PASID_ENTRIES`] PASID entries shown.
//! Nothing is followed twice in a way that could loop: each scan walks a fixed index range.

use std::fmt::Write as _;

use serde::Serialize;
use sviommu_memory::{Hpa, PhysMemory};
use sviommu_vtd::spec::pasid::{PasidDirEntry, PasidEntry, PASID_TABLE_ENTRIES};
use sviommu_vtd::spec::regs::{rtaddr, rtaddr::Ttm};
use sviommu_vtd::spec::root::{
    self, ContextEntry, RootEntry, ScalableContextEntry, ScalableRootEntry,
};

use super::decode::{self, CONTEXT, PASID_DIR, PASID_ENTRY, ROOT, SM_CONTEXT, SM_ROOT};
use super::VtdInspector;
use crate::inspect::parse::Bdf;
use crate::inspect::record::{wrap, Fields, Hex, TEXT_WIDTH};
use crate::inspect::run::Report;

/// Devices listed at most (of 65536 possible).
pub const MAX_DEVICES: usize = 1024;
/// Present PASID-directory entries whose PASID tables are read, at most.
pub const MAX_PASID_TABLES: usize = 256;
/// Present PASID-table entries shown, at most.
pub const MAX_PASID_ENTRIES: usize = 512;

/// One structure as the dump read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Which structure.
    pub what: &'static str,
    /// Root entries: the bus.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bus: Option<u8>,
    /// Context entries: the devfn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devfn: Option<u8>,
    /// PASID-directory entries: the index (PASIDs `index * 64` to `index * 64 + 63`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir_index: Option<u32>,
    /// PASID-table entries: the PASID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pasid: Option<u32>,
    /// Where it is.
    pub mem_addr: Hex,
    /// The words, or `None` when the read fell outside the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub words: Option<Vec<Hex>>,
    /// Decoded by the spec's view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Fields>,
    /// A bit the spec reserves is set (in the part this device uses).
    pub reserved_bits: bool,
    /// The read fell outside the image.
    pub outside: bool,
}

impl Entry {
    fn new(what: &'static str, mem_addr: u64) -> Self {
        Self {
            what,
            bus: None,
            devfn: None,
            dir_index: None,
            pasid: None,
            mem_addr: Hex(mem_addr),
            words: None,
            fields: None,
            reserved_bits: false,
            outside: false,
        }
    }

    fn label(&self) -> String {
        match (self.bus, self.devfn, self.dir_index, self.pasid) {
            (Some(b), ..) => format!("[bus {b:#04x}]"),
            (_, Some(d), ..) => format!("[devfn {d:#04x}]"),
            (_, _, Some(i), _) => {
                let first = i.saturating_mul(PASID_TABLE_ENTRIES);
                format!("[{i}: PASIDs {first}..{}]", first.saturating_add(PASID_TABLE_ENTRIES - 1))
            }
            (.., Some(p)) => format!("[PASID {p}]"),
            _ => String::new(),
        }
    }
}

/// What `--dump` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dump {
    /// The device.
    pub device: String,
    /// The mode RTADDR selects.
    pub mode: &'static str,
    /// The root table's address.
    pub root_table: Hex,
    /// The device's structures, in walk order: root entry, context entry, then each present
    /// PASID-directory entry followed by its present PASID-table entries.
    pub entries: Vec<Entry>,
    /// Devices with a present context entry, in requester-ID order.
    pub devices: Vec<String>,
    /// Where a scan stopped early, or why there was nothing to scan.
    pub notes: Vec<String>,
}

/// The `N`-word structure at `addr`, or `None` if any byte is outside the image (or the
/// address overflows).
fn read<const N: usize>(mem: &impl PhysMemory<Addr = Hpa>, addr: Option<u64>) -> Option<[u64; N]> {
    let mut bytes = [0u8; 64];
    let buf = bytes.get_mut(..N * 8)?;
    mem.read(Hpa(addr?), buf).ok()?;
    let mut words = [0u64; N];
    for (w, chunk) in words.iter_mut().zip(buf.chunks_exact(8)) {
        *w = u64::from_le_bytes(<[u8; 8]>::try_from(chunk).ok()?);
    }
    Some(words)
}

fn at(base: u64, index: u64, bytes: u64) -> Option<u64> {
    base.checked_add(index.checked_mul(bytes)?)
}

/// Reads one structure into an [`Entry`], decoded by the view `what` names.
fn entry<const N: usize>(
    insp: &VtdInspector,
    what: &'static str,
    addr: Option<u64>,
    devfn: u8,
) -> (Entry, Option<[u64; N]>) {
    let mut e = Entry::new(what, addr.unwrap_or(u64::MAX));
    let words = read::<N>(insp.memory(), addr);
    match words {
        Some(w) => {
            e.words = Some(w.iter().map(|&x| Hex(x)).collect());
            if let Some((fields, reserved)) = decode::structure(what, &w, insp.params().haw, devfn)
            {
                e.fields = Some(fields);
                e.reserved_bits = reserved;
            }
        }
        None => e.outside = true,
    }
    (e, words)
}

/// The dump of `rid`'s structures and the device list.
pub fn dump(insp: &VtdInspector, rid: u16) -> Dump {
    let mut d = Dump {
        device: Bdf(rid).to_string(),
        mode: insp.mode(),
        root_table: Hex(insp.root_table()),
        entries: Vec::new(),
        devices: Vec::new(),
        notes: Vec::new(),
    };
    match Ttm::try_from(rtaddr::TTM.get(insp.rtaddr())) {
        Ok(Ttm::Legacy) => legacy(insp, rid, &mut d),
        Ok(Ttm::Scalable) => scalable(insp, rid, &mut d),
        Ok(Ttm::AbortDma) => d.notes.push("abort-DMA mode: the unit reads no tables".into()),
        Err(_) => d.notes.push("RTADDR.TTM is reserved: the unit reads no tables".into()),
    }
    drop(insp.memory().take_misses());
    d
}

fn legacy(insp: &VtdInspector, rid: u16, d: &mut Dump) {
    let [bus, devfn] = rid.to_be_bytes();
    let rta = insp.root_table();
    let (mut re_entry, re) = entry::<2>(insp, ROOT, at(rta, bus.into(), RootEntry::BYTES), devfn);
    re_entry.bus = Some(bus);
    d.entries.push(re_entry);
    if let Some(re) = re.map(RootEntry::from_words).filter(RootEntry::p) {
        let (mut ce, _) =
            entry::<2>(insp, CONTEXT, at(re.ctp(), devfn.into(), ContextEntry::BYTES), devfn);
        ce.devfn = Some(devfn);
        d.entries.push(ce);
    }
    // The device list: every bus's context table, 256 entries each.
    let mut listed = Lister::default();
    for bus in 0..=u8::MAX {
        let Some(re) = read::<2>(insp.memory(), at(rta, bus.into(), RootEntry::BYTES))
            .map(RootEntry::from_words)
            .filter(RootEntry::p)
        else {
            continue;
        };
        for devfn in 0..=u8::MAX {
            let ce = read::<2>(insp.memory(), at(re.ctp(), devfn.into(), ContextEntry::BYTES));
            if ce.map(ContextEntry::from_words).is_some_and(|c| c.p()) {
                listed.add(u16::from_be_bytes([bus, devfn]));
            }
        }
    }
    listed.finish(d);
}

fn scalable(insp: &VtdInspector, rid: u16, d: &mut Dump) {
    let [bus, devfn] = rid.to_be_bytes();
    let rta = insp.root_table();
    let (mut re_entry, re) =
        entry::<2>(insp, SM_ROOT, at(rta, bus.into(), ScalableRootEntry::BYTES), devfn);
    re_entry.bus = Some(bus);
    d.entries.push(re_entry);
    if let Some(re) = re.map(ScalableRootEntry::from_words).filter(|r| r.present_for(devfn)) {
        let index = root::scalable_context_index(devfn);
        let addr = at(re.ctp_for(devfn), index.into(), ScalableContextEntry::BYTES);
        let (mut ce_entry, ce) = entry::<4>(insp, SM_CONTEXT, addr, devfn);
        ce_entry.devfn = Some(devfn);
        d.entries.push(ce_entry);
        if let Some(ce) = ce.map(ScalableContextEntry::from_words).filter(|c| c.p()) {
            pasids(insp, &ce, devfn, d);
        }
    }
    let mut listed = Lister::default();
    for bus in 0..=u8::MAX {
        let Some(re) = read::<2>(insp.memory(), at(rta, bus.into(), ScalableRootEntry::BYTES))
            .map(ScalableRootEntry::from_words)
        else {
            continue;
        };
        // §9.2: the lower table serves devfn 0-127, the upper one 128-255.
        for devfn in 0..=u8::MAX {
            if !re.present_for(devfn) {
                continue;
            }
            let index = root::scalable_context_index(devfn);
            let addr = at(re.ctp_for(devfn), index.into(), ScalableContextEntry::BYTES);
            let ce = read::<4>(insp.memory(), addr).map(ScalableContextEntry::from_words);
            if ce.is_some_and(|c| c.p()) {
                listed.add(u16::from_be_bytes([bus, devfn]));
            }
        }
    }
    listed.finish(d);
}

/// Every present PASID-directory entry of `ce` and the present PASID-table entries below it,
/// within the caps.
fn pasids(insp: &VtdInspector, ce: &ScalableContextEntry, devfn: u8, d: &mut Dump) {
    let dir = ce.pasiddirptr();
    let (mut tables, mut shown) = (0usize, 0usize);
    for i in 0..ce.pasid_dir_entries() {
        let Some(de) = read::<1>(insp.memory(), at(dir, i.into(), PasidDirEntry::BYTES))
            .map(PasidDirEntry::from_words)
            .filter(PasidDirEntry::p)
        else {
            continue;
        };
        if tables == MAX_PASID_TABLES {
            d.notes.push(format!(
                "PASID scan stopped at directory entry {i}: {MAX_PASID_TABLES} present \
                 directory entries read (the cap); translate a PASID to see one beyond"
            ));
            return;
        }
        tables += 1;
        let (mut de_entry, _) =
            entry::<1>(insp, PASID_DIR, at(dir, i.into(), PasidDirEntry::BYTES), devfn);
        de_entry.dir_index = Some(i);
        d.entries.push(de_entry);
        for j in 0..PASID_TABLE_ENTRIES {
            let addr = at(de.smptblptr(), j.into(), PasidEntry::BYTES);
            let present = read::<8>(insp.memory(), addr).map(PasidEntry::from_words);
            if !present.is_some_and(|p| p.p()) {
                continue;
            }
            let pasid = i.saturating_mul(PASID_TABLE_ENTRIES).saturating_add(j);
            if shown == MAX_PASID_ENTRIES {
                d.notes.push(format!(
                    "PASID entries shown up to the cap of {MAX_PASID_ENTRIES}; stopped at \
                     PASID {pasid}"
                ));
                return;
            }
            shown += 1;
            let (mut pe, _) = entry::<8>(insp, PASID_ENTRY, addr, devfn);
            pe.pasid = Some(pasid);
            d.entries.push(pe);
        }
    }
}

/// Collects device IDs up to [`MAX_DEVICES`], counting the rest.
#[derive(Default)]
struct Lister {
    devices: Vec<u16>,
    more: usize,
}

impl Lister {
    fn add(&mut self, rid: u16) {
        if self.devices.len() < MAX_DEVICES {
            self.devices.push(rid);
        } else {
            self.more += 1;
        }
    }

    fn finish(self, d: &mut Dump) {
        d.devices = self.devices.into_iter().map(|r| Bdf(r).to_string()).collect();
        if self.more > 0 {
            d.notes.push(format!(
                "{} more devices with present context entries not listed (the cap is \
                 {MAX_DEVICES})",
                self.more
            ));
        }
    }
}

impl Report for Dump {
    fn text(&self) -> String {
        let mut s = format!("device {}\n", self.device);
        for e in &self.entries {
            let _ = write!(s, "  {} {} @ {:#x}", e.what, e.label(), e.mem_addr.0);
            match (&e.words, &e.fields) {
                (Some(words), fields) => {
                    let words: Vec<String> =
                        words.iter().map(|w| format!("{:016x}", w.0)).collect();
                    s.push_str(":\n");
                    s.push_str(&wrap(&words.join(" "), "      ", TEXT_WIDTH));
                    if let Some(f) = fields {
                        s.push_str(&wrap(&f.text_all(), "      ", TEXT_WIDTH));
                    }
                    if e.reserved_bits {
                        s.push_str("      (reserved bits set)\n");
                    }
                }
                (None, _) => s.push_str(": outside the image\n"),
            }
        }
        let _ = writeln!(s, "devices with a present context entry: {}", self.devices.len());
        for chunk in self.devices.chunks(8) {
            let _ = writeln!(s, "  {}", chunk.join(" "));
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        s
    }
}
