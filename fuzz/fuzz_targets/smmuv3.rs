//! The SMMUv3 model as a guest drives it: register writes (any offset of register pages 0 and 1,
//! any value: STRTAB_BASE(_CFG), CR0/CR1/CR2, the Command, Event and PRI queues' BASE / PROD /
//! CONS, GERRORN, GBPA, IRQ registers) over memory the input fills with Stream tables, STEs,
//! CDs, page tables and commands, and in between transactions from devices (untranslated,
//! translated, ATS translation requests, page requests, page-in hints) and the embedder
//! draining the outbox.
//!
//! Memory is at address 0 so that the small pointers a guest would write reach it; every pointer
//! and field is still arbitrary. The ID registers vary over the features the model has (its
//! documentation: advertising one it lacks does not make it appear). A malformed structure or
//! command is C_BAD_STE, C_BAD_CD, CERROR_ILL, GERROR, an event: never a panic or a hang.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sviommu_fuzz::{apply, memory, Acc, Addr, Contents, RegOp, Window};
use sviommu_smmuv3::hw::{CacheSizes, PageInHint, Smmu, SmmuParams, Transaction};
use sviommu_smmuv3::spec::regs::{
    cr0, idr0, idr1, idr3, idr5, CMDQ_BASE, CR0, CR1, CR2, EVENTQ_BASE, PAGE1, PRIQ_BASE,
    STRTAB_BASE, STRTAB_BASE_CFG,
};
use sviommu_smmuv3::spec::PageRequest;

#[derive(Debug, Arbitrary)]
enum Op {
    Reg(RegOp),
    Translate { sid: u32, ssid: Option<u32>, addr: Addr, acc: Acc, translated: bool },
    TranslationRequest { sid: u32, ssid: Option<u32>, addr: Addr, acc: Acc },
    PageRequest { words: [u64; 2] },
    PageInHint { sid: u32, ssid: Option<u32>, addr: Addr, span_pages: u8, perms: [bool; 6] },
    Drain,
}

/// The first 256 bytes of page 0 and of page 1, in 4-byte steps.
const WINDOW: Window = Window {
    offset: |at| u64::from(at & 0x3f) * 4 + if at & 0x40 != 0 { PAGE1 } else { 0 },
    known: &KNOWN,
};

/// STRTAB_BASE, STRTAB_BASE_CFG, CR0, CR1, CR2, CMDQ_BASE, CMDQ_PROD, EVENTQ_BASE, EVENTQ_CONS
/// (page 1), PRIQ_BASE, PRIQ_CONS (page 1), GERRORN: offsets from §6.2's register map.
const KNOWN: [(u64, u8); 12] = [
    (0x80, 8),
    (0x88, 4),
    (0x20, 4),
    (0x28, 4),
    (0x2c, 4),
    (0x90, 8),
    (0x98, 4),
    (0xa0, 8),
    (PAGE1 + 0xac, 4),
    (0xc0, 8),
    (PAGE1 + 0xcc, 4),
    (0x64, 4),
];

/// A driver's bring-up before the operations (§6.3.9, §3.5.1): the Stream table and queue
/// base registers, then CR0 with SMMUEN and the queues' enables. Random writes rarely find it.
#[derive(Debug, Arbitrary)]
struct BringUp {
    strtab_base: Addr,
    strtab_base_cfg: u32,
    cmdq_base: Option<Addr>,
    eventq_base: Option<Addr>,
    priq_base: Option<Addr>,
    cr1: u32,
    cr2: u32,
}

#[derive(Debug, Arbitrary)]
struct Input {
    bring_up: Option<BringUp>,
    idr_flips: [u32; 4],
    gbpa_abort_at_reset: bool,
    no_caches: bool,
    outbox_capacity: u8,
    contents: Contents,
    ops: Vec<Op>,
}

/// The ID register fields of features the model has, which the input may turn on or off.
fn params(flips: [u32; 4], abort: bool, no_caches: bool, outbox: u8) -> SmmuParams {
    let m0 = [
        idr0::S2P,
        idr0::S1P,
        idr0::COHACC,
        idr0::HTTU,
        idr0::ATS,
        idr0::NS1ATS,
        idr0::ASID16,
        idr0::MSI,
        idr0::SEV,
        idr0::PRI,
        idr0::VMID16,
        idr0::CD2L,
        idr0::STALL_MODEL,
        idr0::TERM_MODEL,
        idr0::ST_LEVEL,
    ]
    .iter()
    .fold(0, |m, f| m | f.mask32());
    let m1 = [
        idr1::SIDSIZE,
        idr1::SSIDSIZE,
        idr1::PRIQS,
        idr1::EVENTQS,
        idr1::CMDQS,
        idr1::ATTR_PERMS_OVR,
    ]
    .iter()
    .fold(0, |m, f| m | f.mask32());
    let m3 = idr3::HAD.mask32() | idr3::RIL.mask32();
    let m5 = [idr5::OAS, idr5::GRAN4K, idr5::GRAN16K, idr5::GRAN64K, idr5::VAX, idr5::STALL_MAX]
        .iter()
        .fold(0, |m, f| m | f.mask32());
    let d = SmmuParams::default();
    SmmuParams {
        idr0: d.idr0 ^ (flips[0] & m0),
        idr1: d.idr1 ^ (flips[1] & m1),
        idr3: d.idr3 ^ (flips[2] & m3),
        idr5: d.idr5 ^ (flips[3] & m5),
        gbpa_abort_at_reset: abort,
        caches: if no_caches { CacheSizes::NONE } else { d.caches },
        outbox_capacity: usize::from(outbox % 8),
        ..d
    }
}

fn transaction(sid: u32, ssid: Option<u32>, addr: Addr, acc: Acc, translated: bool) -> Transaction {
    Transaction { sid, ssid, addr: addr.get(), access: acc.into(), translated }
}

fuzz_target!(|input: Input| {
    let mem = memory(&input.contents);
    let p =
        params(input.idr_flips, input.gbpa_abort_at_reset, input.no_caches, input.outbox_capacity);
    let smmu = Smmu::new(mem, p);
    if let Some(b) = &input.bring_up {
        smmu.mmio_write(STRTAB_BASE.0, 8, b.strtab_base.get());
        smmu.mmio_write(STRTAB_BASE_CFG.0, 4, u64::from(b.strtab_base_cfg));
        smmu.mmio_write(CR1.0, 4, u64::from(b.cr1));
        smmu.mmio_write(CR2.0, 4, u64::from(b.cr2));
        let mut cr0_v = cr0::SMMUEN.with(0, true);
        if let Some(a) = b.cmdq_base {
            smmu.mmio_write(CMDQ_BASE.0, 8, a.get());
            cr0_v = cr0::CMDQEN.with(cr0_v, true);
        }
        if let Some(a) = b.eventq_base {
            smmu.mmio_write(EVENTQ_BASE.0, 8, a.get());
            cr0_v = cr0::EVENTQEN.with(cr0_v, true);
        }
        if let Some(a) = b.priq_base {
            smmu.mmio_write(PRIQ_BASE.0, 8, a.get());
            cr0_v = cr0::PRIQEN.with(cr0_v, true);
        }
        smmu.mmio_write(CR0.0, 4, cr0_v);
    }
    for op in &input.ops {
        match *op {
            Op::Reg(r) => apply(&smmu, smmu.memory(), WINDOW, r),
            Op::Translate { sid, ssid, addr, acc, translated } => {
                let _ = smmu.translate(&transaction(sid, ssid, addr, acc, translated));
            }
            Op::TranslationRequest { sid, ssid, addr, acc } => {
                let _ = smmu.translation_request(&transaction(sid, ssid, addr, acc, false));
            }
            Op::PageRequest { words } => {
                let _ = smmu.page_request(&PageRequest(words));
            }
            Op::PageInHint { sid, ssid, addr, span_pages, perms } => {
                let [pr, pw, px, ur, uw, ux] = perms;
                smmu.page_in_hint(&PageInHint {
                    sid,
                    ssid,
                    addr: addr.get(),
                    span_pages,
                    pr,
                    pw,
                    px,
                    ur,
                    uw,
                    ux,
                });
            }
            Op::Drain => {
                let _ = smmu.drain_outputs();
            }
        }
    }
    let _ = (smmu.cache_stats(), smmu.outbox_stats(), smmu.stalled_transactions());
});
