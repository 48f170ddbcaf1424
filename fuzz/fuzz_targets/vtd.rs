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
use sviommu_fuzz::{apply, memory, Acc, Addr, Contents, RegOp, Window};
use sviommu_vtd::hw::{
    CacheParams, DmaRequest, PageRequestMsg, TranslationRequest, Vtd, VtdParams,
};
use sviommu_vtd::spec::regs::{gcmd, GCMD, IQA, PQA, RTADDR};

#[derive(Debug, Arbitrary)]
enum Op {
    Reg(RegOp),
    /// An untranslated request, or (`translated`) one from a device-TLB.
    Translate {
        rid: u16,
        pasid: Option<u32>,
        addr: Addr,
        acc: Acc,
        translated: bool,
    },
    TranslationRequest {
        rid: u16,
        pasid: Option<u32>,
        addr: Addr,
        no_write: bool,
        exec: bool,
        privileged: bool,
    },
    /// Read, write, execute, privileged, last page in group.
    PageRequest {
        rid: u16,
        pasid: Option<u32>,
        addr: Addr,
        flags: [bool; 5],
        prgi: u16,
        private_data: Option<[u64; 2]>,
    },
    Drain,
}

/// The first 2K in 4-byte steps: the fixed registers, the default unit's fault recording
/// registers at 0x400 and IOTLB registers at 0x500.
const WINDOW: Window = Window { offset: |at| u64::from(at & 0x1ff) * 4, known: &KNOWN };

/// GCMD, RTADDR, CCMD, IQT, IQA, PQH, PQT, PQA, FSTS, PRS, the default IOTLB register (IRO 0x500,
/// IOTLB at +8) and IVA: offsets from the spec's register map (§11.4).
const KNOWN: [(u64, u8); 12] = [
    (0x18, 4),
    (0x20, 8),
    (0x28, 8),
    (0x88, 8),
    (0x90, 8),
    (0xc0, 8),
    (0xc8, 8),
    (0xd0, 8),
    (0x34, 4),
    (0xdc, 4),
    (0x508, 8),
    (0x500, 8),
];

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
            Op::Reg(r) => apply(&unit, unit.memory(), WINDOW, r),
            Op::Translate { rid, pasid, addr, acc, translated } => {
                let req = DmaRequest { rid, pasid, addr: addr.get(), access: acc.into() };
                let _ =
                    if translated { unit.translated_request(&req) } else { unit.translate(&req) };
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
            Op::PageRequest { rid, pasid, addr, flags, prgi, private_data } => {
                let [read, write, exec, privileged, lpig] = flags;
                let (addr, r) = (addr.get(), rid);
                let msg = PageRequestMsg {
                    rid: r,
                    pasid,
                    addr,
                    read,
                    write,
                    exec,
                    privileged,
                    prgi,
                    lpig,
                    private_data,
                };
                let _ = unit.page_request(&msg);
            }
            Op::Drain => {
                let _ = unit.drain_outputs();
            }
        }
    }
    let _ = (unit.cache_stats(), unit.outbox_stats(), unit.ats_stats());
});
