//! [`Iommufd`]: one iommufd context of a VMM: its objects, their rules, and the core calls
//! they become.
//!
//! Every call checks what it can before it changes anything, so a refused call leaves the
//! objects, the core and the hardware (table memory, registers) as they were.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use serde::Serialize;
use sviommu_core::driver::{
    CacheKind, DmaAccess, DmaResult, HwInfo, PasidTableConfig, PasidTableFormat,
};
use sviommu_core::topology::{DeviceId, UnitId};
use sviommu_core::{
    CoreError, DomainId, DomainKind, FlushPolicy, Granularity, InvalidateInfo, Iommu, MapUndo,
    Model, Pasid, Stage1Config, Stage1Format, Target,
};
use sviommu_memory::{HostMemory, Hpa, PhysMemory};
use sviommu_smmuv3::spec::ste::S1Fmt;

use crate::data::{
    self, convert_command, data_type, hwpt_flags, invalidate_type, map_flags, vste_config,
    vtd_s1_flags, GuestCommand, HwptData, InvalidateArray, NestedData, VsteConfig, TYPE_ARM_SMMUV3,
    VTD_INV_FLAGS_LEAF,
};
use crate::error::UapiError;
use crate::object::{
    Area, Device, FaultQueue, HwptNested, HwptPaging, Ioas, Object, ObjectId, Piece, Vdevice,
    Veventq, Viommu,
};

mod eventq;
pub use eventq::HostEvents;

/// The smallest page both units map, and so the IOAS alignment.
pub const IOVA_ALIGNMENT: u64 = 4096;

/// A range of the VMM process's memory: user virtual addresses backed by host physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct VmmRegion {
    /// First user VA.
    pub user_va: u64,
    /// The host physical address behind it.
    pub hpa: u64,
    /// Bytes.
    pub len: u64,
}

/// What `IOMMU_IOAS_IOVA_RANGES` answers: allowed ranges, inclusive, and the alignment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IovaRanges {
    /// `(start, last)` pairs.
    pub ranges: Vec<(u64, u64)>,
    /// `out_iova_alignment`.
    pub alignment: u64,
}

/// What `IOMMU_GET_HW_INFO` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct HwInfoReply {
    /// The unit's architecture.
    pub model: Model,
    /// Its capability registers (`out_data_type` and the data).
    pub data: HwInfo,
    /// `out_max_pasid_log2`: PASID bits the device and the unit both take (0: none).
    pub max_pasid_log2: u8,
    /// `out_capabilities` (no dirty tracking or PASID execute/privileged modelled: 0).
    pub capabilities: u64,
}

/// `IOMMU_HWPT_ALLOC`'s fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HwptAlloc {
    /// `flags` (see [`hwpt_flags`]).
    pub flags: u32,
    /// `dev_id`.
    pub dev_id: ObjectId,
    /// `pt_id`: an IOAS (paging), a NEST_PARENT HWPT (VT-d nested) or a vIOMMU (SMMUv3 nested).
    pub pt_id: ObjectId,
    /// `data_type`, `data_len`, `data_uptr`.
    pub data: HwptData,
    /// `fault_id`, used with `IOMMU_HWPT_FAULT_ID_VALID`.
    pub fault_id: ObjectId,
}

/// Every byte the units can see: host memory and each unit's register file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HardwareSnapshot {
    /// Each host memory range: its start and bytes.
    pub memory: Vec<(u64, Vec<u8>)>,
    /// Each unit's registers, 32 bits at a time from offset 0.
    pub registers: Vec<(UnitId, Vec<u32>)>,
}

/// One iommufd context over a system's IOMMUs.
pub struct Iommufd {
    iommu: Iommu,
    mem: Arc<HostMemory>,
    vmm: Vec<VmmRegion>,
    objects: BTreeMap<ObjectId, Object>,
    next_id: ObjectId,
    /// (device object, PASID) -> HWPT.
    attached: BTreeMap<(ObjectId, Option<u32>), ObjectId>,
    /// Faults that stayed with the host (`eventq`), until the VMM takes them.
    host_faults: Vec<sviommu_core::FaultEvent>,
    /// What `handle_host_events` routed so far.
    host_events: HostEvents,
    /// Fault injection (`fail_nth`).
    inject: Inject,
}

/// The `fail_nth` state: the injection point that fails next, counted from when it was armed.
#[derive(Clone, Copy, Debug, Default)]
struct Inject {
    /// Points left before the one that fails (`None`: disarmed).
    left: Option<u32>,
    /// Points passed since it was armed.
    seen: u32,
    /// Undoing a failed call: no point fails (an undo path cannot fail, as iommufd's cannot).
    undoing: bool,
}

impl std::fmt::Debug for Iommufd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iommufd")
            .field("objects", &self.objects)
            .field("attached", &self.attached)
            .finish_non_exhaustive()
    }
}

impl Iommufd {
    /// A context over `iommu`, whose units share `mem`, for a VMM whose memory is `vmm`.
    pub fn new(iommu: Iommu, mem: Arc<HostMemory>, vmm: Vec<VmmRegion>) -> Self {
        Self {
            iommu,
            mem,
            vmm,
            objects: BTreeMap::new(),
            next_id: 1,
            attached: BTreeMap::new(),
            host_faults: Vec::new(),
            host_events: HostEvents::default(),
            inject: Inject::default(),
        }
    }

    /// Fault injection in the shape of iommufd's `fail_nth`: from now on the `n`th internal
    /// step (1: the first) of the context's calls fails with [`UapiError::Injected`]; `None`
    /// disarms. The steps are every object ID allocation and every core call a call makes
    /// (each of which writes the units' tables and queues); the undo path of a failed call
    /// is never injected. A failed call must leave the hardware-visible state and the ID
    /// space as they were.
    pub fn fail_nth(&mut self, n: Option<u32>) {
        self.inject = Inject { left: n, ..Inject::default() };
    }

    /// The injection points passed since [`fail_nth`](Self::fail_nth) armed it.
    pub fn fail_nth_seen(&self) -> u32 {
        self.inject.seen
    }

    /// The ID the next object will get (iommufd's IDs are never reused here).
    pub fn next_object_id(&self) -> ObjectId {
        self.next_id
    }

    /// An injection point.
    fn step(&mut self, step: &'static str) -> Result<(), UapiError> {
        if self.inject.undoing {
            return Ok(());
        }
        let Some(left) = self.inject.left else { return Ok(()) };
        self.inject.seen += 1;
        if left <= 1 {
            self.inject.left = None;
            return Err(UapiError::Injected { step });
        }
        self.inject.left = Some(left - 1);
        Ok(())
    }

    /// A core call that is an injection point.
    fn core<T>(
        &mut self,
        step: &'static str,
        call: impl FnOnce(&mut Iommu) -> Result<T, CoreError>,
    ) -> Result<T, UapiError> {
        self.step(step)?;
        Ok(call(&mut self.iommu)?)
    }

    /// Undoes part of a failed call: nothing in it is injected.
    fn undo<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        let was = std::mem::replace(&mut self.inject.undoing, true);
        let out = f(self);
        self.inject.undoing = was;
        out
    }

    /// The core underneath.
    pub fn iommu(&self) -> &Iommu {
        &self.iommu
    }

    /// The core underneath, for the host kernel's own use beside the VMM's (its own domains,
    /// binds and fault handling, as a simulator builds them). Objects of this context must be
    /// changed through its calls, not here.
    pub fn iommu_mut(&mut self) -> &mut Iommu {
        &mut self.iommu
    }

    /// Host memory.
    pub fn memory(&self) -> &Arc<HostMemory> {
        &self.mem
    }

    /// The VMM's memory.
    pub fn vmm_memory(&self) -> &[VmmRegion] {
        &self.vmm
    }

    /// One object.
    pub fn object(&self, id: ObjectId) -> Option<&Object> {
        self.objects.get(&id)
    }

    /// Every live object's ID, ascending.
    pub fn object_ids(&self) -> Vec<ObjectId> {
        self.objects.keys().copied().collect()
    }

    /// The HWPT a device (at a PASID) is attached to.
    pub fn attached_hwpt(&self, dev_id: ObjectId, pasid: Option<u32>) -> Option<ObjectId> {
        self.attached.get(&(dev_id, pasid)).copied()
    }

    /// Allocates the object's ID (an injection point, as iommufd's `xa_alloc` can fail).
    fn insert(&mut self, obj: Object) -> Result<ObjectId, UapiError> {
        let id = self.reserve()?;
        self.objects.insert(id, obj);
        Ok(id)
    }

    /// Takes the next ID for an object made after it (iommufd allocates the object, and its
    /// ID, before the domain behind it); [`abort`](Self::abort) gives it back.
    fn reserve(&mut self) -> Result<ObjectId, UapiError> {
        self.step("object ID")?;
        let id = self.next_id;
        self.next_id += 1;
        Ok(id)
    }

    /// A reserved ID and the core domain its HWPT will be.
    fn reserve_domain(
        &mut self,
        unit: UnitId,
        kind: DomainKind,
    ) -> Result<(ObjectId, DomainId), UapiError> {
        let id = self.reserve()?;
        match self.core("alloc_domain", |i| i.alloc_domain(unit, kind)) {
            Ok(d) => Ok((id, d)),
            Err(e) => {
                self.abort(id);
                Err(e)
            }
        }
    }

    /// Gives back a reserved ID whose object was never made (`iommufd_object_abort()`), so the
    /// next allocation gets it.
    fn abort(&mut self, id: ObjectId) {
        if id.checked_add(1) == Some(self.next_id) {
            self.next_id = id;
        }
    }

    fn get(&self, id: ObjectId, needs: &'static str) -> Result<&Object, UapiError> {
        self.objects.get(&id).ok_or(UapiError::NoSuchObject { id, needs })
    }

    fn ioas(&self, id: ObjectId) -> Result<&Ioas, UapiError> {
        match self.get(id, "IOAS")? {
            Object::Ioas(i) => Ok(i),
            _ => Err(UapiError::NoSuchObject { id, needs: "IOAS" }),
        }
    }

    fn device(&self, id: ObjectId) -> Result<&Device, UapiError> {
        match self.get(id, "device")? {
            Object::Device(d) => Ok(d),
            _ => Err(UapiError::NoSuchObject { id, needs: "device" }),
        }
    }

    fn paging(&self, id: ObjectId) -> Result<&HwptPaging, UapiError> {
        match self.get(id, "paging HWPT")? {
            Object::HwptPaging(h) => Ok(h),
            _ => Err(UapiError::NoSuchObject { id, needs: "paging HWPT" }),
        }
    }

    fn viommu(&self, id: ObjectId) -> Result<&Viommu, UapiError> {
        match self.get(id, "vIOMMU")? {
            Object::Viommu(v) => Ok(v),
            _ => Err(UapiError::NoSuchObject { id, needs: "vIOMMU" }),
        }
    }

    // --- devices ----------------------------------------------------------------------------

    /// Binds a physical device (VFIO_DEVICE_BIND_IOMMUFD); returns its device ID.
    pub fn device_bind(&mut self, dev: &DeviceId) -> Result<ObjectId, UapiError> {
        let d = self
            .iommu
            .topology()
            .device(dev)
            .ok_or_else(|| CoreError::NoSuchDevice(dev.clone()))?;
        let unit = d.unit;
        self.iommu.driver(unit)?;
        if let Some(id) = self.device_object(dev) {
            return Err(UapiError::AlreadyBound { device: dev.clone(), id });
        }
        self.insert(Object::Device(Device { id: dev.clone(), unit }))
    }

    /// The device object binding `dev`.
    pub fn device_object(&self, dev: &DeviceId) -> Option<ObjectId> {
        self.objects.iter().find_map(|(id, o)| match o {
            Object::Device(d) if &d.id == dev => Some(*id),
            _ => None,
        })
    }

    /// `IOMMU_GET_HW_INFO`.
    pub fn get_hw_info(&self, dev_id: ObjectId) -> Result<HwInfoReply, UapiError> {
        let d = self.device(dev_id)?;
        let drv = self.iommu.driver(d.unit)?;
        let caps = drv.caps();
        Ok(HwInfoReply {
            model: caps.model,
            data: drv.hw_info(),
            max_pasid_log2: self.pasid_bits(&d.id, d.unit),
            capabilities: 0,
        })
    }

    /// PASID bits the device and its unit both take.
    fn pasid_bits(&self, dev: &DeviceId, unit: UnitId) -> u8 {
        let unit_bits = self.iommu.driver(unit).map(|d| d.caps().pasid_bits).unwrap_or(0);
        let dev_bits = self.iommu.topology().pasid_allowed(dev).map(|w| w.bits()).unwrap_or(0);
        unit_bits.min(dev_bits)
    }

    // --- IOAS -------------------------------------------------------------------------------

    /// `IOMMU_IOAS_ALLOC`.
    pub fn ioas_alloc(&mut self) -> Result<ObjectId, UapiError> {
        self.insert(Object::Ioas(Ioas::default()))
    }

    /// The paging HWPTs made from `ioas`.
    fn hwpts_of(&self, ioas: ObjectId) -> Vec<(ObjectId, DomainId)> {
        self.objects
            .iter()
            .filter_map(|(id, o)| match o {
                Object::HwptPaging(h) if h.ioas == ioas => Some((*id, h.domain)),
                _ => None,
            })
            .collect()
    }

    /// The IOAS a HWPT's translations come from.
    fn ioas_of_hwpt(&self, hwpt: ObjectId) -> Option<ObjectId> {
        match self.objects.get(&hwpt)? {
            Object::HwptPaging(h) => Some(h.ioas),
            Object::HwptNested(n) => self.ioas_of_hwpt(n.parent),
            _ => None,
        }
    }

    /// `IOMMU_IOAS_IOVA_RANGES`: every paging HWPT's aperture, less the reserved regions of
    /// every device attached anywhere in the IOAS (iommufd reserves them in the IOAS itself).
    pub fn ioas_iova_ranges(&self, ioas: ObjectId) -> Result<IovaRanges, UapiError> {
        self.ioas(ioas)?;
        Ok(IovaRanges { ranges: self.allowed(ioas, None)?, alignment: IOVA_ALIGNMENT })
    }

    /// The allowed ranges of `ioas`, as if `extra` were attached too.
    fn allowed(
        &self,
        ioas: ObjectId,
        extra: Option<&DeviceId>,
    ) -> Result<Vec<(u64, u64)>, UapiError> {
        let mut allowed = vec![(0, u64::MAX)];
        for (_, domain) in self.hwpts_of(ioas) {
            let ranges: Vec<(u64, u64)> = self
                .iommu
                .iova_ranges(domain)?
                .into_iter()
                .filter(|r| r.start < r.end)
                .map(|r| (r.start, r.end - 1))
                .collect();
            allowed = intersect(&allowed, &ranges);
        }
        let mut devices: BTreeSet<DeviceId> = BTreeSet::new();
        for ((dev, _), hwpt) in &self.attached {
            if self.ioas_of_hwpt(*hwpt) == Some(ioas) {
                devices.insert(self.device(*dev)?.id.clone());
            }
        }
        devices.extend(extra.cloned());
        for dev in devices {
            for (r, _) in self.iommu.reserved_regions(&dev)? {
                if r.start < r.end {
                    allowed = subtract(&allowed, (r.start, r.end - 1));
                }
            }
        }
        Ok(allowed)
    }

    /// `user_va..user_va + length` as pieces of host memory.
    fn pieces(&self, user_va: u64, length: u64, iova: u64) -> Result<Vec<Piece>, UapiError> {
        let bad = UapiError::BadUserVa { user_va, length };
        let end =
            user_va.checked_add(length).ok_or(UapiError::Overflow { start: user_va, length })?;
        let mut out = Vec::new();
        let mut at = user_va;
        while at < end {
            let r = self
                .vmm
                .iter()
                .find(|r| r.user_va <= at && at - r.user_va < r.len)
                .ok_or_else(|| bad.clone())?;
            let off = at - r.user_va;
            let len = (r.len - off).min(end - at);
            out.push(Piece { iova: iova + (at - user_va), hpa: r.hpa + off, len });
            at += len;
        }
        Ok(out)
    }

    /// The first free, aligned IOVA range of `length` bytes in the allowed ranges.
    fn find_iova(&self, ioas: ObjectId, length: u64) -> Result<u64, UapiError> {
        let areas = &self.ioas(ioas)?.areas;
        for (start, last) in self.allowed(ioas, None)? {
            // iommufd aligns an automatic IOVA to the length's lowest set bit.
            let align = (length & length.wrapping_neg()).max(IOVA_ALIGNMENT);
            let mut at = start.checked_next_multiple_of(align).unwrap_or(u64::MAX);
            while let Some(end) = at.checked_add(length - 1).filter(|e| *e <= last) {
                match areas.values().find(|a| a.iova <= end && at <= a.iova + (a.length - 1)) {
                    None => return Ok(at),
                    Some(a) => {
                        at = match (a.iova + a.length).checked_next_multiple_of(align) {
                            Some(n) => n,
                            None => break,
                        }
                    }
                }
            }
        }
        Err(UapiError::NoIovaSpace(length))
    }

    /// Checks a new mapping of `ioas` at `iova` (or finds one) and returns its IOVA.
    fn check_new_area(
        &self,
        ioas: ObjectId,
        flags: u32,
        length: u64,
        iova: u64,
    ) -> Result<u64, UapiError> {
        let known = map_flags::FIXED_IOVA | map_flags::WRITEABLE | map_flags::READABLE;
        if flags & !known != 0 {
            return Err(UapiError::Flags { call: "IOAS_MAP", flags: u64::from(flags & !known) });
        }
        if flags & (map_flags::WRITEABLE | map_flags::READABLE) == 0 {
            return Err(UapiError::Invalid {
                field: "flags",
                value: u64::from(flags),
                why: "neither readable nor writeable",
            });
        }
        if flags & map_flags::READABLE == 0 {
            // DEVIATION: VT-d second-stage entries cannot grant write without read.
            return Err(UapiError::Unsupported("map write-only"));
        }
        if length == 0 || length % IOVA_ALIGNMENT != 0 {
            return Err(UapiError::Invalid {
                field: "length",
                value: length,
                why: "not a non-zero multiple of 4K",
            });
        }
        let iova = if flags & map_flags::FIXED_IOVA != 0 {
            if iova % IOVA_ALIGNMENT != 0 {
                return Err(UapiError::Invalid {
                    field: "iova",
                    value: iova,
                    why: "not 4K aligned",
                });
            }
            iova
        } else {
            self.find_iova(ioas, length)?
        };
        let last =
            iova.checked_add(length - 1).ok_or(UapiError::Overflow { start: iova, length })?;
        if let Some(a) = self
            .ioas(ioas)?
            .areas
            .values()
            .find(|a| a.iova <= last && iova <= a.iova + (a.length - 1))
        {
            return Err(UapiError::AlreadyMapped(a.iova.max(iova)));
        }
        if !self.allowed(ioas, None)?.iter().any(|(s, l)| *s <= iova && last <= *l) {
            return Err(UapiError::NotAllowed { iova, length });
        }
        Ok(iova)
    }

    /// Adds an area to the IOAS and to every paging HWPT of it.
    fn add_area(&mut self, ioas: ObjectId, area: Area) -> Result<u64, UapiError> {
        let hwpts = self.hwpts_of(ioas);
        let mut done: Vec<MapUndo> = Vec::new();
        for (_, domain) in &hwpts {
            match self.map_area(*domain, &area) {
                Ok(undo) => done.extend(undo),
                Err(e) => {
                    self.undo_maps(done);
                    return Err(e);
                }
            }
        }
        let iova = area.iova;
        if let Some(Object::Ioas(i)) = self.objects.get_mut(&ioas) {
            i.areas.insert(iova, area);
        }
        Ok(iova)
    }

    /// Maps an area's pieces into a core paging domain, undoing them on a failure.
    fn map_area(&mut self, domain: DomainId, area: &Area) -> Result<Vec<MapUndo>, UapiError> {
        let mut done = Vec::new();
        for p in &area.pieces {
            match self.core("map", |i| i.map_undoable(domain, p.iova, p.hpa, p.len, area.write)) {
                Ok(undo) => done.push(undo),
                Err(e) => {
                    self.undo_maps(done);
                    return Err(e);
                }
            }
        }
        Ok(done)
    }

    /// Takes back the maps of a failed call, newest first, the tables they allocated included
    /// (an unmap alone would leave those linked, empty).
    fn undo_maps(&mut self, done: Vec<MapUndo>) {
        for undo in done.into_iter().rev() {
            // Best effort, as every undo here (iommufd's undo paths cannot fail).
            let _ = self.iommu.undo_map(undo);
        }
    }

    /// `IOMMU_IOAS_MAP`: maps the VMM's memory at `user_va` into `ioas` and every paging HWPT
    /// made from it; returns the IOVA (given with FIXED_IOVA, else chosen).
    pub fn ioas_map(
        &mut self,
        ioas: ObjectId,
        flags: u32,
        user_va: u64,
        length: u64,
        iova: u64,
    ) -> Result<u64, UapiError> {
        self.ioas(ioas)?;
        if user_va % IOVA_ALIGNMENT != 0 {
            return Err(UapiError::Invalid {
                field: "user_va",
                value: user_va,
                why: "not 4K aligned",
            });
        }
        let iova = self.check_new_area(ioas, flags, length, iova)?;
        let pieces = self.pieces(user_va, length, iova)?;
        let write = flags & map_flags::WRITEABLE != 0;
        self.add_area(ioas, Area { iova, length, user_va, write, pieces })
    }

    /// `IOMMU_IOAS_COPY`: maps what `src_iova..+length` of `src` maps (any part of its
    /// areas, as long as all of it is mapped) into `dst`.
    pub fn ioas_copy(
        &mut self,
        dst: ObjectId,
        src: ObjectId,
        flags: u32,
        length: u64,
        dst_iova: u64,
        src_iova: u64,
    ) -> Result<u64, UapiError> {
        self.ioas(dst)?;
        let (src_pieces, write, user_va) = self.mapped_pieces(src, src_iova, length)?;
        if flags & map_flags::WRITEABLE != 0 && !write {
            return Err(UapiError::Invalid {
                field: "flags",
                value: u64::from(flags),
                why: "the source is read-only",
            });
        }
        let iova = self.check_new_area(dst, flags, length, dst_iova)?;
        let pieces =
            src_pieces.iter().map(|p| Piece { iova: p.iova - src_iova + iova, ..*p }).collect();
        let write = flags & map_flags::WRITEABLE != 0;
        self.add_area(dst, Area { iova, length, user_va, write, pieces })
    }

    /// The host pieces behind `iova..+length` of `ioas`, which must all be mapped; whether all
    /// of it is writable; the user VA it starts at.
    fn mapped_pieces(
        &self,
        ioas: ObjectId,
        iova: u64,
        length: u64,
    ) -> Result<(Vec<Piece>, bool, u64), UapiError> {
        let areas = &self.ioas(ioas)?.areas;
        let not = UapiError::NotMapped { iova, length };
        let end = iova.checked_add(length).ok_or(UapiError::Overflow { start: iova, length })?;
        if length == 0 {
            return Err(not);
        }
        let mut out = Vec::new();
        let mut write = true;
        let mut user_va = None;
        let mut at = iova;
        while at < end {
            let (_, a) = areas
                .range(..=at)
                .next_back()
                .filter(|(_, a)| at - a.iova < a.length)
                .ok_or_else(|| not.clone())?;
            write &= a.write;
            user_va.get_or_insert(a.user_va + (at - a.iova));
            for p in &a.pieces {
                let (s, e) = (p.iova.max(at), (p.iova + p.len).min(end));
                if s < e {
                    out.push(Piece { iova: s, hpa: p.hpa + (s - p.iova), len: e - s });
                }
            }
            at = a.iova + a.length;
        }
        Ok((out, write, user_va.unwrap_or(0)))
    }

    /// `IOMMU_IOAS_UNMAP`: unmaps every area inside `iova..+length` (0 and `u64::MAX`:
    /// everything); an area reaching outside the range is ENOENT. Returns the bytes unmapped.
    pub fn ioas_unmap(&mut self, ioas: ObjectId, iova: u64, length: u64) -> Result<u64, UapiError> {
        let areas = &self.ioas(ioas)?.areas;
        let last = if iova == 0 && length == u64::MAX {
            u64::MAX
        } else {
            if length == 0 {
                return Err(UapiError::Invalid { field: "length", value: 0, why: "empty" });
            }
            iova.checked_add(length - 1).ok_or(UapiError::Overflow { start: iova, length })?
        };
        if iova == 0 && length == u64::MAX && areas.is_empty() {
            // Unmapping everything of an empty IOAS succeeds.
            return Ok(0);
        }
        let mut victims = Vec::new();
        for a in areas.values() {
            let a_last = a.iova + (a.length - 1);
            if a_last < iova || a.iova > last {
                continue;
            }
            if a.iova < iova || a_last > last {
                return Err(UapiError::NotMapped { iova, length });
            }
            victims.push(a.clone());
        }
        if victims.is_empty() {
            return Err(UapiError::NotMapped { iova, length });
        }
        let hwpts = self.hwpts_of(ioas);
        let mut done: Vec<(DomainId, &Area)> = Vec::new();
        for a in &victims {
            for (_, domain) in &hwpts {
                if let Err(e) = self.core("unmap", |i| i.unmap(*domain, a.iova, a.length)) {
                    // Map back what this call took: the IOAS keeps every area (unmap leaves
                    // the emptied tables in place, so the same entries are written again).
                    self.undo(|s| {
                        for (d, a) in &done {
                            let _ = s.map_area(*d, a);
                        }
                    });
                    return Err(e);
                }
                done.push((*domain, a));
            }
        }
        let mut bytes = 0;
        for a in &victims {
            if let Some(Object::Ioas(i)) = self.objects.get_mut(&ioas) {
                i.areas.remove(&a.iova);
            }
            bytes += a.length;
        }
        Ok(bytes)
    }

    // --- HWPT -------------------------------------------------------------------------------

    /// `IOMMU_HWPT_ALLOC`: a paging HWPT from an IOAS, a nested HWPT over a NEST_PARENT HWPT
    /// (VT-d) or on a vIOMMU (SMMUv3).
    pub fn hwpt_alloc(&mut self, a: &HwptAlloc) -> Result<ObjectId, UapiError> {
        let known = hwpt_flags::NEST_PARENT
            | hwpt_flags::DIRTY_TRACKING
            | hwpt_flags::FAULT_ID_VALID
            | hwpt_flags::PASID;
        if a.flags & !known != 0 {
            return Err(UapiError::Flags {
                call: "HWPT_ALLOC",
                flags: u64::from(a.flags & !known),
            });
        }
        if a.data.data_type == data_type::NONE && !a.data.bytes.is_empty() {
            return Err(UapiError::Invalid {
                field: "data_len",
                value: a.data.bytes.len() as u64,
                why: "data without a data type",
            });
        }
        if a.data.data_type != data_type::NONE && a.data.bytes.is_empty() {
            return Err(UapiError::Invalid {
                field: "data_len",
                value: 0,
                why: "a data type without data",
            });
        }
        let dev = self.device(a.dev_id)?.clone();
        let both = hwpt_flags::NEST_PARENT | hwpt_flags::FAULT_ID_VALID;
        if a.flags & both == both {
            // A nesting parent's stage-2 faults are the host's, never a fault queue's.
            return Err(UapiError::Flags { call: "HWPT_ALLOC", flags: u64::from(a.flags) });
        }
        let fault = if a.flags & hwpt_flags::FAULT_ID_VALID != 0 {
            match self.get(a.fault_id, "fault queue")? {
                Object::Fault(_) => Some(a.fault_id),
                _ => return Err(UapiError::NoSuchObject { id: a.fault_id, needs: "fault queue" }),
            }
        } else {
            None
        };
        let pt = self.get(a.pt_id, "IOAS, HWPT or vIOMMU")?.clone();
        match pt {
            Object::Ioas(ioas) => self.alloc_paging(a, &dev, &ioas, fault),
            Object::HwptPaging(parent) => self.alloc_vtd_nested(a, &dev, &parent, fault),
            Object::Viommu(v) => self.alloc_smmu_nested(a, &dev, &v, fault),
            Object::HwptNested(_) => Err(UapiError::NestedOnNested(a.pt_id)),
            other => Err(UapiError::WrongObject {
                id: a.pt_id,
                is: other.kind(),
                what: "a HWPT's page table",
            }),
        }
    }

    fn alloc_paging(
        &mut self,
        a: &HwptAlloc,
        dev: &Device,
        ioas: &Ioas,
        fault: Option<ObjectId>,
    ) -> Result<ObjectId, UapiError> {
        if a.data.data_type != data_type::NONE {
            return Err(UapiError::Type { what: "paging HWPT data", value: a.data.data_type });
        }
        if a.flags & hwpt_flags::DIRTY_TRACKING != 0 {
            return Err(UapiError::Unsupported("track dirty pages"));
        }
        let nest_parent = a.flags & hwpt_flags::NEST_PARENT != 0;
        let caps = self.iommu.driver(dev.unit)?.caps().clone();
        if nest_parent && !caps.nesting {
            return Err(UapiError::Unsupported("nest a stage 1 over stage 2"));
        }
        if a.flags & hwpt_flags::PASID != 0 && caps.pasid_bits == 0 {
            return Err(UapiError::Unsupported("attach PASIDs"));
        }
        // The new domain's aperture must hold every mapping of the IOAS.
        let top = 1u64.checked_shl(u32::from(caps.ias_bits)).unwrap_or(u64::MAX);
        if let Some(area) = ioas.areas.values().find(|ar| ar.iova.saturating_add(ar.length) > top) {
            return Err(UapiError::Aperture(area.iova));
        }
        let kind = DomainKind::Paging { nesting_parent: nest_parent, flush: FlushPolicy::Strict };
        let (id, domain) = self.reserve_domain(dev.unit, kind)?;
        let hwpt = HwptPaging {
            ioas: a.pt_id,
            domain,
            unit: dev.unit,
            nest_parent,
            pasid: a.flags & hwpt_flags::PASID != 0,
            fault,
        };
        let mut mapped = Vec::new();
        for area in ioas.areas.values() {
            match self.map_area(domain, area) {
                Ok(undo) => mapped.extend(undo),
                Err(e) => {
                    // The areas mapped so far, tables included (map_area undid its own
                    // part), then the domain: its root page goes back as it came, zeroed.
                    self.undo_maps(mapped);
                    let _ = self.iommu.free_domain(domain);
                    self.abort(id);
                    return Err(e);
                }
            }
        }
        self.objects.insert(id, Object::HwptPaging(hwpt));
        Ok(id)
    }

    fn alloc_vtd_nested(
        &mut self,
        a: &HwptAlloc,
        dev: &Device,
        parent: &HwptPaging,
        fault: Option<ObjectId>,
    ) -> Result<ObjectId, UapiError> {
        let model = self.iommu.driver(dev.unit)?.caps().model;
        // iommufd_hwpt_nested_alloc(): flags, then the parent, then the driver's data.
        if a.flags & !(hwpt_flags::FAULT_ID_VALID | hwpt_flags::PASID) != 0
            || a.data.bytes.is_empty()
        {
            return Err(UapiError::Flags {
                call: "HWPT_ALLOC (nested)",
                flags: u64::from(a.flags),
            });
        }
        if model != Model::Vtd {
            // SMMUv3 nests only on a vIOMMU.
            return Err(UapiError::Unsupported("allocate a nested HWPT without a vIOMMU"));
        }
        if !parent.nest_parent {
            return Err(UapiError::NotNestParent(a.pt_id));
        }
        if parent.unit != dev.unit {
            return Err(UapiError::WrongUnit { device: dev.id.clone(), object: a.pt_id });
        }
        if a.data.data_type != data_type::VTD_S1 {
            return Err(UapiError::Type { what: "nested HWPT data", value: a.data.data_type });
        }
        let data = data::decode_vtd_s1(&a.data)?;
        let NestedData::VtdS1 { flags, pgtbl_addr, addr_width } = data else {
            return Err(UapiError::Type { what: "nested HWPT data", value: a.data.data_type });
        };
        // WPE is taken either way: it governs supervisor writes only (§9.6), and without SRE
        // the host blocks every supervisor request (5Dh), so the host's entry (WPE set)
        // translates exactly as the guest's.
        if flags & !vtd_s1_flags::WPE != 0 {
            // DEVIATION: the core's stage-1 configuration carries no SRE / EAFE yet.
            return Err(UapiError::Unsupported("take SRE or EAFE for a nested first stage"));
        }
        let levels = if addr_width == 57 { 5 } else { 4 };
        let format = Stage1Format::X86 { levels };
        if !self.iommu.driver(dev.unit)?.caps().runs(format) {
            return Err(UapiError::Unsupported("walk a first stage that wide"));
        }
        let s1 = Stage1Config { format, root: pgtbl_addr, asid: 0 };
        let kind = DomainKind::Nested { parent: parent.domain, s1 };
        let (id, domain) = self.reserve_domain(dev.unit, kind)?;
        self.objects.insert(
            id,
            Object::HwptNested(HwptNested {
                parent: a.pt_id,
                viommu: None,
                unit: dev.unit,
                pasid: a.flags & hwpt_flags::PASID != 0,
                data,
                domain: Some(domain),
                fault,
            }),
        );
        Ok(id)
    }

    fn alloc_smmu_nested(
        &mut self,
        a: &HwptAlloc,
        dev: &Device,
        v: &Viommu,
        fault: Option<ObjectId>,
    ) -> Result<ObjectId, UapiError> {
        // iommufd_viommu_alloc_hwpt_nested() keeps FAULT_ID_VALID; arm_vsmmu_alloc_domain_nested()
        // takes no other flag.
        if a.flags & !hwpt_flags::FAULT_ID_VALID != 0 {
            return Err(UapiError::Flags {
                call: "HWPT_ALLOC (vIOMMU)",
                flags: u64::from(a.flags),
            });
        }
        if v.unit != dev.unit {
            return Err(UapiError::WrongUnit { device: dev.id.clone(), object: a.pt_id });
        }
        if a.data.data_type != data_type::ARM_SMMUV3 {
            return Err(UapiError::Type { what: "vIOMMU HWPT data", value: a.data.data_type });
        }
        let data = data::decode_smmuv3(&a.data)?;
        self.insert(Object::HwptNested(HwptNested {
            parent: v.hwpt,
            viommu: Some(a.pt_id),
            unit: dev.unit,
            pasid: false,
            data,
            domain: None,
            fault,
        }))
    }

    // --- vIOMMU, vDEVICE, queues ------------------------------------------------------------

    /// `IOMMU_VIOMMU_ALLOC`: the VM's slice of the device's SMMUv3 over a nesting parent.
    pub fn viommu_alloc(
        &mut self,
        flags: u32,
        kind: u32,
        dev_id: ObjectId,
        hwpt_id: ObjectId,
    ) -> Result<ObjectId, UapiError> {
        if flags != 0 {
            return Err(UapiError::Flags { call: "VIOMMU_ALLOC", flags: u64::from(flags) });
        }
        let dev = self.device(dev_id)?.clone();
        let hwpt = self.paging(hwpt_id)?.clone();
        if kind != TYPE_ARM_SMMUV3 {
            return Err(UapiError::Type { what: "vIOMMU", value: kind });
        }
        let caps = self.iommu.driver(dev.unit)?.caps().clone();
        if caps.model != Model::Smmuv3 || !caps.nesting {
            return Err(UapiError::Unsupported("host an SMMUv3 vIOMMU"));
        }
        if !hwpt.nest_parent {
            return Err(UapiError::NotNestParent(hwpt_id));
        }
        if hwpt.unit != dev.unit {
            return Err(UapiError::WrongUnit { device: dev.id, object: hwpt_id });
        }
        self.insert(Object::Viommu(Viommu { hwpt: hwpt_id, unit: dev.unit }))
    }

    /// `IOMMU_VDEVICE_ALLOC`: `virt_id` names the device on the vIOMMU (its virtual StreamID).
    pub fn vdevice_alloc(
        &mut self,
        viommu_id: ObjectId,
        dev_id: ObjectId,
        virt_id: u64,
    ) -> Result<ObjectId, UapiError> {
        let v = self.viommu(viommu_id)?.clone();
        let dev = self.device(dev_id)?.clone();
        if v.unit != dev.unit {
            return Err(UapiError::WrongUnit { device: dev.id, object: viommu_id });
        }
        for o in self.objects.values() {
            if let Object::Vdevice(vd) = o {
                if vd.device == dev_id {
                    return Err(UapiError::VdeviceExists(dev.id.to_string()));
                }
                if vd.viommu == viommu_id && vd.virt_id == virt_id {
                    return Err(UapiError::VdeviceExists(format!("virtual ID {virt_id:#x}")));
                }
            }
        }
        self.insert(Object::Vdevice(Vdevice { viommu: viommu_id, device: dev_id, virt_id }))
    }

    /// `IOMMU_FAULT_QUEUE_ALLOC`: page requests of the devices on the HWPTs allocated with it
    /// (`handle_host_events`, `fault_read`, `fault_respond`).
    pub fn fault_queue_alloc(&mut self, flags: u32) -> Result<ObjectId, UapiError> {
        if flags != 0 {
            return Err(UapiError::Flags { call: "FAULT_QUEUE_ALLOC", flags: u64::from(flags) });
        }
        self.insert(Object::Fault(FaultQueue::default()))
    }

    /// `IOMMU_VEVENTQ_ALLOC`: one per type and vIOMMU, holding `depth` events
    /// (`handle_host_events`, `veventq_read`).
    pub fn veventq_alloc(
        &mut self,
        flags: u32,
        viommu_id: ObjectId,
        kind: u32,
        depth: u32,
    ) -> Result<ObjectId, UapiError> {
        if flags != 0 {
            return Err(UapiError::Flags { call: "VEVENTQ_ALLOC", flags: u64::from(flags) });
        }
        self.viommu(viommu_id)?;
        if kind != TYPE_ARM_SMMUV3 {
            return Err(UapiError::Type { what: "vEVENTQ", value: kind });
        }
        if depth == 0 {
            return Err(UapiError::Invalid { field: "veventq_depth", value: 0, why: "empty" });
        }
        let exists = self
            .objects
            .values()
            .any(|o| matches!(o, Object::Veventq(q) if q.viommu == viommu_id && q.kind == kind));
        if exists {
            return Err(UapiError::VeventqExists(viommu_id));
        }
        self.insert(Object::Veventq(Veventq {
            viommu: viommu_id,
            kind,
            depth,
            deliver: VecDeque::new(),
            sequence: 0,
            lost: 0,
            reported: 0,
        }))
    }

    // --- destroy ----------------------------------------------------------------------------

    /// Who holds `id`: the objects that would dangle without it.
    pub fn users(&self, id: ObjectId) -> Vec<ObjectId> {
        let mut out: BTreeSet<ObjectId> = BTreeSet::new();
        for ((dev, _), hwpt) in &self.attached {
            if *hwpt == id {
                out.insert(*dev);
            }
        }
        for (oid, o) in &self.objects {
            let uses = match o {
                Object::HwptPaging(h) => h.ioas == id || h.fault == Some(id),
                Object::HwptNested(n) => {
                    (n.viommu.is_none() && n.parent == id)
                        || n.viommu == Some(id)
                        || n.fault == Some(id)
                }
                Object::Viommu(v) => v.hwpt == id,
                Object::Vdevice(v) => v.viommu == id || v.device == id,
                Object::Veventq(q) => q.viommu == id,
                _ => false,
            };
            if uses {
                out.insert(*oid);
            }
        }
        out.into_iter().collect()
    }

    /// `IOMMU_DESTROY`: refused (EBUSY) while anything uses the object.
    pub fn destroy(&mut self, id: ObjectId) -> Result<(), UapiError> {
        let obj = self.get(id, "object")?.clone();
        if matches!(obj, Object::Device(_)) {
            return Err(UapiError::BoundDevice(id));
        }
        let users = self.users(id);
        if !users.is_empty() {
            return Err(UapiError::InUse { id, users });
        }
        if matches!(obj, Object::Fault(_)) {
            // `iommufd_fault_destroy()`: nothing the queue holds may wait forever.
            self.abandon_groups(id, |_, _| true);
        }
        match obj {
            Object::HwptPaging(h) => self.core("free_domain", |i| i.free_domain(h.domain))?,
            Object::HwptNested(HwptNested { domain: Some(d), .. }) => {
                self.core("free_domain", |i| i.free_domain(d))?
            }
            _ => {}
        }
        self.objects.remove(&id);
        Ok(())
    }

    // --- attach -----------------------------------------------------------------------------

    /// Attaches a device (at a PASID) to a HWPT. A second attach is refused: EINVAL without
    /// PASID (replace instead), EBUSY at a PASID.
    pub fn attach(
        &mut self,
        dev_id: ObjectId,
        pasid: Option<u32>,
        hwpt: ObjectId,
    ) -> Result<(), UapiError> {
        self.change(dev_id, pasid, hwpt, false)
    }

    /// Replaces the HWPT a device (at a PASID) is attached to; a refused replace keeps the old
    /// one.
    pub fn replace(
        &mut self,
        dev_id: ObjectId,
        pasid: Option<u32>,
        hwpt: ObjectId,
    ) -> Result<(), UapiError> {
        self.change(dev_id, pasid, hwpt, true)
    }

    /// Bound devices of the same IOMMU group as `dev`, itself excluded.
    fn group_peers(&self, dev_id: ObjectId, dev: &DeviceId) -> Vec<ObjectId> {
        let members =
            self.iommu.topology().group_of(dev).map(|g| g.members.clone()).unwrap_or_default();
        self.objects
            .iter()
            .filter_map(|(id, o)| match o {
                Object::Device(d) if *id != dev_id && members.contains(&d.id) => Some(*id),
                _ => None,
            })
            .collect()
    }

    fn change(
        &mut self,
        dev_id: ObjectId,
        pasid: Option<u32>,
        hwpt_id: ObjectId,
        replace: bool,
    ) -> Result<(), UapiError> {
        let dev = self.device(dev_id)?.clone();
        let hwpt = self.get(hwpt_id, "HWPT")?.clone();
        let (unit, pasid_ok) = match &hwpt {
            Object::HwptPaging(h) => (h.unit, h.pasid),
            Object::HwptNested(n) => (n.unit, n.pasid),
            other => {
                return Err(UapiError::WrongObject {
                    id: hwpt_id,
                    is: other.kind(),
                    what: "attached (only HWPTs are)",
                })
            }
        };
        if unit != dev.unit {
            return Err(UapiError::WrongUnit { device: dev.id.clone(), object: hwpt_id });
        }
        // iommufd_hwpt_pasid_compat().
        match pasid {
            Some(p) => {
                let bits = self.pasid_bits(&dev.id, dev.unit);
                if p == 0 || u64::from(p) >= 1u64 << bits {
                    return Err(UapiError::PasidWidth { device: dev.id.clone(), pasid: p, bits });
                }
                if !pasid_ok {
                    return Err(UapiError::PasidIncompatible(hwpt_id));
                }
                if let Some(rid) = self.attached.get(&(dev_id, None)) {
                    if !self.hwpt_pasid(*rid) {
                        return Err(UapiError::PasidIncompatible(*rid));
                    }
                }
            }
            None => {
                let has_pasids = self.attached.keys().any(|(d, p)| *d == dev_id && p.is_some());
                if has_pasids && !pasid_ok {
                    return Err(UapiError::PasidsAttached(dev.id.clone()));
                }
            }
        }
        let old = self.attached.get(&(dev_id, pasid)).copied();
        match (old, replace) {
            (Some(_), false) => {
                return Err(match pasid {
                    Some(p) => UapiError::PasidBusy { device: dev.id.clone(), pasid: p },
                    None => UapiError::AlreadyAttached { device: dev.id.clone(), pasid },
                })
            }
            (None, true) => return Err(UapiError::NotAttached { device: dev.id.clone(), pasid }),
            _ => {}
        }
        if old == Some(hwpt_id) {
            return Ok(());
        }
        // A group moves together: a peer attached elsewhere splits it, unless it moves along.
        let peers: Vec<ObjectId> = self.group_peers(dev_id, &dev.id);
        let mut along = Vec::new();
        let mut joined = false;
        for peer in peers {
            match self.attached.get(&(peer, pasid)) {
                Some(h) if *h == hwpt_id => joined = true,
                Some(h) if replace && Some(*h) == old => along.push(peer),
                Some(_) => {
                    let peer_dev = self.device(peer)?.id.clone();
                    return Err(UapiError::GroupSplit { device: dev.id.clone(), peer: peer_dev });
                }
                None => {}
            }
        }
        if let Object::HwptNested(n) = &hwpt {
            if let Some(v) = n.viommu {
                let has = self.objects.values().any(
                    |o| matches!(o, Object::Vdevice(vd) if vd.viommu == v && vd.device == dev_id),
                );
                if !has {
                    return Err(UapiError::NoVdevice { device: dev.id.clone(), viommu: v });
                }
            }
        }
        // The device's reserved regions may not meet a mapping of the new IOAS.
        if let Some(ioas) = self.ioas_of_hwpt(hwpt_id) {
            let areas = &self.ioas(ioas)?.areas;
            for (r, _) in self.iommu.reserved_regions(&dev.id)? {
                if let Some(a) =
                    areas.values().find(|a| a.iova < r.end && r.start < a.iova + a.length)
                {
                    let _ = a;
                    return Err(UapiError::ReservedInUse {
                        device: dev.id.clone(),
                        start: r.start,
                        end: r.end,
                    });
                }
            }
        }
        if !joined {
            if let Some(o) = old {
                self.leave(&dev.id, pasid, o)?;
                if let Some(p) = pasid {
                    // The core refuses a PASID that is attached (SMMUv3: its CD is live), so
                    // a replace detaches it first; a refused attach re-enters the old HWPT.
                    let target = Target::Device(dev.id.clone());
                    self.core("detach_pasid", |i| i.detach_pasid(&target, Pasid(p)).map(drop))?;
                }
            }
            if let Err(e) = self.enter(&dev.id, pasid, hwpt_id) {
                // A first attach has nothing to go back to: a refused core call changed
                // nothing, and a detach before a refused CD-table bind leaves the device
                // blocked; what that detach set up in the unit (a level-2 Stream table array)
                // goes back, so the device is answered as before.
                match old {
                    Some(_) => self.undo(|s| s.reenter(&dev.id, pasid, old)),
                    None if pasid.is_none() => {
                        let _ = self.iommu.release_unattached(&Target::Device(dev.id.clone()));
                    }
                    None => {}
                }
                return Err(e);
            }
        }
        self.attached.insert((dev_id, pasid), hwpt_id);
        for peer in along {
            self.attached.insert((peer, pasid), hwpt_id);
        }
        if let Some(o) = old {
            self.abandon_handle(&dev.id, pasid, o);
        }
        Ok(())
    }

    /// `dev` (at `pasid`) left `old`: the page request groups `old`'s fault queue holds for it
    /// are answered Invalid (on SMMUv3 a nested RID HWPT takes every PASID's groups).
    fn abandon_handle(&mut self, dev: &DeviceId, pasid: Option<u32>, old: ObjectId) {
        let Some(fq) = self.fault_of(old) else { return };
        let whole = pasid.is_none()
            && matches!(self.objects.get(&old), Some(Object::HwptNested(n)) if n.viommu.is_some());
        self.abandon_groups(fq, |d, p| d == dev && (whole || p == pasid));
    }

    /// Undoes a failed [`enter`](Self::enter) (or what a `leave` before it did): `dev` (at
    /// `pasid`) goes back to `old`, or to nothing.
    fn reenter(&mut self, dev: &DeviceId, pasid: Option<u32>, old: Option<ObjectId>) {
        match old {
            Some(o) => {
                let _ = self.enter(dev, pasid, o);
            }
            None => {
                let target = Target::Device(dev.clone());
                let _ = match pasid {
                    None => self.iommu.detach(&target).map(drop),
                    Some(p) => self.iommu.detach_pasid(&target, Pasid(p)).map(drop),
                };
            }
        }
    }

    fn hwpt_pasid(&self, hwpt: ObjectId) -> bool {
        match self.objects.get(&hwpt) {
            Some(Object::HwptPaging(h)) => h.pasid,
            Some(Object::HwptNested(n)) => n.pasid,
            _ => false,
        }
    }

    /// The core calls that point `dev`'s group (at `pasid`) at `hwpt`.
    fn enter(
        &mut self,
        dev: &DeviceId,
        pasid: Option<u32>,
        hwpt: ObjectId,
    ) -> Result<(), UapiError> {
        let target = Target::Device(dev.clone());
        match self.get(hwpt, "HWPT")?.clone() {
            Object::HwptPaging(h) => match pasid {
                None => self.core("attach", |i| i.attach(h.domain, &target).map(drop))?,
                Some(p) => {
                    self.core("attach_pasid", |i| i.attach_pasid(h.domain, &target, Pasid(p)))?;
                }
            },
            Object::HwptNested(n) => {
                let parent = self.paging(n.parent)?.domain;
                match (n.data, n.domain, pasid) {
                    (_, Some(d), Some(p)) => {
                        self.core("attach_pasid", |i| i.attach_pasid(d, &target, Pasid(p)))?;
                    }
                    // VT-d: the device itself (its RID_PASID entry), as
                    // `intel_nested_attach_dev()`.
                    (_, Some(d), None) => {
                        self.core("attach", |i| i.attach(d, &target).map(drop))?
                    }
                    (NestedData::Smmuv3 { ste, .. }, None, None) => match vste_config(ste) {
                        VsteConfig::Abort => {
                            self.core("detach", |i| i.detach(&target).map(drop))?
                        }
                        VsteConfig::Bypass => {
                            self.core("attach", |i| i.attach(parent, &target).map(drop))?
                        }
                        VsteConfig::CdTable { base, cdmax, fmt } => {
                            let format = match fmt {
                                S1Fmt::Linear => PasidTableFormat::SmmuLinear,
                                S1Fmt::TwoLevel4K => {
                                    PasidTableFormat::SmmuTwoLevel { leaf_lg2: 12 }
                                }
                                S1Fmt::TwoLevel64K => {
                                    PasidTableFormat::SmmuTwoLevel { leaf_lg2: 16 }
                                }
                            };
                            let config = PasidTableConfig {
                                model: Model::Smmuv3,
                                base,
                                pasid_bits: cdmax,
                                format,
                            };
                            // A device nothing is attached to needs no detach first: it
                            // would only make the unit provide its Stream table entry.
                            let topo = self.iommu.topology();
                            let group = topo.group_of(dev).map(|g| g.id);
                            if group.and_then(|g| self.iommu.group_domain(g)).is_some() {
                                self.core("detach", |i| i.detach(&target))?;
                            }
                            self.core("bind_pasid_table", |i| {
                                i.bind_pasid_table(&target, parent, config)
                            })?;
                            // A refused bind leaves the device detached (blocked): the caller
                            // re-enters its old HWPT.
                        }
                    },
                    _ => return Err(UapiError::Unsupported("attach this nested HWPT there")),
                }
            }
            other => {
                return Err(UapiError::WrongObject { id: hwpt, is: other.kind(), what: "attached" })
            }
        }
        Ok(())
    }

    /// The core calls that undo what [`enter`](Self::enter) set up beyond the attach itself
    /// (a bound guest CD table); whether there was any.
    fn leave(
        &mut self,
        dev: &DeviceId,
        pasid: Option<u32>,
        hwpt: ObjectId,
    ) -> Result<bool, UapiError> {
        if let (None, Some(Object::HwptNested(n))) = (pasid, self.objects.get(&hwpt)) {
            if let NestedData::Smmuv3 { ste, .. } = n.data {
                if matches!(vste_config(ste), VsteConfig::CdTable { .. }) {
                    let target = Target::Device(dev.clone());
                    self.core("unbind_pasid_table", |i| i.unbind_pasid_table(&target))?;
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Detaches a device (at a PASID): its requests are blocked. Detaching what is not
    /// attached does nothing (VFIO's detach succeeds).
    pub fn detach(&mut self, dev_id: ObjectId, pasid: Option<u32>) -> Result<(), UapiError> {
        let dev = self.device(dev_id)?.clone();
        let Some(old) = self.attached.get(&(dev_id, pasid)).copied() else {
            return Ok(());
        };
        let shared = self
            .group_peers(dev_id, &dev.id)
            .into_iter()
            .any(|p| self.attached.get(&(p, pasid)) == Some(&old));
        if !shared {
            let left = self.leave(&dev.id, pasid, old)?;
            let target = Target::Device(dev.id.clone());
            let detached = match pasid {
                None => self.core("detach", |i| i.detach(&target).map(drop)),
                Some(p) => {
                    self.core("detach_pasid", |i| i.detach_pasid(&target, Pasid(p)).map(drop))
                }
            };
            if let Err(e) = detached {
                // `leave` unbound a guest CD table: the old HWPT comes back whole. Otherwise
                // the refused core call changed nothing.
                if left {
                    self.undo(|s| s.reenter(&dev.id, pasid, Some(old)));
                }
                return Err(e);
            }
        }
        self.attached.remove(&(dev_id, pasid));
        self.abandon_handle(&dev.id, pasid, old);
        Ok(())
    }

    // --- invalidate -------------------------------------------------------------------------

    /// `IOMMU_HWPT_INVALIDATE` on a nested HWPT (VT-d) or a vIOMMU (SMMUv3). Returns how many
    /// entries were handled; a refused entry stops the array (`UapiError::Entry`).
    pub fn invalidate(&mut self, id: ObjectId, array: &InvalidateArray) -> Result<u32, UapiError> {
        if array.entry_len == 0 && !array.bytes.is_empty() {
            return Err(UapiError::Invalid {
                field: "entry_len",
                value: 0,
                why: "entries of no length",
            });
        }
        match self.get(id, "nested HWPT or vIOMMU")?.clone() {
            Object::HwptNested(HwptNested { domain: Some(domain), .. }) => {
                if array.data_type != invalidate_type::VTD_S1 {
                    return Err(UapiError::Invalid {
                        field: "data_type",
                        value: u64::from(array.data_type),
                        why: "not this HWPT's",
                    });
                }
                self.invalidate_vtd(id, domain, array)
            }
            Object::HwptNested(_) => Err(UapiError::Unsupported(
                "invalidate a vIOMMU's nested HWPT (invalidate the vIOMMU)",
            )),
            Object::Viommu(_) => {
                if array.data_type != invalidate_type::ARM_SMMUV3 {
                    return Err(UapiError::Invalid {
                        field: "data_type",
                        value: u64::from(array.data_type),
                        why: "not this vIOMMU's",
                    });
                }
                self.invalidate_viommu(id, array)
            }
            other => Err(UapiError::WrongObject { id, is: other.kind(), what: "invalidated" }),
        }
    }

    fn invalidate_vtd(
        &mut self,
        hwpt: ObjectId,
        domain: DomainId,
        array: &InvalidateArray,
    ) -> Result<u32, UapiError> {
        // Every PASID the HWPT is attached at; `None`: a device's requests without PASID
        // (VT-d RID_PASID), as `cache_tag_flush_range()` flushes each tag of the domain.
        let pasids: BTreeSet<Option<u32>> =
            self.attached.iter().filter(|(_, h)| **h == hwpt).map(|((_, p), _)| *p).collect();
        let n = array.entry_num();
        for i in 0..n {
            let entry_err =
                |source: UapiError| UapiError::Entry { handled: i, source: Box::new(source) };
            let (e, reserved) = array.vtd_entry(i).map_err(entry_err)?;
            if e.flags & !VTD_INV_FLAGS_LEAF != 0 || reserved != 0 {
                return Err(entry_err(UapiError::Flags {
                    call: "VT-d invalidation entry",
                    flags: u64::from(e.flags),
                }));
            }
            if e.addr % IOVA_ALIGNMENT != 0 || (e.npages == u64::MAX && e.addr != 0) {
                return Err(entry_err(UapiError::Invalid {
                    field: "addr",
                    value: e.addr,
                    why: "not 4K aligned, or not 0 with npages = U64_MAX",
                }));
            }
            if e.npages == 0 {
                continue;
            }
            let end = e.npages.checked_mul(IOVA_ALIGNMENT).and_then(|b| e.addr.checked_add(b));
            let leaf = e.flags & VTD_INV_FLAGS_LEAF != 0;
            let granularity = match end {
                Some(end) if e.npages != u64::MAX => Granularity::Addr { range: e.addr..end, leaf },
                // Everything (or a range past the top: everything too).
                _ => Granularity::Pasid,
            };
            for p in &pasids {
                // The IOTLB, then the device TLBs of devices with ATS (as the kernel does).
                for cache in [CacheKind::Iotlb, CacheKind::DevIotlb] {
                    let granularity = match (p, &granularity, cache) {
                        // Everything without PASID: the domain's IOTLB entries, and the whole
                        // device TLBs (the core takes those by address only).
                        (None, Granularity::Pasid, CacheKind::DevIotlb) => {
                            Granularity::Addr { range: 0..!(IOVA_ALIGNMENT - 1), leaf: false }
                        }
                        (None, Granularity::Pasid, _) => Granularity::Domain,
                        (_, g, _) => g.clone(),
                    };
                    let info =
                        InvalidateInfo { cache, granularity, pasid: p.map(Pasid), arch_id: None };
                    self.core("invalidate", |i| i.invalidate(&Target::Domain(domain), &info))
                        .map_err(entry_err)?;
                }
            }
        }
        Ok(n)
    }

    /// The device a vIOMMU's vDEVICE with `virt_id` stands for.
    fn vsid_device(&self, viommu: ObjectId, virt_id: u64) -> Result<DeviceId, UapiError> {
        let dev = self.objects.values().find_map(|o| match o {
            Object::Vdevice(v) if v.viommu == viommu && v.virt_id == virt_id => Some(v.device),
            _ => None,
        });
        let dev = dev.ok_or(UapiError::UnknownVsid(virt_id))?;
        Ok(self.device(dev)?.id.clone())
    }

    /// A device whose RID uses a guest CD table of the vIOMMU (its TLB entries carry the
    /// parent's VMID).
    fn cd_table_device(&self, viommu: ObjectId) -> Result<Option<DeviceId>, UapiError> {
        for ((dev, pasid), hwpt) in &self.attached {
            if let (None, Some(Object::HwptNested(n))) = (pasid, self.objects.get(hwpt)) {
                if let (Some(v), NestedData::Smmuv3 { ste, .. }) = (n.viommu, n.data) {
                    if v == viommu && matches!(vste_config(ste), VsteConfig::CdTable { .. }) {
                        return Ok(Some(self.device(*dev)?.id.clone()));
                    }
                }
            }
        }
        Ok(None)
    }

    fn invalidate_viommu(
        &mut self,
        viommu: ObjectId,
        array: &InvalidateArray,
    ) -> Result<u32, UapiError> {
        let n = array.entry_num();
        for i in 0..n {
            let entry_err =
                |source: UapiError| UapiError::Entry { handled: i, source: Box::new(source) };
            let cmd = array.smmu_entry(i).map_err(entry_err)?;
            let guest = convert_command(&cmd).map_err(entry_err)?;
            // The VMID is the parent's (forced by the core); a vSID becomes the SID.
            let (target, info) = match guest {
                GuestCommand::VmAll | GuestCommand::Asid(_) | GuestCommand::Va { .. } => {
                    let Some(dev) = self.cd_table_device(viommu)? else { continue };
                    let (granularity, arch_id) = match guest {
                        GuestCommand::Asid(a) => (Granularity::Domain, Some(u32::from(a))),
                        GuestCommand::Va { asid, range, leaf } => {
                            (Granularity::Addr { range, leaf }, Some(u32::from(asid)))
                        }
                        _ => (Granularity::Domain, None),
                    };
                    (
                        Target::Device(dev),
                        InvalidateInfo {
                            cache: CacheKind::Iotlb,
                            granularity,
                            pasid: None,
                            arch_id,
                        },
                    )
                }
                GuestCommand::Atc { vsid, ssid, range } => {
                    let dev = self.vsid_device(viommu, vsid).map_err(entry_err)?;
                    let pasid = ssid.filter(|s| *s != 0).map(Pasid);
                    let g = Granularity::Addr { range, leaf: false };
                    (
                        Target::Device(dev),
                        InvalidateInfo {
                            cache: CacheKind::DevIotlb,
                            granularity: g,
                            pasid,
                            arch_id: None,
                        },
                    )
                }
                GuestCommand::Cd { vsid, ssid } => {
                    let dev = self.vsid_device(viommu, vsid).map_err(entry_err)?;
                    // IMPDEF: CD 0 is invalidated with all of the device's CDs (the core names
                    // PASID 0 by no PASID).
                    let (granularity, pasid) = match ssid.filter(|s| *s != 0) {
                        Some(p) => (Granularity::Pasid, Some(Pasid(p))),
                        None => (Granularity::Domain, None),
                    };
                    (
                        Target::Device(dev),
                        InvalidateInfo {
                            cache: CacheKind::Pasid,
                            granularity,
                            pasid,
                            arch_id: None,
                        },
                    )
                }
            };
            match self.core("invalidate", |i| i.invalidate(&target, &info)) {
                Ok(_) => {}
                // Nothing attached there caches anything: nothing to do.
                Err(UapiError::Core(
                    CoreError::BadInvalidation(_) | CoreError::PasidNotAttached { .. },
                )) => {}
                Err(e) => return Err(entry_err(e)),
            }
        }
        Ok(n)
    }

    // --- devices' DMA, the hardware's state -------------------------------------------------

    /// One DMA from `dev` (its own request ID, with `pasid`) to `addr`, answered by the unit's
    /// hardware model.
    pub fn dma(
        &self,
        dev: &DeviceId,
        pasid: Option<u32>,
        addr: u64,
        access: DmaAccess,
    ) -> Result<DmaResult, UapiError> {
        let unit = self
            .iommu
            .topology()
            .device(dev)
            .ok_or_else(|| CoreError::NoSuchDevice(dev.clone()))?
            .unit;
        let id = self
            .iommu
            .request_ids(dev)?
            .first()
            .copied()
            .ok_or_else(|| CoreError::NoSuchDevice(dev.clone()))?;
        Ok(self.iommu.driver(unit)?.dma(id, pasid.map(Pasid), addr, access))
    }

    /// Every byte of host memory and every unit's registers.
    pub fn hardware_snapshot(&self) -> HardwareSnapshot {
        let mut memory = Vec::new();
        for (start, len) in self.mem.regions() {
            let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
            if self.mem.read(start, &mut buf).is_ok() {
                memory.push((start.0, buf));
            }
        }
        let mut registers = Vec::new();
        for u in self.iommu.topology().units() {
            let Ok(drv) = self.iommu.driver(u.id) else { continue };
            let any = drv.as_any();
            let regs: Vec<u32> =
                if let Some(v) = any.downcast_ref::<sviommu_core::arch::vtd::VtdUnit>() {
                    (0..0x2000u64).step_by(4).map(|o| read32(v.hw().mmio_read(o, 4))).collect()
                } else if let Some(s) = any.downcast_ref::<sviommu_core::arch::smmuv3::SmmuUnit>() {
                    (0..2 * sviommu_smmuv3::spec::regs::PAGE_BYTES)
                        .step_by(4)
                        .map(|o| read32(s.hw().mmio_read(o, 4)))
                        .collect()
                } else {
                    Vec::new()
                };
            registers.push((u.id, regs));
        }
        HardwareSnapshot { memory, registers }
    }

    /// Writes `bytes` at host physical `hpa` (the VMM writing its own memory).
    pub fn write_host(&self, hpa: u64, bytes: &[u8]) -> Result<(), UapiError> {
        self.mem
            .write(Hpa(hpa), bytes)
            .map_err(|_| UapiError::BadUserVa { user_va: hpa, length: bytes.len() as u64 })
    }
}

fn read32(v: u64) -> u32 {
    u32::try_from(v & u64::from(u32::MAX)).unwrap_or(0)
}

/// The intersection of two sorted lists of inclusive ranges.
fn intersect(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(s1, l1) in a {
        for &(s2, l2) in b {
            let (s, l) = (s1.max(s2), l1.min(l2));
            if s <= l {
                out.push((s, l));
            }
        }
    }
    out.sort_unstable();
    out
}

/// `ranges` less the inclusive range `hole`.
fn subtract(ranges: &[(u64, u64)], hole: (u64, u64)) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(s, l) in ranges {
        if hole.1 < s || hole.0 > l {
            out.push((s, l));
            continue;
        }
        if hole.0 > s {
            out.push((s, hole.0 - 1));
        }
        if hole.1 < l {
            out.push((hole.1 + 1, l));
        }
    }
    out
}
