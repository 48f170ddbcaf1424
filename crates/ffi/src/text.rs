//! The statistics as `name value` lines (`sviommu_stats_text`): what an embedder writes out
//! without knowing every counter (the QEMU shim's statistics file, which `sviommu boot` reads).
//! Every scalar is printed; the sparse tables (faults by code, structures by type, walk reads by
//! level) only where non-zero.

use std::fmt::Write as _;

use sviommu_smmuv3::spec::Opcode;
use sviommu_tlb::sanitize::SanitizerStats;

use crate::types::*;

/// The cache names, in `SviommuStats::caches` order.
const VTD_CACHES: [&str; 6] = ["context", "pasid", "iotlb", "fs_psc", "ss_psc", "ss_leaf"];
const SMMU_CACHES: [&str; 6] = ["ste", "cd", "tlb", "s1_walk", "s2_walk", "s2_leaf"];
/// §6.5.2: the descriptor type codes' names, by code.
const VTD_DESCRIPTORS: [(usize, &str); 9] = [
    (1, "context_cache"),
    (2, "iotlb"),
    (3, "dev_tlb"),
    (4, "iec"),
    (5, "wait"),
    (6, "pasid_iotlb"),
    (7, "pasid_cache"),
    (8, "pasid_dev_tlb"),
    (9, "page_group_response"),
];

/// `s` and `r` as lines of `name value`, then the invalidation sanitizer's counters
/// (`sanitizer.violations`, `.dropped`, `.reads`) and each report it made as a line
/// `violation TEXT` (none unless the unit runs the strict profile).
pub fn stats_text(
    s: &SviommuStats,
    r: &SviommuRecordStats,
    sanitizer: &(SanitizerStats, Vec<String>),
) -> String {
    let mut t = counters_text(s, r);
    let (z, reports) = sanitizer;
    for (k, v) in [("violations", z.violations), ("dropped", z.dropped), ("reads", z.reads)] {
        let _ = writeln!(t, "sanitizer.{k} {v}");
    }
    for report in reports {
        let _ = writeln!(t, "violation {report}");
    }
    t
}

/// The counters of `s` and `r` as lines of `name value`.
fn counters_text(s: &SviommuStats, r: &SviommuRecordStats) -> String {
    let mut t = String::new();
    let mut line = |name: &dyn std::fmt::Display, v: u64| {
        let _ = writeln!(t, "{name} {v}");
    };
    let a = &s.abi;
    for (k, v) in [
        ("translated", a.translated),
        ("faulted", a.faulted),
        ("requests_refused", a.requests_refused),
        ("mmio_accesses", a.mmio_accesses),
        ("mmio_refused", a.mmio_refused),
        ("outputs_delivered", a.outputs_delivered),
        ("outputs_discarded", a.outputs_discarded),
        ("memory_errors", a.memory_errors),
        ("panics", a.panics),
        ("outbox.messages", s.outbox.messages),
        ("outbox.interrupts", s.outbox.interrupts),
        ("outbox.interrupts_coalesced", s.outbox.interrupts_coalesced),
        ("outbox.full", s.outbox.full),
    ] {
        line(&k, v);
    }
    let vtd = s.arch == SVIOMMU_ARCH_VTD;
    let names = if vtd { VTD_CACHES } else { SMMU_CACHES };
    for (name, c) in names.iter().zip(&s.caches) {
        for (k, v) in [
            ("hits", c.hits),
            ("misses", c.misses),
            ("evictions", c.evictions),
            ("stale_inserts", c.stale_inserts),
            ("invalidated", c.invalidated),
        ] {
            line(&format_args!("cache.{name}.{k}"), v);
        }
    }
    if vtd {
        for (code, name) in VTD_DESCRIPTORS {
            line(&format_args!("inv.{name}"), s.vtd_invalidations.get(code).copied().unwrap_or(0));
        }
        let q = &s.vtd_ats;
        for (k, v) in [
            ("translation_requests", q.translation_requests),
            ("page_requests_queued", q.page_requests_queued),
            ("page_requests_lost", q.page_requests_lost),
        ] {
            line(&format_args!("ats.{k}"), v);
        }
    } else {
        let q = &s.smmu_queues;
        for (k, v) in [
            ("events_written", q.events_written),
            ("events_overflowed", q.events_overflowed),
            ("page_requests_written", q.page_requests_written),
            ("page_requests_dropped", q.page_requests_dropped),
            ("stalls", q.stalls),
        ] {
            line(&format_args!("queue.{k}"), v);
        }
    }
    let sparse = |t: &mut String, prefix: &str, counts: &[u64], hex: bool| {
        for (i, &n) in counts.iter().enumerate().filter(|(_, &n)| n > 0) {
            let _ = if hex {
                writeln!(t, "{prefix}{i:#04x} {n}")
            } else {
                writeln!(t, "{prefix}{i} {n}")
            };
        }
    };
    sparse(&mut t, "fault.", &r.faults.by_code, true);
    if vtd {
        sparse(&mut t, "context_tt.", &r.vtd_context_tt, false);
        sparse(&mut t, "pasid_pgtt.", &r.vtd_pasid_pgtt, false);
    } else {
        sparse(&mut t, "ste_config.", &r.smmu_ste_config, false);
        let _ = writeln!(t, "cd.valid {}", r.smmu_cds);
        // §4.1: by the command's name (an opcode the model does not know is never consumed).
        for op in Opcode::ALL {
            let n = r.smmu_commands.by_opcode.get(usize::from(op as u8)).copied().unwrap_or(0);
            if n > 0 {
                let _ = writeln!(t, "cmd.{} {n}", op.name());
            }
        }
    }
    for (stage, row) in ["s1", "s2"].iter().zip(&r.walk_reads) {
        // Index 0 is level -1.
        for (i, &n) in row.iter().enumerate().filter(|(_, &n)| n > 0) {
            let _ = writeln!(t, "walk.{stage}.level{} {n}", i64::try_from(i).unwrap_or(0) - 1);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_always_and_tables_where_counted() {
        let mut s = SviommuStats { arch: SVIOMMU_ARCH_VTD, ..SviommuStats::default() };
        let mut r = SviommuRecordStats::default();
        s.abi.translated = 7;
        s.vtd_invalidations[5] = 2;
        r.faults.by_code[2] = 1;
        r.vtd_pasid_pgtt[2] = 3;
        r.walk_reads[1][4] = 9;
        r.walk_reads[0][0] = 1;
        let none = (SanitizerStats::default(), Vec::new());
        let t = stats_text(&s, &r, &none);
        let has = |l: &str| t.lines().any(|x| x == l);
        assert!(has("sanitizer.violations 0") && !t.contains("\nviolation "), "{t}");
        assert!(has("translated 7") && has("faulted 0") && has("inv.wait 2"), "{t}");
        assert!(has("cache.context.hits 0") && has("fault.0x02 1"), "{t}");
        assert!(
            has("pasid_pgtt.2 3") && has("walk.s2.level3 9") && has("walk.s1.level-1 1"),
            "{t}"
        );
        assert!(!t.contains("fault.0x03") && !t.contains("context_tt."), "{t}");
        s.arch = SVIOMMU_ARCH_SMMUV3;
        let t = stats_text(&s, &r, &none);
        assert!(t.contains("cache.ste.hits 0") && !t.contains("inv.") && !t.contains("pasid_pgtt"));
        assert!(
            t.contains("cd.valid 0") && !t.contains("ste_config.") && !t.contains("cmd."),
            "{t}"
        );
        r.smmu_ste_config[5] = 2;
        r.smmu_cds = 4;
        r.smmu_commands.by_opcode[Opcode::Sync as usize] = 6;
        r.smmu_commands.by_opcode[Opcode::CfgiSte as usize] = 1;
        let found = SanitizerStats { violations: 1, dropped: 0, reads: 12 };
        let t = stats_text(&s, &r, &(found, vec!["TLB entry ...: missing CMD_SYNC".to_owned()]));
        let has = |l: &str| t.lines().any(|x| x == l);
        assert!(has("sanitizer.violations 1") && has("sanitizer.reads 12"), "{t}");
        assert!(has("violation TLB entry ...: missing CMD_SYNC"), "{t}");
        assert!(has("ste_config.5 2") && has("cd.valid 4"), "{t}");
        assert!(has("cmd.CMD_SYNC 6") && has("cmd.CMD_CFGI_STE 1"), "{t}");
    }
}
