//! Faults on their way to devices: a handler per device, page requests grouped as the
//! hardware groups them (PCIe page request groups: a group is complete with its last request),
//! answered with `page_response`. Nothing is lost silently: events with no handler wait to be
//! taken, and every drop is counted.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::driver::{FaultReason, HwFault, PageResponseCode};
use crate::error::CoreError;
use crate::iommu::Iommu;
use crate::pasid_alloc::Pasid;
use crate::topology::{DeviceId, GroupId, UnitId};

/// One page the device asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PageRequest {
    /// The page's address in the PASID's address space.
    pub addr: u64,
    /// Write access asked.
    pub write: bool,
}

/// What a device's fault handler receives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultEvent {
    /// An untranslated request faulted: the device saw an error; nothing to answer.
    Unrecoverable {
        /// The device.
        device: DeviceId,
        /// Its PASID.
        pasid: Option<Pasid>,
        /// The address.
        addr: u64,
        /// The architected reason.
        reason: FaultReason,
        /// The unit's own record ([`HwFault::Unrecoverable`]'s `raw`); not in reports.
        #[serde(skip)]
        raw: Option<[u64; 4]>,
    },
    /// A complete page request group, waiting for [`Iommu::page_response`].
    PageRequestGroup {
        /// The device.
        device: DeviceId,
        /// Its PASID.
        pasid: Option<Pasid>,
        /// The page request group index.
        group: u16,
        /// The pages, in the order they were asked for.
        pages: Vec<PageRequest>,
    },
}

/// A device's fault handler.
pub type FaultHandler = Box<dyn FnMut(&FaultEvent) + Send>;

/// What the fault path counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FaultCounters {
    /// Unrecoverable faults delivered or queued.
    pub unrecoverable: u64,
    /// Page requests received.
    pub page_requests: u64,
    /// Complete page request groups.
    pub page_groups: u64,
    /// Groups answered by software.
    pub responses: u64,
    /// Groups the core answered Invalid itself, draining a PASID being unbound.
    pub drained: u64,
    /// Reports from a request ID that is no device's: dropped.
    pub unknown_requester: u64,
}

/// A page request group: (device, PASID, group index).
type GroupKey = (DeviceId, Option<Pasid>, u16);

/// Where the fault path stands.
#[derive(Default)]
pub(crate) struct FaultState {
    handlers: BTreeMap<DeviceId, FaultHandler>,
    /// Groups whose last request has not come yet.
    partial: BTreeMap<GroupKey, Vec<PageRequest>>,
    /// Complete groups waiting for a response, with the unit and request ID to answer on.
    waiting: BTreeMap<GroupKey, (UnitId, u32)>,
    /// Events for devices without a handler.
    undelivered: Vec<FaultEvent>,
    counters: FaultCounters,
}

impl Iommu {
    /// Sets `device`'s fault handler; events that waited for one are delivered to it now.
    pub fn set_fault_handler(
        &mut self,
        device: &DeviceId,
        mut handler: FaultHandler,
    ) -> Result<(), CoreError> {
        self.topology.device(device).ok_or_else(|| CoreError::NoSuchDevice(device.clone()))?;
        let mut kept = Vec::new();
        for e in std::mem::take(&mut self.faults.undelivered) {
            if event_device(&e) == device {
                handler(&e);
            } else {
                kept.push(e);
            }
        }
        self.faults.undelivered = kept;
        self.faults.handlers.insert(device.clone(), handler);
        Ok(())
    }

    /// Collects what every unit reported and hands it to the devices' handlers: unrecoverable
    /// faults at once, page requests once their group is complete. Returns the events.
    pub fn process_faults(&mut self) -> Vec<FaultEvent> {
        let mut reports = Vec::new();
        for (unit, state) in &mut self.units {
            reports.extend(state.driver.poll_faults().into_iter().map(|f| (*unit, f)));
        }
        let mut events = Vec::new();
        for (unit, f) in reports {
            if let Some(e) = self.take_report(unit, f) {
                events.push(e);
            }
        }
        for e in &events {
            match self.faults.handlers.get_mut(event_device(e)) {
                Some(h) => h(e),
                None => self.faults.undelivered.push(e.clone()),
            }
        }
        events
    }

    fn take_report(&mut self, unit: UnitId, f: HwFault) -> Option<FaultEvent> {
        let rid = match &f {
            HwFault::Unrecoverable { request_id, .. } | HwFault::PageRequest { request_id, .. } => {
                *request_id
            }
        };
        let Some(device) = self.device_of(unit, rid) else {
            self.faults.counters.unknown_requester += 1;
            return None;
        };
        match f {
            HwFault::Unrecoverable { pasid, addr, reason, raw, .. } => {
                self.faults.counters.unrecoverable += 1;
                Some(FaultEvent::Unrecoverable { device, pasid, addr, reason, raw })
            }
            HwFault::PageRequest { pasid, addr, write, group, last, .. } => {
                self.faults.counters.page_requests += 1;
                let key = (device.clone(), pasid, group);
                self.faults
                    .partial
                    .entry(key.clone())
                    .or_default()
                    .push(PageRequest { addr, write });
                if !last {
                    return None;
                }
                let pages = self.faults.partial.remove(&key).unwrap_or_default();
                self.faults.counters.page_groups += 1;
                self.faults.waiting.insert(key, (unit, rid));
                Some(FaultEvent::PageRequestGroup { device, pasid, group, pages })
            }
        }
    }

    /// Answers a complete page request group. A response for a group nobody is waiting on is
    /// an error (PCIe: a response with no outstanding group is a protocol error the device may
    /// treat as fatal).
    pub fn page_response(
        &mut self,
        device: &DeviceId,
        pasid: Option<Pasid>,
        group: u16,
        code: PageResponseCode,
    ) -> Result<(), CoreError> {
        self.answer(&(device.clone(), pasid, group), code)?;
        self.faults.counters.responses += 1;
        Ok(())
    }

    /// Sends `code` for a waiting group and forgets it.
    fn answer(&mut self, key: &GroupKey, code: PageResponseCode) -> Result<(), CoreError> {
        let (device, pasid, group) = key;
        let (unit, rid) = *self.faults.waiting.get(key).ok_or_else(|| {
            CoreError::UnknownPageGroup { device: device.clone(), pasid: *pasid, group: *group }
        })?;
        self.driver_op(unit, |d| d.page_response(rid, *pasid, *group, code))?;
        self.faults.waiting.remove(key);
        Ok(())
    }

    /// Complete page request groups still waiting for a response: each is an error the
    /// device is blocked on.
    pub fn unanswered_page_groups(&self) -> Vec<(DeviceId, Option<Pasid>, u16)> {
        self.faults.waiting.keys().cloned().collect()
    }

    /// Events for devices that have no handler yet.
    pub fn take_undelivered(&mut self) -> Vec<FaultEvent> {
        std::mem::take(&mut self.faults.undelivered)
    }

    /// What the fault path counted.
    pub fn fault_counters(&self) -> FaultCounters {
        self.faults.counters
    }

    /// What every unit's driver counted (queue overflows: fault records and page requests the
    /// hardware had to drop; invalidations and waits), by unit.
    pub fn unit_counters(
        &self,
    ) -> std::collections::BTreeMap<UnitId, crate::driver::DriverCounters> {
        self.units.iter().map(|(u, s)| (*u, s.driver.counters())).collect()
    }

    /// Before `pasid` leaves `group`: collects what the units hold and answers every group of
    /// the group's devices on that PASID as Invalid, so the PASID can be reused safely.
    pub(crate) fn drain_page_requests(
        &mut self,
        group: GroupId,
        pasid: Pasid,
    ) -> Result<(), CoreError> {
        self.process_faults();
        let members = self.group(group)?.members.clone();
        let keys: Vec<_> = self
            .faults
            .waiting
            .keys()
            .filter(|(d, p, _)| *p == Some(pasid) && members.contains(d))
            .cloned()
            .collect();
        for key in keys {
            self.answer(&key, PageResponseCode::Invalid)?;
            self.faults.counters.drained += 1;
        }
        self.faults.partial.retain(|(d, p, _), _| *p != Some(pasid) || !members.contains(d));
        Ok(())
    }
}

fn event_device(e: &FaultEvent) -> &DeviceId {
    match e {
        FaultEvent::Unrecoverable { device, .. } | FaultEvent::PageRequestGroup { device, .. } => {
            device
        }
    }
}
