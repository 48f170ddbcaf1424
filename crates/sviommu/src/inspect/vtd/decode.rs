//! VT-d structures and page-table entries as named fields. There is no decoder here: every
//! value comes from a getter of a `sviommu_vtd::spec` view, or from a `Field` const of the
//! page-table format in `sviommu_pgtable`; this module only names what they return.

use sviommu_pgtable::{vtd_ss, x86, Field, Stage};
use sviommu_vtd::spec::pasid::{PasidDirEntry, PasidEntry};
use sviommu_vtd::spec::root::{
    ContextEntry, RootEntry, ScalableContextEntry, ScalableRootEntry, TranslationType,
};
use sviommu_vtd::spec::{Aw, Fspm, Pgtt, Reserved};

use crate::inspect::record::{Fields, Value};

/// The structure names the model reports to its observer (`WalkObserver::structure`), and the
/// view each is decoded with.
pub const ROOT: &str = "root entry";
/// Legacy context entry.
pub const CONTEXT: &str = "context entry";
/// Scalable-mode root entry.
pub const SM_ROOT: &str = "scalable-mode root entry";
/// Scalable-mode context entry.
pub const SM_CONTEXT: &str = "scalable-mode context entry";
/// PASID directory entry.
pub const PASID_DIR: &str = "PASID directory entry";
/// PASID-table entry.
pub const PASID_ENTRY: &str = "PASID-table entry";

fn flag(b: bool) -> Value {
    Value::Flag(b)
}

fn named<T>(r: Result<T, Reserved>, name: fn(T) -> &'static str) -> Value {
    match r {
        Ok(v) => Value::Name(name(v).to_owned()),
        Err(Reserved(raw)) => Value::Name(format!("reserved ({raw:#x})")),
    }
}

fn tt_name(tt: TranslationType) -> &'static str {
    match tt {
        TranslationType::UntranslatedOnly => "untranslated-only",
        TranslationType::All => "all (device-TLB)",
        TranslationType::PassThrough => "pass-through",
    }
}

fn aw_name(aw: Aw) -> &'static str {
    match aw {
        Aw::Bits39 => "39-bit",
        Aw::Bits48 => "48-bit",
        Aw::Bits57 => "57-bit",
    }
}

fn pgtt_name(p: Pgtt) -> &'static str {
    match p {
        Pgtt::FirstStage => "first-stage",
        Pgtt::SecondStage => "second-stage",
        Pgtt::Nested => "nested",
        Pgtt::PassThrough => "pass-through",
    }
}

fn fspm_name(f: Fspm) -> &'static str {
    match f {
        Fspm::FourLevel => "4-level",
        Fspm::FiveLevel => "5-level",
    }
}

/// §9.1 root entry.
pub fn root(e: &RootEntry) -> Fields {
    Fields(vec![("P", flag(e.p())), ("CTP", Value::Hex(e.ctp()))])
}

/// §9.2 scalable-mode root entry.
pub fn sm_root(e: &ScalableRootEntry) -> Fields {
    Fields(vec![
        ("LP", flag(e.lp())),
        ("LCTP", Value::Hex(e.lctp())),
        ("UP", flag(e.up())),
        ("UCTP", Value::Hex(e.uctp())),
    ])
}

/// §9.3 legacy context entry.
pub fn context(e: &ContextEntry) -> Fields {
    Fields(vec![
        ("P", flag(e.p())),
        ("FPD", flag(e.fpd())),
        ("TT", named(e.tt(), tt_name)),
        ("SSPTPTR", Value::Hex(e.ssptptr())),
        ("AW", named(e.aw(), aw_name)),
        ("AVAIL", Value::Hex(e.avail().into())),
        ("DID", Value::Num(e.did().into())),
    ])
}

/// §9.4 scalable-mode context entry.
pub fn sm_context(e: &ScalableContextEntry) -> Fields {
    Fields(vec![
        ("P", flag(e.p())),
        ("FPD", flag(e.fpd())),
        ("DTE", flag(e.dte())),
        ("PASIDE", flag(e.paside())),
        ("PRE", flag(e.pre())),
        ("PDTS", Value::Num(e.pdts().into())),
        ("PASIDDIRPTR", Value::Hex(e.pasiddirptr())),
        ("RID_PASID", Value::Num(e.rid_pasid().into())),
        ("RID_PRIV", flag(e.rid_priv())),
    ])
}

/// §9.5 PASID directory entry.
pub fn pasid_dir(e: &PasidDirEntry) -> Fields {
    Fields(vec![
        ("P", flag(e.p())),
        ("FPD", flag(e.fpd())),
        ("SMPTBLPTR", Value::Hex(e.smptblptr())),
    ])
}

/// §9.6 PASID-table entry.
pub fn pasid_entry(e: &PasidEntry) -> Fields {
    Fields(vec![
        ("P", flag(e.p())),
        ("FPD", flag(e.fpd())),
        ("AW", named(e.aw(), aw_name)),
        ("SSEE", flag(e.ssee())),
        ("PGTT", named(e.pgtt(), pgtt_name)),
        ("SSADE", flag(e.ssade())),
        ("SSPTPTR", Value::Hex(e.ssptptr())),
        ("DID", Value::Num(e.did().into())),
        ("PWSNP", flag(e.pwsnp())),
        ("PGSNP", flag(e.pgsnp())),
        ("CD", flag(e.cd())),
        ("EMTE", flag(e.emte())),
        ("EMT", Value::Num(e.emt().into())),
        ("PWT", flag(e.pwt())),
        ("PCD", flag(e.pcd())),
        ("PAT", Value::Hex(e.pat().into())),
        ("SRE", flag(e.sre())),
        ("ERE", flag(e.ere())),
        ("FSPM", named(e.fspm(), fspm_name)),
        ("WPE", flag(e.wpe())),
        ("NXE", flag(e.nxe())),
        ("SMEP", flag(e.smep())),
        ("EAFE", flag(e.eafe())),
        ("FSPTPTR", Value::Hex(e.fsptptr())),
    ])
}

/// A structure the model read, decoded by the view its name selects: the fields, and whether
/// reserved bits are set in the part a request from `devfn` uses. `None` for a name or a
/// length this module does not know (shown raw).
pub fn structure(what: &str, words: &[u64], haw: u8, devfn: u8) -> Option<(Fields, bool)> {
    fn view<const N: usize>(words: &[u64]) -> Option<[u64; N]> {
        <[u64; N]>::try_from(words).ok()
    }
    Some(match what {
        ROOT => {
            let e = RootEntry::from_words(view(words)?);
            (root(&e), e.reserved_bits_set(haw))
        }
        CONTEXT => {
            let e = ContextEntry::from_words(view(words)?);
            (context(&e), e.reserved_bits_set(haw))
        }
        SM_ROOT => {
            let e = ScalableRootEntry::from_words(view(words)?);
            (sm_root(&e), e.reserved_bits_set_for(devfn, haw))
        }
        SM_CONTEXT => {
            let e = ScalableContextEntry::from_words(view(words)?);
            (sm_context(&e), e.reserved_bits_set(haw))
        }
        PASID_DIR => {
            let e = PasidDirEntry::from_words(view(words)?);
            (pasid_dir(&e), e.reserved_bits_set(haw))
        }
        PASID_ENTRY => {
            let e = PasidEntry::from_words(view(words)?);
            (pasid_entry(&e), e.reserved_bits_set(haw))
        }
        _ => return None,
    })
}

/// The fields of a page-table entry, by the format's `Field` consts: x86-64 paging for the
/// first stage (§9.7), VT-d second-stage paging for the second (§9.8). Every one-bit field the
/// format declares, then the address field.
pub fn entry(stage: Stage, raw: u64) -> Fields {
    let (bits, addr): (&[(&'static str, Field)], Field) = match stage {
        Stage::S1 => (
            &[
                ("P", x86::P),
                ("RW", x86::RW),
                ("US", x86::US),
                ("PWT", x86::PWT),
                ("PCD", x86::PCD),
                ("A", x86::A),
                ("D", x86::D),
                ("PS", x86::PS),
                ("G", x86::G),
                ("XD", x86::XD),
            ],
            x86::ADDR,
        ),
        Stage::S2 => (
            &[
                ("R", vtd_ss::R),
                ("W", vtd_ss::W),
                ("X", vtd_ss::X),
                ("PS", vtd_ss::PS),
                ("A", vtd_ss::A),
                ("D", vtd_ss::D),
                ("SNP", vtd_ss::SNP),
                ("TM", vtd_ss::TM),
            ],
            vtd_ss::ADDR,
        ),
    };
    let mut fields: Vec<(&'static str, Value)> =
        bits.iter().map(|&(name, f)| (name, Value::Flag(f.is_set(raw)))).collect();
    fields.push(("ADDR", Value::Hex(addr.in_place(raw))));
    Fields(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(f: &Fields) -> Vec<&'static str> {
        f.0.iter().map(|(n, _)| *n).collect()
    }

    fn spec_names<T>(fields: &[sviommu_vtd::spec::FieldAccess<T>]) -> Vec<&'static str> {
        fields.iter().map(|a| a.named.name).collect()
    }

    /// Every field each view declares is shown, under the spec's name, in the spec's order: a
    /// field added to a view without being added here fails this test.
    #[test]
    fn every_declared_field_is_shown() {
        assert_eq!(names(&root(&RootEntry::default())), spec_names(RootEntry::FIELDS));
        assert_eq!(
            names(&sm_root(&ScalableRootEntry::default())),
            spec_names(ScalableRootEntry::FIELDS)
        );
        assert_eq!(names(&context(&ContextEntry::default())), spec_names(ContextEntry::FIELDS));
        assert_eq!(
            names(&sm_context(&ScalableContextEntry::default())),
            spec_names(ScalableContextEntry::FIELDS)
        );
        assert_eq!(names(&pasid_dir(&PasidDirEntry::default())), spec_names(PasidDirEntry::FIELDS));
        assert_eq!(names(&pasid_entry(&PasidEntry::default())), spec_names(PasidEntry::FIELDS));
    }

    #[test]
    fn values_come_from_the_getters() {
        let mut pe = PasidEntry::default();
        pe.set_p(true);
        pe.set_pgtt(Pgtt::Nested);
        pe.set_fsptptr(0x1234_5000);
        pe.set_did(42);
        let f = pasid_entry(&pe);
        assert_eq!(f.get("P"), Some(&Value::Flag(true)));
        assert_eq!(f.get("PGTT"), Some(&Value::Name("nested".into())));
        assert_eq!(f.get("FSPTPTR"), Some(&Value::Hex(0x1234_5000)));
        assert_eq!(f.get("DID"), Some(&Value::Num(42)));
        pe.set_pgtt_raw(7);
        assert_eq!(pasid_entry(&pe).get("PGTT"), Some(&Value::Name("reserved (0x7)".into())));
        let (f, reserved) = structure(PASID_ENTRY, &pe.words(), 52, 0).unwrap();
        assert!(!reserved);
        assert_eq!(f.get("DID"), Some(&Value::Num(42)));
        assert!(structure(PASID_ENTRY, &[0; 2], 52, 0).is_none(), "wrong length");
        assert!(structure("STE", &[0; 8], 52, 0).is_none());
    }

    #[test]
    fn the_scalable_root_entry_checks_the_half_the_devfn_uses() {
        let mut re = ScalableRootEntry::default();
        re.set_lp(true);
        re.set_uctp(1 << 60); // above any HAW: reserved in the upper half only
        assert_eq!(structure(SM_ROOT, &re.words(), 48, 0x10).map(|(_, r)| r), Some(false));
        assert_eq!(structure(SM_ROOT, &re.words(), 48, 0x90).map(|(_, r)| r), Some(true));
    }

    #[test]
    fn entries_decode_by_their_format() {
        let f = entry(Stage::S1, 0x8000_0000_0020_1027);
        assert_eq!(f.text_set(), "P RW US A XD ADDR=0x201000");
        let f = entry(Stage::S2, 0x0000_0000_1000_0883);
        assert_eq!(f.text_set(), "R W PS SNP ADDR=0x10000000");
    }
}
