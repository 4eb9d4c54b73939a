//! Builds the test kernel for the built-in VMM from guest-images/testkernel.
//!
//! gcc compiles the C and assembly sources with flags that keep the code to the
//! general-purpose instructions KVM's instruction emulator handles on hosts without
//! hardware virtualization (PLATFORM.md); `objdump` then checks the result for
//! anything the emulator lacks. The build is skipped when neither the sources nor
//! the flags changed (a sha256 stamp beside the image).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

const CFLAGS: &[&str] = &[
    "-O2",
    "-std=gnu11",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-ffreestanding",
    "-nostdlib",
    "-fno-builtin",
    "-fno-tree-loop-distribute-patterns",
    "-mgeneral-regs-only",
    "-mno-sse",
    "-mno-mmx",
    "-mno-red-zone",
    "-fno-pic",
    "-fno-pie",
    "-mcmodel=kernel",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-fcf-protection=none",
    "-march=x86-64",
];
const LDFLAGS: &[&str] = &["-nostdlib", "-static", "-no-pie", "-z", "max-page-size=4096", "-z", "noexecstack"];
const SOURCES: &[&str] = &["head.S", "main.c", "mutator.c", "dirty.c"];
const INPUTS: &[&str] = &["head.S", "main.c", "mutator.c", "dirty.c", "tk.h", "linker.ld"];

/// Mnemonics the emulator cannot execute; finding one in the disassembly fails the
/// build. So does any SSE/AVX/MMX register operand ([`FORBIDDEN_REGS`]).
const FORBIDDEN: &[&str] = &[
    "cmpxchg16b",
    "popcnt",
    "rdrand",
    "rdseed",
    "xsave",
    "xsaveopt",
    "xrstor",
    "ldmxcsr",
    "stmxcsr",
    "fxsave",
    "fxrstor",
    "clac",
    "stac",
    "fwait",
    "wait",
    "lzcnt",
    "tzcnt",
    "movbe",
    "endbr64",
];
const FORBIDDEN_REGS: &[&str] = &["%xmm", "%ymm", "%zmm", "%mm", "%st"];

/// Builds the test kernel into `out_dir/testkernel/testkernel.elf` and returns that
/// path. Does nothing when the inputs are unchanged since the last build.
pub fn build(root: &Path, out_dir: &Path) -> anyhow::Result<PathBuf> {
    let src = root.join("guest-images/testkernel");
    let dir = out_dir.join("testkernel");
    let image = dir.join("testkernel.elf");
    let stamp = dir.join("testkernel.sha256");

    let digest = input_digest(&src)?;
    if image.exists() && fs::read_to_string(&stamp).ok().as_deref() == Some(digest.as_str()) {
        return Ok(image);
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let mut objects = Vec::new();
    for s in SOURCES {
        let obj = dir.join(format!("{s}.o"));
        run(Command::new("gcc").args(CFLAGS).arg("-c").arg(src.join(s)).arg("-o").arg(&obj))?;
        objects.push(obj);
    }
    let tmp = dir.join("testkernel.elf.tmp");
    run(Command::new("ld").args(LDFLAGS).arg("-T").arg(src.join("linker.ld")).args(&objects).arg("-o").arg(&tmp))?;
    check_instructions(&tmp)?;
    fs::rename(&tmp, &image)?;
    fs::write(&stamp, &digest)?;
    for o in objects {
        let _ = fs::remove_file(o);
    }
    Ok(image)
}

fn input_digest(src: &Path) -> anyhow::Result<String> {
    let mut h = Sha256::new();
    for f in INPUTS {
        let p = src.join(f);
        let bytes = fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        h.update(f.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    for flag in CFLAGS.iter().chain(LDFLAGS) {
        h.update(flag.as_bytes());
        h.update([0]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Disassembles the image and rejects instructions KVM's emulator lacks.
fn check_instructions(image: &Path) -> anyhow::Result<()> {
    let out = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn"])
        .arg(image)
        .output()
        .context("running objdump (binutils) to check the test kernel's instructions")?;
    if !out.status.success() {
        bail!("objdump failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let bad: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once(":\t").map(|(_, insn)| insn))
        .filter(|insn| {
            // The mnemonic is the last prefix-free word before the operands.
            let mut words = insn.split_whitespace();
            let mnemonic = words.find(|w| !matches!(*w, "lock" | "rep" | "repz" | "repnz" | "cs" | "ds" | "data16"));
            mnemonic.is_some_and(|m| FORBIDDEN.contains(&m)) || FORBIDDEN_REGS.iter().any(|r| insn.contains(r))
        })
        .collect();
    if !bad.is_empty() {
        bail!(
            "the test kernel uses instructions KVM's emulator lacks:\n{}",
            bad.iter().take(20).copied().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(())
}
