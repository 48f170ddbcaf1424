//! What `sviommu run` prints: a report as text tables or as one JSON document.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use serde::Serialize;
use sviommu_pgtable::{Access, Fault, Leaf, Stage};

/// A whole run.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Which scenario ran.
    pub scenario: String,
    /// One section per translation setup.
    pub sections: Vec<Section>,
}

/// One translation setup (a set of tables) and the requests translated through it.
#[derive(Debug, Serialize)]
pub struct Section {
    pub title: String,
    /// The tables, one line per stage, in walk order.
    pub stages: Vec<String>,
    /// The architecture's names for the input, intermediate and output addresses.
    pub address_names: [&'static str; 3],
    pub translations: Vec<Row>,
}

/// One request and what the walk gave.
#[derive(Debug, Serialize)]
pub struct Row {
    /// What the request stands for.
    pub what: String,
    /// The address the device sent.
    pub input: Hex,
    pub access: String,
    /// Where stage 1 alone puts the input (GPA / IPA): what the guest's CPU would see.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intermediate: Option<Hex>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Hex>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub perms: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultReport>,
    /// Page-table entries read, both stages together.
    pub reads: u32,
}

/// An address, serialised as a `0x` hex string so no JSON reader rounds it.
#[derive(Clone, Copy, Debug)]
pub struct Hex(pub u64);

impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:#x}", self.0))
    }
}

/// A walk fault, as data.
#[derive(Debug, Serialize)]
pub struct FaultReport {
    pub stage: &'static str,
    pub level: i8,
    pub kind: String,
    /// The address that stage was translating.
    pub address: Hex,
    /// Set when stage 2 faulted while fetching this stage-1 level's table entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage1_table_level: Option<i8>,
}

impl Row {
    /// A row from a nested walk's outcome and the stage-1-only output beside it.
    pub fn new(
        what: &str,
        input: u64,
        access: Access,
        intermediate: Option<u64>,
        outcome: Result<Leaf, Fault>,
        reads: u32,
    ) -> Self {
        let mut row = Row {
            what: what.to_owned(),
            input: Hex(input),
            access: access_name(access),
            intermediate: intermediate.map(Hex),
            output: None,
            page_size: None,
            perms: None,
            fault: None,
            reads,
        };
        match outcome {
            Ok(leaf) => {
                row.output = Some(Hex(leaf.output));
                row.page_size = Some(1 << leaf.page_lg2);
                row.perms = Some(leaf.perms.to_string());
            }
            Err(f) => {
                row.fault = Some(FaultReport {
                    stage: stage_name(f.stage),
                    level: f.level,
                    kind: format!("{:?}", f.kind),
                    address: Hex(f.input),
                    stage1_table_level: f.s1_fetch.map(|s| s.level),
                });
            }
        }
        row
    }
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::S1 => "stage 1",
        Stage::S2 => "stage 2",
    }
}

fn access_name(a: Access) -> String {
    let kind = if a.exec {
        "exec"
    } else if a.write {
        "write"
    } else {
        "read"
    };
    if a.privileged {
        format!("{kind} (priv)")
    } else {
        kind.to_owned()
    }
}

fn size_name(bytes: u64) -> String {
    match bytes.trailing_zeros() {
        30.. => format!("{}G", bytes >> 30),
        20.. => format!("{}M", bytes >> 20),
        _ => format!("{}K", bytes >> 10),
    }
}

/// The report as tables for a reader.
pub fn text(report: &Report) -> String {
    let mut out = format!("sviommu run: {}\n", report.scenario);
    for section in &report.sections {
        out.push_str(&format!("\n{}\n", section.title));
        for stage in &section.stages {
            out.push_str(&format!("  {stage}\n"));
        }
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        let [input, intermediate, output] = section.address_names;
        table.set_header([
            "request",
            "access",
            input,
            intermediate,
            output,
            "page",
            "reads",
            "result",
        ]);
        for row in &section.translations {
            let mut cells = vec![
                Cell::new(&row.what),
                Cell::new(&row.access),
                Cell::new(format!("{:#x}", row.input.0)),
            ];
            cells.push(Cell::new(row.intermediate.map_or("-".into(), |h| format!("{:#x}", h.0))));
            cells.push(Cell::new(row.output.map_or("-".into(), |h| format!("{:#x}", h.0))));
            cells.push(Cell::new(row.page_size.map_or("-".into(), size_name)));
            cells.push(Cell::new(row.reads).set_alignment(CellAlignment::Right));
            cells.push(Cell::new(match (&row.fault, &row.perms) {
                (Some(f), _) => {
                    let mut s = format!("{} {} fault, level {}", f.stage, f.kind, f.level);
                    if let Some(l) = f.stage1_table_level {
                        s.push_str(&format!(" (fetching stage-1 level-{l} table)"));
                    }
                    s
                }
                (None, Some(p)) => format!("ok, {p}"),
                (None, None) => "ok".into(),
            }));
            table.add_row(cells);
        }
        for line in table.to_string().lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(
        "\nGPA / IPA: where the guest's own tables put the address (what its CPU would see).\n\
         HPA / PA: where the IOMMU's nested walk puts it.\n\
         reads: page-table entries that walk fetched, both stages together, with no caches\n\
         (a cold 4-level over 4-level walk of a 4K page reads 24).\n",
    );
    out
}

/// The report as one JSON document.
pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
