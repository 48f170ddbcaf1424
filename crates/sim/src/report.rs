//! A run's report as people read it (one screen per architecture) and as JSON.

use std::fmt::Write as _;

use comfy_table::{presets, CellAlignment, Table};

use crate::run::{ArchReport, DmaResult, Report};

/// The report as one JSON document.
pub fn json(r: &Report) -> String {
    serde_json::to_string_pretty(r).unwrap_or_default()
}

fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(header);
    t
}

fn indent(t: &Table) -> String {
    t.to_string().lines().map(|l| format!("  {}\n", l.trim_end())).collect()
}

fn page_size(lg2: u8) -> String {
    match lg2 {
        0..=9 => format!("{}B", 1u64 << lg2),
        10..=19 => format!("{}K", 1u64 << (lg2 - 10)),
        20..=29 => format!("{}M", 1u64 << (lg2 - 20)),
        _ => format!("{}G", 1u64 << (lg2.min(63) - 30)),
    }
}

/// A host action between DMA rows: in the result column, so it does not widen the others.
fn action_row(what: &str) -> [String; 8] {
    let mut row: [String; 8] = Default::default();
    row[0] = "host:".to_owned();
    row[5] = what.to_owned();
    row
}

/// The report as text.
pub fn text(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}\n", r.title);
    for a in &r.runs {
        arch(&mut s, a);
    }
    s
}

fn arch(s: &mut String, a: &ArchReport) {
    let _ = writeln!(s, "== {}", a.unit);
    let _ = writeln!(s, "IOMMU groups");
    for g in &a.groups {
        let _ = writeln!(s, "  group {}: {}", g.id, g.members.join(", "));
        for r in &g.reasons {
            let _ = writeln!(s, "    because {r}");
        }
    }
    let _ = writeln!(s, "domains");
    for d in &a.domains {
        let _ = writeln!(
            s,
            "  {} (domain {}): attached {}; named {}",
            d.name,
            d.id,
            d.attached.join(", "),
            d.named.join(", ")
        );
    }
    for b in &a.binds {
        let _ = writeln!(s, "sva_bind({}, {}) -> PASID {}", b.device, b.process, b.pasid);
    }
    for g in &a.guests {
        let _ = writeln!(
            s,
            "guest {}: {} MiB of RAM at {:#x}, host stage 2 = domain {} (nesting parent), devices {}",
            g.name,
            g.ram_bytes >> 20,
            g.ram_hpa,
            g.stage2_domain,
            g.devices.join(", ")
        );
        for p in &g.pasids {
            let _ = writeln!(
                s,
                "  {} on {} at PASID {}: domain {} nests the guest's stage 1 (root at GPA {:#x}) over domain {}",
                p.process, p.device, p.pasid, p.domain, p.stage1_root_gpa, g.stage2_domain
            );
        }
    }
    let _ = writeln!(s, "DMA, each answered by the {} model's translate", a.arch);
    let mut t = table(["device", "ID", "PASID", "address", "access", "result", "page", "reads"]);
    for (i, d) in a.dma.iter().enumerate() {
        for act in a.actions.iter().filter(|x| x.before_dma == i) {
            t.add_row(action_row(&act.what));
        }
        let (result, page, reads) = match &d.result {
            DmaResult::Translated { output, page_lg2, reads } => {
                (format!("-> {output:#x}"), page_size(*page_lg2), reads.to_string())
            }
            DmaResult::Fault { code, name } => {
                (format!("fault {code:02X}h {name}"), String::new(), String::new())
            }
            DmaResult::Terminated { why } => {
                (format!("terminated: {why}"), String::new(), String::new())
            }
        };
        t.add_row([
            d.device.clone(),
            format!("{:#06x}", d.request_id),
            d.pasid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            format!("{:#x}", d.addr),
            d.access.to_string(),
            result,
            page,
            reads,
        ]);
    }
    for act in a.actions.iter().filter(|x| x.before_dma == a.dma.len()) {
        t.add_row(action_row(&act.what));
    }
    if let Some(c) = t.column_mut(7) {
        c.set_cell_alignment(CellAlignment::Right);
    }
    s.push_str(&indent(&t));
    let _ = writeln!(s, "who reaches each address space, and why");
    let mut t = table(["address space", "device", "PASID", "why", "by DMA"]);
    for space in &a.audit.address_spaces {
        for (i, e) in space.reachable_by.iter().enumerate() {
            let dma = match &space.reached_by_dma {
                Some(v) if v.contains(&(e.device.clone(), e.pasid)) => "yes",
                Some(_) => "NO",
                None => "-",
            };
            let why = serde_json::to_value(e.reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let address = e.device.to_string();
            let name =
                a.devices.iter().find(|d| d.address == address).map_or(address, |d| d.name.clone());
            t.add_row([
                if i == 0 {
                    a.labels.get(&space.id).cloned().unwrap_or_else(|| space.id.clone())
                } else {
                    String::new()
                },
                name,
                e.pasid.map_or_else(|| "-".to_owned(), |p| p.0.to_string()),
                why,
                dma.to_owned(),
            ]);
        }
    }
    s.push_str(&indent(&t));
    let _ = writeln!(
        s,
        "  static audit and DMA agree: {}",
        if a.audit.agrees_with_dma { "yes" } else { "NO" }
    );
    let st = &a.stats;
    let _ = writeln!(
        s,
        "statistics: {} requests, {} translated, {} blocked; {:.1} reads per translation; \
         {} faults recorded, {} lost",
        st.requests,
        st.translated,
        st.blocked,
        st.reads_per_translation,
        st.faults_recorded,
        st.faults_overflowed
    );
    let _ = writeln!(
        s,
        "  outbox: {} messages to devices, {} interrupts ({} coalesced), waited for room {} times",
        st.outbox.messages, st.outbox.interrupts, st.outbox.interrupts_coalesced, st.outbox.full
    );
    for (f, n) in &st.faults {
        let _ = writeln!(s, "  {n} x {f}");
    }
    let mut t = table(["cache", "hits", "misses", "evictions", "invalidated"]);
    for c in &st.caches {
        t.add_row([
            c.cache.to_owned(),
            c.hits.to_string(),
            c.misses.to_string(),
            c.evictions.to_string(),
            c.invalidated.to_string(),
        ]);
    }
    s.push_str(&indent(&t));
    s.push('\n');
}
