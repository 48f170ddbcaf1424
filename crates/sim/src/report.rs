//! A run's report as people read it (one screen per architecture) and as JSON.

use std::fmt::Write as _;

use comfy_table::{presets, CellAlignment, Table};

use crate::ats::Completion;
use crate::machine::FaultIn;
use crate::replay::ReplayReport;
use crate::run::{ArchReport, CacheRow, DmaResult, ReadsDistribution, Report, Stats, StreamRow};
use crate::scenario::Arch;

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
/// Who carried out an action: a guest's own action names its guest; everything else is the
/// host's.
fn actor(what: &str) -> &'static str {
    if what.starts_with("guest ") {
        "guest:"
    } else {
        "host:"
    }
}

fn action_row(what: &str) -> [String; 8] {
    let mut row: [String; 8] = Default::default();
    row[0] = actor(what).to_owned();
    row[5] = what.to_owned();
    row
}

/// A stream in the DMA table, where it was sent; its figures follow the table.
fn stream_row(n: usize, st: &StreamRow) -> [String; 8] {
    [
        st.device.clone(),
        format!("{:#06x}", st.request_id),
        st.pasid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
        format!("{:#x}..", st.base),
        st.access.to_string(),
        format!("stream {n}: {} {} over {} pages (below)", st.requests, st.kind, st.pages),
        String::new(),
        String::new(),
    ]
}

/// `0: 12, 1-2: 3, ...; mean 1.4, max 9`.
fn distribution(d: &ReadsDistribution) -> String {
    let buckets: Vec<String> =
        d.buckets.iter().map(|b| format!("{} read {}", b.count, b.reads)).collect();
    format!("{}; mean {:.1}, max {}", buckets.join(", "), d.mean, d.max)
}

fn cache_table<'a>(rows: impl IntoIterator<Item = &'a CacheRow>) -> Table {
    let mut t = table(["cache", "lookups", "hits", "misses", "evictions", "invalidated"]);
    for c in rows {
        t.add_row([
            c.cache.to_owned(),
            c.lookups.to_string(),
            c.hits.to_string(),
            c.misses.to_string(),
            c.evictions.to_string(),
            c.invalidated.to_string(),
        ]);
    }
    t
}

fn streams(s: &mut String, a: &ArchReport) {
    if a.streams.is_empty() {
        return;
    }
    let _ = writeln!(s, "streams, each summed over its requests");
    for (i, st) in a.streams.iter().enumerate() {
        let mut shape = format!("{} over {} pages from {:#x}", st.kind, st.pages, st.base);
        if let Some(k) = st.stride {
            let _ = write!(shape, ", stride {k}");
        }
        if let Some(e) = st.exponent {
            let _ = write!(shape, ", exponent {e}");
        }
        if let Some(seed) = st.seed {
            let _ = write!(shape, ", seed {seed}");
        }
        let _ = writeln!(
            s,
            "  stream {}: {} {}s by {}: {shape}",
            i + 1,
            st.requests,
            st.access,
            st.device
        );
        let _ = writeln!(
            s,
            "    {} translated, {} blocked; {} distinct pages touched",
            st.translated, st.blocked, st.pages_touched
        );
        for (f, n) in &st.faults {
            let _ = writeln!(s, "    {n} x {f}");
        }
        let _ = writeln!(s, "    translations by table reads: {}", distribution(&st.reads));
        // Only the caches the stream used.
        let used = st.caches.iter().filter(|c| c.hits + c.misses + c.evictions + c.invalidated > 0);
        let t = cache_table(used);
        s.extend(indent(&t).lines().map(|l| format!("  {l}\n")));
    }
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
        if let Some(v) = &g.viommu {
            let mut line = format!(
                "  v{} forwarded: nesting parent HWPT {}, {} nested HWPT(s) now",
                v.model, v.parent_hwpt, v.nested_hwpts
            );
            if let Some(n) = v.invalidations {
                let _ = write!(
                    line,
                    ", {} attach(es), {} replaced, {} detached, {n} invalidation(s)",
                    v.attached, v.replaced, v.detached
                );
            }
            if let Some(n) = v.events_delivered {
                let _ = write!(line, ", {n} event(s) delivered to the guest");
            }
            let _ = writeln!(s, "{line}, {} refused", v.refused);
        }
        for d in &g.dma_domains {
            let nest = match d.domain {
                Some(n) => format!("domain {n} nests it"),
                None => "the host's nested STE takes it (CD 0 of the guest's CD table)".to_owned(),
            };
            let maps: Vec<String> =
                d.pages.iter().map(|p| format!("IOVA {:#x} -> GPA {:#x}", p.iova, p.gpa)).collect();
            let maps = if maps.is_empty() { "nothing mapped".to_owned() } else { maps.join(", ") };
            let _ = writeln!(
                s,
                "  {}'s DMA domain (the guest's driver, requests without PASID): {maps}; {nest} over domain {}",
                d.device, g.stage2_domain
            );
        }
        for p in &g.pasids {
            let how = if g.viommu.is_some() { " (bound by the guest's driver)" } else { "" };
            let nest = match p.domain {
                Some(d) => format!("domain {d} nests"),
                None => "the host's nested STE takes".to_owned(),
            };
            let _ = writeln!(
                s,
                "  {} on {} at PASID {}{how}: {nest} the guest's stage 1 (root at GPA {:#x}) over domain {}",
                p.process, p.device, p.pasid, p.stage1_root_gpa, g.stage2_domain
            );
        }
    }
    let _ = writeln!(s, "DMA, each answered by the {} model's translate", a.arch);
    let mut t = table(["device", "ID", "PASID", "address", "access", "result", "page", "reads"]);
    // Host actions and streams before the DMA at `i`, in the scenario's order: a stream that
    // followed `k` actions comes before action `k`.
    let between = |t: &mut Table, i: usize| {
        let mut rows: Vec<((usize, u8), [String; 8])> = Vec::new();
        for (j, act) in a.actions.iter().enumerate().filter(|(_, x)| x.before_dma == i) {
            rows.push(((j, 1), action_row(&act.what)));
        }
        for (n, st) in a.streams.iter().enumerate().filter(|(_, x)| x.before_dma == i) {
            rows.push(((st.after_actions, 0), stream_row(n + 1, st)));
        }
        // One line per `ats` step (its rows share a place and a device).
        let mut steps: Vec<(usize, &str, usize)> = Vec::new();
        for r in a.ats.iter().filter(|x| x.before_dma == i) {
            match steps.last_mut() {
                Some((k, d, n)) if *k == r.after_actions && *d == r.device => *n += 1,
                _ => steps.push((r.after_actions, &r.device, 1)),
            }
        }
        for (k, device, n) in steps {
            let mut row: [String; 8] = Default::default();
            row[0] = device.to_owned();
            row[5] = format!("ATS: {n} translation request(s) (below)");
            rows.push(((k, 0), row));
        }
        rows.sort_by_key(|(k, _)| *k);
        for (_, r) in rows {
            t.add_row(r);
        }
    };
    for (i, d) in a.dma.iter().enumerate() {
        between(&mut t, i);
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
    between(&mut t, a.dma.len());
    if let Some(c) = t.column_mut(7) {
        c.set_cell_alignment(CellAlignment::Right);
    }
    s.push_str(&indent(&t));
    streams(s, a);
    ats(s, &a.ats);
    let _ = writeln!(s, "who reaches each address space, and why");
    let mut t = table(["address space", "device", "PASID", "why", "by DMA"]);
    for space in &a.audit.address_spaces {
        for (i, e) in space.reachable_by.iter().enumerate() {
            // A guest's PASID table reaches every PASID its table holds (`pasid` none): the
            // probe used one of them.
            let table = space.kind == "pasid_table" && e.pasid.is_none();
            let dma = match &space.reached_by_dma {
                Some(v) if v.contains(&(e.device.clone(), e.pasid)) => "yes",
                Some(v) if table && v.iter().any(|(d, _)| *d == e.device) => "yes",
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
                match e.pasid {
                    Some(p) => p.0.to_string(),
                    None if table => "all".to_owned(),
                    None => "-".to_owned(),
                },
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
    stats_section(s, &a.stats);
    s.push('\n');
}

/// The `ats` steps' rows: each translation request, the page request its answer led to, what
/// the host did, the response and the retry.
fn ats(s: &mut String, rows: &[crate::ats::AtsRow]) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(s, "translation requests (ATS), page requests (PRI) and retries");
    let mut t = table([
        "device",
        "ID",
        "PASID",
        "address",
        "access",
        "answer",
        "page request",
        "host",
        "response",
        "retry",
    ]);
    for r in rows {
        let pr = r.page_request.as_ref();
        t.add_row([
            r.device.clone(),
            format!("{:#06x}", r.request_id),
            r.pasid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            format!("{:#x}", r.addr),
            r.access.to_string(),
            completion(&r.first),
            pr.map_or_else(String::new, |p| format!("group {}: {}", p.group, p.unit)),
            match pr.and_then(|p| p.host) {
                Some(FaultIn::Resident(hpa)) => format!("resident at {hpa:#x}"),
                Some(FaultIn::Invalid(why)) => why.to_owned(),
                None => String::new(),
            },
            pr.and_then(|p| p.response)
                .map_or_else(String::new, |x| format!("{:X}h {}", x.code, x.name)),
            r.retry.as_ref().map_or_else(String::new, completion),
        ]);
    }
    s.push_str(&indent(&t));
}

fn completion(c: &Completion) -> String {
    match *c {
        Completion::Translated { output, size_lg2, read, write } => format!(
            "-> {output:#x} {} {}{}",
            page_size(size_lg2),
            if read { "r" } else { "" },
            if write { "w" } else { "" }
        ),
        Completion::NoAccess => "no access (R = W = 0)".to_owned(),
        Completion::UnsupportedRequest => "Unsupported Request".to_owned(),
        Completion::CompleterAbort => "Completer Abort".to_owned(),
    }
}

/// The statistics section of `run`, `trace replay` and `stats`: every figure is the model's
/// or its driver's count, or a sum of the model's answers.
pub fn stats_section(s: &mut String, st: &Stats) {
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
    let _ = writeln!(s, "  translations by table reads: {}", distribution(&st.reads_distribution));
    let o = &st.outbox;
    let _ = writeln!(
        s,
        "  sent by the unit (its outbox): {} messages to devices (page responses, ATS invalidations), \
         {} interrupts ({} coalesced); full {} times",
        o.messages, o.interrupts, o.interrupts_coalesced, o.full
    );
    let p = &st.page_requests;
    if p.queued + p.received + p.responses > 0 {
        let _ = writeln!(
            s,
            "  page requests: {} queued by the unit, {} collected by the IOMMU API, {} groups answered",
            p.queued, p.received, p.responses
        );
    }
    for (f, n) in &st.faults {
        let _ = writeln!(s, "  {n} x {f}");
    }
    let z = &st.sanitizer;
    if z.enabled {
        let _ = writeln!(
            s,
            "  invalidation sanitizer (strict): violations found {}, not kept {}; words re-read {}",
            z.violations, z.dropped, z.reads
        );
        for r in &z.reports {
            let _ = writeln!(s, "    {r}");
        }
    }
    if !st.invalidations.is_empty() {
        let list: Vec<String> =
            st.invalidations.iter().map(|i| format!("{} {}", i.count, i.what)).collect();
        let _ = writeln!(
            s,
            "  invalidations the unit carried out (the drivers' setup too): {}",
            list.join(", ")
        );
    }
    let lost: Vec<String> = st
        .dropped
        .iter()
        .filter(|d| d.count > 0)
        .map(|d| format!("{} {}", d.count, d.what))
        .collect();
    let _ = writeln!(
        s,
        "  dropped or refused: {}",
        if lost.is_empty() { "nothing".to_owned() } else { lost.join(", ") }
    );
    s.push_str(&indent(&cache_table(&st.caches)));
    let tlb = st.caches.iter().find(|c| c.cache == "IOTLB" || c.cache == "TLB");
    if let Some(c) = tlb.filter(|c| c.lookups > st.requests) {
        let _ = writeln!(
            s,
            "  (more {0} lookups than requests: the {0} is looked up once per page size a \
             translation may have, and ATS translation requests look it up too)",
            c.cache
        );
    }
}

/// A replay's report as text.
pub fn replay_text(r: &ReplayReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}", r.title);
    let _ = writeln!(
        s,
        "replay of {}: {} records on {} thread{}",
        r.trace,
        r.records,
        r.threads,
        if r.threads == 1 { "" } else { "s" }
    );
    for run in &r.runs {
        let _ = writeln!(s, "\n== {} (IOTLB {} entries)", run.unit, run.iotlb_entries);
        for a in &run.actions {
            let _ = writeln!(s, "{} {a}", actor(a));
        }
        let mut t = table(["device", "ID", "requests", "translated", "blocked", "digest"]);
        for d in &run.devices {
            t.add_row([
                d.device.clone(),
                format!("{:#06x}", d.request_id),
                d.requests.to_string(),
                d.translated.to_string(),
                d.blocked.to_string(),
                d.digest.clone(),
            ]);
        }
        s.push_str(&indent(&t));
        ats(&mut s, &run.ats);
        stats_section(&mut s, &run.stats);
    }
    s
}

/// Statistics alone, one section per architecture: `(arch, unit, stats)`.
pub fn stats_text(source: &str, runs: &[(Arch, String, Stats)]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "statistics of {source}");
    for (_, unit, st) in runs {
        let _ = writeln!(s, "\n== {unit}");
        stats_section(&mut s, st);
    }
    s
}
