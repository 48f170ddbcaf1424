//! Root and context entries (§9.1–§9.4): the context tables the driver allocates on demand, and
//! where each requester's context entry lives.

use std::collections::BTreeMap;

use sviommu_memory::{Address, PhysMemory};

use super::{offset, DeviceFeatures, DriverError, Feature, Mmio, Mode, VtdDriver};
use crate::spec::root::{self, ContextEntry, RootEntry, ScalableContextEntry, ScalableRootEntry};

/// The context tables, by bus and half (legacy mode uses the lower half only), and what the
/// driver knows of each device.
#[derive(Debug)]
pub(super) struct ContextTables<A> {
    pub(super) tables: BTreeMap<(u8, bool), A>,
    pub(super) devices: BTreeMap<u16, Device<A>>,
}

impl<A> Default for ContextTables<A> {
    fn default() -> Self {
        Self { tables: BTreeMap::new(), devices: BTreeMap::new() }
    }
}

/// One requester: its features and, in scalable mode, its PASID directory and tables.
#[derive(Debug)]
pub(super) struct Device<A> {
    pub(super) features: DeviceFeatures,
    /// Whether its context entry is present.
    pub(super) context_present: bool,
    /// The PASID directory (scalable mode) and its PDTS.
    pub(super) pasid_dir: Option<(A, u8)>,
    /// The PASID tables, by directory index.
    pub(super) pasid_tables: BTreeMap<u32, A>,
}

impl<A> Device<A> {
    /// A device with nothing set up.
    pub(super) fn new() -> Self {
        Self {
            features: DeviceFeatures::default(),
            context_present: false,
            pasid_dir: None,
            pasid_tables: BTreeMap::new(),
        }
    }
}

/// The bus, the half of a scalable-mode root entry (`true`: upper, devfn 128–255), and the
/// entry's index in its context table.
fn place(mode: Mode, rid: u16) -> (u8, bool, u64) {
    let [bus, devfn] = rid.to_be_bytes();
    match mode {
        Mode::Legacy => (bus, false, u64::from(devfn)),
        Mode::Scalable => (
            bus,
            ScalableRootEntry::is_upper(devfn),
            u64::from(root::scalable_context_index(devfn)),
        ),
    }
}

impl<R: Mmio, M: PhysMemory> VtdDriver<R, M> {
    /// Bytes of a context entry in the driver's mode.
    pub(super) fn context_entry_bytes(&self) -> u64 {
        match self.mode {
            Mode::Legacy => ContextEntry::BYTES,
            Mode::Scalable => ScalableContextEntry::BYTES,
        }
    }

    /// Where `rid`'s context entry is, if its context table exists.
    pub fn context_entry_addr(&self, rid: u16) -> Option<M::Addr> {
        let (bus, upper, index) = place(self.mode, rid);
        let table = *self.contexts.tables.get(&(bus, upper))?;
        offset(table, index * self.context_entry_bytes()).ok()
    }

    /// Whether `rid`'s context table has yet to be allocated.
    pub(super) fn context_table_missing(&self, rid: u16) -> bool {
        let (bus, upper, _) = place(self.mode, rid);
        !self.contexts.tables.contains_key(&(bus, upper))
    }

    /// `rid`'s context entry in `new_table` (a table allocated for it, not yet linked) or in
    /// the table it has.
    pub(super) fn context_entry_in(
        &self,
        new_table: Option<M::Addr>,
        rid: u16,
    ) -> Result<M::Addr, DriverError> {
        let (bus, upper, index) = place(self.mode, rid);
        let table = new_table
            .or_else(|| self.contexts.tables.get(&(bus, upper)).copied())
            .ok_or(DriverError::Memory(sviommu_memory::MemoryError::Outside { addr: 0, len: 0 }))?;
        offset(table, index * self.context_entry_bytes())
    }

    /// Records and links a new context table into its root entry (present last: the root entry
    /// of a legacy bus, or the half of a scalable-mode one, is one word).
    pub(super) fn link_context_table(
        &mut self,
        rid: u16,
        table: M::Addr,
    ) -> Result<(), DriverError> {
        let (bus, upper, _) = place(self.mode, rid);
        let at = offset(self.root, u64::from(bus) * RootEntry::BYTES)?;
        match self.mode {
            Mode::Legacy => {
                let mut re = RootEntry::default();
                re.set_ctp(table.raw());
                re.set_p(true);
                self.write_present(at, &re.words())?;
            }
            Mode::Scalable => {
                let mut re = ScalableRootEntry::default();
                if upper {
                    re.set_uctp(table.raw());
                    re.set_up(true);
                    let [_, hi] = re.words();
                    self.mem.write_u64(offset(at, 8)?, hi)?;
                } else {
                    re.set_lctp(table.raw());
                    re.set_lp(true);
                    let [lo, _] = re.words();
                    self.mem.write_u64(at, lo)?;
                }
            }
        }
        self.contexts.tables.insert((bus, upper), table);
        Ok(())
    }

    /// The scalable-mode context entry of a device with PASID directory `dir` of `pdts`.
    pub(super) fn scalable_context(
        &self,
        dir: M::Addr,
        pdts: u8,
        f: DeviceFeatures,
    ) -> ScalableContextEntry {
        let mut ce = ScalableContextEntry::default();
        ce.set_pasiddirptr(dir.raw());
        ce.set_pdts(pdts);
        ce.set_paside(self.caps.pasid);
        ce.set_dte(f.ats);
        ce.set_pre(f.page_requests);
        ce.set_rid_pasid(super::RID_PASID);
        ce.set_p(true);
        ce
    }

    /// Sets what `rid`'s context entry will enable (ATS, page requests). Only before the
    /// device's first attach: a context entry the unit may have cached is not rewritten for it.
    pub fn set_device_features(
        &mut self,
        rid: u16,
        features: DeviceFeatures,
    ) -> Result<(), DriverError> {
        if features.ats && !self.caps.device_tlb {
            return Err(DriverError::Unsupported(Feature::DeviceTlb));
        }
        if features.page_requests && self.prq.is_none() {
            return Err(DriverError::Unsupported(Feature::PageRequests));
        }
        if self.contexts.devices.get(&rid).is_some_and(|d| d.context_present) {
            return Err(DriverError::DeviceInUse(rid));
        }
        self.contexts.devices.entry(rid).or_insert_with(Device::new).features = features;
        Ok(())
    }

    /// The features set for `rid`.
    pub(super) fn features(&self, rid: u16) -> DeviceFeatures {
        self.contexts.devices.get(&rid).map(|d| d.features).unwrap_or_default()
    }
}
