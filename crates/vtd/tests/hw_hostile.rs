//! Hostile input: random bytes in root, context, PASID-directory and PASID-table entries and in
//! the page tables they point at, random capability bits, random requests. The model must
//! answer with a translation or an architected fault of the mode it is in: never a panic, a
//! loop, or an interrupt-remapping reason.

use proptest::prelude::*;
use sviommu_memory::{HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::Access;
use sviommu_vtd::hw::{DmaRequest, Vtd, VtdParams};
use sviommu_vtd::spec::pasid::{PasidDirEntry, PasidEntry};
use sviommu_vtd::spec::regs::{self, gcmd, rtaddr};
use sviommu_vtd::spec::root::{
    self, ContextEntry, RootEntry, ScalableContextEntry, ScalableRootEntry,
};
use sviommu_vtd::spec::FaultReason;

/// One megabyte of memory: the structures' pages, then garbage pages for tables to point at.
const MEM: u64 = 0x10_0000;
const MEM_LEN: u64 = 0x10_0000;
const RTA: u64 = MEM;
const CTX: u64 = MEM + 0x1000;
const DIR: u64 = MEM + 0x2000;
const PT: u64 = MEM + 0x3000;
/// Garbage pages.
const JUNK: u64 = MEM + 0x4000;
const JUNK_PAGES: u64 = 16;

#[derive(Clone, Debug)]
struct Case {
    ttm: u64,
    haw: u8,
    ecap_flip: u64,
    cap_flip: u64,
    root: [u64; 2],
    ctx: [u64; 4],
    dir: u64,
    pe: [u64; 8],
    /// Which entries to clear the reserved bits of (for the unit's HAW).
    clean: [bool; 4],
    /// Which entries to make present with their pointer aimed at the next structure (or a junk
    /// page), so deeper checks run.
    link: [bool; 4],
    junk_seed: u64,
    rid: u16,
    pasid: Option<u32>,
    addr: u64,
    access: Access,
}

/// A word with few bits set (each with probability 1/8), any word, or zero.
fn word() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(a, b, c)| a & b & c),
        1 => any::<u64>(),
        1 => Just(0u64),
    ]
}

/// A few capability bits to flip, or none.
fn flips() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => Just(0u64),
        1 => (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(a, b, c, d)| a & b & c & d),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        (
            prop::sample::select(vec![0u64, 0, 1, 1, 1, 1, 2, 3]),
            prop_oneof![prop::sample::select(vec![39u8, 46, 48, 52]), any::<u8>()],
            flips(),
            flips(),
        ),
        (
            prop::array::uniform2(word()),
            prop::array::uniform4(word()),
            word(),
            prop::array::uniform8(word()),
        ),
        (
            prop::array::uniform4(prop::bool::weighted(0.8)),
            prop::array::uniform4(prop::bool::weighted(0.85)),
            any::<u64>(),
        ),
        (
            prop_oneof![any::<u16>(), 0u16..256],
            prop_oneof![
                2 => Just(None),
                2 => (0u32..0x100).prop_map(Some),
                1 => any::<u32>().prop_map(Some),
            ],
            prop_oneof![4 => any::<u64>(), 4 => 0u64..1 << 32, 1 => Just(0xfee0_0000)],
            (any::<bool>(), any::<bool>(), any::<bool>()),
        ),
    )
        .prop_map(
            |(
                (ttm, haw, ecap_flip, cap_flip),
                (root, ctx, dir, pe),
                (clean, link, junk_seed),
                (rid, pasid, addr, (write, exec, privileged)),
            )| Case {
                ttm,
                haw,
                ecap_flip,
                cap_flip,
                root,
                ctx,
                dir,
                pe,
                clean,
                link,
                junk_seed,
                rid,
                pasid,
                addr,
                access: Access { write, exec, privileged },
            },
        )
}

/// xorshift64*: fills the junk pages from one seed.
fn junk(mem: &HostMemory, mut x: u64) {
    for i in 0..JUNK_PAGES * 512 {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let mut w = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        // Some entries point back into the junk, so walks go deep.
        if w & 3 == 3 {
            w = (w & 0xfff) | (JUNK + (w >> 40) % JUNK_PAGES * 0x1000);
        }
        mem.write_u64(Hpa(JUNK + 8 * i), w).unwrap();
    }
}

fn write<const N: usize>(mem: &HostMemory, at: u64, words: [u64; N]) {
    for (i, w) in words.iter().enumerate() {
        mem.write_u64(Hpa(at + 8 * i as u64), *w).unwrap();
    }
}

fn run(c: &Case) -> Result<(), TestCaseError> {
    let mem = HostMemory::new(&[(Hpa(MEM), MEM_LEN)]).unwrap();
    junk(&mem, c.junk_seed);
    let [bus, devfn] = c.rid.to_be_bytes();
    let scalable = c.ttm == 1;
    let junk_page = JUNK + (c.junk_seed >> 8) % JUNK_PAGES * 0x1000;

    // Root and context entries at the request's bus and devfn.
    let haw = c.haw.clamp(12, 52);
    let clear = |words: &mut [u64], mask: &[u64]| {
        for (w, m) in words.iter_mut().zip(mask) {
            *w &= !m;
        }
    };
    let mut root = c.root;
    let mut ctx = c.ctx;
    let mut dir = [c.dir];
    let mut pe_words = c.pe;
    if c.clean[0] {
        let m = if scalable {
            ScalableRootEntry::reserved_mask(haw)
        } else {
            RootEntry::reserved_mask(haw)
        };
        clear(&mut root, &m);
    }
    if c.clean[1] {
        if scalable {
            clear(&mut ctx, &ScalableContextEntry::reserved_mask(haw));
        } else {
            let ce = ContextEntry::from_words([ctx[0], ctx[1]]);
            clear(&mut ctx, &ce.reserved_mask(haw));
        }
    }
    if c.clean[2] {
        clear(&mut dir, &PasidDirEntry::reserved_mask(haw));
    }
    if c.clean[3] {
        let mask = PasidEntry::from_words(pe_words).reserved_mask(haw);
        clear(&mut pe_words, &mask);
    }
    if c.link[0] {
        if scalable {
            let mut re = ScalableRootEntry::from_words(root);
            re.set_lp(true);
            re.set_up(true);
            re.set_lctp(CTX);
            re.set_uctp(CTX);
            root = re.words();
        } else {
            let mut re = RootEntry::from_words(root);
            re.set_p(true);
            re.set_ctp(CTX);
            root = re.words();
        }
    }
    write(&mem, RTA + 16 * u64::from(bus), root);
    if scalable {
        if c.link[1] {
            let mut ce = ScalableContextEntry::from_words(ctx);
            ce.set_p(true);
            ce.set_paside(true);
            ce.set_dte(false);
            ce.set_pre(false);
            ce.set_rid_pasid(ce.rid_pasid() & 0xff);
            ce.set_pasiddirptr(DIR);
            ctx = ce.words();
        }
        write(&mem, CTX + 32 * u64::from(root::scalable_context_index(devfn)), ctx);
        let mut de = PasidDirEntry::from_words(dir);
        if c.link[2] {
            de.set_p(true);
            de.set_smptblptr(PT);
        }
        // Every directory entry the PASID could pick, and every PASID-table entry.
        for i in 0..512 {
            write(&mem, DIR + 8 * i, de.words());
        }
        let mut pe = PasidEntry::from_words(pe_words);
        if c.link[3] {
            // Encodings the unit runs, so the walks are reached.
            let seed = c.junk_seed;
            pe.set_p(true);
            pe.set_pgtt_raw(1 + seed % 4);
            pe.set_aw_raw(1 + (seed >> 2) % 3);
            pe.set_fspm_raw((seed >> 4) % 2);
            pe.set_eafe(false);
            pe.set_fsptptr(junk_page);
            pe.set_ssptptr(junk_page);
        }
        for i in 0..64 {
            write(&mem, PT + 64 * i, pe.words());
        }
    } else {
        let mut ce = ContextEntry::from_words([ctx[0], ctx[1]]);
        if c.link[1] {
            ce.set_p(true);
            ce.set_ssptptr(junk_page);
        }
        write(&mem, CTX + 16 * u64::from(devfn), ce.words());
    }

    let d = VtdParams::default();
    let params = VtdParams { cap: d.cap ^ c.cap_flip, ecap: d.ecap ^ c.ecap_flip, haw: c.haw, ..d };
    let vtd = Vtd::new(&mem, params);
    vtd.mmio_write(regs::RTADDR.0, 8, rtaddr::TTM.set(RTA, c.ttm));
    vtd.mmio_write(regs::GCMD.0, 4, gcmd::SRTP.mask());
    vtd.mmio_write(regs::GCMD.0, 4, gcmd::TE.mask());

    let req = DmaRequest { rid: c.rid, pasid: c.pasid, addr: c.addr, access: c.access };
    match vtd.translate(&req) {
        Ok(t) => {
            // Four structures and a nested 5-level x 5-level walk at most.
            prop_assert!(t.reads <= 4 + 5 * 6 + 5, "{} reads", t.reads);
            prop_assert!(t.page_lg2 >= 12 && t.page_lg2 <= 30);
        }
        Err(f) => {
            prop_assert_eq!(
                (f.rid, f.pasid, f.addr, f.access),
                (req.rid, req.pasid, req.addr, req.access)
            );
            prop_assert!(!f.reason.is_interrupt_remapping(), "{}", f.reason);
            let mode_free = matches!(
                f.reason,
                FaultReason::SmRootTableAddressInvalid | FaultReason::RootEntryNotPresent
            );
            if c.ttm == 0 {
                let legacy =
                    !f.reason.is_scalable() || f.reason == FaultReason::SmLegacyRequestWithPasid;
                prop_assert!(legacy || mode_free, "legacy mode gave {}", f.reason);
            } else if c.ttm == 1 {
                prop_assert!(
                    f.reason.is_scalable() || mode_free,
                    "scalable mode gave {}",
                    f.reason
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn hostile_structures_give_translations_or_architected_faults(c in case()) {
        run(&c)?;
    }
}
