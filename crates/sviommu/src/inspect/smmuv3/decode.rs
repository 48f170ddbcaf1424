//! SMMUv3 structures and VMSAv8-64 descriptors as named fields. There is no decoder here: every
//! structure value comes from a getter of a `sviommu_smmuv3::spec` view (through the view's
//! `FIELDS` table of spec names and getters), and every descriptor field from a `Field` const of
//! `sviommu_pgtable::vmsa`; this module only names what they return.

use sviommu_pgtable::vmsa::{self, s1, s2};
use sviommu_pgtable::{Field, Stage};
use sviommu_smmuv3::spec::{
    Cd, Class, FieldAccess, Granule, L1Cd, L1Std, Reserved, Ste, StreamConfig,
};

use crate::inspect::record::{Fields, Value};

/// The structure names the model reports to its observer (`WalkObserver::structure`).
pub const STE: &str = "STE";
/// Context descriptor.
pub const CD: &str = "CD";
/// §5.1 Level 1 Stream Table Descriptor (a two-level Stream table's level-1 entry).
pub const L1STD: &str = "L1STD";
/// §5.3 Level 1 Context Descriptor (a two-level CD table's level-1 entry).
pub const L1CD: &str = "L1CD";

/// Every field a view's `FIELDS` table declares, in spec order, read through its getter: a
/// one-bit field as a flag, an address field as hex, anything else as a number.
fn view_fields<T>(view: &T, fields: &[FieldAccess<T>]) -> Fields {
    Fields(
        fields
            .iter()
            .map(|a| {
                let raw = (a.get)(view);
                let value = if a.named.address {
                    Value::Hex(raw)
                } else if a.value_bits == 1 {
                    Value::Flag(raw != 0)
                } else {
                    Value::Num(raw)
                };
                (a.named.name, value)
            })
            .collect(),
    )
}

fn config_name(c: Result<StreamConfig, Reserved>) -> Value {
    Value::Name(match c {
        Ok(StreamConfig::Abort) => "abort".into(),
        Ok(StreamConfig::Bypass) => "bypass".into(),
        Ok(StreamConfig::Stage1) => "stage 1".into(),
        Ok(StreamConfig::Stage2) => "stage 2".into(),
        Ok(StreamConfig::Nested) => "nested".into(),
        Err(Reserved(raw)) => format!("reserved ({raw:#x})"),
    })
}

/// §5.2 STE: every field; `Config` by name (`stage 1`, `nested`, `reserved (0x2)`).
pub fn ste(e: &Ste) -> Fields {
    let mut f = view_fields(e, Ste::FIELDS);
    if let Some(slot) = f.0.iter_mut().find(|(n, _)| *n == "Config") {
        slot.1 = config_name(e.config());
    }
    f
}

/// §5.4 CD: every field.
pub fn cd(e: &Cd) -> Fields {
    view_fields(e, Cd::FIELDS)
}

/// §5.1 L1STD: every field (`Span`, `L2Ptr`).
pub fn l1std(e: &L1Std) -> Fields {
    view_fields(e, L1Std::FIELDS)
}

/// §5.3 L1CD: every field (`V`, `L2Ptr`).
pub fn l1cd(e: &L1Cd) -> Fields {
    view_fields(e, L1Cd::FIELDS)
}

/// CLASS (§7.3) by its spec name.
pub fn class_name(c: Class) -> &'static str {
    match c {
        Class::Cd => "CD",
        Class::Tt => "TT",
        Class::In => "IN",
    }
}

/// A structure the model read, decoded by the view its name selects: the fields, and whether a
/// bit the spec marks Reserved, RES0 is set. `None` for a name or length this module does not
/// know (shown raw).
pub fn structure(what: &str, words: &[u64]) -> Option<(Fields, bool)> {
    fn view<const N: usize>(words: &[u64]) -> Option<[u64; N]> {
        <[u64; N]>::try_from(words).ok()
    }
    Some(match what {
        STE => {
            let e = Ste::from_words(view(words)?);
            (ste(&e), e.has_res0_set())
        }
        CD => {
            let e = Cd::from_words(view(words)?);
            (cd(&e), e.has_res0_set())
        }
        L1STD => {
            let e = L1Std(view(words)?);
            (l1std(&e), e.res0_set().iter().any(|&w| w != 0))
        }
        L1CD => {
            let e = L1Cd(view(words)?);
            (l1cd(&e), e.res0_set().iter().any(|&w| w != 0))
        }
        _ => return None,
    })
}

/// The fields of a VMSAv8-64 descriptor (Arm ARM D8.3), by the format's `Field` consts: the
/// one-bit fields as flags, the multi-bit ones as numbers, then the output (or next-table)
/// address for `granule` as `pgtable::vmsa` decodes it, with `OA[51:48]` from bits 15:12 for
/// the 64K granule when the SMMU's output size is 52 bits (FEAT_LPA). Without a known granule
/// (the walk's STE or CD was not seen) the 4K layout is used.
pub fn entry(stage: Stage, raw: u64, granule: Option<Granule>, oa52: bool) -> Fields {
    let common: [(&'static str, Field); 6] = [
        ("VALID", vmsa::VALID),
        ("TYPE", vmsa::TYPE),
        ("SH", vmsa::SH),
        ("AF", vmsa::AF),
        ("DBM", vmsa::DBM),
        ("Contiguous", vmsa::CONTIGUOUS),
    ];
    let own: &[(&'static str, Field)] = match stage {
        Stage::S1 => &[
            ("AttrIndx", s1::ATTR_INDX),
            ("AP", s1::AP),
            ("nG", s1::NG),
            ("PXN", s1::PXN),
            ("UXN", s1::UXN),
            ("PXNTable", s1::PXN_TABLE),
            ("UXNTable", s1::UXN_TABLE),
            ("APTable", s1::AP_TABLE),
        ],
        Stage::S2 => &[("MemAttr", s2::MEM_ATTR), ("S2AP", s2::S2AP), ("XN", s2::XN)],
    };
    let mut fields: Vec<(&'static str, Value)> = common
        .iter()
        .chain(own)
        .map(|&(name, f)| {
            let v = if f.mask().count_ones() == 1 {
                Value::Flag(f.is_set(raw))
            } else {
                Value::Num(f.get(raw))
            };
            (name, v)
        })
        .collect();
    let granule = match granule {
        None | Some(Granule::Size4K) => vmsa::Granule::K4,
        Some(Granule::Size16K) => vmsa::Granule::K16,
        Some(Granule::Size64K) => vmsa::Granule::K64,
    };
    // The SMMU model takes FEAT_LPA with a 52-bit OAS.
    let oa_52 = if oa52 { vmsa::Oa52::Lpa } else { vmsa::Oa52::Off };
    fields.push(("ADDR", Value::Hex(vmsa::descriptor_addr(raw, granule, oa_52))));
    Fields(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(f: &Fields) -> Vec<&'static str> {
        f.0.iter().map(|(n, _)| *n).collect()
    }

    /// Every field each view declares is shown under the spec's name, in the spec's order.
    #[test]
    fn every_declared_field_is_shown() {
        let ste_names: Vec<_> = Ste::FIELDS.iter().map(|a| a.named.name).collect();
        assert_eq!(names(&ste(&Ste::default())), ste_names);
        let cd_names: Vec<_> = Cd::FIELDS.iter().map(|a| a.named.name).collect();
        assert_eq!(names(&cd(&Cd::default())), cd_names);
        let l1std_names: Vec<_> = L1Std::FIELDS.iter().map(|a| a.named.name).collect();
        assert_eq!(names(&l1std(&L1Std::default())), l1std_names);
        let l1cd_names: Vec<_> = L1Cd::FIELDS.iter().map(|a| a.named.name).collect();
        assert_eq!(names(&l1cd(&L1Cd::default())), l1cd_names);
    }

    /// The level-1 descriptors decode from one word through their views; a set RES0 bit is
    /// reported, the wrong length is not decoded.
    #[test]
    fn level_1_descriptors_decode_through_their_views() {
        let mut d = L1Std::default();
        d.set_span(9);
        d.set_l2ptr(0x8_0004_0000);
        let (f, reserved) = structure(L1STD, &[d.word()]).unwrap();
        assert_eq!(f.get("Span"), Some(&Value::Num(9)));
        assert_eq!(f.get("L2Ptr"), Some(&Value::Hex(0x8_0004_0000)));
        assert!(!reserved);
        let (_, reserved) = structure(L1STD, &[d.word() | L1Std::RES0[0]]).unwrap();
        assert!(reserved);
        let mut d = L1Cd::default();
        d.set_v(true);
        d.set_l2ptr(0x4_5000);
        let (f, reserved) = structure(L1CD, &[d.word()]).unwrap();
        assert_eq!(f.get("V"), Some(&Value::Flag(true)));
        assert_eq!(f.get("L2Ptr"), Some(&Value::Hex(0x4_5000)));
        assert!(!reserved);
        assert!(structure(L1CD, &[d.word() | 1 << 1]).unwrap().1, "bit 1 is RES0");
        assert!(structure(L1CD, &[0; 8]).is_none(), "wrong length");
        assert!(structure(STE, &[0; 1]).is_none(), "wrong length");
    }

    #[test]
    fn values_come_from_the_getters() {
        let mut e = Ste::default();
        e.set_v(true);
        e.set_config(StreamConfig::Nested);
        e.set_s1contextptr(0x8_1234_5000);
        e.set_s2vmid(9);
        let f = ste(&e);
        assert_eq!(f.get("V"), Some(&Value::Flag(true)));
        assert_eq!(f.get("Config"), Some(&Value::Name("nested".into())));
        assert_eq!(f.get("S1ContextPtr"), Some(&Value::Hex(0x8_1234_5000)));
        assert_eq!(f.get("S2VMID"), Some(&Value::Num(9)));
        e.set_config_raw(0b010);
        assert_eq!(ste(&e).get("Config"), Some(&Value::Name("reserved (0x2)".into())));
        assert!(structure(STE, &[0; 4]).is_none(), "wrong length");
        assert!(structure("PASID-table entry", &[0; 8]).is_none());
        let (_, reserved) = structure(CD, &Cd::default().words()).unwrap();
        assert!(!reserved);
    }

    #[test]
    fn descriptors_decode_by_their_format_and_granule() {
        // A 4K stage-1 page: valid, page, AF, inner shareable, AttrIndx 1, PXN.
        let raw = 0x0020_0000_0004_270f;
        let f = entry(Stage::S1, raw, Some(Granule::Size4K), true);
        assert_eq!(f.text_set(), "VALID TYPE SH=3 AF AttrIndx=3 AP=0 PXN APTable=0 ADDR=0x42000");
        // 64K granule with a 52-bit OAS: OA[51:48] from bits 15:12.
        let f = entry(Stage::S2, 0x0000_0000_4001_f443, Some(Granule::Size64K), true);
        assert_eq!(f.get("ADDR"), Some(&Value::Hex(0x000f_0000_4001_0000)));
        assert_eq!(f.get("S2AP"), Some(&Value::Num(1)));
    }
}
