//! Raw vectors typed by hand from the figures of the VT-d specification, rev. 4.1, decoded field
//! by field. Every word below was written bit by bit from the figure the comment cites, not
//! produced by our setters; the comment next to each word spells out the bits.

use sviommu_vtd::spec::fault::{AddressType, FaultReason, FaultRecord, RequestType};
use sviommu_vtd::spec::inv::{
    CcGranularity, DescWidth, DescriptorType, IecGranularity, InvDesc, Invalidation,
    IotlbGranularity, PasidCacheGranularity, PasidIotlbGranularity,
};
use sviommu_vtd::spec::pasid::{self, Fspm, PasidDirEntry, PasidEntry, Pgtt};
use sviommu_vtd::spec::prq::{PageRequest, ResponseCode};
use sviommu_vtd::spec::regs::{self, rtaddr::Ttm};
use sviommu_vtd::spec::root::{
    ContextEntry, RootEntry, ScalableContextEntry, ScalableRootEntry, TranslationType,
};
use sviommu_vtd::spec::{Aw, Reserved};

// ---------------------------------------------------------------------------------------------
// §9.1 Root Entry, §9.3 Context Entry (legacy mode)
// ---------------------------------------------------------------------------------------------

#[test]
fn legacy_root_entry() {
    // Bit 0 P = 1; bits 63:12 CTP = 0x123000; bits 127:64 reserved, 0.
    let re = RootEntry::from_words([0x0000_0000_0012_3001, 0]);
    assert!(re.p());
    assert_eq!(re.ctp(), 0x12_3000);
    assert!(!re.reserved_bits_set(39));

    // Bit 1 is reserved.
    assert!(RootEntry::from_words([0x0000_0000_0012_3003, 0]).reserved_bits_set(39));
    // Bit 64 is reserved.
    assert!(RootEntry::from_words([0x0000_0000_0012_3001, 1]).reserved_bits_set(39));
    // CTP bit 39 set: reserved with a 39-bit HAW, fine with 46 bits.
    let high = RootEntry::from_words([0x0000_0080_0000_0001, 0]);
    assert!(high.reserved_bits_set(39));
    assert!(!high.reserved_bits_set(46));
    // Not present.
    assert!(!RootEntry::from_words([0x0000_0000_0012_3000, 0]).p());
}

#[test]
fn legacy_context_entry() {
    // Low: bit 0 P = 1, bit 1 FPD = 1, bits 3:2 TT = 01b, bits 63:12 SSPTPTR = 0x45_6789_a000.
    // High: bits 66:64 AW = 010b (48-bit), bits 70:67 AVAIL = 0, bits 87:72 DID = 0x1234.
    let ce = ContextEntry::from_words([0x0000_0045_6789_a007, 0x0000_0000_0012_3402]);
    assert!(ce.p());
    assert!(ce.fpd());
    assert_eq!(ce.tt(), Ok(TranslationType::All));
    assert_eq!(ce.ssptptr(), 0x45_6789_a000);
    assert_eq!(ce.aw(), Ok(Aw::Bits48));
    assert_eq!(ce.avail(), 0);
    assert_eq!(ce.did(), 0x1234);
    assert!(!ce.reserved_bits_set(46));
    assert!(ce.reserved_bits_set(38), "SSPTPTR bit 38 is beyond a 38-bit HAW");

    // TT = 11b is reserved, TT = 10b is pass-through.
    assert_eq!(ContextEntry::from_words([0x000d, 0x0102]).tt(), Err(Reserved(3)));
    let pt = ContextEntry::from_words([0x0000_0045_6789_a009, 0x0000_0000_0000_0102]);
    assert_eq!(pt.tt(), Ok(TranslationType::PassThrough));
    assert_eq!(pt.did(), 1);
    assert!(!pt.reserved_bits_set(38), "pass-through ignores SSPTPTR");

    // AW = 000b (old 30-bit) and 100b (old 64-bit) are reserved.
    assert_eq!(ContextEntry::from_words([1, 0x0000]).aw(), Err(Reserved(0)));
    assert_eq!(ContextEntry::from_words([1, 0x0004]).aw(), Err(Reserved(4)));
    // AVAIL (bits 70:67) is not reserved; bit 71 is; bit 88 is.
    assert!(!ContextEntry::from_words([1, 0x0000_0000_0000_0078]).reserved_bits_set(46));
    assert!(ContextEntry::from_words([1, 0x0000_0000_0000_0080]).reserved_bits_set(46));
    assert!(ContextEntry::from_words([1, 0x0000_0000_0100_0000]).reserved_bits_set(46));
    // Bits 11:4 of the low word are reserved.
    assert!(ContextEntry::from_words([0x0000_0000_0000_0011, 0]).reserved_bits_set(46));
}

// ---------------------------------------------------------------------------------------------
// §9.2 Scalable-Mode Root Entry, §9.4 Scalable-Mode Context-Entry
// ---------------------------------------------------------------------------------------------

#[test]
fn scalable_root_entry() {
    // Low: bit 0 LP = 1, bits 63:12 LCTP = 0x1000_0000.
    // High: bit 64 UP = 1, bits 127:76 UCTP = 0x2000_0000.
    let re = ScalableRootEntry::from_words([0x0000_0000_1000_0001, 0x0000_0000_2000_0001]);
    assert!(re.lp());
    assert_eq!(re.lctp(), 0x1000_0000);
    assert!(re.up());
    assert_eq!(re.uctp(), 0x2000_0000);
    assert_eq!(re.ctp_for(0x7f), 0x1000_0000);
    assert_eq!(re.ctp_for(0x80), 0x2000_0000);
    assert!(!re.reserved_bits_set(39));

    // Only the lower half present; bit 65 (reserved) set in the upper half.
    let half = ScalableRootEntry::from_words([0x0000_0000_1000_0001, 0x0000_0000_0000_0002]);
    assert!(half.present_for(0x10));
    assert!(!half.present_for(0x90));
    assert!(!half.reserved_bits_set_for(0x10, 39), "the lower half is clean");
    assert!(half.reserved_bits_set_for(0x90, 39), "the upper half is not");
}

#[test]
fn scalable_context_entry() {
    // Word 0: bit 0 P = 1, bit 1 FPD = 0, bit 2 DTE = 1, bit 3 PASIDE = 1, bit 4 PRE = 1,
    // bits 8:5 reserved, bits 11:9 PDTS = 3, bits 63:12 PASIDDIRPTR = 0x1_2345_6000.
    // Word 1: bits 83:64 RID_PASID = 0xabcde, bit 84 RID_PRIV = 1. Words 2, 3 reserved.
    let ce = ScalableContextEntry::from_words([0x0000_0001_2345_661d, 0x0000_0000_001a_bcde, 0, 0]);
    assert!(ce.p());
    assert!(!ce.fpd());
    assert!(ce.dte());
    assert!(ce.paside());
    assert!(ce.pre());
    assert_eq!(ce.pdts(), 3);
    assert_eq!(ce.pasid_dir_entries(), 1024);
    assert_eq!(ce.pasiddirptr(), 0x1_2345_6000);
    assert_eq!(ce.rid_pasid(), 0xabcde);
    assert!(ce.rid_priv());
    assert!(!ce.reserved_bits_set(39));

    // Bit 5 reserved; bit 85 reserved; anything in words 2 and 3 reserved.
    assert!(ScalableContextEntry::from_words([0x21, 0, 0, 0]).reserved_bits_set(39));
    assert!(ScalableContextEntry::from_words([1, 0x0020_0000, 0, 0]).reserved_bits_set(39));
    assert!(ScalableContextEntry::from_words([1, 0, 0, 1 << 63]).reserved_bits_set(39));
    assert!(
        ScalableContextEntry::from_words([0x0000_0080_0000_0001, 0, 0, 0]).reserved_bits_set(39)
    );
}

// ---------------------------------------------------------------------------------------------
// §9.5 Scalable-Mode PASID Directory Entry, §9.6 Scalable-Mode PASID Table Entry
// ---------------------------------------------------------------------------------------------

#[test]
fn pasid_directory_entry() {
    // Bit 0 P = 1, bit 1 FPD = 1, bits 63:12 SMPTBLPTR = 0xabcd000.
    let de = PasidDirEntry::from_words([0x0000_0000_0abc_d003]);
    assert!(de.p());
    assert!(de.fpd());
    assert_eq!(de.smptblptr(), 0xabc_d000);
    assert!(!de.reserved_bits_set(39));
    assert!(PasidDirEntry::from_words([0x0000_0000_0abc_d005]).reserved_bits_set(39), "bit 2");

    // PASID 0x12345: directory index = bits 19:6 = 0x48d, table index = bits 5:0 = 0x05.
    assert_eq!(pasid::dir_index(0x12345), 0x48d);
    assert_eq!(pasid::table_index(0x12345), 0x05);
}

#[test]
fn pasid_entry_first_stage_only() {
    // Word 0: bit 0 P = 1, bits 4:2 AW = 010b, bits 8:6 PGTT = 001b.
    // Word 1: bits 79:64 DID = 0x42, bit 87 PWSNP = 1.
    // Word 2: bit 128 SRE = 1, bits 131:130 FSPM = 01b, bit 132 WPE = 1, bit 135 EAFE = 1,
    //         bits 191:140 FSPTPTR = 0x7654_3000.
    let pe = PasidEntry::from_words([
        0x0000_0000_0000_0049,
        0x0000_0000_0080_0042,
        0x0000_0000_7654_3095,
        0,
        0,
        0,
        0,
        0,
    ]);
    assert!(pe.p());
    assert!(!pe.fpd());
    assert_eq!(pe.pgtt(), Ok(Pgtt::FirstStage));
    assert_eq!(pe.aw(), Ok(Aw::Bits48));
    assert_eq!(pe.did(), 0x42);
    assert!(pe.pwsnp());
    assert!(!pe.pgsnp());
    assert!(pe.sre());
    assert!(!pe.ere());
    assert_eq!(pe.fspm(), Ok(Fspm::FiveLevel));
    assert!(pe.wpe());
    assert!(!pe.nxe());
    assert!(!pe.smep());
    assert!(pe.eafe());
    assert_eq!(pe.fsptptr(), 0x7654_3000);
    assert_eq!(pe.ssptptr(), 0);
    assert!(!pe.reserved_bits_set(39));
    // FSPTPTR bit 45 is beyond a 39-bit HAW when the first stage is the only stage.
    let mut w = pe.words();
    w[2] |= 1 << 45;
    assert!(PasidEntry::from_words(w).reserved_bits_set(39));
    assert!(!PasidEntry::from_words(w).reserved_bits_set(46));
}

#[test]
fn pasid_entry_second_stage_only() {
    // Word 0: bit 0 P = 1, bit 1 FPD = 1, bits 4:2 AW = 011b, bit 5 SSEE = 1,
    //         bits 8:6 PGTT = 010b, bit 9 SSADE = 1, bits 63:12 SSPTPTR = 0x1111_1000.
    // Word 1: bits 79:64 DID = 0xbeef, bit 88 PGSNP = 1.
    let pe =
        PasidEntry::from_words([0x0000_0000_1111_12af, 0x0000_0000_0100_beef, 0, 0, 0, 0, 0, 0]);
    assert!(pe.p());
    assert!(pe.fpd());
    assert_eq!(pe.aw(), Ok(Aw::Bits57));
    assert!(pe.ssee());
    assert_eq!(pe.pgtt(), Ok(Pgtt::SecondStage));
    assert!(pe.ssade());
    assert_eq!(pe.ssptptr(), 0x1111_1000);
    assert_eq!(pe.did(), 0xbeef);
    assert!(pe.pgsnp());
    assert!(!pe.pwsnp());
    assert_eq!(pe.fspm(), Ok(Fspm::FourLevel));
    assert!(!pe.reserved_bits_set(39));
    assert!(pe.reserved_bits_set(28), "SSPTPTR bit 28 is beyond a 28-bit HAW");
}

#[test]
fn pasid_entry_nested() {
    // Word 0: bit 0 P = 1, bits 4:2 AW = 010b, bits 8:6 PGTT = 011b, SSPTPTR = 0x2222_2000.
    // Word 1: DID = 7, bit 89 CD = 1, bit 90 EMTE = 1, bits 93:91 EMT = 110b (WB),
    //         bit 94 PWT = 1, bit 95 PCD = 1, bits 127:96 PAT = 0x0007_0406.
    // Word 2: bit 129 ERE = 1, FSPM = 00b, bit 133 NXE = 1, bit 134 SMEP = 1,
    //         FSPTPTR = 0x3333_3000 (a guest physical address).
    let pe = PasidEntry::from_words([
        0x0000_0000_2222_20c9,
        0x0007_0406_f600_0007,
        0x0000_0000_3333_3062,
        0,
        0,
        0,
        0,
        0,
    ]);
    assert_eq!(pe.pgtt(), Ok(Pgtt::Nested));
    assert!(Pgtt::Nested.uses_first_stage() && Pgtt::Nested.uses_second_stage());
    assert_eq!(pe.aw(), Ok(Aw::Bits48));
    assert_eq!(pe.ssptptr(), 0x2222_2000);
    assert_eq!(pe.did(), 7);
    assert!(pe.cd());
    assert!(pe.emte());
    assert_eq!(pe.emt(), 6);
    assert!(pe.pwt());
    assert!(pe.pcd());
    assert_eq!(pe.pat(), 0x0007_0406);
    assert!(!pe.sre());
    assert!(pe.ere());
    assert_eq!(pe.fspm(), Ok(Fspm::FourLevel));
    assert!(!pe.wpe());
    assert!(pe.nxe());
    assert!(pe.smep());
    assert!(!pe.eafe());
    assert_eq!(pe.fsptptr(), 0x3333_3000);
    assert!(!pe.reserved_bits_set(39));
    // A nested FSPTPTR is a guest address: bits beyond HAW are the second stage's business.
    let mut w = pe.words();
    w[2] |= 1 << 50;
    assert!(!PasidEntry::from_words(w).reserved_bits_set(39));
}

#[test]
fn pasid_entry_pass_through_and_reserved_pgtt() {
    // Word 0: bit 0 P = 1, bits 4:2 AW = 010b, bits 8:6 PGTT = 100b. Word 1: DID = 1.
    let pe = PasidEntry::from_words([0x0000_0000_0000_0109, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(pe.pgtt(), Ok(Pgtt::PassThrough));
    assert!(!Pgtt::PassThrough.uses_first_stage() && !Pgtt::PassThrough.uses_second_stage());
    assert_eq!(pe.did(), 1);
    assert!(!pe.reserved_bits_set(39));

    // PGTT = 101b and 000b are reserved; the raw value stays visible.
    let bad = PasidEntry::from_words([0x0000_0000_0000_0141, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(bad.pgtt(), Err(Reserved(5)));
    assert_eq!(bad.pgtt_raw(), 5);
    assert_eq!(PasidEntry::from_words([1, 0, 0, 0, 0, 0, 0, 0]).pgtt(), Err(Reserved(0)));
    // FSPM = 10b is reserved.
    assert_eq!(PasidEntry::from_words([0x41, 0, 0x8, 0, 0, 0, 0, 0]).fspm(), Err(Reserved(2)));

    // Reserved bits: 11:10, 86:80, 139:136, and anything from bit 192 up.
    for (word, bit) in [(0, 10), (1, 16), (2, 8), (3, 0), (7, 63)] {
        let mut w = pe.words();
        w[word] |= 1 << bit;
        assert!(PasidEntry::from_words(w).reserved_bits_set(52), "word {word} bit {bit}");
    }
}

// ---------------------------------------------------------------------------------------------
// §6.5.2 Invalidation descriptors, 128- and 256-bit forms
// ---------------------------------------------------------------------------------------------

/// Decodes `lo` as a 128-bit descriptor and as a 256-bit one (upper 128 bits zero) and checks
/// both forms agree and carry no reserved bits.
fn both_forms(lo: [u64; 2]) -> Invalidation {
    let d128 = InvDesc::from_words128(lo).decode().unwrap();
    let d256 = InvDesc::from_words([lo[0], lo[1], 0, 0]).decode().unwrap();
    assert_eq!(d128, d256);
    assert!(!d128.reserved_bits_set(DescWidth::W128), "{d128:?}");
    assert!(!d256.reserved_bits_set(DescWidth::W256), "{d256:?}");
    // Anything in bits 255:128 is reserved for every type but the page group response.
    let dirty = InvDesc::from_words([lo[0], lo[1], 0, 1]).decode().unwrap();
    if !matches!(dirty, Invalidation::PageGroupResponse(_)) {
        assert!(dirty.reserved_bits_set(DescWidth::W256));
    }
    d128
}

#[test]
fn context_cache_invalidate() {
    // §6.5.2.1: bits 3:0 type = 1, bits 5:4 G = 11b (device), bits 31:16 DID = 5,
    // bits 47:32 SID = 0x0310, bits 49:48 FM = 01b.
    let Invalidation::ContextCache(d) = both_forms([0x0001_0310_0005_0031, 0]) else {
        panic!("not a context-cache descriptor");
    };
    assert_eq!(d.g(), Ok(CcGranularity::Device));
    assert_eq!(d.did(), 5);
    assert_eq!(d.sid(), 0x0310);
    assert_eq!(d.fm(), 1);
    // G = 00b is reserved; bit 50 is reserved.
    let Ok(Invalidation::ContextCache(g0)) = InvDesc::from_words128([0x01, 0]).decode() else {
        panic!()
    };
    assert_eq!(g0.g(), Err(Reserved(0)));
    assert!(InvDesc::from_words128([0x0004_0000_0000_0011, 0])
        .decode()
        .unwrap()
        .reserved_bits_set(DescWidth::W128));
}

#[test]
fn iotlb_invalidate() {
    // §6.5.2.3 word 0: type = 2, G = 11b (page), bit 6 DW = 1, bit 7 DR = 1, DID = 9.
    // Word 1: bits 69:64 AM = 9, bit 70 IH = 1, bits 127:76 ADDR = 0x7fff_fe20_0000.
    let Invalidation::Iotlb(d) = both_forms([0x0000_0000_0009_00f2, 0x0000_7fff_fe20_0049]) else {
        panic!("not an IOTLB descriptor");
    };
    assert_eq!(d.g(), Ok(IotlbGranularity::Page));
    assert!(d.dw());
    assert!(d.dr());
    assert_eq!(d.did(), 9);
    assert_eq!(d.am(), 9);
    assert!(d.ih());
    assert_eq!(d.addr(), 0x7fff_fe20_0000);
    // Bits 75:71 are reserved.
    assert!(d.words()[1] & 0xf80 == 0);
    let bad = InvDesc::from_words128([0x0000_0000_0009_00f2, 0x0000_7fff_fe20_0089]);
    assert!(bad.decode().unwrap().reserved_bits_set(DescWidth::W128));
}

#[test]
fn device_tlb_invalidate() {
    // §6.5.2.5 word 0: type = 3, bits 15:12 PFSID[3:0] = 3, bits 20:16 MIP = 4,
    // bits 47:32 SID = 0x0400, bits 63:52 PFSID[15:4] = 0x012.
    // Word 1: bit 64 S = 1, bits 127:76 ADDR = 0x10_7000.
    let Invalidation::DevTlb(d) = both_forms([0x0120_0400_0004_3003, 0x0000_0000_0010_7001]) else {
        panic!("not a device-TLB descriptor");
    };
    assert_eq!(d.pfsid(), 0x0123);
    assert_eq!(d.mip(), 4);
    assert_eq!(d.sid(), 0x0400);
    assert!(d.s());
    assert_eq!(d.addr(), 0x10_7000);
}

#[test]
fn interrupt_entry_cache_invalidate() {
    // §6.5.2.7: type = 4, bit 4 G = 1 (index-selective), bits 31:27 IM = 3,
    // bits 47:32 IIDX = 0x20.
    let Invalidation::InterruptEntryCache(d) = both_forms([0x0000_0020_1800_0014, 0]) else {
        panic!("not an interrupt entry cache descriptor");
    };
    assert_eq!(d.g(), Ok(IecGranularity::Index));
    assert_eq!(d.im(), 3);
    assert_eq!(d.iidx(), 0x20);
}

#[test]
fn invalidation_wait() {
    // §6.5.2.8 word 0: type = 5, bit 4 IF = 1, bit 5 SW = 1, bit 6 FN = 1, bit 7 PD = 0,
    // bits 63:32 STATUS_DATA = 0xcafe_f00d. Word 1: bits 127:66 STATUS_ADDR = 0x1234_5678.
    let Invalidation::Wait(d) = both_forms([0xcafe_f00d_0000_0075, 0x0000_0000_1234_5678]) else {
        panic!("not a wait descriptor");
    };
    assert!(d.if_());
    assert!(d.sw());
    assert!(d.fn_());
    assert!(!d.pd());
    assert_eq!(d.status_data(), 0xcafe_f00d);
    assert_eq!(d.status_addr(), 0x1234_5678);
    // Bits 65:64 are reserved (the status address is dword aligned).
    let bad = InvDesc::from_words128([0x25, 0x0000_0000_1234_5679]);
    assert!(bad.decode().unwrap().reserved_bits_set(DescWidth::W128));
}

#[test]
fn pasid_cache_invalidate() {
    // §6.5.2.2: type = 7, bits 5:4 G = 01b (PASID-selective), DID = 0x42,
    // bits 51:32 PASID = 0x12345.
    let Invalidation::PasidCache(d) = both_forms([0x0001_2345_0042_0017, 0]) else {
        panic!("not a PASID-cache descriptor");
    };
    assert_eq!(d.g(), Ok(PasidCacheGranularity::Pasid));
    assert_eq!(d.did(), 0x42);
    assert_eq!(d.pasid(), 0x12345);
    // G = 10b is reserved.
    let Ok(Invalidation::PasidCache(g2)) = InvDesc::from_words128([0x27, 0]).decode() else {
        panic!()
    };
    assert_eq!(g2.g(), Err(Reserved(2)));
}

#[test]
fn pasid_based_iotlb_invalidate() {
    // §6.5.2.4 word 0: type = 6, G = 11b (page-selective-within-PASID), DID = 0x42,
    // PASID = 0xfffff. Word 1: AM = 0, IH = 0, ADDR = 0x7f00_0000_0000.
    let Invalidation::PasidIotlb(d) = both_forms([0x000f_ffff_0042_0036, 0x0000_7f00_0000_0000])
    else {
        panic!("not a PASID-based IOTLB descriptor");
    };
    assert_eq!(d.g(), Ok(PasidIotlbGranularity::Page));
    assert_eq!(d.did(), 0x42);
    assert_eq!(d.pasid(), 0xfffff);
    assert_eq!(d.am(), 0);
    assert!(!d.ih());
    assert_eq!(d.addr(), 0x7f00_0000_0000);
    // G = 00b and 01b are reserved.
    for raw in [0x06, 0x16] {
        let Ok(Invalidation::PasidIotlb(g)) = InvDesc::from_words128([raw, 0]).decode() else {
            panic!()
        };
        assert_eq!(g.g(), Err(Reserved(raw >> 4)));
    }
}

#[test]
fn pasid_based_device_tlb_invalidate() {
    // §6.5.2.6 word 0: type = 8, bits 8:4 MIP = 2, bits 15:12 PFSID[3:0] = 0xc,
    // bits 31:16 SID = 0x0500, bits 51:32 PASID = 1, bits 63:52 PFSID[15:4] = 0xab.
    // Word 1: bit 64 G = 1, bit 75 S = 1, bits 127:76 ADDR = 0x4000_7000.
    let Invalidation::PasidDevTlb(d) = both_forms([0x0ab0_0001_0500_c028, 0x0000_0000_4000_7801])
    else {
        panic!("not a PASID-based device-TLB descriptor");
    };
    assert_eq!(d.mip(), 2);
    assert_eq!(d.pfsid(), 0x0abc);
    assert_eq!(d.sid(), 0x0500);
    assert_eq!(d.pasid(), 1);
    assert!(d.g());
    assert!(d.s());
    assert_eq!(d.addr(), 0x4000_7000);
}

#[test]
fn page_group_response() {
    // §7.7.1 word 0: type = 9, bit 4 PP = 1, bit 5 PDP = 1, bits 15:12 RC = Fh,
    // bits 31:16 RID = 0x0600, bits 51:32 PASID = 0xabc.
    // Word 1: bit 66 LPIG = 1, bits 75:67 PRGI = 0x1ff. Words 2, 3: private data.
    let lo = [0x0000_0abc_0600_f039, 0x0000_0000_0000_0ffc];
    let Invalidation::PageGroupResponse(d128) = both_forms(lo) else {
        panic!("not a page group response");
    };
    let d256 = InvDesc::from_words([lo[0], lo[1], 0x1111_2222_3333_4444, 0x5555_6666_7777_8888]);
    let Ok(Invalidation::PageGroupResponse(d)) = d256.decode() else {
        panic!("not a page group response");
    };
    for r in [d128, d] {
        assert!(r.pp());
        assert!(r.pdp());
        assert_eq!(r.rc(), Ok(ResponseCode::ResponseFailure));
        assert_eq!(r.rid(), 0x0600);
        assert_eq!(r.pasid(), 0xabc);
        assert!(r.lpig());
        assert_eq!(r.prgi(), 0x1ff);
    }
    assert_eq!(d.priv_data_lo(), 0x1111_2222_3333_4444);
    assert_eq!(d.priv_data_hi(), 0x5555_6666_7777_8888);
    assert!(!d.reserved_bits_set(DescWidth::W256), "private data is not reserved at 256 bits");
    assert!(d.reserved_bits_set(DescWidth::W128), "a 128-bit queue has no room for it");
    // RC = 2h is reserved; success and invalid request are 0h and 1h.
    let Ok(Invalidation::PageGroupResponse(rc2)) =
        InvDesc::from_words128([0x0000_0000_0000_2009, 0]).decode()
    else {
        panic!()
    };
    assert_eq!(rc2.rc(), Err(Reserved(2)));
    assert_eq!(ResponseCode::try_from(0), Ok(ResponseCode::Success));
    assert_eq!(ResponseCode::try_from(1), Ok(ResponseCode::InvalidRequest));
}

#[test]
fn reserved_descriptor_types_stay_visible() {
    // Type 0, type Ah (revision 2's page stream response), and type 11h (bit 9 = type[4]).
    assert_eq!(InvDesc::from_words128([0, 0]).decode(), Err(Reserved(0)));
    assert_eq!(InvDesc::from_words128([0xa, 0]).decode(), Err(Reserved(0xa)));
    assert_eq!(InvDesc::from_words128([0x201, 0]).decode(), Err(Reserved(0x11)));
    assert_eq!(InvDesc::from_words128([0x201, 0]).type_raw(), 0x11);
    assert_eq!(DescriptorType::try_from(9), Ok(DescriptorType::PageGroupResponse));
    assert_eq!(DescriptorType::ALL.len(), 9);
}

// ---------------------------------------------------------------------------------------------
// §9.9 Fault Record
// ---------------------------------------------------------------------------------------------

#[test]
fn fault_record_scalable() {
    // Word 0: bits 63:12 FI = 0x7fff_dead_b000.
    // Word 1: bits 79:64 SID = 0x0310, bit 92 T2 = 0, bit 93 PRIV = 1, bit 94 EXE = 0,
    // bit 95 PP = 1, bits 103:96 FR = 71h, bits 123:104 PV = 0x12345, bits 125:124 AT = 00b,
    // bit 126 T1 = 1 (read), bit 127 F = 1.
    let fr = FaultRecord::from_words([0x0000_7fff_dead_b000, 0xc123_4571_a000_0310]);
    assert!(fr.f());
    assert_eq!(fr.fr(), Ok(FaultReason::SmFsEntryNotPresent));
    assert_eq!(fr.sid(), 0x0310);
    assert_eq!(fr.fi(), 0x7fff_dead_b000);
    assert_eq!(fr.request_type(), RequestType::Read);
    assert_eq!(fr.at(), Ok(AddressType::Untranslated));
    assert!(fr.pp());
    assert_eq!(fr.pv(), 0x12345);
    assert!(fr.priv_());
    assert!(!fr.exe());
    assert!(!fr.reserved_bits_set());
}

#[test]
fn fault_record_legacy() {
    // Word 0: FI = 0x10_0000. Word 1: SID = 0x0008, T2 = 0, T1 = 0 (write), FR = 05h, F = 1.
    let fr = FaultRecord::from_words([0x0000_0000_0010_0000, 0x8000_0005_0000_0008]);
    assert!(fr.f());
    assert_eq!(fr.fr(), Ok(FaultReason::WriteDenied));
    assert_eq!(fr.request_type(), RequestType::Write);
    assert!(!fr.pp());
    assert_eq!(fr.sid(), 8);
    assert_eq!(fr.fi(), 0x10_0000);
    // T2 = 1, T1 = 0: a page request; AT = 10b: translated; AT = 11b reserved.
    let pr = FaultRecord::from_words([0, 0x2000_0000_1000_0000]);
    assert_eq!(pr.request_type(), RequestType::PageRequest);
    assert_eq!(pr.at(), Ok(AddressType::Translated));
    assert_eq!(FaultRecord::from_words([0, 0x3000_0000_0000_0000]).at(), Err(Reserved(3)));
    // FR = 0 is reserved; bits 11:0 and 91:80 are reserved.
    assert_eq!(FaultRecord::from_words([0, 0]).fr(), Err(Reserved(0)));
    assert!(FaultRecord::from_words([1, 0]).reserved_bits_set());
    assert!(FaultRecord::from_words([0, 0x0001_0000]).reserved_bits_set());
}

// ---------------------------------------------------------------------------------------------
// §7.5.1.1 Page Request Descriptor
// ---------------------------------------------------------------------------------------------

#[test]
fn page_request_descriptor() {
    // Word 0: bits 7:0 type = 01h, bit 8 PP = 1, bit 9 PDP = 1, bits 31:16 RID = 0x0310,
    // bits 51:32 PASID = 0x42, bit 52 ER = 0, bit 53 PMR = 1.
    // Word 1: bit 64 RR = 1, bit 65 WR = 1, bit 66 LPIG = 1, bits 75:67 PRGI = 0xa5,
    // bits 127:76 ADDR = 0x7fff_0000_1000. Words 2, 3: private data.
    let pr = PageRequest::from_words([
        0x0020_0042_0310_0301,
        0x0000_7fff_0000_152f,
        0xaaaa_bbbb_cccc_dddd,
        0x0102_0304_0506_0708,
    ]);
    assert_eq!(pr.type_(), 1);
    assert!(pr.pp());
    assert!(pr.pdp());
    assert_eq!(pr.rid(), 0x0310);
    assert_eq!(pr.pasid(), 0x42);
    assert!(!pr.er());
    assert!(pr.pmr());
    assert!(pr.rr());
    assert!(pr.wr());
    assert!(pr.lpig());
    assert_eq!(pr.prgi(), 0xa5);
    assert_eq!(pr.addr(), 0x7fff_0000_1000);
    assert_eq!(pr.priv_data_lo(), 0xaaaa_bbbb_cccc_dddd);
    assert_eq!(pr.priv_data_hi(), 0x0102_0304_0506_0708);
    assert!(!pr.reserved_bits_set());
    assert_eq!(PageRequest::new().words(), [1, 0, 0, 0]);
    // Bits 15:10 and 63:54 are reserved.
    assert!(PageRequest::from_words([0x401, 0, 0, 0]).reserved_bits_set());
    assert!(PageRequest::from_words([0x0040_0000_0000_0001, 0, 0, 0]).reserved_bits_set());
    // The bytes in memory are the words, little-endian.
    let bytes = pr.to_le_bytes();
    assert_eq!(&bytes[..8], &[0x01, 0x03, 0x10, 0x03, 0x42, 0x00, 0x20, 0x00]);
    assert_eq!(PageRequest::from_le_bytes(bytes), pr);
}

// ---------------------------------------------------------------------------------------------
// §11.4 Registers
// ---------------------------------------------------------------------------------------------

/// The register table of §11.4, typed from the spec: name, offset, width in bytes.
const SPEC_REGISTERS: &[(&str, u64, u8)] = &[
    ("VER", 0x000, 4),
    ("CAP", 0x008, 8),
    ("ECAP", 0x010, 8),
    ("GCMD", 0x018, 4),
    ("GSTS", 0x01c, 4),
    ("RTADDR", 0x020, 8),
    ("CCMD", 0x028, 8),
    ("FSTS", 0x034, 4),
    ("FECTL", 0x038, 4),
    ("FEDATA", 0x03c, 4),
    ("FEADDR", 0x040, 4),
    ("FEUADDR", 0x044, 4),
    ("PMEN", 0x064, 4),
    ("PLMBASE", 0x068, 4),
    ("PLMLIMIT", 0x06c, 4),
    ("PHMBASE", 0x070, 8),
    ("PHMLIMIT", 0x078, 8),
    ("IQH", 0x080, 8),
    ("IQT", 0x088, 8),
    ("IQA", 0x090, 8),
    ("ICS", 0x09c, 4),
    ("IECTL", 0x0a0, 4),
    ("IEDATA", 0x0a4, 4),
    ("IEADDR", 0x0a8, 4),
    ("IEUADDR", 0x0ac, 4),
    ("IQER", 0x0b0, 8),
    ("IRTA", 0x0b8, 8),
    ("PQH", 0x0c0, 8),
    ("PQT", 0x0c8, 8),
    ("PQA", 0x0d0, 8),
    ("PRS", 0x0dc, 4),
    ("PECTL", 0x0e0, 4),
    ("PEDATA", 0x0e4, 4),
    ("PEADDR", 0x0e8, 4),
    ("PEUADDR", 0x0ec, 4),
];

#[test]
fn register_offsets_match_the_spec_table() {
    assert_eq!(regs::FIXED, SPEC_REGISTERS);
    // And the typed consts are the table's (the type is the width).
    let typed32 = [
        ("VER", regs::VER),
        ("GCMD", regs::GCMD),
        ("GSTS", regs::GSTS),
        ("FSTS", regs::FSTS),
        ("FECTL", regs::FECTL),
        ("FEDATA", regs::FEDATA),
        ("FEADDR", regs::FEADDR),
        ("FEUADDR", regs::FEUADDR),
        ("PMEN", regs::PMEN),
        ("PLMBASE", regs::PLMBASE),
        ("PLMLIMIT", regs::PLMLIMIT),
        ("ICS", regs::ICS),
        ("IECTL", regs::IECTL),
        ("IEDATA", regs::IEDATA),
        ("IEADDR", regs::IEADDR),
        ("IEUADDR", regs::IEUADDR),
        ("PRS", regs::PRS),
        ("PECTL", regs::PECTL),
        ("PEDATA", regs::PEDATA),
        ("PEADDR", regs::PEADDR),
        ("PEUADDR", regs::PEUADDR),
    ];
    let typed64 = [
        ("CAP", regs::CAP),
        ("ECAP", regs::ECAP),
        ("RTADDR", regs::RTADDR),
        ("CCMD", regs::CCMD),
        ("PHMBASE", regs::PHMBASE),
        ("PHMLIMIT", regs::PHMLIMIT),
        ("IQH", regs::IQH),
        ("IQT", regs::IQT),
        ("IQA", regs::IQA),
        ("IQER", regs::IQER),
        ("IRTA", regs::IRTA),
        ("PQH", regs::PQH),
        ("PQT", regs::PQT),
        ("PQA", regs::PQA),
    ];
    let lookup = |name: &str| SPEC_REGISTERS.iter().find(|r| r.0 == name).copied().unwrap();
    for (name, r) in typed32 {
        assert_eq!((r.0, 4), (lookup(name).1, lookup(name).2), "{name}");
    }
    for (name, r) in typed64 {
        assert_eq!((r.0, 8), (lookup(name).1, lookup(name).2), "{name}");
    }
    assert_eq!(typed32.len() + typed64.len(), SPEC_REGISTERS.len());
    // No two registers overlap.
    let mut spans: Vec<_> = SPEC_REGISTERS.iter().map(|&(_, o, w)| (o, o + u64::from(w))).collect();
    spans.sort_unstable();
    assert!(spans.windows(2).all(|p| p[0].1 <= p[1].0));
}

#[test]
fn capability_vector() {
    // ND = 6, CM = 1, SAGAW = 01100b (48- and 57-bit), MGAW = 47 (48 bits), FRO = 22h,
    // SSLPS = 0011b, PSI = 1, NFR = 7, MAMV = 18, DWD = DRD = 1, FS1GP = 1, ESRTPS = 1.
    let cap = 0x81d2_078c_222f_0c86;
    assert_eq!(regs::cap::ND.get(cap), 6);
    assert_eq!(regs::cap::domains(cap), 1 << 16);
    assert!(regs::cap::CM.is_set(cap));
    assert!(!regs::cap::RWBF.is_set(cap));
    assert_eq!(regs::cap::SAGAW.get(cap), Aw::Bits48.sagaw_bit() | Aw::Bits57.sagaw_bit());
    assert_eq!(regs::cap::mgaw_bits(cap), 48);
    assert_eq!(regs::cap::fro_bytes(cap), 0x220);
    assert_eq!(regs::cap::SSLPS.get(cap), regs::cap::SSLPS_2M | regs::cap::SSLPS_1G);
    assert!(regs::cap::PSI.is_set(cap));
    assert_eq!(regs::cap::nfr_count(cap), 8);
    assert_eq!(regs::cap::MAMV.get(cap), 18);
    assert!(regs::cap::DWD.is_set(cap) && regs::cap::DRD.is_set(cap));
    assert!(regs::cap::FS1GP.is_set(cap));
    assert!(!regs::cap::FS5LP.is_set(cap));
    assert!(regs::cap::ESRTPS.is_set(cap));
    // Fault recording register 7, the last: 220h + 7 * 16 = 290h.
    assert_eq!(
        regs::frcd(cap, 7),
        (sviommu_vtd::spec::Reg64(0x290), sviommu_vtd::spec::Reg64(0x298))
    );
}

#[test]
fn extended_capability_vector() {
    // QI, DT, PT, SC; IRO = 0Fh; MHMV = Fh; NEST, PRS, SRS; PSS = 19; PASID, PDS, SMTS, SSTS,
    // FSTS, RPS.
    let ecap = 0x0002_cd98_a4f0_0fc6;
    for (f, on) in [
        (regs::ecap::C, false),
        (regs::ecap::QI, true),
        (regs::ecap::DT, true),
        (regs::ecap::IR, false),
        (regs::ecap::PT, true),
        (regs::ecap::SC, true),
        (regs::ecap::NEST, true),
        (regs::ecap::PRS, true),
        (regs::ecap::ERS, false),
        (regs::ecap::SRS, true),
        (regs::ecap::PASID, true),
        (regs::ecap::PDS, true),
        (regs::ecap::SMTS, true),
        (regs::ecap::SSADS, false),
        (regs::ecap::SSTS, true),
        (regs::ecap::FSTS, true),
        (regs::ecap::RPS, true),
        (regs::ecap::ADMS, false),
    ] {
        assert_eq!(f.is_set(ecap), on, "{f:?}");
    }
    assert_eq!(regs::ecap::iro_bytes(ecap), 0xf0);
    assert_eq!(regs::iva(ecap).0, 0xf0);
    assert_eq!(regs::iotlb(ecap).0, 0xf8);
    assert_eq!(regs::ecap::MHMV.get(ecap), 0xf);
    assert_eq!(regs::ecap::pasid_bits(ecap), 20);
}

#[test]
fn command_and_status_vectors() {
    // GCMD: TE (31), SRTP (30), QIE (26).
    let gcmd = 0xc400_0000;
    assert!(regs::gcmd::TE.is_set(gcmd));
    assert!(regs::gcmd::SRTP.is_set(gcmd));
    assert!(regs::gcmd::QIE.is_set(gcmd));
    assert!(!regs::gcmd::WBF.is_set(gcmd));
    assert_eq!(regs::gsts::TES.mask(), regs::gcmd::TE.mask(), "status mirrors command");

    // RTADDR: RTA = 0x1_2345_6000, TTM = 01b; 11b is abort-DMA, 10b reserved.
    let rtaddr = 0x0000_0001_2345_6400;
    assert_eq!(regs::rtaddr::RTA.in_place(rtaddr), 0x1_2345_6000);
    assert_eq!(Ttm::try_from(regs::rtaddr::TTM.get(rtaddr)), Ok(Ttm::Scalable));
    assert_eq!(Ttm::try_from(regs::rtaddr::TTM.get(0xc00)), Ok(Ttm::AbortDma));
    assert_eq!(Ttm::try_from(regs::rtaddr::TTM.get(0x800)), Err(Reserved(2)));

    // FSTS: FRI = 3, PPF, IQE.
    let fsts = 0x312;
    assert_eq!(regs::fsts::FRI.get(fsts), 3);
    assert!(regs::fsts::PPF.is_set(fsts));
    assert!(regs::fsts::IQE.is_set(fsts));
    assert!(!regs::fsts::PFO.is_set(fsts));

    // CCMD: ICC, CIRG = 11b (device), FM = 10b, SID = 0x0310, DID = 9.
    let ccmd = 0xe000_0002_0310_0009;
    assert!(regs::ccmd::ICC.is_set(ccmd));
    assert_eq!(CcGranularity::try_from(regs::ccmd::CIRG.get(ccmd)), Ok(CcGranularity::Device));
    assert_eq!(regs::ccmd::FM.get(ccmd), 2);
    assert_eq!(regs::ccmd::SID.get(ccmd), 0x0310);
    assert_eq!(regs::ccmd::DID.get(ccmd), 9);

    // IOTLB_REG: IVT, IIRG = 11b (page), DR, DW, DID = 9.
    let iotlb = 0xb003_0009_0000_0000;
    assert!(regs::iotlb_reg::IVT.is_set(iotlb));
    assert_eq!(
        IotlbGranularity::try_from(regs::iotlb_reg::IIRG.get(iotlb)),
        Ok(IotlbGranularity::Page)
    );
    assert!(regs::iotlb_reg::DR.is_set(iotlb) && regs::iotlb_reg::DW.is_set(iotlb));
    assert_eq!(regs::iotlb_reg::DID.get(iotlb), 9);

    // IQA: base 0xabcd000, DW = 1 (256-bit), QS = 3 (8 pages).
    let iqa = 0x0000_0000_0abc_d803;
    assert_eq!(regs::iqa::IQA.in_place(iqa), 0xabc_d000);
    assert_eq!(DescWidth::from_dw(regs::iqa::DW.is_set(iqa)), DescWidth::W256);
    assert_eq!(regs::iqa::queue_bytes(iqa), 8 * 4096);

    // PQA: base 0xdef0000, PQS = 1; PRS: PPR and PRO; FECTL: IM.
    let pqa = 0x0000_0000_0def_0001;
    assert_eq!(regs::pqa::PQA.in_place(pqa), 0xdef_0000);
    assert_eq!(regs::pqa::queue_bytes(pqa), 2 * 4096);
    assert!(regs::prs::PPR.is_set(3) && regs::prs::PRO.is_set(3));
    assert!(regs::fectl::IM.is_set(0x8000_0000) && !regs::fectl::IP.is_set(0x8000_0000));
    assert!(regs::ics::IWC.is_set(1));
}

// ---------------------------------------------------------------------------------------------
// §3.14 Handling Requests to Interrupt Address Range
// ---------------------------------------------------------------------------------------------

#[test]
fn interrupt_address_range_is_feex_xxxx() {
    use sviommu_vtd::spec::{is_interrupt_address, INTERRUPT_ADDR_FIRST, INTERRUPT_ADDR_LAST};
    // FEEx_xxxxh: bits 31:20 = FEEh, bits 19:0 anything; nothing above bit 31.
    assert_eq!((INTERRUPT_ADDR_FIRST, INTERRUPT_ADDR_LAST), (0xfee0_0000, 0xfeef_ffff));
    assert!(is_interrupt_address(0xfee0_0000));
    assert!(is_interrupt_address(0xfee0_1004));
    assert!(is_interrupt_address(0xfeef_ffff));
    assert!(!is_interrupt_address(0xfedf_ffff));
    assert!(!is_interrupt_address(0xfef0_0000));
    assert!(!is_interrupt_address(0x1_fee0_0000), "bit 32 set: not FEEx_xxxxh");
}
