//! `sviommu boot`: Debian's Linux under QEMU (TCG) on our VT-d model (x86 q35) or our SMMUv3
//! model (Arm virt), and what both sides saw.
//!
//! `qemu/build.sh` builds and caches QEMU with the `sviommu-vtd` device and the virt machine's
//! `iommu=sviommu-smmuv3` (qemu/'s patch, linked with this clone's `sviommu-ffi`), the kernels
//! and the initramfs. A boot makes a 4 MiB disk
//! image with 1 MiB of host data at 1 MiB, boots the guest with a virtio-blk disk behind the
//! IOMMU (`iommu_platform=on`), and reads back: the guest's result line (the MD5 of what it read
//! and of what it wrote and read back at 2 MiB), the image after power-off, the kernel's IOMMU
//! lines and warnings, and the statistics the shim wrote from `sviommu_stats` at exit.

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
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

/// The guest's architecture and machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// x86-64 on q35, with the VT-d model.
    X86,
    /// AArch64 on virt, with the SMMUv3 model.
    Arm,
}

/// Which IOMMU the guest gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Iommu {
    /// None: DMA goes straight to memory.
    None,
    /// Our VT-d model (`-device sviommu-vtd`, x86).
    Vtd,
    /// Our SMMUv3 model (`-machine virt,iommu=sviommu-smmuv3`, Arm).
    Smmuv3,
}

/// How Linux drives the VT-d model: the translation structures it writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Legacy mode (`intel_iommu=on,sm_off`): root and context tables, second-stage tables
    /// (context entries with TT 00b, or 10b under `--passthrough`).
    Legacy,
    /// Scalable mode (`intel_iommu=on,sm_on`) with first-stage support withheld (ECAP.FSTS
    /// clear): Linux's PASID entries are second stage (PGTT 010b).
    #[value(name = "scalable-ss")]
    #[serde(rename = "scalable-ss")]
    ScalableSs,
    /// Scalable mode with first-stage support advertised: Linux's DMA domains are first stage
    /// (PGTT 001b).
    #[value(name = "scalable-fs")]
    #[serde(rename = "scalable-fs")]
    ScalableFs,
}

/// How Linux invalidates after an unmap (`iommu.strict`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Invalidation {
    /// The kernel's configured default.
    Default,
    /// `iommu.strict=1`: every unmap is invalidated before it returns.
    Strict,
    /// `iommu.strict=0`: unmaps are invalidated in batches (a flush queue).
    Lazy,
}

/// One boot's configuration: what the unit advertises and how Linux is asked to drive it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Setup {
    pub arch: Arch,
    pub iommu: Iommu,
    pub mode: Mode,
    pub invalidation: Invalidation,
    /// `iommu=pt`: Linux's default domain is the identity (pass-through) domain.
    pub passthrough: bool,
    /// CAP.CM: the unit may cache not-present entries (what a virtual IOMMU advertises).
    pub caching_mode: bool,
    /// Second-stage levels the unit supports: 3 (CAP.SAGAW 39 bits only) or 4 (39 and 48).
    pub levels: u8,
    /// Corrupt the disk's configuration while the guest waits before loading its drivers (VT-d:
    /// clear its context entry's Present bit; SMMUv3: clear its STE's V bit): the disk's first
    /// DMA faults, and Linux prints the fault.
    pub corrupt_context: bool,
    /// The model's strict profile (issue 14): invalidations take effect at their wait
    /// descriptor / CMD_SYNC, and the invalidation sanitizer checks every cache hit against
    /// the table words it was built from; its reports come back in the statistics.
    pub strict_model: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            arch: Arch::X86,
            iommu: Iommu::Vtd,
            mode: Mode::Legacy,
            invalidation: Invalidation::Default,
            passthrough: false,
            caching_mode: false,
            levels: 4,
            corrupt_context: false,
            strict_model: false,
        }
    }
}

impl Setup {
    /// The SMMUv3 boot with the other fields at their defaults.
    pub fn smmu() -> Self {
        Self { arch: Arch::Arm, iommu: Iommu::Smmuv3, ..Self::default() }
    }

    /// The kernel's IOMMU arguments.
    fn cmdline(&self) -> String {
        if self.iommu == Iommu::Smmuv3 {
            // arm-smmu-v3 takes the IOMMU core's options only.
            let mut c = Vec::new();
            match self.invalidation {
                Invalidation::Default => {}
                Invalidation::Strict => c.push("iommu.strict=1"),
                Invalidation::Lazy => c.push("iommu.strict=0"),
            }
            if self.passthrough {
                c.push("iommu.passthrough=1");
            }
            return c.join(" ");
        }
        let mut c = String::from(match self.mode {
            Mode::Legacy => "intel_iommu=on,sm_off",
            Mode::ScalableSs | Mode::ScalableFs => "intel_iommu=on,sm_on",
        });
        match self.invalidation {
            Invalidation::Default => {}
            Invalidation::Strict => c.push_str(" iommu.strict=1"),
            Invalidation::Lazy => c.push_str(" iommu.strict=0"),
        }
        if self.passthrough {
            c.push_str(" iommu=pt");
        }
        c
    }

    /// The shim's device and its properties.
    fn device(&self, stats: &Path) -> String {
        let on = |b: bool| if b { "on" } else { "off" };
        format!(
            "sviommu-vtd,stats={},scalable-mode=on,first-stage={},caching-mode={},aw-bits={}",
            stats.display(),
            on(self.mode == Mode::ScalableFs),
            on(self.caching_mode),
            if self.levels == 3 { 39 } else { 48 }
        )
    }

    /// A short name: `legacy`, `scalable-fs strict cm 3-level`...
    pub fn name(&self) -> String {
        if self.iommu == Iommu::None {
            return "no IOMMU".to_owned();
        }
        if self.iommu == Iommu::Smmuv3 {
            let mut n = String::from("smmuv3");
            match self.invalidation {
                Invalidation::Default => {}
                Invalidation::Strict => n.push_str(" strict"),
                Invalidation::Lazy => n.push_str(" lazy"),
            }
            if self.passthrough {
                n.push_str(" pt");
            }
            if self.corrupt_context {
                n.push_str(" corrupt-ste");
            }
            if self.strict_model {
                n.push_str(" strict-model");
            }
            return n;
        }
        let mut n = match self.mode {
            Mode::Legacy => "legacy",
            Mode::ScalableSs => "scalable-ss",
            Mode::ScalableFs => "scalable-fs",
        }
        .to_owned();
        match self.invalidation {
            Invalidation::Default => {}
            Invalidation::Strict => n.push_str(" strict"),
            Invalidation::Lazy => n.push_str(" lazy"),
        }
        if self.passthrough {
            n.push_str(" pt");
        }
        if self.caching_mode {
            n.push_str(" cm");
        }
        n.push_str(&format!(" {}-level", self.levels));
        if self.corrupt_context {
            n.push_str(" corrupt-context");
        }
        if self.strict_model {
            n.push_str(" strict-model");
        }
        n
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
    #[error("the guest did not power off within {0} s; its console ended with:\n{1}")]
    Timeout(u64, String),
    #[error("corrupting the disk's context entry / STE: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Setup(String),
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
    /// The Arm guest's: qemu-system-aarch64, Debian's arm64 kernel, its initramfs.
    pub qemu_arm: PathBuf,
    pub kernel_arm: PathBuf,
    pub initrd_arm: PathBuf,
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
        qemu_arm: get("qemu_arm")?.into(),
        kernel_arm: get("kernel_arm")?.into(),
        initrd_arm: get("initrd_arm")?.into(),
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
    pub setup: Setup,
    /// The setup's short name.
    pub name: String,
    pub cmdline: String,
    /// What the host corrupted while the guest waited (`Setup::corrupt_context`).
    pub corrupted: Option<String>,
    /// The fault reasons in Linux's DMAR fault lines (`[fault reason 0xNN]`), or the event
    /// numbers in arm-smmu-v3's event lines (`event 0xNN received:`), in order.
    pub kernel_fault_reasons: Vec<u8>,
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
    /// The invalidation sanitizer's reports (`violation` lines of the statistics; strict
    /// model only), in the model's words.
    pub violations: Vec<String>,
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

    /// Linux printed a DMAR fault line / SMMU event line, and every reason or event number in
    /// them is one the model recorded.
    pub fn fault_seen_by_linux(&self) -> bool {
        !self.kernel_fault_reasons.is_empty()
            && self.kernel_fault_reasons.iter().all(|r| self.stat(&format!("fault.{r:#04x}")) > 0)
    }

    /// A statistic, 0 if absent.
    pub fn stat(&self, k: &str) -> u64 {
        self.stats.get(k).copied().unwrap_or(0)
    }
}

/// Boots the guest once. `timeout` bounds QEMU's run.
pub fn boot(
    a: &Artefacts,
    setup: &Setup,
    extra: &str,
    timeout: Duration,
) -> Result<Boot, BootError> {
    let dir = scratch(setup.corrupt_context)?;
    let result = boot_in(a, setup, extra, timeout, &dir);
    // Best effort: a leftover scratch folder in the temp dir is harmless.
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn boot_in(
    a: &Artefacts,
    setup: &Setup,
    extra: &str,
    timeout: Duration,
    dir: &Path,
) -> Result<Boot, BootError> {
    let disk = dir.join("disk.img");
    let stats_file = dir.join("stats");
    let ram_file = dir.join("ram");
    let monitor = dir.join("monitor");
    let mut image = vec![0u8; DISK_BYTES];
    fill_unguessable(image.get_mut(HOST_AT..HOST_AT + MIB).unwrap_or_default());
    std::fs::write(&disk, &image).map_err(io(disk.display().to_string()))?;
    let host_md5 = md5(image.get(HOST_AT..HOST_AT + MIB).unwrap_or_default())?;

    let arm = setup.arch == Arch::Arm;
    let ours = match (setup.arch, setup.iommu) {
        (_, Iommu::None) => false,
        (Arch::X86, Iommu::Vtd) | (Arch::Arm, Iommu::Smmuv3) => true,
        (arch, iommu) => {
            return Err(BootError::Setup(format!("no {iommu:?} model on the {arch:?} machine")))
        }
    };
    let console = if arm { "ttyAMA0" } else { "ttyS0" };
    let mut cmdline = format!("console={console} panic=-1 loglevel=7");
    if ours {
        let c = setup.cmdline();
        if !c.is_empty() {
            cmdline.push(' ');
            cmdline.push_str(&c);
        }
    }
    let corrupt = setup.corrupt_context && ours;
    if corrupt {
        // guest-init.sh waits for a line on the console before it loads the drivers.
        cmdline.push_str(" sviommu.pause=1");
    }
    if !extra.is_empty() {
        cmdline.push(' ');
        cmdline.push_str(extra);
    }
    let (qemu, kernel, initrd) = if arm {
        (&a.qemu_arm, &a.kernel_arm, &a.initrd_arm)
    } else {
        (&a.qemu, &a.kernel, &a.initrd)
    };
    let mut cmd = Command::new(qemu);
    if arm {
        let machine = if ours { "virt,iommu=sviommu-smmuv3" } else { "virt" };
        cmd.args(["-M", machine, "-cpu", "cortex-a57"]);
        if ours {
            // virt.c makes the SMMU itself: its properties come as globals.
            cmd.arg("-global").arg(format!("sviommu-smmuv3.stats={}", stats_file.display()));
        }
    } else {
        for f in &a.firmware {
            cmd.arg("-L").arg(f);
        }
        cmd.args(["-M", "q35"]);
    }
    // The ffi reads the unit's profile from the environment when the shim creates it.
    cmd.env("SVIOMMU_PROFILE", if setup.strict_model { "strict" } else { "forgiving" });
    cmd.args(["-accel", "tcg", "-m", RAM, "-smp", "1", "-nodefaults"]).args([
        "-no-user-config",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
    ]);
    if corrupt {
        // Guest RAM in a file the host can write (x86: GPA = file offset, 512 MiB sit below
        // 4 GiB on q35; Arm: GPA = file offset + virt's RAM base), and a monitor to read the
        // unit's registers.
        cmd.arg("-object")
            .arg(format!(
                "memory-backend-file,id=ram,size={RAM},mem-path={},share=on",
                ram_file.display()
            ))
            .args(["-machine", "memory-backend=ram", "-monitor"])
            .arg(format!("unix:{},server=on,wait=off", monitor.display()));
    }
    if ours && !arm {
        // First: PCI devices take their address space from the IOMMU when they are realized.
        cmd.arg("-device").arg(setup.device(&stats_file));
    }
    cmd.arg("-kernel").arg(kernel).arg("-initrd").arg(initrd).arg("-append").arg(&cmdline);
    cmd.arg("-drive")
        .arg(format!("file={},if=none,id=d0,format=raw", disk.display()))
        .arg("-device")
        .arg(format!(
            "virtio-blk-pci,drive=d0,disable-legacy=on,iommu_platform=on,addr={DISK_SLOT:#x}"
        ));
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io(qemu.display().to_string()))?;
    let mut stdin = child.stdin.take();
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let out = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut console = String::new();
        if let Some(out) = out {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                // The receiver may be gone once the guest was let go; the console is kept.
                let _ = tx.send(line.clone());
                console.push_str(&line);
                console.push('\n');
            }
        }
        console
    });
    let err = child.stderr.take();
    let err_reader = std::thread::spawn(move || slurp(err));
    let mut corrupted = None;
    let mut waiting = corrupt;
    let mut quitting = false;
    let outcome = loop {
        if let Some(s) = child.try_wait().map_err(io("waiting for QEMU"))? {
            break Ok(s);
        }
        if start.elapsed() > timeout {
            break Err(BootError::Timeout(timeout.as_secs(), String::new()));
        }
        if waiting {
            if let Ok(line) = lines.recv_timeout(Duration::from_millis(50)) {
                if line.contains(PAUSED_TAG) {
                    waiting = false;
                    let done = if arm {
                        corrupt_ste(&monitor, &ram_file)
                    } else {
                        corrupt_context(&monitor, &ram_file)
                    };
                    match done {
                        Ok(what) => corrupted = Some(what),
                        Err(e) => break Err(e),
                    }
                    // The guest goes on when it reads a line.
                    let go = stdin.as_mut().map(|i| i.write_all(b"go\n").and_then(|()| i.flush()));
                    if let Some(Err(e)) = go {
                        break Err(BootError::Io("the guest's console".to_owned(), e));
                    }
                }
            }
        } else if corrupt && !quitting {
            if let Ok(line) = lines.recv_timeout(Duration::from_millis(50)) {
                if line.contains(RESULT_TAG) {
                    quitting = true;
                    if let Err(e) = monitor_quit(&monitor) {
                        break Err(e);
                    }
                }
            }
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let status = match outcome {
        Ok(s) => s,
        Err(e) => {
            // Best effort: the process is ours and is being abandoned.
            let _ = child.kill();
            let _ = child.wait();
            // Its console's end says where the guest was (its pipe closed with QEMU).
            let console = reader.join().unwrap_or_default();
            let lines: Vec<&str> = console.lines().collect();
            let tail = lines.get(lines.len().saturating_sub(40)..).unwrap_or_default().join("\n");
            return Err(match e {
                BootError::Timeout(secs, _) => BootError::Timeout(secs, tail),
                e => BootError::Setup(format!("{e}; the console ended with:\n{tail}")),
            });
        }
    };
    drop(stdin);
    let wall_secs = start.elapsed().as_secs_f64();
    let console = reader.join().unwrap_or_default();
    let qemu_stderr = err_reader.join().unwrap_or_default();

    let image = std::fs::read(&disk).map_err(io(disk.display().to_string()))?;
    let image_md5 = md5(image.get(GUEST_AT..GUEST_AT + MIB).unwrap_or_default())?;
    let stats_text = std::fs::read_to_string(&stats_file).unwrap_or_default();
    let stats = parse_stats(&stats_text);
    let violations = stats_text
        .lines()
        .filter_map(|l| l.strip_prefix("violation "))
        .map(str::to_owned)
        .collect();

    Ok(Boot {
        setup: *setup,
        name: setup.name(),
        cmdline,
        corrupted,
        kernel_fault_reasons: console.lines().filter_map(fault_reason).collect(),
        wall_secs,
        init_secs: console.lines().find(|l| l.contains("Run /init")).and_then(kernel_time),
        iommu_lines: console.lines().filter(|l| is_iommu_line(l)).map(clean).collect(),
        warnings: console.lines().filter(|l| is_warning(l)).map(clean).collect(),
        guest: console.lines().find_map(guest_result),
        host_md5,
        image_md5,
        stats,
        violations,
        qemu_status: status.to_string(),
        qemu_stderr,
        console,
    })
}

/// The DMAR base the shim maps the unit at (its ACPI DMAR table's DRHD).
const DMAR_BASE: u64 = 0xfed9_0000;
/// Guest RAM (QEMU's `-m`).
const RAM: &str = "512M";
/// The disk's PCI slot on bus 0 (function 0): requester ID 00:01.0.
const DISK_SLOT: u8 = 1;
/// What guest-init.sh prints when it waits for the host.
const PAUSED_TAG: &str = "SVIOMMU-PAUSED";

/// Clears the Present bit of the disk's context entry in guest memory, found the way the unit
/// finds it: RTADDR_REG (read through QEMU's monitor), then the root entry of bus 0 and the
/// context entry of the disk's devfn, legacy or scalable-mode as RTADDR.TTM says (§9.1-§9.4).
/// The unit has not cached the entry: the disk has made no request since translation was
/// enabled. Returns what it changed, for the report.
fn corrupt_context(monitor: &Path, ram: &Path) -> Result<String, BootError> {
    use sviommu_vtd::spec::regs::{rtaddr, RTADDR};
    use sviommu_vtd::spec::root::{
        ContextEntry, RootEntry, ScalableContextEntry, ScalableRootEntry,
    };
    let bad = |m: String| BootError::Corrupt(m);
    let rtaddr = monitor_read_u64(monitor, DMAR_BASE + RTADDR.0)?;
    let rta = rtaddr::RTA.in_place(rtaddr);
    let mem = GuestRam::open(ram, 0)?;
    let read = |at: u64, words: &mut [u64]| mem.read(at, words);
    let write = |at: u64, words: &[u64]| mem.write(at, words);
    let devfn = DISK_SLOT << 3;
    let mut root = [0u64; 2];
    read(rta, &mut root)?;
    match rtaddr::TTM.get(rtaddr) {
        0 => {
            let re = RootEntry::from_words(root);
            if !re.p() {
                return Err(bad(format!("bus 0's root entry at {rta:#x} is not present")));
            }
            let at = re.ctp() + u64::from(devfn) * 16;
            let mut w = [0u64; 2];
            read(at, &mut w)?;
            let mut ce = ContextEntry::from_words(w);
            if !ce.p() {
                return Err(bad(format!("the disk's context entry at {at:#x} is not present")));
            }
            ce.set_p(false);
            write(at, &ce.words())?;
            Ok(format!("legacy context entry of 00:{DISK_SLOT:02x}.0 at {at:#x}: P cleared"))
        }
        1 => {
            let re = ScalableRootEntry::from_words(root);
            // §9.2: devfns 0-127 are in the lower context table, 256-bit entries.
            let at = re.ctp_for(devfn) + u64::from(devfn & 0x7f) * 32;
            let mut w = [0u64; 4];
            read(at, &mut w)?;
            let mut ce = ScalableContextEntry::from_words(w);
            if !ce.p() {
                return Err(bad(format!("the disk's context entry at {at:#x} is not present")));
            }
            ce.set_p(false);
            write(at, &ce.words())?;
            Ok(format!("scalable-mode context entry of 00:{DISK_SLOT:02x}.0 at {at:#x}: P cleared"))
        }
        t => Err(bad(format!("RTADDR_REG {rtaddr:#x}: TTM {t} has no context entries"))),
    }
}

/// Guest RAM as the file that backs it: guest-physical `base` is the file's first byte.
struct GuestRam {
    file: std::fs::File,
    base: u64,
}

impl GuestRam {
    fn open(path: &Path, base: u64) -> Result<Self, BootError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io(path.display().to_string()))?;
        Ok(Self { file, base })
    }

    fn offset(&self, at: u64) -> Result<u64, BootError> {
        at.checked_sub(self.base)
            .ok_or_else(|| BootError::Corrupt(format!("{at:#x} is below guest RAM")))
    }

    /// Little-endian words at guest-physical `at`.
    fn read(&self, at: u64, words: &mut [u64]) -> Result<(), BootError> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; words.len() * 8];
        let off = self.offset(at)?;
        self.file.read_exact_at(&mut buf, off).map_err(io(format!("guest memory at {at:#x}")))?;
        for (w, b) in words.iter_mut().zip(buf.chunks_exact(8)) {
            *w = u64::from_le_bytes(b.try_into().unwrap_or_default());
        }
        Ok(())
    }

    fn write(&self, at: u64, words: &[u64]) -> Result<(), BootError> {
        use std::os::unix::fs::FileExt;
        let buf: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let off = self.offset(at)?;
        self.file.write_all_at(&buf, off).map_err(io(format!("guest memory at {at:#x}")))
    }
}

/// The SMMU's register base on virt (its memory map's VIRT_SMMU).
const VIRT_SMMU_BASE: u64 = 0x0905_0000;
/// Where virt's RAM starts.
const VIRT_RAM_BASE: u64 = 0x4000_0000;

/// Clears the V bit of the disk's STE in guest memory, found the way the SMMU finds it:
/// SMMU_STRTAB_BASE and _CFG (read through QEMU's monitor), then the L1STD and the level-2
/// array for a two-level table (§5.1, §6.3.24-25), or the linear table. The disk's StreamID is
/// its requester ID (virt's IORT / iommu-map are the identity). The SMMU has not cached the STE:
/// the disk has made no request since Linux wrote it and issued CMD_CFGI_STE. Returns what it
/// changed, for the report.
fn corrupt_ste(monitor: &Path, ram: &Path) -> Result<String, BootError> {
    use sviommu_smmuv3::spec::regs::{strtab_base, strtab_base_cfg, STRTAB_BASE, STRTAB_BASE_CFG};
    use sviommu_smmuv3::spec::ste::{L1Std, Ste};
    let bad = |m: String| BootError::Corrupt(m);
    let base = monitor_read_u64(monitor, VIRT_SMMU_BASE + STRTAB_BASE.0)?;
    let cfg = monitor_read(monitor, VIRT_SMMU_BASE + STRTAB_BASE_CFG.0, 'w')?;
    let mem = GuestRam::open(ram, VIRT_RAM_BASE)?;
    let sid = u64::from(DISK_SLOT) << 3;
    let table = strtab_base::ADDR.in_place(base);
    let at = match strtab_base_cfg::FMT.get(cfg) {
        0 => table + sid * 64,
        1 => {
            let split = strtab_base_cfg::SPLIT.get(cfg);
            let l1_at = table + (sid >> split) * 8;
            let mut w = [0u64; 1];
            mem.read(l1_at, &mut w)?;
            let l1 = L1Std::from_word(w[0]);
            if l1.l2_ste_count().is_none() {
                return Err(bad(format!("the L1STD at {l1_at:#x} is invalid ({:#x})", w[0])));
            }
            l1.l2ptr() + (sid & ((1 << split) - 1)) * 64
        }
        f => return Err(bad(format!("SMMU_STRTAB_BASE_CFG {cfg:#x}: FMT {f} is reserved"))),
    };
    let mut w = [0u64; 8];
    mem.read(at, &mut w)?;
    let mut ste = Ste(w);
    if !ste.v() {
        return Err(bad(format!("the disk's STE at {at:#x} is not valid")));
    }
    ste.set_v(false);
    mem.write(at, &ste.0)?;
    Ok(format!(
        "STE of StreamID {sid:#x} (00:{DISK_SLOT:02x}.0) at {at:#x}, Config {:#05b}: V cleared",
        ste.config_raw()
    ))
}

/// Reads a 64-bit guest-physical location through QEMU's human monitor (`xp /1gx`).
fn monitor_read_u64(path: &Path, addr: u64) -> Result<u64, BootError> {
    monitor_read(path, addr, 'g')
}

/// Reads one guest-physical word through QEMU's human monitor: `xp /1gx` (`unit` `g`, 64-bit)
/// or `xp /1wx` (`w`, 32-bit: an SMMU's 32-bit registers refuse 64-bit reads).
fn monitor_read(path: &Path, addr: u64, unit: char) -> Result<u64, BootError> {
    let ctx = || format!("QEMU's monitor at {}", path.display());
    let (mut s, mut got) = monitor_connect(path)?;
    got.clear();
    s.write_all(format!("xp /1{unit}x {addr:#x}\n").as_bytes()).map_err(io(ctx()))?;
    let key = format!("{addr:016x}:");
    monitor_read_until(path, &mut s, &mut got)?;
    let text = String::from_utf8_lossy(&got);
    text.lines()
        .find_map(|l| {
            let v = l.split(&key).nth(1)?.trim();
            u64::from_str_radix(v.trim_start_matches("0x"), 16).ok()
        })
        .ok_or_else(|| BootError::Corrupt(format!("no value in the monitor's answer: {text:?}")))
}

/// A connection to QEMU's human monitor, past its greeting and first prompt, and the buffer
/// that read them.
fn monitor_connect(path: &Path) -> Result<(std::os::unix::net::UnixStream, Vec<u8>), BootError> {
    let ctx = || format!("QEMU's monitor at {}", path.display());
    let mut s = std::os::unix::net::UnixStream::connect(path).map_err(io(ctx()))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(io(ctx()))?;
    let mut got = Vec::new();
    monitor_read_until(path, &mut s, &mut got)?;
    Ok((s, got))
}

/// Reads from the monitor into `got` until its prompt.
fn monitor_read_until(
    path: &Path,
    s: &mut std::os::unix::net::UnixStream,
    got: &mut Vec<u8>,
) -> Result<(), BootError> {
    let ctx = || format!("QEMU's monitor at {}", path.display());
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(got).contains("(qemu)") {
        let n = s.read(&mut buf).map_err(io(ctx()))?;
        if n == 0 {
            return Err(BootError::Corrupt(format!("{} closed", ctx())));
        }
        got.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    Ok(())
}

/// Asks QEMU to quit (its exit notifiers still write the model's statistics). For the faulted
/// guest: the disk's driver is stuck in its probe, holding the device lock that the kernel's
/// power-off path waits for, so the guest cannot power itself off.
fn monitor_quit(path: &Path) -> Result<(), BootError> {
    let (mut s, _) = monitor_connect(path)?;
    s.write_all(b"quit\n").map_err(io(format!("QEMU's monitor at {}", path.display())))?;
    // Held open until QEMU closes it: a client gone first takes its unread command with it.
    let mut rest = Vec::new();
    // An error (the read time-out) ends the wait as EOF does; the boot's own time-out remains.
    let _ = s.read_to_end(&mut rest);
    Ok(())
}

/// `... [fault reason 0x02] ...`: Linux's DMAR fault line's reason; `arm-smmu-v3 ...: event
/// 0x04 received:`: the SMMU event's number.
fn fault_reason(line: &str) -> Option<u8> {
    if let Some(rest) = line.split("[fault reason 0x").nth(1) {
        return u8::from_str_radix(rest.split(']').next()?, 16).ok();
    }
    let rest = line.split("arm-smmu-v3").nth(1)?.split(": event 0x").nth(1)?;
    u8::from_str_radix(rest.split(' ').next()?, 16).ok()
}

fn slurp<R: Read>(r: Option<R>) -> String {
    let mut buf = Vec::new();
    if let Some(mut r) = r {
        // A read error ends the capture; what was read is kept.
        let _ = r.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// A fresh folder for one boot's disk and statistics (in /dev/shm when it holds the guest's RAM).
fn scratch(ram: bool) -> Result<PathBuf, BootError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let shm = Path::new("/dev/shm");
    let base = if ram && shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    // Boots may run side by side in one process.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = base.join(format!("sviommu-boot-{}-{n}-{nanos:09}", std::process::id()));
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
        && (l.contains("DMAR")
            || lower.contains("iommu")
            || lower.contains("smmu")
            || lower.contains("remapping"))
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
const SMMU_CACHES: [&str; 6] = ["ste", "cd", "tlb", "s1_walk", "s2_walk", "s2_leaf"];
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
    let machine = if b.setup.arch == Arch::Arm { "virt" } else { "q35" };
    let _ = writeln!(s, "guest: Debian's kernel on {machine} (TCG), {}", b.name);
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
    let smmu = b.setup.iommu == Iommu::Smmuv3;
    if !b.stats.is_empty() {
        let _ = writeln!(
            s,
            "model: {} translations, {} faults, {} register accesses, {} {}, {} panics",
            b.stat("translated"),
            b.stat("faulted"),
            b.stat("mmio_accesses"),
            b.stat("outputs_delivered"),
            if smmu { "interrupts" } else { "MSIs" },
            b.stat("panics")
        );
        for c in if smmu { SMMU_CACHES } else { CACHES } {
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
        let listed = |prefix: &str| -> Vec<String> {
            b.stats
                .iter()
                .filter_map(|(k, &n)| Some(format!("{} {n}", k.strip_prefix(prefix)?)))
                .collect()
        };
        let none = |v: Vec<String>| if v.is_empty() { "none".to_owned() } else { v.join(", ") };
        if smmu {
            let _ = writeln!(
                s,
                "  structures read: STEs by Config: {}; valid CDs: {}",
                none(listed("ste_config.")),
                b.stat("cd.valid")
            );
            let _ = writeln!(
                s,
                "  table entries read: stage 1 {}; stage 2 {}",
                none(listed("walk.s1.")),
                none(listed("walk.s2."))
            );
            let _ = writeln!(s, "  commands: {}", none(listed("cmd.")));
            let _ = writeln!(
                s,
                "  events recorded: {} ({} written to the Event queue)",
                none(listed("fault.")),
                b.stat("queue.events_written")
            );
        } else {
            let _ = writeln!(
                s,
                "  structures read: context entries by TT: {}; PASID entries by PGTT: {}",
                none(listed("context_tt.")),
                none(listed("pasid_pgtt."))
            );
            let _ = writeln!(
                s,
                "  table entries read: first stage {}; second stage {}",
                none(listed("walk.s1.")),
                none(listed("walk.s2."))
            );
            let _ = writeln!(s, "  faults recorded by reason: {}", none(listed("fault.")));
        }
        let invs: Vec<String> = DESCRIPTORS
            .iter()
            .filter_map(|d| {
                let n = b.stat(&format!("inv.{d}"));
                (n > 0).then(|| format!("{d} {n}"))
            })
            .collect();
        if !smmu {
            let _ = writeln!(s, "  invalidation descriptors: {}", none(invs));
        }
        if b.setup.strict_model {
            let _ = writeln!(
                s,
                "  invalidation sanitizer (strict model): violations found {}, not kept {}; \
                 words re-read {}",
                b.stat("sanitizer.violations"),
                b.stat("sanitizer.dropped"),
                b.stat("sanitizer.reads")
            );
            for v in &b.violations {
                let _ = writeln!(s, "    {v}");
            }
        }
    }
    if let Some(c) = &b.corrupted {
        let _ = writeln!(s, "corrupted: {c}");
        let reasons: Vec<String> =
            b.kernel_fault_reasons.iter().map(|r| format!("{r:#04x}")).collect();
        let what = if smmu { "event lines, by event" } else { "DMAR fault lines, by reason" };
        let _ = writeln!(s, "Linux's {what}: {}", reasons.join(", "));
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
    /// The guest: x86-64 on q35 (VT-d) or AArch64 on virt (SMMUv3).
    #[arg(long, value_enum, default_value_t = Arch::X86)]
    pub arch: Arch,
    /// The IOMMU the guest gets (default: the architecture's model, vtd or smmuv3).
    #[arg(long, value_enum)]
    pub iommu: Option<Iommu>,
    /// VT-d only: how Linux drives the model: legacy, or scalable with first-stage support
    /// withheld (second stage) or advertised (first stage).
    #[arg(long, value_enum, default_value_t = Mode::Legacy)]
    pub mode: Mode,
    /// How Linux invalidates after an unmap (`iommu.strict=1` / `=0`).
    #[arg(long, value_enum, default_value_t = Invalidation::Default)]
    pub invalidation: Invalidation,
    /// The identity domain for every device (`iommu=pt`; Arm: `iommu.passthrough=1`).
    #[arg(long)]
    pub passthrough: bool,
    /// VT-d only: advertise caching mode (CAP.CM).
    #[arg(long)]
    pub caching_mode: bool,
    /// VT-d only: second-stage levels the unit supports: 3 (39-bit SAGAW) or 4 (39 and 48).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(3..=4))]
    pub levels: u8,
    /// Clear the disk's context entry's Present bit (Arm: its STE's V bit) in guest memory
    /// before its driver loads: Linux reports the model's fault.
    #[arg(long, alias = "corrupt-ste")]
    pub corrupt_context: bool,
    /// Run the model under its strict profile: invalidations take effect at their
    /// synchronisation, and the invalidation sanitizer reports every cache hit on an entry
    /// whose table words Linux changed without the invalidation the spec asks for.
    #[arg(long)]
    pub strict_model: bool,
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
        let setup = Setup {
            arch: args.arch,
            iommu: args.iommu.unwrap_or(match args.arch {
                Arch::X86 => Iommu::Vtd,
                Arch::Arm => Iommu::Smmuv3,
            }),
            mode: args.mode,
            invalidation: args.invalidation,
            passthrough: args.passthrough,
            caching_mode: args.caching_mode,
            levels: args.levels,
            corrupt_context: args.corrupt_context,
            strict_model: args.strict_model,
        };
        boot(&a, &setup, &args.append, Duration::from_secs(args.timeout))
    };
    match run() {
        Ok(b) => {
            match args.format {
                crate::Format::Text => print!("{}", text(&b)),
                crate::Format::Json => {
                    println!("{}", serde_json::to_string_pretty(&b).unwrap_or_default());
                }
            }
            let ok = if b.setup.corrupt_context {
                // The run is meant to fault: it passes when Linux reported what the model
                // recorded.
                b.fault_seen_by_linux()
            } else {
                b.data_intact() && b.stat("faulted") == 0
            };
            if ok && b.stat("panics") == 0 {
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
