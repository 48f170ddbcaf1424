//! The page-table walkers on arbitrary table bytes: x86-64 (4/5-level, the VT-d first stage),
//! VT-d second stage, VMSAv8-64 stage 1 and stage 2, and the two nested compositions.
//!
//! Every configuration field a guest writes (TTB, TnSZ, SL0, granule, roots) is arbitrary; the
//! unit's own settings (HAW, MGAW, SLLPS, OA size) are arbitrary within what their registers can
//! encode. A walk must end in a leaf or a fault, reading no more entries than its depth allows.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sviommu_fuzz::{memory, Acc, Addr, Contents};
use sviommu_pgtable::vmsa::{Granule, Oa52, Ps, VmsaS1, VmsaS2};
use sviommu_pgtable::{vtd_ss, x86, Fault, FaultKind, Nested, Walk, WalkStep};

#[derive(Debug, Arbitrary)]
struct X86Cfg {
    root: Addr,
    five: bool,
    phys_bits: u8,
    page_1g: bool,
    nxe: bool,
    wp: bool,
    smep: bool,
    set_ad: bool,
}

impl X86Cfg {
    fn build(&self) -> x86::X86Paging {
        let levels = if self.five { x86::Levels::Five } else { x86::Levels::Four };
        x86::X86Paging {
            phys_bits: self.phys_bits,
            page_1g: self.page_1g,
            nxe: self.nxe,
            wp: self.wp,
            smep: self.smep,
            set_ad: self.set_ad,
            ..x86::X86Paging::new(self.root.get(), levels)
        }
    }
}

#[derive(Debug, Arbitrary)]
struct VtdSsCfg {
    root: Addr,
    aw: u8,
    /// CAP.MGAW is six bits, plus one.
    mgaw: u8,
    haw: u8,
    sllps: u8,
    execute: bool,
    snoop: bool,
    ad: bool,
}

impl VtdSsCfg {
    fn build(&self) -> vtd_ss::VtdSecondStage {
        // The AW encodings this model walks; the others never reach a walk (the model faults
        // on them first), so they are folded onto these.
        let levels = vtd_ss::Levels::from_aw(self.aw % 3 + 1).unwrap_or(vtd_ss::Levels::Four);
        vtd_ss::VtdSecondStage {
            mgaw: (self.mgaw & 0x3f) + 1,
            haw: self.haw,
            sllps: self.sllps,
            execute: self.execute,
            snoop: self.snoop,
            ad: self.ad,
            ..vtd_ss::VtdSecondStage::new(self.root.get(), levels)
        }
    }
}

fn granule(v: u8) -> Granule {
    match v % 3 {
        0 => Granule::K4,
        1 => Granule::K16,
        _ => Granule::K64,
    }
}

fn ps(v: u8) -> Ps {
    Ps::from_field(v % 7).unwrap_or(Ps::Bits48)
}

fn oa52(v: u8) -> Oa52 {
    match v % 3 {
        0 => Oa52::Off,
        1 => Oa52::Lpa,
        _ => Oa52::Lpa2,
    }
}

#[derive(Debug, Arbitrary)]
struct S1Cfg {
    ttb: Addr,
    tg: u8,
    t0sz: u8,
    ips: u8,
    oa_52: u8,
    ha: bool,
    hd: bool,
    hpd: bool,
    wxn: bool,
    affd: bool,
    pan: bool,
    ttb1: bool,
}

impl S1Cfg {
    fn build(&self) -> VmsaS1 {
        VmsaS1 {
            ips: ps(self.ips),
            oa_52: oa52(self.oa_52),
            ha: self.ha,
            hd: self.hd,
            hpd: self.hpd,
            wxn: self.wxn,
            affd: self.affd,
            pan: self.pan,
            ttb1: self.ttb1,
            ..VmsaS1::new(self.ttb.get(), granule(self.tg), self.t0sz)
        }
    }
}

#[derive(Debug, Arbitrary)]
struct S2Cfg {
    ttb: Addr,
    tg: u8,
    t0sz: u8,
    sl0: u8,
    ps: u8,
    oa_52: u8,
    ha: bool,
    hd: bool,
    affd: bool,
}

impl S2Cfg {
    fn build(&self) -> VmsaS2 {
        VmsaS2 {
            ps: ps(self.ps),
            oa_52: oa52(self.oa_52),
            ha: self.ha,
            hd: self.hd,
            affd: self.affd,
            ..VmsaS2::new(self.ttb.get(), granule(self.tg), self.t0sz, self.sl0)
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Config {
    X86(X86Cfg),
    VtdSs(VtdSsCfg),
    VmsaS1(S1Cfg),
    VmsaS2(S2Cfg),
    NestedVtd(X86Cfg, VtdSsCfg),
    NestedVmsa(S1Cfg, S2Cfg),
}

#[derive(Debug, Arbitrary)]
struct Input {
    config: Config,
    contents: Contents,
    /// Walks in order over the same memory, so A/D updates of one are seen by the next.
    requests: Vec<(Addr, Acc, bool)>,
}

/// The deepest single-stage walk here reads 5 entries; a nested one reads each stage-1 entry
/// after a stage-2 walk of its address, then walks the output: 5 x (5 + 1) + 5.
const MAX_READS_ONE: u32 = 5;
const MAX_READS_NESTED: u32 = 5 * (5 + 1) + 5;

fn walk_all<W: Walk>(w: &W, mem: &sviommu_memory::HostMemory, input: &Input, max_reads: u32) {
    for &(addr, acc, observe) in &input.requests {
        let (walked, steps) = if observe {
            let (walked, steps) =
                w.translate_observed(mem, addr.get(), acc.into(), Vec::<WalkStep>::new());
            (walked, Some(steps))
        } else {
            (w.translate(mem, addr.get(), acc.into()), None)
        };
        assert!(walked.reads <= max_reads, "{} reads: {walked:?}", walked.reads);
        if let Some(steps) = steps {
            // The observer sees every read that succeeded; a failed one ends the walk.
            let failed =
                matches!(walked.outcome, Err(Fault { kind: FaultKind::ExternalAbort { .. }, .. }));
            assert_eq!(steps.len() + usize::from(failed), walked.reads as usize, "{walked:?}");
        }
    }
}

fuzz_target!(|input: Input| {
    let mem = memory(&input.contents);
    match &input.config {
        Config::X86(c) => walk_all(&c.build(), &mem, &input, MAX_READS_ONE),
        Config::VtdSs(c) => walk_all(&c.build(), &mem, &input, MAX_READS_ONE),
        Config::VmsaS1(c) => walk_all(&c.build(), &mem, &input, MAX_READS_ONE),
        Config::VmsaS2(c) => walk_all(&c.build(), &mem, &input, MAX_READS_ONE),
        Config::NestedVtd(s1, s2) => {
            let (s1, s2) = (s1.build(), s2.build());
            walk_all(&Nested { s1: &s1, s2: &s2 }, &mem, &input, MAX_READS_NESTED);
        }
        Config::NestedVmsa(s1, s2) => {
            let (s1, s2) = (s1.build(), s2.build());
            walk_all(&Nested { s1: &s1, s2: &s2 }, &mem, &input, MAX_READS_NESTED);
        }
    }
});
