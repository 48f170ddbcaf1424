//! `sviommu topology`: a scenario's IOMMU groups and domains as a tree, why each group is one,
//! and which devices may use PASIDs (and why not), as the core computed them.

use std::fmt::Write as _;

use serde::Serialize;

use crate::machine::{self, Machine};
use crate::run::DomainRow;
use crate::scenario::{Arch, ScenarioError, Source};

/// The topology on each architecture.
#[derive(Clone, Debug, Serialize)]
pub struct TopologyReport {
    /// The scenario's title.
    pub title: String,
    /// Per architecture.
    pub units: Vec<UnitTopology>,
}

/// One architecture's groups and domains.
#[derive(Clone, Debug, Serialize)]
pub struct UnitTopology {
    /// `vtd` or `smmuv3`.
    pub arch: Arch,
    /// Groups, each with its members and reasons, and the domain it is attached to.
    pub groups: Vec<GroupNode>,
    /// Domains with the devices attached.
    pub domains: Vec<DomainRow>,
}

/// A group in the tree.
#[derive(Clone, Debug, Serialize)]
pub struct GroupNode {
    /// Its number.
    pub id: u32,
    /// The domain its requests without PASID go to, by scenario name.
    pub domain: Option<String>,
    /// Its members.
    pub members: Vec<MemberNode>,
    /// Why they are one group.
    pub reasons: Vec<String>,
}

/// A group member.
#[derive(Clone, Debug, Serialize)]
pub struct MemberNode {
    /// Scenario name, or address for ports and bridges.
    pub name: String,
    /// Its address.
    pub address: String,
    /// PASID width it may use, or why it may not.
    pub pasid: Result<u8, String>,
}

/// Builds `source`'s machine on each architecture (nothing runs) and describes it.
pub fn topology(source: &Source) -> Result<TopologyReport, ScenarioError> {
    let scenario = crate::scenario::parse(source)?;
    let mut units = Vec::new();
    for &arch in &scenario.architectures {
        let (m, _) = machine::build(&scenario, source, arch)?;
        units.push(describe(&m));
    }
    Ok(TopologyReport { title: scenario.title, units })
}

fn describe(m: &Machine) -> UnitTopology {
    let names = machine::names(m);
    let iommu = m.iommu();
    let t = iommu.topology();
    let domain_name = |g| {
        let id = iommu.group_domain(g)?;
        Some(m.domains.iter().find(|d| d.id == id).map_or_else(
            || {
                m.guests
                    .iter()
                    .find(|x| x.stage2 == id)
                    .map_or_else(|| format!("domain {}", id.0), |x| format!("{} stage 2", x.name))
            },
            |d| d.name.clone(),
        ))
    };
    let groups = t
        .groups()
        .iter()
        .map(|g| GroupNode {
            id: g.id.0,
            domain: domain_name(g.id),
            members: g
                .members
                .iter()
                .map(|d| MemberNode {
                    name: names.get(d).cloned().unwrap_or_else(|| d.to_string()),
                    address: d.to_string(),
                    pasid: t.pasid_allowed(d).map(|w| w.bits()).map_err(|e| e.to_string()),
                })
                .collect(),
            reasons: g.reasons.iter().map(ToString::to_string).collect(),
        })
        .collect();
    drop(iommu);
    let domains = crate::run::domain_rows(m);
    UnitTopology { arch: m.arch, groups, domains }
}

/// As text: a tree per architecture.
pub fn text(r: &TopologyReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}", r.title);
    for u in &r.units {
        let _ = writeln!(s, "\n== {}", u.arch);
        for g in &u.groups {
            let domain = g.domain.as_deref().unwrap_or("no domain");
            let _ = writeln!(s, "group {} -> {domain}", g.id);
            for (i, mbr) in g.members.iter().enumerate() {
                let branch =
                    if i + 1 == g.members.len() && g.reasons.is_empty() { "`--" } else { "|--" };
                let pasid = match &mbr.pasid {
                    Ok(bits) => format!("PASID: {bits} bits"),
                    Err(why) => format!("no PASID: {why}"),
                };
                let name = if mbr.name == mbr.address {
                    mbr.name.clone()
                } else {
                    format!("{} ({})", mbr.name, mbr.address)
                };
                let _ = writeln!(s, "  {branch} {name}  [{pasid}]");
            }
            for (i, r) in g.reasons.iter().enumerate() {
                let branch = if i + 1 == g.reasons.len() { "`--" } else { "|--" };
                let _ = writeln!(s, "  {branch} because {r}");
            }
        }
    }
    s
}

/// As one JSON document.
pub fn json(r: &TopologyReport) -> String {
    serde_json::to_string_pretty(r).unwrap_or_default()
}
