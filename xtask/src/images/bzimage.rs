//! Extracts the ELF vmlinux from a bzImage: the setup header locates the compressed
//! payload, whose magic names the compressor.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// Returns the decompressed payload (the ELF vmlinux) of `bzimage`.
pub fn extract_vmlinux(bzimage: &[u8]) -> anyhow::Result<Vec<u8>> {
    if bzimage.len() < 0x250 || &bzimage[0x202..0x206] != b"HdrS" {
        bail!("not a bzImage: no HdrS signature in the setup header");
    }
    let setup_sects = match bzimage[0x1f1] {
        0 => 4,
        n => n as usize,
    };
    let le32 = |at: usize| u32::from_le_bytes(bzimage[at..at + 4].try_into().unwrap()) as usize;
    // boot protocol 2.08+: payload_offset and payload_length, relative to the
    // protected-mode code that starts after the setup sectors.
    let start = (setup_sects + 1) * 512 + le32(0x248);
    let payload = bzimage
        .get(start..start + le32(0x24c))
        .context("bzImage payload_offset/payload_length point outside the file")?;
    let tool: &[&str] = match payload {
        [0x02, 0x21, 0x4c, 0x18, ..] => &["lz4", "-dc"],
        [0x28, 0xb5, 0x2f, 0xfd, ..] => &["zstd", "-dc"],
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => &["xz", "-dc"],
        [0x1f, 0x8b, ..] => &["gzip", "-dc"],
        _ => bail!("bzImage payload has an unknown compression magic {:02x?}", &payload[..4.min(payload.len())]),
    };
    let out = pipe_through(tool, payload)?;
    if !out.starts_with(b"\x7fELF") {
        bail!("decompressed bzImage payload is not an ELF file");
    }
    Ok(out)
}

/// Runs `argv` with `input` on stdin and returns its stdout. A non-zero exit is only
/// an error if nothing came out: lz4 and zstd complain about the trailing size word
/// the kernel build appends, after having decompressed everything.
pub fn pipe_through(argv: &[&str], input: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running `{}` (install it: apt-get install lz4 zstd xz-utils)", argv[0]))?;
    let mut stdin = child.stdin.take().expect("stdin was piped");
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
    let out = child.wait_with_output()?;
    // A decompressor that stops early closes its stdin; that is not our failure.
    let _ = feeder.join();
    if out.stdout.is_empty() {
        bail!("`{}` failed: {}", argv.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

/// Decompresses a `.ko.xz`/`.ko.zst`/`.ko` module file into plain ELF bytes.
pub fn read_module(path: &Path) -> anyhow::Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path.to_string_lossy();
    if name.ends_with(".xz") {
        pipe_through(&["xz", "-dc"], &raw)
    } else if name.ends_with(".zst") {
        pipe_through(&["zstd", "-dc"], &raw)
    } else {
        Ok(raw)
    }
}

/// The module names a `.ko` depends on, from its `.modinfo` `depends=` string.
pub fn module_depends(ko: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0depends=";
    let Some(at) = ko.windows(KEY.len()).position(|w| w == KEY) else {
        return Vec::new();
    };
    let rest = &ko[at + KEY.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end]).split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}
