//! `sviommu uapi FILE`: runs a file of iommufd calls against the built-in machine of one
//! architecture (`sviommu_uapi::machine`) and prints each call's result or errno.
//!
//! One call per line, named as the ioctl is, with its fields as `key=value`; `name = CALL ...`
//! binds the ID (or address) the call returns to a name that later lines use as a value.
//! Setup lines describe the machine and the guest: `machine vtd|smmuv3` (first), the guest's
//! page tables (`guest_s1`, `guest_map`, `guest_unmap`, `guest_page`, `guest_cd`, `write`),
//! and `dma DEV [pasid=N] ADDR read|write`, a request through the hardware model. Any call may
//! end in `expect=ERRNO` (or `expect=ok`): a different outcome makes the run fail. README.md
//! documents the format.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use sviommu_core::arch::smmuv3::SmmuUnit;
use sviommu_core::arch::vtd::VtdUnit;
use sviommu_core::driver::{DmaAccess, DmaFault, DmaResult, HwInfo};
use sviommu_core::topology::DeviceId;
use sviommu_core::{FaultEvent, Model};
use sviommu_smmuv3::hw::SmmuParams;
use sviommu_smmuv3::spec::regs::{idr0, idr1, idr3};
use sviommu_smmuv3::spec::ste::{Eats, S1Fmt, StreamConfig};
use sviommu_smmuv3::spec::{Command, EventId, EventRecord, Granule, Opcode, Ste};
use sviommu_uapi::data::{
    data_type, hwpt_flags, map_flags, vtd_s1_flags, TYPE_ARM_SMMUV3, VTD_INV_FLAGS_LEAF,
};
use sviommu_uapi::machine::{Machine, MachineError};
use sviommu_uapi::object::{pgfault, PageFault, Vevent, VEVENTQ_FLAG_LOST_EVENTS};
use sviommu_uapi::{Errno, HwptAlloc, HwptData, InvalidateArray, UapiError, VtdS1Invalidate};
use sviommu_vtd::hw::{PageRequestMsg, PageRequestOutcome};

/// A line the runner cannot use (the script's fault, not a call's refusal).
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// A bad line, naming the field when one is at fault.
    #[error("line {line}: {}{message}", field.as_ref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
    Line {
        /// 1-based line number.
        line: usize,
        /// The field at fault.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// The machine could not be built, or a guest helper failed.
    #[error("line {line}: {source}")]
    Machine {
        /// 1-based line number.
        line: usize,
        /// Why.
        source: MachineError,
    },
}

/// What one call came back with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// An object ID (or an address a helper returned), bound to `name` if the line named one.
    Id {
        /// The name bound.
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The value.
        id: u64,
    },
    /// `IOAS_MAP` / `IOAS_COPY`: where it went.
    Iova {
        /// The IOVA.
        iova: u64,
    },
    /// `IOAS_UNMAP`.
    Unmapped {
        /// Bytes unmapped.
        bytes: u64,
    },
    /// `IOAS_IOVA_RANGES`: inclusive `[start, last]` ranges.
    Ranges {
        /// The ranges.
        ranges: Vec<[u64; 2]>,
        /// `out_iova_alignment`.
        alignment: u64,
    },
    /// `GET_HW_INFO`.
    HwInfo {
        /// The architecture.
        model: Model,
        /// The registers.
        data: HwInfo,
        /// `out_max_pasid_log2`.
        max_pasid_log2: u8,
    },
    /// An invalidation: entries handled.
    Handled {
        /// How many.
        handled: u32,
    },
    /// A DMA translated.
    Translated {
        /// The host physical address.
        output: u64,
    },
    /// A DMA faulted, with its architected code and name.
    Fault {
        /// The code (VT-d fault reason, SMMUv3 event number).
        code: u16,
        /// Its name.
        name: &'static str,
    },
    /// Blocked where the architecture records no fault (SMMUv3 STE.Config abort, GBPA.ABORT),
    /// or never seen by the unit: what happened instead.
    Blocked {
        /// What blocked it.
        why: &'static str,
    },
    /// `read_veventq`: the vEVENTs `read()` returned, oldest first.
    Vevents {
        /// The records.
        events: Vec<VeventRecord>,
    },
    /// `read_fault`: the page requests `read()` returned, each with its group's cookie.
    PageFaults {
        /// The pages.
        faults: Vec<PageFaultRecord>,
    },
    /// `host_faults`: what stayed with the host, with physical IDs.
    HostFaults {
        /// The faults, oldest first.
        faults: Vec<HostFault>,
    },
    /// `pri`: where the unit put the page request.
    PageRequest {
        /// Queued for the host (`true`), or what the unit did instead.
        queued: bool,
        /// What the unit did.
        outcome: String,
    },
    /// Done.
    Ok,
    /// Refused.
    Errno {
        /// Its name.
        errno: &'static str,
        /// Its number.
        number: u16,
        /// Invalidation entries handled before the one refused.
        #[serde(skip_serializing_if = "Option::is_none")]
        handled: Option<u32>,
        /// The refusal.
        error: String,
    },
}

/// One vEVENT as `read()` on a vEVENTQ gives it (`struct iommufd_vevent_header` and the
/// SMMUv3 event record, decoded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VeventRecord {
    /// `sequence`.
    pub sequence: u32,
    /// `IOMMU_VEVENTQ_FLAG_LOST_EVENTS`: events were lost here; no record follows.
    pub lost_events: bool,
    /// The event's StreamID: the virtual one the vDEVICE gave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vsid: Option<u32>,
    /// The event number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<u8>,
    /// Its name (§7.3), or `None` for a Reserved number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'static str>,
    /// The SubstreamID, when SSV.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssid: Option<u32>,
    /// InputAddr.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<u64>,
    /// The raw record (`evt[4]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub words: Option<[u64; 4]>,
}

impl From<Vevent> for VeventRecord {
    fn from(v: Vevent) -> Self {
        let rec = v.data.map(EventRecord);
        VeventRecord {
            sequence: v.sequence,
            lost_events: v.flags & VEVENTQ_FLAG_LOST_EVENTS != 0,
            vsid: rec.map(|r| r.sid()),
            event: rec.map(|r| r.id_raw()),
            name: rec.and_then(|r| r.id().ok()).map(EventId::name),
            ssid: rec.filter(|r| r.ssv()).map(|r| r.ssid()),
            addr: rec.map(|r| r.input_addr()),
            words: v.data,
        }
    }
}

/// One page of a page request group as `read()` on a fault queue gives it
/// (`struct iommu_hwpt_pgfault`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PageFaultRecord {
    /// `cookie`: what `write_page_response` names the group by.
    pub cookie: u32,
    /// `dev_id`.
    pub dev_id: u32,
    /// `pasid`, when PASID_VALID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pasid: Option<u32>,
    /// `grpid`.
    pub grpid: u32,
    /// `addr`.
    pub addr: u64,
    /// `perm` has WRITE.
    pub write: bool,
    /// LAST_PAGE: the group's last page.
    pub last: bool,
}

impl From<PageFault> for PageFaultRecord {
    fn from(f: PageFault) -> Self {
        PageFaultRecord {
            cookie: f.cookie,
            dev_id: f.dev_id,
            pasid: (f.flags & pgfault::PASID_VALID != 0).then_some(f.pasid),
            grpid: f.grpid,
            addr: f.addr,
            write: f.perm & pgfault::PERM_WRITE != 0,
            last: f.flags & pgfault::LAST_PAGE != 0,
        }
    }
}

/// A fault that stayed with the host (the core's report, physical IDs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HostFault {
    /// An unrecoverable fault.
    Fault {
        /// The physical device.
        device: String,
        /// Its physical request ID: the SMMUv3 record's StreamID, the VT-d device's source ID.
        #[serde(skip_serializing_if = "Option::is_none")]
        rid: Option<u32>,
        /// Whether stage 2 faulted (SMMUv3 records with an S2 field, §7.3).
        #[serde(skip_serializing_if = "Option::is_none")]
        stage2: Option<bool>,
        /// Its PASID.
        #[serde(skip_serializing_if = "Option::is_none")]
        pasid: Option<u32>,
        /// The address.
        addr: u64,
        /// The architected code.
        code: u16,
        /// Its name.
        name: &'static str,
    },
    /// A page request group no fault queue took.
    PageGroup {
        /// The physical device.
        device: String,
        /// Its PASID.
        #[serde(skip_serializing_if = "Option::is_none")]
        pasid: Option<u32>,
        /// The group index.
        group: u16,
        /// The pages' addresses.
        pages: Vec<u64>,
    },
}

impl HostFault {
    /// The core's report; `model` says how to read the unit's raw record, `rid` is the
    /// device's own request ID (for records that do not name it in a form decoded here).
    fn new(e: FaultEvent, model: Model, rid: Option<u32>) -> Self {
        match e {
            FaultEvent::Unrecoverable { device, pasid, addr, reason, raw } => HostFault::Fault {
                device: device.to_string(),
                rid: raw.filter(|_| model == Model::Smmuv3).map(|w| EventRecord(w).sid()).or(rid),
                stage2: raw.filter(|_| model == Model::Smmuv3).and_then(|w| {
                    let rec = EventRecord(w);
                    let has_s2 = rec.id().ok()?.layout().iter().any(|f| f.name == "S2");
                    has_s2.then(|| rec.s2())
                }),
                pasid: pasid.map(|p| p.0),
                addr,
                code: reason.code,
                name: reason.name,
            },
            FaultEvent::PageRequestGroup { device, pasid, group, pages } => HostFault::PageGroup {
                device: device.to_string(),
                pasid: pasid.map(|p| p.0),
                group,
                pages: pages.iter().map(|p| p.addr).collect(),
            },
        }
    }
}

/// One line's record, as the text table or one JSON object prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    /// 1-based line number.
    pub line: usize,
    /// The call.
    pub call: String,
    /// What came back.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The `expect=` it was held to, when it did not hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unexpected: Option<String>,
}

/// A whole run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Run {
    /// The architecture.
    pub machine: Model,
    /// Every call.
    pub calls: Vec<CallRecord>,
}

impl Run {
    /// Whether every `expect=` held.
    pub fn as_expected(&self) -> bool {
        self.calls.iter().all(|c| c.unexpected.is_none())
    }
}

/// The DMA result as a record: the one place the core's fault reason becomes output.
pub fn dma_outcome(r: DmaResult) -> Outcome {
    match r {
        Ok(output) => Outcome::Translated { output },
        Err(DmaFault::Fault(f)) => Outcome::Fault { code: f.code, name: f.name },
        Err(DmaFault::Terminated { by }) => Outcome::Blocked { why: by },
        Err(DmaFault::NotSeen { why }) => Outcome::Blocked { why },
    }
}

fn refusal(e: &UapiError) -> Outcome {
    let handled = match e {
        UapiError::Entry { handled, .. } => Some(*handled),
        _ => None,
    };
    let errno = e.errno();
    Outcome::Errno { errno: errno.name(), number: errno.number(), handled, error: e.to_string() }
}

/// One parsed line: an optional name to bind, the call and its fields.
struct Line<'a> {
    no: usize,
    bind: Option<&'a str>,
    call: &'a str,
    positional: Vec<&'a str>,
    fields: Vec<(&'a str, &'a str)>,
}

impl Line<'_> {
    fn bad(&self, field: Option<&str>, message: impl Into<String>) -> ScriptError {
        ScriptError::Line {
            line: self.no,
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }

    fn raw(&self, key: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.fields.iter().filter(|(k, _)| *k == key).map(|(_, v)| *v).collect()
    }
}

/// Runs a call script.
pub fn run(text: &str) -> Result<Run, ScriptError> {
    let mut runner: Option<Runner> = None;
    for (i, raw) in text.lines().enumerate() {
        let no = i + 1;
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let line = parse_line(no, content)?;
        match &mut runner {
            None => {
                if line.call != "machine" {
                    return Err(
                        line.bad(None, "the first line must be `machine vtd` or `machine smmuv3`")
                    );
                }
                let m = match line.positional.as_slice() {
                    ["vtd"] => Machine::new(Model::Vtd),
                    ["smmuv3"] => Machine::new(Model::Smmuv3),
                    ["smmuv3", "pri"] => Machine::smmuv3_with(smmu_with_pri()),
                    _ => {
                        return Err(line
                            .bad(None, "`machine vtd`, `machine smmuv3` or `machine smmuv3 pri`"))
                    }
                }
                .map_err(|source| ScriptError::Machine { line: no, source })?;
                runner = Some(Runner { m, vars: BTreeMap::new(), calls: Vec::new() });
            }
            Some(r) => r.line(&line)?,
        }
    }
    let r = runner.ok_or(ScriptError::Line {
        line: 0,
        field: None,
        message: "the script is empty".into(),
    })?;
    Ok(Run { machine: r.m.model, calls: r.calls })
}

/// The SMMUv3 unit with ATS, PRI (an 8-entry PRI queue) and PPS, for page requests.
fn smmu_with_pri() -> SmmuParams {
    let d = SmmuParams::default();
    let i0 = [idr0::ATS, idr0::PRI].iter().fold(u64::from(d.idr0), |v, f| f.with(v, true));
    let i1 = idr1::PRIQS.set(u64::from(d.idr1), 3);
    let i3 = idr3::PPS.with(u64::from(d.idr3), true);
    // Each started as a 32-bit register and gained a field inside it, so nothing is cut.
    let low = |v: u64, was: u32| u32::try_from(v).unwrap_or(was);
    SmmuParams { idr0: low(i0, d.idr0), idr1: low(i1, d.idr1), idr3: low(i3, d.idr3), ..d }
}

fn parse_line(no: usize, content: &str) -> Result<Line<'_>, ScriptError> {
    let words: Vec<&str> = content.split_whitespace().collect();
    let (bind, rest) = match words.as_slice() {
        [name, "=", rest @ ..] if is_name(name) => (Some(*name), rest),
        _ => (None, words.as_slice()),
    };
    let (call, args) = rest.split_first().ok_or(ScriptError::Line {
        line: no,
        field: None,
        message: "no call after `=`".into(),
    })?;
    let mut positional = Vec::new();
    let mut fields = Vec::new();
    for w in args {
        match w.split_once('=') {
            Some((k, v)) => fields.push((k, v)),
            None => positional.push(*w),
        }
    }
    Ok(Line { no, bind, call, positional, fields })
}

fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

struct Runner {
    m: Machine,
    vars: BTreeMap<String, u64>,
    calls: Vec<CallRecord>,
}

/// Named flags of a field.
type Names = &'static [(&'static str, u64)];

const MAP_FLAGS: Names = &[
    ("FIXED_IOVA", map_flags::FIXED_IOVA as u64),
    ("WRITEABLE", map_flags::WRITEABLE as u64),
    ("READABLE", map_flags::READABLE as u64),
];
const HWPT_FLAGS: Names = &[
    ("NEST_PARENT", hwpt_flags::NEST_PARENT as u64),
    ("DIRTY_TRACKING", hwpt_flags::DIRTY_TRACKING as u64),
    ("FAULT_ID_VALID", hwpt_flags::FAULT_ID_VALID as u64),
    ("PASID", hwpt_flags::PASID as u64),
];
const S1_FLAGS: Names =
    &[("SRE", vtd_s1_flags::SRE), ("EAFE", vtd_s1_flags::EAFE), ("WPE", vtd_s1_flags::WPE)];
const DATA_TYPES: Names = &[
    ("NONE", data_type::NONE as u64),
    ("VTD_S1", data_type::VTD_S1 as u64),
    ("ARM_SMMUV3", data_type::ARM_SMMUV3 as u64),
];
const TYPES: Names = &[("DEFAULT", 0), ("ARM_SMMUV3", TYPE_ARM_SMMUV3 as u64)];
const RESPONSE_CODES: Names =
    &[("Success", pgfault::RESP_SUCCESS as u64), ("Invalid", pgfault::RESP_INVALID as u64)];
const LEAF: Names = &[("LEAF", VTD_INV_FLAGS_LEAF as u64)];

impl Runner {
    /// A number, a bound name, or `A|B` of `names`.
    fn value(
        &self,
        line: &Line<'_>,
        key: &str,
        text: &str,
        names: Names,
    ) -> Result<u64, ScriptError> {
        let mut out = 0u64;
        for part in text.split('|') {
            let v = if let Some(n) = parse_number(part) {
                n
            } else if let Some((_, v)) = names.iter().find(|(n, _)| *n == part) {
                *v
            } else if let Some(v) = self.vars.get(part) {
                *v
            } else {
                let known: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
                let hint = if known.is_empty() {
                    String::new()
                } else {
                    format!(" (or one of {})", known.join(", "))
                };
                return Err(
                    line.bad(Some(key), format!("`{part}` is not a number or a bound name{hint}"))
                );
            };
            out |= v;
        }
        Ok(out)
    }

    fn get(&self, line: &Line<'_>, key: &str, names: Names) -> Result<Option<u64>, ScriptError> {
        line.raw(key).map(|t| self.value(line, key, t, names)).transpose()
    }

    fn need(&self, line: &Line<'_>, key: &str, names: Names) -> Result<u64, ScriptError> {
        self.get(line, key, names)?.ok_or_else(|| line.bad(Some(key), "missing"))
    }

    fn need32(&self, line: &Line<'_>, key: &str, names: Names) -> Result<u32, ScriptError> {
        let v = self.need(line, key, names)?;
        u32::try_from(v).map_err(|_| line.bad(Some(key), format!("{v:#x} does not fit 32 bits")))
    }

    fn opt32(&self, line: &Line<'_>, key: &str, names: Names) -> Result<Option<u32>, ScriptError> {
        match self.get(line, key, names)? {
            None => Ok(None),
            Some(v) => u32::try_from(v)
                .map(Some)
                .map_err(|_| line.bad(Some(key), format!("{v:#x} does not fit 32 bits"))),
        }
    }

    fn machine_err(&self, line: &Line<'_>) -> impl Fn(MachineError) -> ScriptError {
        let no = line.no;
        move |source| ScriptError::Machine { line: no, source }
    }

    fn check_fields(&self, line: &Line<'_>, allowed: &[&str]) -> Result<(), ScriptError> {
        for (k, _) in &line.fields {
            if *k != "expect" && !allowed.contains(k) {
                return Err(
                    line.bad(Some(k), format!("{} takes {}", line.call, allowed.join(", ")))
                );
            }
        }
        Ok(())
    }

    fn line(&mut self, line: &Line<'_>) -> Result<(), ScriptError> {
        let outcome = self.call(line)?;
        if let (Some(name), Outcome::Id { id: v, .. } | Outcome::Iova { iova: v }) =
            (line.bind, &outcome)
        {
            self.vars.insert(name.to_owned(), *v);
        }
        let outcome = match (line.bind, outcome) {
            (Some(name), Outcome::Id { id, .. }) => Outcome::Id { name: Some(name.to_owned()), id },
            (_, o) => o,
        };
        let unexpected = match line.raw("expect") {
            None => None,
            Some(want) => {
                let got = match &outcome {
                    Outcome::Errno { errno, .. } => *errno,
                    Outcome::Fault { .. } => "fault",
                    Outcome::Blocked { .. } | Outcome::PageRequest { queued: false, .. } => {
                        "blocked"
                    }
                    _ => "ok",
                };
                if !["ok", "fault", "blocked"].contains(&want) && Errno::from_name(want).is_none() {
                    let what = "ok, fault, blocked or an errno name (EBUSY, ...)";
                    return Err(line.bad(Some("expect"), what));
                }
                (got != want).then(|| format!("expected {want}, got {got}"))
            }
        };
        self.calls.push(CallRecord {
            line: line.no,
            call: line.call.to_owned(),
            outcome,
            unexpected,
        });
        Ok(())
    }

    fn call(&mut self, line: &Line<'_>) -> Result<Outcome, ScriptError> {
        let id = |r: Result<u32, UapiError>| match r {
            Ok(id) => Outcome::Id { name: None, id: u64::from(id) },
            Err(e) => refusal(&e),
        };
        let done = |r: Result<(), UapiError>| match r {
            Ok(()) => Outcome::Ok,
            Err(e) => refusal(&e),
        };
        Ok(match line.call {
            "DEVICE_BIND" => {
                self.check_fields(line, &["dev"])?;
                let dev = self.device(
                    line,
                    line.raw("dev").ok_or_else(|| line.bad(Some("dev"), "missing"))?,
                )?;
                id(self.m.fd.device_bind(&dev))
            }
            "IOAS_ALLOC" => {
                self.check_fields(line, &[])?;
                id(self.m.fd.ioas_alloc())
            }
            "IOAS_MAP" => {
                self.check_fields(line, &["ioas_id", "flags", "user_va", "length", "iova"])?;
                let ioas = self.need32(line, "ioas_id", &[])?;
                let default =
                    (map_flags::FIXED_IOVA | map_flags::READABLE | map_flags::WRITEABLE) as u64;
                let flags = self.get(line, "flags", MAP_FLAGS)?.unwrap_or(default);
                let flags =
                    u32::try_from(flags).map_err(|_| line.bad(Some("flags"), "too wide"))?;
                let user_va = self.need(line, "user_va", &[])?;
                let length = self.need(line, "length", &[])?;
                let iova = self.get(line, "iova", &[])?.unwrap_or(0);
                match self.m.fd.ioas_map(ioas, flags, user_va, length, iova) {
                    Ok(iova) => Outcome::Iova { iova },
                    Err(e) => refusal(&e),
                }
            }
            "IOAS_COPY" => {
                self.check_fields(
                    line,
                    &["dst_ioas_id", "src_ioas_id", "flags", "length", "dst_iova", "src_iova"],
                )?;
                let dst = self.need32(line, "dst_ioas_id", &[])?;
                let src = self.need32(line, "src_ioas_id", &[])?;
                let default =
                    (map_flags::FIXED_IOVA | map_flags::READABLE | map_flags::WRITEABLE) as u64;
                let flags = self.get(line, "flags", MAP_FLAGS)?.unwrap_or(default);
                let flags =
                    u32::try_from(flags).map_err(|_| line.bad(Some("flags"), "too wide"))?;
                let length = self.need(line, "length", &[])?;
                let dst_iova = self.get(line, "dst_iova", &[])?.unwrap_or(0);
                let src_iova = self.need(line, "src_iova", &[])?;
                match self.m.fd.ioas_copy(dst, src, flags, length, dst_iova, src_iova) {
                    Ok(iova) => Outcome::Iova { iova },
                    Err(e) => refusal(&e),
                }
            }
            "IOAS_UNMAP" => {
                self.check_fields(line, &["ioas_id", "iova", "length"])?;
                let ioas = self.need32(line, "ioas_id", &[])?;
                let iova = self.need(line, "iova", &[])?;
                let length = self.need(line, "length", &[])?;
                match self.m.fd.ioas_unmap(ioas, iova, length) {
                    Ok(bytes) => Outcome::Unmapped { bytes },
                    Err(e) => refusal(&e),
                }
            }
            "IOAS_IOVA_RANGES" => {
                self.check_fields(line, &["ioas_id"])?;
                let ioas = self.need32(line, "ioas_id", &[])?;
                match self.m.fd.ioas_iova_ranges(ioas) {
                    Ok(r) => Outcome::Ranges {
                        ranges: r.ranges.iter().map(|(s, l)| [*s, *l]).collect(),
                        alignment: r.alignment,
                    },
                    Err(e) => refusal(&e),
                }
            }
            "GET_HW_INFO" => {
                self.check_fields(line, &["dev_id"])?;
                let dev = self.need32(line, "dev_id", &[])?;
                match self.m.fd.get_hw_info(dev) {
                    Ok(i) => Outcome::HwInfo {
                        model: i.model,
                        data: i.data,
                        max_pasid_log2: i.max_pasid_log2,
                    },
                    Err(e) => refusal(&e),
                }
            }
            "HWPT_ALLOC" => {
                let a = self.hwpt_alloc(line)?;
                id(self.m.fd.hwpt_alloc(&a))
            }
            "VIOMMU_ALLOC" => {
                self.check_fields(line, &["flags", "type", "dev_id", "hwpt_id"])?;
                let flags = self.opt32(line, "flags", &[])?.unwrap_or(0);
                let kind = self.opt32(line, "type", TYPES)?.unwrap_or(TYPE_ARM_SMMUV3);
                let dev = self.need32(line, "dev_id", &[])?;
                let hwpt = self.need32(line, "hwpt_id", &[])?;
                id(self.m.fd.viommu_alloc(flags, kind, dev, hwpt))
            }
            "VDEVICE_ALLOC" => {
                self.check_fields(line, &["viommu_id", "dev_id", "virt_id"])?;
                let v = self.need32(line, "viommu_id", &[])?;
                let dev = self.need32(line, "dev_id", &[])?;
                let virt = self.need(line, "virt_id", &[])?;
                id(self.m.fd.vdevice_alloc(v, dev, virt))
            }
            "FAULT_QUEUE_ALLOC" => {
                self.check_fields(line, &["flags"])?;
                let flags = self.opt32(line, "flags", &[])?.unwrap_or(0);
                id(self.m.fd.fault_queue_alloc(flags))
            }
            "VEVENTQ_ALLOC" => {
                self.check_fields(line, &["flags", "viommu_id", "type", "veventq_depth"])?;
                let flags = self.opt32(line, "flags", &[])?.unwrap_or(0);
                let v = self.need32(line, "viommu_id", &[])?;
                let kind = self.opt32(line, "type", TYPES)?.unwrap_or(TYPE_ARM_SMMUV3);
                let depth = self.need32(line, "veventq_depth", &[])?;
                id(self.m.fd.veventq_alloc(flags, v, kind, depth))
            }
            "HWPT_INVALIDATE" | "VIOMMU_INVALIDATE" => {
                self.check_fields(
                    line,
                    &["hwpt_id", "viommu_id", "data_type", "entry_len", "entry", "cmd"],
                )?;
                let target = match (line.raw("hwpt_id"), line.raw("viommu_id")) {
                    (Some(_), None) => self.need32(line, "hwpt_id", &[])?,
                    (None, Some(_)) => self.need32(line, "viommu_id", &[])?,
                    _ => return Err(line.bad(Some("hwpt_id"), "give hwpt_id (or viommu_id)")),
                };
                let array = self.invalidate_array(line)?;
                match self.m.fd.invalidate(target, &array) {
                    Ok(handled) => Outcome::Handled { handled },
                    Err(e) => refusal(&e),
                }
            }
            "DEVICE_ATTACH" | "DEVICE_REPLACE" => {
                self.check_fields(line, &["dev_id", "pt_id", "pasid"])?;
                let dev = self.need32(line, "dev_id", &[])?;
                let pt = self.need32(line, "pt_id", &[])?;
                let pasid = self.opt32(line, "pasid", &[])?;
                if line.call == "DEVICE_ATTACH" {
                    done(self.m.fd.attach(dev, pasid, pt))
                } else {
                    done(self.m.fd.replace(dev, pasid, pt))
                }
            }
            "DEVICE_DETACH" => {
                self.check_fields(line, &["dev_id", "pasid"])?;
                let dev = self.need32(line, "dev_id", &[])?;
                let pasid = self.opt32(line, "pasid", &[])?;
                done(self.m.fd.detach(dev, pasid))
            }
            "DESTROY" => {
                self.check_fields(line, &["id"])?;
                let obj = self.need32(line, "id", &[])?;
                done(self.m.fd.destroy(obj))
            }
            "dma" => self.dma(line)?,
            "pri" => self.pri(line)?,
            "read_veventq" => {
                self.check_fields(line, &["veventq_id", "max"])?;
                let q = self.need32(line, "veventq_id", &[])?;
                let max = self
                    .get(line, "max", &[])?
                    .map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));
                self.m.fd.handle_host_events();
                match self.m.fd.veventq_read(q, max) {
                    Ok(v) => Outcome::Vevents { events: v.into_iter().map(Into::into).collect() },
                    Err(e) => refusal(&e),
                }
            }
            "read_fault" => {
                self.check_fields(line, &["fault_id"])?;
                let q = self.need32(line, "fault_id", &[])?;
                self.m.fd.handle_host_events();
                match self.m.fd.fault_read(q) {
                    Ok(v) => {
                        Outcome::PageFaults { faults: v.into_iter().map(Into::into).collect() }
                    }
                    Err(e) => refusal(&e),
                }
            }
            "write_page_response" => {
                self.check_fields(line, &["fault_id", "cookie", "code"])?;
                let q = self.need32(line, "fault_id", &[])?;
                let cookie = self.need32(line, "cookie", &[])?;
                let code = self.need32(line, "code", RESPONSE_CODES)?;
                done(self.m.fd.fault_respond(q, cookie, code))
            }
            "host_faults" => {
                self.check_fields(line, &[])?;
                self.m.fd.handle_host_events();
                let model = self.m.model;
                let faults = self
                    .m
                    .fd
                    .take_host_faults()
                    .into_iter()
                    .map(|e| {
                        let dev = match &e {
                            FaultEvent::Unrecoverable { device, .. }
                            | FaultEvent::PageRequestGroup { device, .. } => device,
                        };
                        let rid = self.m.fd.iommu().request_ids(dev).ok();
                        HostFault::new(e, model, rid.and_then(|r| r.first().copied()))
                    })
                    .collect();
                Outcome::HostFaults { faults }
            }
            "write" => {
                self.check_fields(line, &[])?;
                let [gpa, value] = line.positional.as_slice() else {
                    return Err(line.bad(None, "`write GPA VALUE`"));
                };
                let gpa = self.value(line, "GPA", gpa, &[])?;
                let value = self.value(line, "VALUE", value, &[])?;
                self.m.guest_write(gpa, value).map_err(self.machine_err(line))?;
                Outcome::Ok
            }
            "guest_s1" => {
                self.check_fields(line, &["map"])?;
                let pages = self.pairs(line, "map")?;
                let root = self.m.guest_s1(&pages).map_err(self.machine_err(line))?;
                Outcome::Id { name: None, id: root }
            }
            "guest_map" => {
                self.check_fields(line, &["root", "gva", "gpa"])?;
                let (root, gva, gpa) = (
                    self.need(line, "root", &[])?,
                    self.need(line, "gva", &[])?,
                    self.need(line, "gpa", &[])?,
                );
                self.m.guest_map(root, gva, gpa).map_err(self.machine_err(line))?;
                Outcome::Ok
            }
            "guest_unmap" => {
                self.check_fields(line, &["root", "gva", "length"])?;
                let root = self.need(line, "root", &[])?;
                let gva = self.need(line, "gva", &[])?;
                let length = self.get(line, "length", &[])?.unwrap_or(0x1000);
                self.m.guest_unmap(root, gva, length).map_err(self.machine_err(line))?;
                Outcome::Ok
            }
            "guest_page" => {
                self.check_fields(line, &[])?;
                Outcome::Id { name: None, id: self.m.guest_page().map_err(self.machine_err(line))? }
            }
            "guest_cd" => {
                self.check_fields(line, &["table", "ssid", "ttb0", "asid"])?;
                let table = self.need(line, "table", &[])?;
                let ssid = self.need32(line, "ssid", &[])?;
                let ttb0 = self.need(line, "ttb0", &[])?;
                let asid = self.need(line, "asid", &[])?;
                let asid = u16::try_from(asid).map_err(|_| line.bad(Some("asid"), "16 bits"))?;
                self.m.guest_cd(table, ssid, ttb0, asid).map_err(self.machine_err(line))?;
                Outcome::Ok
            }
            other => return Err(line.bad(None, format!("unknown call `{other}`"))),
        })
    }

    /// A device: a topology name (`00:02.0`, `A`) or a bound device ID's name.
    fn device(&self, line: &Line<'_>, text: &str) -> Result<DeviceId, ScriptError> {
        let known = self.m.devices();
        if let Some(d) = known.iter().find(|d| d.to_string() == text) {
            return Ok(d.clone());
        }
        if let Ok(d) = DeviceId::pci(text) {
            if known.contains(&d) {
                return Ok(d);
            }
        }
        let platform = DeviceId::platform(text);
        if known.contains(&platform) {
            return Ok(platform);
        }
        if let Some(id) = self.vars.get(text).and_then(|v| u32::try_from(*v).ok()) {
            if let Some(sviommu_uapi::Object::Device(d)) = self.m.fd.object(id) {
                return Ok(d.id.clone());
            }
        }
        let names: Vec<String> = known.iter().map(ToString::to_string).collect();
        Err(line.bad(
            Some("dev"),
            format!("`{text}` is not a device of this machine ({})", names.join(", ")),
        ))
    }

    fn dma(&mut self, line: &Line<'_>) -> Result<Outcome, ScriptError> {
        self.check_fields(line, &["pasid"])?;
        let [dev, addr, access] = line.positional.as_slice() else {
            return Err(line.bad(None, "`dma DEV [pasid=N] ADDR read|write`"));
        };
        let dev = self.device(line, dev)?;
        let addr = self.value(line, "ADDR", addr, &[])?;
        let access = match *access {
            "read" => DmaAccess::Read,
            "write" => DmaAccess::Write,
            _ => return Err(line.bad(Some("access"), "read or write")),
        };
        let pasid = self.opt32(line, "pasid", &[])?;
        Ok(match self.m.fd.dma(&dev, pasid, addr, access) {
            Ok(r) => dma_outcome(r),
            Err(e) => refusal(&e),
        })
    }

    /// `pri DEV [pasid=N] ADDR read|write [group=N]`: the device sends a page request (the
    /// last of its group) to its unit, as a PCIe PRI message; the unit queues it for the host
    /// (SMMUv3 PRI queue, VT-d page request queue).
    fn pri(&mut self, line: &Line<'_>) -> Result<Outcome, ScriptError> {
        self.check_fields(line, &["pasid", "group"])?;
        let [dev, addr, access] = line.positional.as_slice() else {
            return Err(line.bad(None, "`pri DEV [pasid=N] ADDR read|write [group=N]`"));
        };
        let dev = self.device(line, dev)?;
        let addr = self.value(line, "ADDR", addr, &[])?;
        let write = match *access {
            "read" => false,
            "write" => true,
            _ => return Err(line.bad(Some("access"), "read or write")),
        };
        let pasid = self.opt32(line, "pasid", &[])?;
        let group = self.opt32(line, "group", &[])?.unwrap_or(0);
        let iommu = self.m.fd.iommu();
        let rid = match iommu.request_ids(&dev) {
            Ok(ids) => ids.first().copied(),
            Err(e) => return Ok(refusal(&e.into())),
        };
        let unit = iommu.topology().device(&dev).map(|d| d.unit);
        let (Some(rid), Some(unit)) = (rid, unit) else {
            return Err(line.bad(Some("dev"), "the device has no request ID"));
        };
        let drv = match iommu.driver(unit) {
            Ok(d) => d,
            Err(e) => return Ok(refusal(&e.into())),
        };
        if !drv.caps().page_requests {
            let outcome = "ignored: the unit takes no page requests".to_owned();
            return Ok(Outcome::PageRequest { queued: false, outcome });
        }
        let drv = drv.as_any();
        let (queued, outcome) = if let Some(v) = drv.downcast_ref::<VtdUnit>() {
            let group = u16::try_from(group)
                .ok()
                .filter(|g| *g < 512)
                .ok_or_else(|| line.bad(Some("group"), "a PRG index is 9 bits"))?;
            let rid = u16::try_from(rid).map_err(|_| line.bad(Some("dev"), "not a PCI RID"))?;
            let msg = PageRequestMsg {
                rid,
                pasid,
                addr: addr & !0xfff,
                read: true,
                write,
                prgi: group,
                lpig: true,
                ..PageRequestMsg::default()
            };
            let out = match v.hw().page_request(&msg) {
                PageRequestOutcome::Queued => "Queued".to_owned(),
                PageRequestOutcome::Overflow => "overflow (the unit answered Success)".to_owned(),
                PageRequestOutcome::Blocked(f) => {
                    format!("blocked by {:?} (the unit answered Invalid Request)", f.reason)
                }
                other => format!("{other:?}"),
            };
            (out == "Queued", out)
        } else if let Some(s) = drv.downcast_ref::<SmmuUnit>() {
            let group = u16::try_from(group)
                .ok()
                .filter(|g| *g < 512)
                .ok_or_else(|| line.bad(Some("group"), "a PRG index is 9 bits"))?;
            let req = sviommu_sim::ats::pri_request(rid, pasid, addr & !0xfff, write, group);
            let queued = s.hw().page_request(&req);
            // Taken: into the PRI queue, or answered by the SMMU itself (§8.1, counted there).
            let why = if queued { "Queued" } else { "busy: the port has no room for an answer" };
            (queued, why.to_owned())
        } else {
            return Err(line.bad(Some("dev"), "its unit is neither VT-d nor SMMUv3"));
        };
        Ok(Outcome::PageRequest { queued, outcome })
    }

    /// `key=A:B` pairs.
    fn pairs(&self, line: &Line<'_>, key: &str) -> Result<Vec<(u64, u64)>, ScriptError> {
        let mut out = Vec::new();
        for v in line.all(key) {
            let (a, b) = v.split_once(':').ok_or_else(|| line.bad(Some(key), "GVA:GPA"))?;
            out.push((self.value(line, key, a, &[])?, self.value(line, key, b, &[])?));
        }
        Ok(out)
    }

    fn hwpt_alloc(&self, line: &Line<'_>) -> Result<HwptAlloc, ScriptError> {
        self.check_fields(
            line,
            &[
                "flags",
                "dev_id",
                "pt_id",
                "data_type",
                "data_len",
                "fault_id",
                "pgtbl_addr",
                "addr_width",
                "s1_flags",
                "ste0",
                "ste1",
                "config",
                "s1contextptr",
                "s1cdmax",
                "s1fmt",
                "s1dss",
                "eats",
            ],
        )?;
        let flags = self.opt32(line, "flags", HWPT_FLAGS)?.unwrap_or(0);
        let dev_id = self.need32(line, "dev_id", &[])?;
        let pt_id = self.need32(line, "pt_id", &[])?;
        let fault_id = self.opt32(line, "fault_id", &[])?.unwrap_or(0);
        let dtype = self.opt32(line, "data_type", DATA_TYPES)?.unwrap_or(data_type::NONE);
        let mut data = match dtype {
            data_type::NONE => HwptData::default(),
            data_type::VTD_S1 => {
                let s1_flags = self.get(line, "s1_flags", S1_FLAGS)?.unwrap_or(0);
                let root = self.need(line, "pgtbl_addr", &[])?;
                let width = self.opt32(line, "addr_width", &[])?.unwrap_or(48);
                HwptData::vtd_s1(s1_flags, root, width)
            }
            data_type::ARM_SMMUV3 => HwptData::arm_smmuv3(self.vste(line)?),
            other => HwptData { data_type: other, bytes: vec![0; 16] },
        };
        if let Some(len) = self.get(line, "data_len", &[])? {
            let len = usize::try_from(len).map_err(|_| line.bad(Some("data_len"), "too large"))?;
            data = data.with_len(len);
        }
        Ok(HwptAlloc { flags, dev_id, pt_id, data, fault_id })
    }

    /// The guest's STE words: raw (`ste0=`, `ste1=`) or by field, encoded with the spec's view.
    fn vste(&self, line: &Line<'_>) -> Result<[u64; 2], ScriptError> {
        if line.raw("ste0").is_some() {
            return Ok([self.need(line, "ste0", &[])?, self.get(line, "ste1", &[])?.unwrap_or(0)]);
        }
        let mut ste = Ste::default();
        let config = line.raw("config").unwrap_or("S1_TRANS");
        match config {
            "INVALID" => return Ok([0, 0]),
            "ABORT" => ste.set_config(StreamConfig::Abort),
            "BYPASS" => ste.set_config(StreamConfig::Bypass),
            "S1_TRANS" => ste.set_config(StreamConfig::Stage1),
            "S2_TRANS" => ste.set_config(StreamConfig::Stage2),
            "NESTED" => ste.set_config(StreamConfig::Nested),
            _ => {
                return Err(line.bad(
                    Some("config"),
                    "INVALID, ABORT, BYPASS, S1_TRANS (S2_TRANS, NESTED are refused)",
                ))
            }
        }
        ste.set_v(true);
        if let Some(p) = self.get(line, "s1contextptr", &[])? {
            ste.set_s1contextptr(p);
        }
        if let Some(m) = self.get(line, "s1cdmax", &[])? {
            ste.set_s1cdmax(u8::try_from(m).map_err(|_| line.bad(Some("s1cdmax"), "5 bits"))?);
        }
        match line.raw("s1fmt") {
            None | Some("LINEAR") => ste.set_s1fmt(S1Fmt::Linear),
            Some("2L4K") => ste.set_s1fmt(S1Fmt::TwoLevel4K),
            Some("2L64K") => ste.set_s1fmt(S1Fmt::TwoLevel64K),
            Some(_) => return Err(line.bad(Some("s1fmt"), "LINEAR, 2L4K or 2L64K")),
        }
        match line.raw("eats") {
            None | Some("ABORT") => ste.set_eats(Eats::Abort),
            Some("FULL") => ste.set_eats(Eats::Full),
            Some("SPLIT") => ste.set_eats(Eats::SplitStage),
            Some(_) => return Err(line.bad(Some("eats"), "ABORT, FULL or SPLIT")),
        }
        if let Some(d) = self.get(line, "s1dss", &[])? {
            ste.set_s1dss_raw(u8::try_from(d).map_err(|_| line.bad(Some("s1dss"), "2 bits"))?);
        }
        Ok([ste.0[0], ste.0[1]])
    }

    fn invalidate_array(&self, line: &Line<'_>) -> Result<InvalidateArray, ScriptError> {
        let entries = line.all("entry");
        let cmds = line.all("cmd");
        let mut array = if !cmds.is_empty() {
            let mut out = Vec::new();
            for c in cmds {
                out.push(self.command(line, c)?);
            }
            InvalidateArray::arm_smmuv3(&out)
        } else {
            let mut out = Vec::new();
            for e in entries {
                let mut parts = e.split(':');
                let addr = self.value(line, "entry", parts.next().unwrap_or(""), &[])?;
                let npages = match parts.next() {
                    Some(n) => self.value(line, "entry", n, &[("ALL", u64::MAX)])?,
                    None => 1,
                };
                let flags = match parts.next() {
                    Some(f) => self.value(line, "entry", f, LEAF)?,
                    None => 0,
                };
                let flags = u32::try_from(flags)
                    .map_err(|_| line.bad(Some("entry"), "flags are 32 bits"))?;
                out.push(VtdS1Invalidate { addr, npages, flags });
            }
            InvalidateArray::vtd_s1(&out)
        };
        if let Some(t) = self.opt32(line, "data_type", &[("VTD_S1", 0), ("ARM_SMMUV3", 1)])? {
            array.data_type = t;
        }
        if let Some(len) = self.opt32(line, "entry_len", &[])? {
            array = array.with_entry_len(len);
        }
        Ok(array)
    }

    /// `NAME[,field=value...]` encoded with the spec's command view, or raw `W0:W1`.
    fn command(&self, line: &Line<'_>, text: &str) -> Result<Command, ScriptError> {
        let mut parts = text.split(',');
        let head = parts.next().unwrap_or("");
        if let Some((w0, w1)) = head.split_once(':') {
            return Ok(Command::from_words([
                self.value(line, "cmd", w0, &[])?,
                self.value(line, "cmd", w1, &[])?,
            ]));
        }
        let name = format!("CMD_{head}");
        let op = Opcode::ALL
            .into_iter()
            .find(|o| o.name() == name)
            .ok_or_else(|| line.bad(Some("cmd"), format!("no command {name}")))?;
        let mut cmd = Command::new(op);
        for p in parts {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| line.bad(Some("cmd"), format!("`{p}` is not field=value")))?;
            let n = self.value(line, "cmd", v, &[])?;
            let small = |bits: u32| n.checked_shr(bits).is_none_or(|r| r == 0);
            let too_big = || line.bad(Some("cmd"), format!("{k}={v} is too large"));
            match k {
                "vmid" if small(16) => cmd.set_vmid(u16::try_from(n).map_err(|_| too_big())?),
                "asid" if small(16) => cmd.set_asid(u16::try_from(n).map_err(|_| too_big())?),
                "sid" if small(32) => cmd.set_sid(u32::try_from(n).map_err(|_| too_big())?),
                "ssid" => {
                    cmd.set_ssv(true);
                    cmd.set_ssid(u32::try_from(n).map_err(|_| too_big())?);
                }
                "addr" => cmd.set_address(n),
                "leaf" => cmd.set_leaf(n != 0),
                "size" => cmd.set_atc_size(u8::try_from(n).map_err(|_| too_big())?),
                "num" => cmd.set_num(u8::try_from(n).map_err(|_| too_big())?),
                "scale" => cmd.set_scale(u8::try_from(n).map_err(|_| too_big())?),
                "tg" => cmd.set_tg(match n {
                    0 => None,
                    12 => Some(Granule::Size4K),
                    14 => Some(Granule::Size16K),
                    16 => Some(Granule::Size64K),
                    _ => return Err(line.bad(Some("cmd"), "tg is 0, 12, 14 or 16 (log2 of the granule)")),
                }),
                _ => return Err(line.bad(Some("cmd"), format!("unknown command field `{k}` (vmid, asid, sid, ssid, addr, leaf, size, num, scale, tg)"))),
            }
        }
        Ok(cmd)
    }
}

fn parse_number(s: &str) -> Option<u64> {
    let s = s.replace('_', "");
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The run as a table for people.
pub fn text(run: &Run) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "machine: {}", run.machine);
    let width = run.calls.iter().map(|c| c.call.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(out, "line  {:width$}  result", "call");
    for c in &run.calls {
        let mut r = describe(&c.outcome);
        if let Some(u) = &c.unexpected {
            let _ = write!(r, "   <-- {u}");
        }
        let _ = writeln!(out, "{:>4}  {:width$}  {r}", c.line, c.call);
    }
    out
}

fn describe(o: &Outcome) -> String {
    match o {
        // Object IDs are small and shown in decimal; guest addresses in hex.
        Outcome::Id { name, id } => {
            let v = if *id < 0x1_0000 { id.to_string() } else { format!("{id:#x}") };
            match name {
                Some(n) => format!("{n} = {v}"),
                None => v,
            }
        }
        Outcome::Iova { iova } => format!("iova {iova:#x}"),
        Outcome::Unmapped { bytes } => format!("unmapped {bytes:#x} bytes"),
        Outcome::Ranges { ranges, alignment } => {
            let r: Vec<String> = ranges.iter().map(|[s, l]| format!("{s:#x}..={l:#x}")).collect();
            format!("{} (alignment {alignment:#x})", r.join(", "))
        }
        Outcome::HwInfo { model, data, max_pasid_log2 } => {
            let regs = match data {
                HwInfo::Vtd { cap, ecap } => format!("CAP {cap:#x} ECAP {ecap:#x}"),
                HwInfo::Smmuv3 { idr, iidr, aidr } => {
                    let idr: Vec<String> = idr.iter().map(|v| format!("{v:#x}")).collect();
                    format!("IDR0-5 {} IIDR {iidr:#x} AIDR {aidr:#x}", idr.join(" "))
                }
            };
            format!("{model}: {regs}, max_pasid_log2 {max_pasid_log2}")
        }
        Outcome::Handled { handled } => format!("handled {handled}"),
        Outcome::Translated { output } => format!("-> {output:#x}"),
        Outcome::Fault { code, name } => format!("fault {code:#x} {name}"),
        Outcome::Blocked { why } => format!("blocked: {why}"),
        Outcome::Vevents { events } if events.is_empty() => "no vEVENTs".to_owned(),
        Outcome::Vevents { events } => {
            let e: Vec<String> = events.iter().map(describe_vevent).collect();
            e.join("; ")
        }
        Outcome::PageFaults { faults } if faults.is_empty() => "no page requests".to_owned(),
        Outcome::PageFaults { faults } => {
            let f: Vec<String> = faults
                .iter()
                .map(|f| {
                    let pasid = f.pasid.map(|p| format!(" pasid {p}")).unwrap_or_default();
                    format!(
                        "cookie {} dev_id {}{pasid} grpid {} {:#x} {}{}",
                        f.cookie,
                        f.dev_id,
                        f.grpid,
                        f.addr,
                        if f.write { "write" } else { "read" },
                        if f.last { " last" } else { "" }
                    )
                })
                .collect();
            f.join("; ")
        }
        Outcome::HostFaults { faults } if faults.is_empty() => "no host faults".to_owned(),
        Outcome::HostFaults { faults } => {
            let f: Vec<String> = faults
                .iter()
                .map(|f| match f {
                    HostFault::Fault { device, rid, stage2, pasid, addr, code, name } => {
                        let rid = rid.map(|r| format!(" (sid {r:#x})")).unwrap_or_default();
                        let pasid = pasid.map(|p| format!(" pasid {p}")).unwrap_or_default();
                        let stage = match stage2 {
                            Some(true) => " stage 2",
                            Some(false) => " stage 1",
                            None => "",
                        };
                        format!("{device}{rid}{pasid} {addr:#x}: fault {code:#x} {name}{stage}")
                    }
                    HostFault::PageGroup { device, pasid, group, pages } => {
                        let pasid = pasid.map(|p| format!(" pasid {p}")).unwrap_or_default();
                        format!("{device}{pasid}: page group {group}, {} pages", pages.len())
                    }
                })
                .collect();
            f.join("; ")
        }
        Outcome::PageRequest { outcome, .. } => format!("page request: {outcome}"),
        Outcome::Ok => "ok".to_owned(),
        Outcome::Errno { errno, number, handled, error } => match handled {
            Some(h) => format!("{errno} ({number}) after {h} handled: {error}"),
            None => format!("{errno} ({number}): {error}"),
        },
    }
}

fn describe_vevent(e: &VeventRecord) -> String {
    if e.lost_events {
        return format!("#{} LOST_EVENTS", e.sequence);
    }
    let name = e.name.unwrap_or("(reserved)");
    let ssid = e.ssid.map(|s| format!(" ssid {s}")).unwrap_or_default();
    format!(
        "#{} vsid {:#x}{ssid} event {:#x} {name} addr {:#x}",
        e.sequence,
        e.vsid.unwrap_or(0),
        e.event.unwrap_or(0),
        e.addr.unwrap_or(0)
    )
}

/// The run as JSON lines: one object per call.
pub fn json(run: &Run) -> String {
    let mut out = String::new();
    for c in &run.calls {
        if let Ok(s) = serde_json::to_string(c) {
            out.push_str(&s);
            out.push('\n');
        }
    }
    out
}
