//! Hostile input: random bytes in STEs, CDs, L1STDs, L1CDs and the translation tables they
//! point at (proptest). The SMMU must answer every transaction with a translation or an
//! architected event that this step produces, with consistent fields, in a bounded number of
//! reads, and never panic.

mod common;

use common::*;
use proptest::prelude::*;
use sviommu_memory::{HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::Access;
use sviommu_smmuv3::hw::{Abort, Smmu, SmmuParams, Transaction};
use sviommu_smmuv3::spec::regs::{self, cr2};
use sviommu_smmuv3::spec::{Cd, Class, EventId, Granule, L1Cd, L1Std, Ste};

/// Fixed pages: the Stream table, level-1 STDs, CDs, level-1 CDs, and two garbage table pages.
const P_STE: u64 = 0x10_0000;
const P_L1STD: u64 = 0x11_0000;
const P_CD: u64 = 0x12_0000;
const P_L1CD: u64 = 0x13_0000;
const G: [u64; 2] = [0x14_0000, 0x15_0000];

fn fill(mem: &HostMemory, page: u64, words: &[u64]) {
    for i in 0..512u64 {
        mem.write_u64(Hpa(page + 8 * i), words[(i as usize) % words.len()]).unwrap();
    }
}

/// Points a random word's address bits ([47:12]) at one of the garbage pages half the time,
/// so that walks descend into more garbage.
fn aim(w: u64, sel: u64) -> u64 {
    if sel & 1 == 0 {
        w
    } else {
        (w & !0x0000_ffff_ffff_f000) | G[((sel >> 1) & 1) as usize]
    }
}

const PRODUCED: [EventId; 12] = [
    EventId::CBadStreamid,
    EventId::FSteFetch,
    EventId::CBadSte,
    EventId::FStreamDisabled,
    EventId::CBadSubstreamid,
    EventId::FCdFetch,
    EventId::CBadCd,
    EventId::FWalkEabt,
    EventId::FTranslation,
    EventId::FAddrSize,
    EventId::FAccess,
    EventId::FPermission,
];

/// Which repairs to make to the random structures, so that transactions get past the first
/// checks often enough to reach the deeper ones (each is on most of the time).
#[derive(Clone, Copy, Debug)]
struct Bias {
    ste_valid: bool,
    ste_sane: bool,
    cd_valid: bool,
    cd_sane: bool,
    l1std_sane: bool,
    l1cd_valid: bool,
    two_level_cds: bool,
    two_level: bool,
}

fn run(
    mut ste: Ste,
    mut cd: Cd,
    l1: [u64; 4],
    garbage: &[u64],
    b: Bias,
    txs: &[(u32, Option<u32>, u64, u8)],
) -> Result<(), TestCaseError> {
    let mem = memory();
    let s = Smmu::new(&mem, SmmuParams::default());
    if b.ste_valid {
        ste.set_v(true);
        ste.set_config_raw(4 | (ste.config_raw() & 3));
        ste.set_s1contextptr(if b.two_level_cds { P_L1CD } else { P_CD });
        ste.set_s1cdmax(ste.s1cdmax() % 13);
    }
    if b.ste_sane {
        for (w, m) in ste.0.iter_mut().zip(Ste::RES0) {
            *w &= !m;
        }
        ste.set_s2aa64(true);
        ste.set_s2s(false);
        ste.set_s2endi(false);
        ste.set_s1stalld(false);
        ste.set_s2tg(Granule::Size4K);
        ste.set_s2t0sz(25);
        ste.set_s2sl0(1);
        ste.set_s2ps(5);
        ste.set_s2vmid(1);
        ste.set_s2ttb(G[0]);
    }
    if b.cd_valid {
        cd.set_v(true);
        cd.set_aa64(true);
        cd.set_a(true);
        cd.set_s(false);
        cd.set_endi(false);
    }
    if b.cd_sane {
        for (w, m) in cd.0.iter_mut().zip(Cd::RES0) {
            *w &= !m;
        }
        cd.set_tg0(Granule::Size4K);
        cd.set_t0sz(25);
        cd.set_ips(5);
        cd.set_ttb0(G[1]);
    }
    fill(&mem, P_STE, &ste.words());
    fill(&mem, P_CD, &cd.words());
    let l1std: Vec<u64> = l1
        .iter()
        .map(|&w| {
            let mut d = L1Std::from_word(w);
            if b.l1std_sane {
                d.set_span(7);
                d.set_l2ptr(P_STE);
            }
            d.word()
        })
        .collect();
    fill(&mem, P_L1STD, &l1std);
    let l1cd: Vec<u64> = l1
        .iter()
        .map(|&w| {
            let mut d = L1Cd::from_word(w);
            if b.l1cd_valid {
                d.set_v(true);
                d.set_l2ptr(P_CD);
            }
            d.word()
        })
        .collect();
    fill(&mem, P_L1CD, &l1cd);
    for (k, page) in G.iter().enumerate() {
        let words: Vec<u64> = garbage[k * 512..(k + 1) * 512]
            .iter()
            .enumerate()
            .map(|(i, &w)| aim(w, w.rotate_left(i as u32 % 64)))
            .collect();
        fill(&mem, *page, &words);
    }
    s.mmio_write(regs::CR2.0, 4, cr2::RECINVSID.mask());
    if b.two_level {
        enable_two_level(&s, P_L1STD, 12, 6);
    } else {
        enable_linear(&s, P_STE, 6);
    }
    for &(sid, ssid, addr, acc) in txs {
        let access = Access { write: acc & 1 != 0, exec: acc & 2 != 0, privileged: acc & 4 != 0 };
        let mut t = Transaction::new(sid % 70, addr % (1 << 42), access);
        t.ssid = ssid.map(|x| x % 80);
        match s.translate(&t) {
            Ok(tr) => prop_assert!(tr.reads <= 64, "{} reads", tr.reads),
            Err(Abort::Silent(_)) => {}
            // CD.S or STE.S2S: only the four Translation-related faults stall, always recorded.
            Err(Abort::Stalled(e)) => {
                prop_assert!(e.id.can_stall() && e.record && e.stag.is_some(), "{:?}", e);
                prop_assert!(e.to_record().stall());
            }
            Err(Abort::Event(e)) => {
                prop_assert!(e.stag.is_none());
                prop_assert!(PRODUCED.contains(&e.id), "{:?}", e.id);
                let walk = matches!(
                    e.id,
                    EventId::FTranslation
                        | EventId::FAddrSize
                        | EventId::FAccess
                        | EventId::FPermission
                        | EventId::FWalkEabt
                );
                prop_assert_eq!(e.class.is_some(), walk, "{:?}", e);
                prop_assert!(!e.s2 || walk);
                prop_assert!(e.ipa.is_none() || e.s2);
                prop_assert_eq!(
                    e.fetch_addr.is_some(),
                    matches!(e.id, EventId::FSteFetch | EventId::FCdFetch | EventId::FWalkEabt)
                );
                prop_assert!(!e.ttrnw || e.class == Some(Class::Tt));
                let rec = e.to_record();
                prop_assert_eq!(rec.id(), Ok(e.id));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_structures_give_only_architected_events_or_translations(
        ste in any::<[u64; 8]>(),
        cd in any::<[u64; 8]>(),
        l1 in any::<[u64; 4]>(),
        garbage in prop::collection::vec(any::<u64>(), 1024),
        bias in prop::array::uniform8(prop::bool::weighted(0.8)),
        txs in prop::collection::vec((any::<u32>(), prop::option::of(any::<u32>()), any::<u64>(), any::<u8>()), 8),
    ) {
        let [ste_valid, ste_sane, cd_valid, cd_sane, l1std_sane, l1cd_valid, two_level_cds, two_level] = bias;
        let b = Bias { ste_valid, ste_sane, cd_valid, cd_sane, l1std_sane, l1cd_valid, two_level_cds: !two_level_cds, two_level: !two_level };
        run(Ste(ste), Cd(cd), l1, &garbage, b, &txs)?;
    }
}
