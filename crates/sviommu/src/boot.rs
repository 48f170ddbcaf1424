//! `sviommu boot`: Debian's Linux under QEMU (TCG) on our VT-d model, and what both sides saw.
//!
//! `qemu/build.sh` builds and caches QEMU with the `sviommu-vtd` device (qemu/'s patch, linked
//! with this clone's `sviommu-ffi`), the kernel and the initramfs. A boot makes a 4 MiB disk
//! image with 1 MiB of host data at 1 MiB, boots the guest with a virtio-blk disk behind the
//! IOMMU (`iommu_platform=on`), and reads back: the guest's result line (the MD5 of what it read
//! and of what it wrote and read back at 2 MiB), the image after power-off, the kernel's IOMMU
//! lines and warnings, and the statistics the shim wrote from `sviommu_stats` at exit.

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

/// The build script, in this clone.
const BUILD_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../qemu/build.sh");
/// What `qemu/build.sh --check` exits with when something is not built yet.
const NOT_BUILT: i32 = 3;
/// The disk image: 4 MiB, host data at 1 MiB, the guest's writes at 2 MiB.
const MIB: usize = 1 << 20;
const DISK_BYTES: usize = 4 * MIB;
const HOST_AT: usize = MIB;
const GUEST_AT: usize = 2 * MIB;
/// What the guest's init prints.
const RESULT_TAG: &str = "SVIOMMU-RESULT ";

/// Which IOMMU the guest gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Iommu {
    /// None: DMA goes straight to memory.
    None,
    /// Our VT-d model (`-device sviommu-vtd`).
    Vtd,
}

/// How Linux drives the VT-d model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Legacy mode (`intel_iommu=on,sm_off`): root and context tables, second-stage tables.
    Legacy,
    /// Scalable mode (`intel_iommu=on,sm_on`): PASID tables; Linux picks the stage.
    Scalable,
}

impl Mode {
    fn cmdline(self) -> &'static str {
        match self {
            Mode::Legacy => "intel_iommu=on,sm_off",
            Mode::Scalable => "intel_iommu=on,sm_on",
        }
    }
}

/// What went wrong around the guest (the guest's own failures are in [`Boot`]).
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("QEMU, the kernel or the initramfs is not built: run qemu/build.sh, or pass --build")]
    NotBuilt,
    #[error("qemu/build.sh failed ({0}); its messages are above")]
    Build(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("qemu/build.sh printed no `{0}=` line")]
    Artefact(&'static str),
    #[error("the guest did not power off within {0} s")]
    Timeout(u64),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BootError {
    let what = what.into();
    move |e| BootError::Io(what, e)
}

/// What `qemu/build.sh` built.
#[derive(Clone, Debug, Serialize)]
pub struct Artefacts {
    pub qemu: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Folders for QEMU's `-L` (Debian's source has no firmware).
    pub firmware: Vec<PathBuf>,
    /// The first 16 hex digits of the patch's SHA-256: the cache key.
    pub patch: String,
}

/// The artefacts, building what is missing when `build`; without it, `Ok(None)` when something
/// is not built (the script still relinks QEMU with the current model).
pub fn artefacts(build: bool) -> Result<Option<Artefacts>, BootError> {
    let mut cmd = Command::new("sh");
    cmd.arg(BUILD_SCRIPT);
    if !build {
        cmd.arg("--check");
    }
    let out = cmd.stderr(Stdio::inherit()).output().map_err(io(BUILD_SCRIPT))?;
    if !out.status.success() {
        return match out.status.code() {
            Some(NOT_BUILT) if !build => Ok(None),
            _ => Err(BootError::Build(out.status.to_string())),
        };
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |k: &'static str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
            .map(str::to_owned)
            .ok_or(BootError::Artefact(k))
    };
    Ok(Some(Artefacts {
        qemu: get("qemu")?.into(),
        kernel: get("kernel")?.into(),
        initrd: get("initrd")?.into(),
        firmware: get("firmware")?.split(':').map(PathBuf::from).collect(),
        patch: get("patch")?,
    }))
}

/// The guest's result line.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GuestResult {
    /// `ok` if what it wrote read back the same through the device.
    pub status: String,
    /// MD5 of the 1 MiB it read at 1 MiB (the host's data).
    pub read: String,
    /// MD5 of the 1 MiB it wrote at 2 MiB, and of what it read back there.
    pub wrote: String,
    pub back: String,
}

/// One boot.
#[derive(Clone, Debug, Serialize)]
pub struct Boot {
    pub iommu: Iommu,
    pub mode: Option<Mode>,
    pub cmdline: String,
    /// Wall-clock time from starting QEMU to its exit.
    pub wall_secs: f64,
    /// The kernel's clock when it ran /init (its `Run /init` line).
    pub init_secs: Option<f64>,
    /// The kernel's lines about the IOMMU (DMAR, DMA remapping, iommu).
    pub iommu_lines: Vec<String>,
    /// Kernel lines that warn or report an error, a bug or a DMA fault.
    pub warnings: Vec<String>,
    /// The guest's result line, if it printed one.
    pub guest: Option<GuestResult>,
    /// MD5 of the host's data at 1 MiB, and of the image at 2 MiB after power-off.
    pub host_md5: String,
    pub image_md5: String,
    /// What the model counted (`sviommu_stats`, written by the shim at exit), by name; empty
    /// without an IOMMU.
    pub stats: BTreeMap<String, u64>,
    /// QEMU's exit status and its own messages.
    pub qemu_status: String,
    pub qemu_stderr: String,
    /// The serial console, whole.
    #[serde(skip)]
    pub console: String,
}

impl Boot {
    /// The data checks: the guest read the host's data, its writes read back, and they reached
    /// the image.
    pub fn data_intact(&self) -> bool {
        self.guest.as_ref().is_some_and(|g| {
            g.status == "ok"
                && g.read == self.host_md5
                && g.wrote == g.back
                && g.wrote == self.image_md5
        })
    }

    /// A statistic, 0 if absent.
    pub fn stat(&self, k: &str) -> u64 {
        self.stats.get(k).copied().unwrap_or(0)
    }
}

/// Boots the guest once. `timeout` bounds QEMU's run.
pub fn boot(
    a: &Artefacts,
    iommu: Iommu,
    mode: Mode,
    extra: &str,
    timeout: Duration,
) -> Result<Boot, BootError> {
    let dir = scratch()?;
    let disk = dir.join("disk.img");
    let stats_file = dir.join("stats");
    let mut image = vec![0u8; DISK_BYTES];
    fill_unguessable(image.get_mut(HOST_AT..HOST_AT + MIB).unwrap_or_default());
    std::fs::write(&disk, &image).map_err(io(disk.display().to_string()))?;
    let host_md5 = md5(image.get(HOST_AT..HOST_AT + MIB).unwrap_or_default())?;

    let mut cmdline = String::from("console=ttyS0 panic=-1 loglevel=7");
    let mode = match iommu {
        Iommu::None => None,
        Iommu::Vtd => {
            cmdline.push(' ');
            cmdline.push_str(mode.cmdline());
            Some(mode)
        }
    };
    if !extra.is_empty() {
        cmdline.push(' ');
        cmdline.push_str(extra);
    }
    let mut cmd = Command::new(&a.qemu);
    for f in &a.firmware {
        cmd.arg("-L").arg(f);
    }
    cmd.args(["-M", "q35", "-accel", "tcg", "-m", "512", "-smp", "1", "-nodefaults"]).args([
        "-no-user-config",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
    ]);
    if iommu == Iommu::Vtd {
        // First: PCI devices take their address space from the IOMMU when they are realized.
        cmd.arg("-device").arg(format!("sviommu-vtd,stats={}", stats_file.display()));
    }
    cmd.arg("-kernel").arg(&a.kernel).arg("-initrd").arg(&a.initrd).arg("-append").arg(&cmdline);
    cmd.arg("-drive")
        .arg(format!("file={},if=none,id=d0,format=raw", disk.display()))
        .args(["-device", "virtio-blk-pci,drive=d0,disable-legacy=on,iommu_platform=on"]);
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io(a.qemu.display().to_string()))?;
    let out = child.stdout.take();
    let err = child.stderr.take();
    let reader = std::thread::spawn(move || slurp(out));
    let err_reader = std::thread::spawn(move || slurp(err));
    let status = loop {
        if let Some(s) = child.try_wait().map_err(io("waiting for QEMU"))? {
            break s;
        }
        if start.elapsed() > timeout {
            // Best effort: the process is ours and is being abandoned.
            let _ = child.kill();
            let _ = child.wait();
            return Err(BootError::Timeout(timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let wall_secs = start.elapsed().as_secs_f64();
    let console = reader.join().unwrap_or_default();
    let qemu_stderr = err_reader.join().unwrap_or_default();

    let image = std::fs::read(&disk).map_err(io(disk.display().to_string()))?;
    let image_md5 = md5(image.get(GUEST_AT..GUEST_AT + MIB).unwrap_or_default())?;
    let stats = std::fs::read_to_string(&stats_file).map(|t| parse_stats(&t)).unwrap_or_default();
    // Best effort: a leftover scratch folder in the temp dir is harmless.
    let _ = std::fs::remove_dir_all(&dir);

    Ok(Boot {
        iommu,
        mode,
        cmdline,
        wall_secs,
        init_secs: console.lines().find(|l| l.contains("Run /init")).and_then(kernel_time),
        iommu_lines: console.lines().filter(|l| is_iommu_line(l)).map(clean).collect(),
        warnings: console.lines().filter(|l| is_warning(l)).map(clean).collect(),
        guest: console.lines().find_map(guest_result),
        host_md5,
        image_md5,
        stats,
        qemu_status: status.to_string(),
        qemu_stderr,
        console,
    })
}

fn slurp<R: Read>(r: Option<R>) -> String {
    let mut buf = Vec::new();
    if let Some(mut r) = r {
        // A read error ends the capture; what was read is kept.
        let _ = r.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// A fresh folder for one boot's disk and statistics.
fn scratch() -> Result<PathBuf, BootError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("sviommu-boot-{}-{nanos:09}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(io(dir.display().to_string()))?;
    Ok(dir)
}

/// Bytes the guest cannot guess: ChaCha8 (the generator the simulator's streams use) seeded
/// from the clock.
fn fill_unguessable(buf: &mut [u8]) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos());
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(&nanos.to_le_bytes());
    ChaCha8Rng::from_seed(seed).fill_bytes(buf);
}

/// MD5 by the system's `md5sum`, as the guest's busybox computes it.
fn md5(data: &[u8]) -> Result<String, BootError> {
    let mut child = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(io("md5sum"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(data).map_err(io("md5sum"))?;
    }
    let out = child.wait_with_output().map_err(io("md5sum"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.split_whitespace().next().unwrap_or_default().to_owned())
}

/// The shim's statistics file: `name value` lines.
fn parse_stats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

/// `[    1.234567] text`: the time.
fn kernel_time(line: &str) -> Option<f64> {
    let rest = line.trim_start().strip_prefix('[')?;
    rest.split_once(']')?.0.trim().parse().ok()
}

fn clean(line: &str) -> String {
    line.trim_end_matches('\r').to_owned()
}

fn is_iommu_line(l: &str) -> bool {
    let lower = l.to_ascii_lowercase();
    !l.contains("SVIOMMU-")
        && (l.contains("DMAR") || lower.contains("iommu") || lower.contains("remapping"))
}

/// A kernel line with a word that warns or reports an error, a bug or a fault.
fn is_warning(l: &str) -> bool {
    const WORDS: [&str; 10] =
        ["warning", "warn", "error", "failed", "fail", "fault", "bug", "oops", "tainted", "trace"];
    !l.contains(RESULT_TAG)
        && l.to_ascii_lowercase()
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| WORDS.contains(&w))
}

fn guest_result(l: &str) -> Option<GuestResult> {
    let rest = &l.get(l.find(RESULT_TAG)? + RESULT_TAG.len()..)?;
    let mut g = GuestResult::default();
    for kv in rest.split_whitespace() {
        let (k, v) = kv.split_once('=')?;
        let v = v.to_owned();
        match k {
            "status" => g.status = v,
            "read" => g.read = v,
            "wrote" => g.wrote = v,
            "back" => g.back = v,
            _ => {}
        }
    }
    Some(g)
}

/// The cache names in the shim's statistics, in the architecture's order.
const CACHES: [&str; 6] = ["context", "pasid", "iotlb", "fs_psc", "ss_psc", "ss_leaf"];
/// The invalidation descriptors the shim names.
const DESCRIPTORS: [&str; 9] = [
    "context_cache",
    "iotlb",
    "dev_tlb",
    "iec",
    "wait",
    "pasid_iotlb",
    "pasid_cache",
    "pasid_dev_tlb",
    "page_group_response",
];

/// The summary for people.
pub fn text(b: &Boot) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let mode = b.mode.map_or("no IOMMU".to_owned(), |m| format!("{:?} mode", m).to_lowercase());
    let _ = writeln!(s, "guest: Debian's kernel on q35 (TCG), {mode}");
    let _ = writeln!(s, "cmdline: {}", b.cmdline);
    let init = b.init_secs.map_or("-".to_owned(), |t| format!("{t:.2} s"));
    let _ =
        writeln!(s, "boot: /init at {init} (kernel clock), {:.1} s wall to power-off", b.wall_secs);
    let data = if b.data_intact() { "intact" } else { "NOT intact" };
    match &b.guest {
        Some(g) => {
            let _ = writeln!(
                s,
                "virtio-blk: {data} (guest status {}, read {}, wrote {}, image {})",
                g.status,
                short(&g.read),
                short(&g.wrote),
                short(&b.image_md5)
            );
        }
        None => {
            let _ = writeln!(s, "virtio-blk: the guest printed no result line");
        }
    }
    let _ = writeln!(s, "kernel IOMMU lines:");
    for l in &b.iommu_lines {
        let _ = writeln!(s, "  {l}");
    }
    let _ = writeln!(s, "kernel warnings: {}", b.warnings.len());
    for l in &b.warnings {
        let _ = writeln!(s, "  {l}");
    }
    if !b.stats.is_empty() {
        let _ = writeln!(
            s,
            "model: {} translations, {} faults, {} register accesses, {} MSIs, {} panics",
            b.stat("translated"),
            b.stat("faulted"),
            b.stat("mmio_accesses"),
            b.stat("outputs_delivered"),
            b.stat("panics")
        );
        for c in CACHES {
            let (h, m) = (b.stat(&format!("cache.{c}.hits")), b.stat(&format!("cache.{c}.misses")));
            if h + m > 0 {
                let _ = writeln!(
                    s,
                    "  cache {c:<8} {:5.1}% hits of {:>8}, {} invalidated",
                    100.0 * h as f64 / (h + m) as f64,
                    h + m,
                    b.stat(&format!("cache.{c}.invalidated"))
                );
            }
        }
        let invs: Vec<String> = DESCRIPTORS
            .iter()
            .filter_map(|d| {
                let n = b.stat(&format!("inv.{d}"));
                (n > 0).then(|| format!("{d} {n}"))
            })
            .collect();
        let _ = writeln!(
            s,
            "  invalidation descriptors: {}",
            if invs.is_empty() { "none".to_owned() } else { invs.join(", ") }
        );
    }
    if !b.qemu_stderr.trim().is_empty() {
        let _ = writeln!(s, "QEMU said:");
        for l in b.qemu_stderr.lines() {
            let _ = writeln!(s, "  {l}");
        }
    }
    s
}

fn short(md5: &str) -> &str {
    md5.get(..8).unwrap_or(md5)
}

/// Where the artefacts are, for messages.
pub fn build_script() -> &'static Path {
    Path::new(BUILD_SCRIPT)
}

/// `sviommu boot`'s options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The IOMMU the guest gets.
    #[arg(long, value_enum, default_value_t = Iommu::Vtd)]
    pub iommu: Iommu,
    /// How Linux drives the VT-d model.
    #[arg(long, value_enum, default_value_t = Mode::Legacy)]
    pub mode: Mode,
    /// More kernel command line (e.g. `iommu.strict=1`).
    #[arg(long, default_value = "")]
    pub append: String,
    /// Build what is missing first (QEMU takes minutes the first time).
    #[arg(long)]
    pub build: bool,
    /// Seconds QEMU may run.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = crate::Format::Text)]
    pub format: crate::Format,
}

/// Runs `sviommu boot`.
pub fn main(args: &Args) -> std::process::ExitCode {
    use std::process::ExitCode;
    let run = || {
        let a = artefacts(args.build)?.ok_or(BootError::NotBuilt)?;
        boot(&a, args.iommu, args.mode, &args.append, Duration::from_secs(args.timeout))
    };
    match run() {
        Ok(b) => {
            match args.format {
                crate::Format::Text => print!("{}", text(&b)),
                crate::Format::Json => {
                    println!("{}", serde_json::to_string_pretty(&b).unwrap_or_default());
                }
            }
            let model_ok = b.stat("faulted") == 0 && b.stat("panics") == 0;
            if b.data_intact() && model_ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("sviommu boot: {e}");
            ExitCode::from(2)
        }
    }
}
