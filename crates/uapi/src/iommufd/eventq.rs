//! What the host's units report, on its way to the VMM (iommufd's `eventq.c` and the drivers'
//! reporting in `arm-smmu-v3.c`, `io-pgfault.c`, v6.19):
//!
//! - An SMMUv3 event of a device attached to a nested HWPT on a vIOMMU that has a vDEVICE for
//!   it (the driver's "vmaster"), unless it is a stage-2 fault, goes to that vIOMMU's vEVENTQ
//!   as the raw record with the StreamID replaced by the virtual one
//!   (`arm_vmaster_report_event()`). Stage-2 faults, events of other devices, and events of a
//!   vIOMMU without a vEVENTQ stay with the host ([`Iommufd::take_host_faults`]), with the
//!   physical IDs: the stage 2 is the VMM's, never the guest's business. VT-d has no vIOMMU
//!   object and no vEVENTQ type in v6.19: every VT-d fault stays with the host.
//! - The vEVENTQ holds `depth` events. Each report takes the next sequence number (wrapping at
//!   `INT_MAX`); a report that finds the queue full is lost, counted, and represented by one
//!   LOST_EVENTS header kept at the tail of the queue (`iommufd_vevent_handler()`: the header
//!   moves to the tail with each new sequence number, and is dropped from the tail when a
//!   real event follows it, the gap in sequence numbers then telling the reader).
//! - A complete page request group goes to the fault queue of the HWPT its (device, PASID) is
//!   attached to; on SMMUv3 (a driver with a user-managed PASID table) a PASID without its own
//!   attach falls back to the nested HWPT of the device's RID. No HWPT or no fault queue: the
//!   host answers Invalid itself (`iopf_error_response()`), counted. The VMM reads groups and
//!   answers each by its cookie; the answer reaches the device through the host's unit.
//!
//! IMPDEF: a group's cookie is given when the group is queued (iommufd gives it at `read()`);
//! the VMM sees the same thing, one cookie per group.

use serde::Serialize;
use sviommu_core::driver::PageResponseCode;
use sviommu_core::{FaultEvent, Model, Pasid};
use sviommu_smmuv3::spec::EventRecord;

use super::Iommufd;
use crate::data::TYPE_ARM_SMMUV3;
use crate::error::UapiError;
use crate::object::{
    pgfault, FaultQueue, Object, ObjectId, PageFault, Vevent, VEVENTQ_FLAG_LOST_EVENTS,
};

/// What one pass of [`Iommufd::handle_host_events`] did with the units' reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HostEvents {
    /// Events queued on a vEVENTQ.
    pub vevents: u64,
    /// Events a full vEVENTQ lost (LOST_EVENTS).
    pub lost: u64,
    /// Events kept for the host (stage 2, no vIOMMU, no vEVENTQ), with physical IDs.
    pub host: u64,
    /// Page request groups queued on a fault queue.
    pub page_groups: u64,
    /// Page request groups the host answered Invalid itself: no fault queue to take them.
    pub auto_invalid: u64,
}

impl Iommufd {
    /// The host's event and page request interrupt thread: collects what every unit reported
    /// (through the core) and routes it as the module documentation says.
    pub fn handle_host_events(&mut self) -> HostEvents {
        let events = self.iommu.process_faults();
        // The core keeps what no handler took; here everything is routed, so drop its copy.
        drop(self.iommu.take_undelivered());
        let mut out = HostEvents::default();
        for e in events {
            match e {
                FaultEvent::Unrecoverable { ref device, raw, .. } => {
                    match raw.and_then(|w| self.vevent_route(device, w)) {
                        Some((viommu, words)) => match self.report_event(viommu, words) {
                            Some(true) => out.vevents += 1,
                            Some(false) => out.lost += 1,
                            None => {
                                out.host += 1;
                                self.host_faults.push(e);
                            }
                        },
                        None => {
                            out.host += 1;
                            self.host_faults.push(e);
                        }
                    }
                }
                FaultEvent::PageRequestGroup { device, pasid, group, pages } => {
                    let dev_id = self.device_object(&device);
                    let queue = dev_id.and_then(|d| self.fault_queue_of(d, pasid));
                    match (dev_id, queue) {
                        (Some(dev_id), Some(fq)) => {
                            let last = pages.len().saturating_sub(1);
                            let Some(Object::Fault(q)) = self.objects.get_mut(&fq) else {
                                continue;
                            };
                            let cookie = q.next_cookie;
                            q.next_cookie = q.next_cookie.wrapping_add(1);
                            let faults = pages
                                .iter()
                                .enumerate()
                                .map(|(i, p)| PageFault {
                                    flags: if pasid.is_some() { pgfault::PASID_VALID } else { 0 }
                                        | if i == last { pgfault::LAST_PAGE } else { 0 },
                                    dev_id,
                                    pasid: pasid.map_or(0, |p| p.0),
                                    grpid: u32::from(group),
                                    perm: pgfault::PERM_READ
                                        | if p.write { pgfault::PERM_WRITE } else { 0 },
                                    addr: p.addr,
                                    length: 4096,
                                    cookie,
                                })
                                .collect();
                            q.deliver.push_back((cookie, faults));
                            q.response.insert(cookie, (device, pasid.map(|p| p.0), group));
                            q.groups += 1;
                            out.page_groups += 1;
                        }
                        _ => {
                            // Nobody can answer: the device must not wait forever.
                            let code = PageResponseCode::Invalid;
                            if self.iommu.page_response(&device, pasid, group, code).is_ok() {
                                out.auto_invalid += 1;
                            }
                        }
                    }
                }
            }
        }
        self.host_events.vevents += out.vevents;
        self.host_events.lost += out.lost;
        self.host_events.host += out.host;
        self.host_events.page_groups += out.page_groups;
        self.host_events.auto_invalid += out.auto_invalid;
        out
    }

    /// Everything [`Iommufd::handle_host_events`] routed since the context was made.
    pub fn host_event_counts(&self) -> HostEvents {
        self.host_events
    }

    /// The faults that stayed with the host (the VMM's own: stage-2 faults, devices without a
    /// vIOMMU), with physical IDs, oldest first; taken.
    pub fn take_host_faults(&mut self) -> Vec<FaultEvent> {
        std::mem::take(&mut self.host_faults)
    }

    /// The vIOMMU and the record with the virtual StreamID, if `device`'s event `words` is one
    /// a guest gets (`arm_smmu_handle_evt()`: a vmaster, and not S2).
    fn vevent_route(
        &self,
        device: &sviommu_core::topology::DeviceId,
        words: [u64; 4],
    ) -> Option<(ObjectId, [u64; 4])> {
        let dev_id = self.device_object(device)?;
        let Some(Object::HwptNested(n)) = self.objects.get(&self.attached_hwpt(dev_id, None)?)
        else {
            return None;
        };
        let viommu = n.viommu?;
        let vsid = self.objects.values().find_map(|o| match o {
            Object::Vdevice(v) if v.viommu == viommu && v.device == dev_id => Some(v.virt_id),
            _ => None,
        })?;
        let mut rec = EventRecord(words);
        // §7.3: only the records that have an S2 field say which stage faulted.
        let has_s2 = rec.id().is_ok_and(|id| id.layout().iter().any(|f| f.name == "S2"));
        if has_s2 && rec.s2() {
            return None;
        }
        rec.set_sid(u32::try_from(vsid).ok()?);
        Some((viommu, rec.0))
    }

    /// `iommufd_viommu_report_event()`: queues `words` on `viommu`'s vEVENTQ. `Some(true)`:
    /// queued; `Some(false)`: lost to a full queue; `None`: the vIOMMU has no vEVENTQ.
    fn report_event(&mut self, viommu: ObjectId, words: [u64; 4]) -> Option<bool> {
        let q = self.objects.values_mut().find_map(|o| match o {
            Object::Veventq(q) if q.viommu == viommu && q.kind == TYPE_ARM_SMMUV3 => Some(q),
            _ => None,
        })?;
        let held = q.deliver.iter().filter(|e| e.data.is_some()).count();
        let room = u64::try_from(held).is_ok_and(|h| h < u64::from(q.depth));
        let ev = if room {
            q.reported += 1;
            Vevent { flags: 0, sequence: q.sequence, data: Some(words) }
        } else {
            q.lost += 1;
            Vevent { flags: VEVENTQ_FLAG_LOST_EVENTS, sequence: q.sequence, data: None }
        };
        if q.deliver.back().is_some_and(|e| e.data.is_none()) {
            q.deliver.pop_back();
        }
        q.deliver.push_back(ev);
        q.sequence = q.sequence.wrapping_add(1) & (i32::MAX as u32);
        Some(room)
    }

    /// `read()` on a vEVENTQ: up to `max` vEVENTs, oldest first.
    pub fn veventq_read(&mut self, id: ObjectId, max: usize) -> Result<Vec<Vevent>, UapiError> {
        match self.objects.get_mut(&id) {
            Some(Object::Veventq(q)) => {
                let n = max.min(q.deliver.len());
                Ok(q.deliver.drain(..n).collect())
            }
            _ => Err(UapiError::NoSuchObject { id, needs: "vEVENTQ" }),
        }
    }

    fn fault_queue(&mut self, id: ObjectId) -> Result<&mut FaultQueue, UapiError> {
        match self.objects.get_mut(&id) {
            Some(Object::Fault(q)) => Ok(q),
            _ => Err(UapiError::NoSuchObject { id, needs: "fault queue" }),
        }
    }

    /// `read()` on a fault queue: every complete group not read yet, each page with its
    /// group's cookie.
    pub fn fault_read(&mut self, id: ObjectId) -> Result<Vec<PageFault>, UapiError> {
        let q = self.fault_queue(id)?;
        Ok(q.deliver.drain(..).flat_map(|(_, pages)| pages).collect())
    }

    /// `write()` of a `struct iommu_hwpt_page_response` on a fault queue: answers the group
    /// `cookie` names with `code` ([`pgfault::RESP_SUCCESS`] or [`pgfault::RESP_INVALID`]);
    /// the response reaches the device through its unit. An unknown cookie or code is EINVAL
    /// and changes nothing.
    pub fn fault_respond(&mut self, id: ObjectId, cookie: u32, code: u32) -> Result<(), UapiError> {
        let code = match code {
            pgfault::RESP_SUCCESS => PageResponseCode::Success,
            pgfault::RESP_INVALID => PageResponseCode::Invalid,
            other => {
                return Err(UapiError::Invalid {
                    field: "code",
                    value: u64::from(other),
                    why: "not a page response code",
                })
            }
        };
        let q = self.fault_queue(id)?;
        let Some((device, pasid, group)) = q.response.get(&cookie).cloned() else {
            return Err(UapiError::Invalid {
                field: "cookie",
                value: u64::from(cookie),
                why: "no page request group waits on it",
            });
        };
        self.iommu.page_response(&device, pasid.map(Pasid), group, code)?;
        let q = self.fault_queue(id)?;
        q.response.remove(&cookie);
        q.answered += 1;
        Ok(())
    }

    /// Answers Invalid every group of fault queue `fq` that `pick(device, PASID)` selects and
    /// the VMM has not answered (read or not), as iommufd does when their handle goes away;
    /// counted in the queue's `abandoned`.
    pub(super) fn abandon_groups(
        &mut self,
        fq: ObjectId,
        pick: impl Fn(&sviommu_core::topology::DeviceId, Option<u32>) -> bool,
    ) {
        let Some(Object::Fault(q)) = self.objects.get_mut(&fq) else { return };
        let cookies: Vec<u32> =
            q.response.iter().filter(|(_, (d, p, _))| pick(d, *p)).map(|(c, _)| *c).collect();
        let mut groups = Vec::new();
        for c in &cookies {
            if let Some(g) = q.response.remove(c) {
                groups.push(g);
            }
        }
        q.deliver.retain(|(c, _)| !cookies.contains(c));
        q.abandoned += groups.len() as u64;
        for (device, pasid, group) in groups {
            // The device must not wait forever; a response it no longer expects is dropped by
            // its unit.
            let _ = self.iommu.page_response(
                &device,
                pasid.map(Pasid),
                group,
                PageResponseCode::Invalid,
            );
        }
    }

    /// The fault queue of a HWPT.
    pub(super) fn fault_of(&self, hwpt: ObjectId) -> Option<ObjectId> {
        match self.objects.get(&hwpt) {
            Some(Object::HwptNested(n)) => n.fault,
            Some(Object::HwptPaging(p)) => p.fault,
            _ => None,
        }
    }

    /// The fault queue of the HWPT a page request of (`dev_id`, `pasid`) is for.
    fn fault_queue_of(&self, dev_id: ObjectId, pasid: Option<Pasid>) -> Option<ObjectId> {
        if let Some(h) = self.attached_hwpt(dev_id, pasid.map(|p| p.0)) {
            return self.fault_of(h);
        }
        // `find_fault_handler()`: a driver with a user-managed PASID table (SMMUv3) sends
        // every PASID's faults to the nested HWPT of the device's RID.
        let Some(Object::Device(d)) = self.objects.get(&dev_id) else { return None };
        let smmu = self.iommu.driver(d.unit).is_ok_and(|u| u.caps().model == Model::Smmuv3);
        let rid = self.attached_hwpt(dev_id, None)?;
        match self.objects.get(&rid) {
            Some(Object::HwptNested(n)) if smmu && pasid.is_some() => n.fault,
            _ => None,
        }
    }
}
