//! The VT-d model as a guest drives it: register writes (any offset of the register page, any
//! value: GCMD, RTADDR, the invalidation queue's IQA/IQT, CCMD, IOTLB registers, fault and
//! page-request queue registers) and the structures, page tables and invalidation descriptors
//! in memory the input fills, then requests from devices in between (untranslated, ATS
//! translation requests, translated requests, page requests) and the embedder draining the
//! outbox.
//!
//! Memory is at address 0, so the small pointers a guest would write reach it; every pointer
//! and field is still arbitrary. The answer to anything malformed is an architected fault or
//! error (IQE, a fault reason), never a panic or a hang.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sviommu_fuzz::{memory, word_addr, Acc, Addr, Contents};
use sviommu_memory::{Hpa, PhysMemory};
use sviommu_vtd::spec::regs::{gcmd, GCMD, IQA, PQA, RTADDR};
use sviommu_vtd::hw::{
    CacheParams, DmaRequest, PageRequestMsg, TranslationRequest, Vtd, VtdParams,
};

#[derive(Debug, Arbitrary)]
enum Op {
    /// A register write: offset in 4-byte steps over the first 2K (the fixed registers, the
    /// default unit's fault recording registers at 0x400 and IOTLB registers at 0x500).
    Write { at: u16, wide: bool, value: u64 },
    /// The common programming sequences' registers, by index, so that queues come up often.
    WriteKnown { which: u8, value: u64 },
    Read { at: u16, wide: bool },
    /// Software changes memory between requests (a table, a descriptor, the queue's tail).
    Store { at: u16, value: u64 },
    Translate { rid: u16, pasid: Option<u32>, addr: Addr, acc: Acc },
    TranslationRequest {
        rid: u16,
        pasid: Option<u32>,
        addr: Addr,
        no_write: bool,
        exec: bool,
        privileged: bool,
    },
    Translated { rid: u16, pasid: Option<u32>, addr: Addr, acc: Acc },
    PageRequest {
        rid: u16,
        pasid: Option<u32>,
        addr: Addr,
        read: bool,
        write: bool,
        exec: bool,
        privileged: bool,
        prgi: u16,
        lpig: bool,
        private_data: Option<[u64; 2]>,
    },
    Drain,
}

/// GCMD, RTADDR, CCMD, IQT, IQA, PQH, PQT, PQA, FSTS, PRS, the default IOTLB register (IRO 0x500,
/// IOTLB at +8) and IVA: offsets from the spec's register map (§11.4).
const KNOWN: [u64; 12] = [0x18, 0x20, 0x28, 0x88, 0x90, 0xc0, 0xc8, 0xd0, 0x34, 0xdc, 0x508, 0x500];

/// A driver's bring-up before the operations, as register writes (§10.4.4, §6.5.2): RTADDR
/// then GCMD.SRTP, IQA then GCMD.QIE, then GCMD.TE. Random writes rarely find this sequence.
#[derive(Debug, Arbitrary)]
struct BringUp {
    rtaddr: Addr,
    /// RTADDR.TTM: 00 legacy, 01 scalable, 11 abort-DMA (bits 11:10).
    ttm: u8,
    /// IQA (base, DW, QS) and whether to enable the queue.
    iqa: Option<Addr>,
    /// PQA and the page request queue's head and tail.
    pqa: Option<Addr>,
}

#[derive(Debug, Arbitrary)]
struct Input {
    bring_up: Option<BringUp>,
    cap_flip: u64,
    ecap_flip: u64,
    haw: u8,
    no_caches: bool,
    outbox_capacity: u8,
    contents: Contents,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let mem = memory(&input.contents);
    let d = VtdParams::default();
    let params = VtdParams {
        cap: d.cap ^ input.cap_flip,
        ecap: d.ecap ^ input.ecap_flip,
        haw: input.haw,
        caches: if input.no_caches { CacheParams::NONE } else { d.caches },
        outbox_capacity: usize::from(input.outbox_capacity % 8),
        ..d
    };
    let unit = Vtd::new(mem, params);
    if let Some(b) = &input.bring_up {
        let ttm = u64::from(b.ttm & 3) << 10;
        unit.mmio_write(RTADDR.0, 8, (b.rtaddr.get() & !0xfff) | ttm);
        let mut gcmd_v = gcmd::SRTP.with(0, true);
        unit.mmio_write(GCMD.0, 4, gcmd_v);
        gcmd_v = 0;
        if let Some(iqa) = b.iqa {
            unit.mmio_write(IQA.0, 8, iqa.get());
            gcmd_v = gcmd::QIE.with(gcmd_v, true);
            unit.mmio_write(GCMD.0, 4, gcmd_v);
        }
        if let Some(pqa) = b.pqa {
            unit.mmio_write(PQA.0, 8, pqa.get());
        }
        unit.mmio_write(GCMD.0, 4, gcmd::TE.with(gcmd_v, true));
    }
    for op in &input.ops {
        match *op {
            Op::Write { at, wide, value } => {
                let off = u64::from(at & 0x7fc);
                unit.mmio_write(off, if wide { 8 } else { 4 }, value);
            }
            Op::WriteKnown { which, value } => {
                let off = KNOWN[usize::from(which) % KNOWN.len()];
                unit.mmio_write(off, 8, value);
            }
            Op::Read { at, wide } => {
                unit.mmio_read(u64::from(at & 0x7ff), if wide { 8 } else { 4 });
            }
            Op::Store { at, value } => {
                let _ = unit.memory().write_u64(Hpa(word_addr(at)), value);
            }
            Op::Translate { rid, pasid, addr, acc } => {
                let _ = unit.translate(&DmaRequest { rid, pasid, addr: addr.get(), access: acc.into() });
            }
            Op::TranslationRequest { rid, pasid, addr, no_write, exec, privileged } => {
                let _ = unit.translation_request(&TranslationRequest {
                    rid,
                    pasid,
                    addr: addr.get(),
                    no_write,
                    exec,
                    privileged,
                });
            }
            Op::Translated { rid, pasid, addr, acc } => {
                let _ = unit.translated_request(&DmaRequest {
                    rid,
                    pasid,
                    addr: addr.get(),
                    access: acc.into(),
                });
            }
            Op::PageRequest {
                rid,
                pasid,
                addr,
                read,
                write,
                exec,
                privileged,
                prgi,
                lpig,
                private_data,
            } => {
                let _ = unit.page_request(&PageRequestMsg {
                    rid,
                    pasid,
                    addr: addr.get(),
                    read,
                    write,
                    exec,
                    privileged,
                    prgi,
                    lpig,
                    private_data,
                });
            }
            Op::Drain => {
                let _ = unit.drain_outputs();
            }
        }
    }
    let _ = (unit.cache_stats(), unit.outbox_stats(), unit.ats_stats());
});
