//! `profile --isf FILE`: the running kernel as a Volatility 3 symbol file.

use std::path::Path;

use anyhow::Context;
use serde_json::json;
use vmscope_linux::Kernel;
use vmscope_linux::types::globals::GLOBALS;
use vmscope_mem::PhysMem;

use super::Output;

/// Writes every BTF type, every kallsyms symbol at its link-time address (the
/// KASLR slide taken off), the globals' declared types and the banner Volatility
/// matches a memory image by, to `path`.
pub fn isf<M: PhysMem>(technique: &str, k: &Kernel<M>, path: &Path) -> anyhow::Result<Output> {
    let profile = k.profile().context("reading the kernel's BTF")?;
    let info = k.info();
    let text = profile.to_isf(None, info.kaslr_virtual_offset).context("writing the ISF")?;
    std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    let types = profile.types().struct_names().len() + profile.types().enum_names().len();
    let symbols = profile.symbols().len();
    let typed = GLOBALS.iter().filter(|(n, d)| profile.symbol(n).is_some() && d.resolve(profile.types()).is_some());
    let typed = typed.count();
    let table = format!(
        "wrote {}: {types} types (BTF), {symbols} symbols (kallsyms, KASLR slide {:#x} taken off), \
         {typed} typed globals, banner {:?}\n",
        path.display(),
        info.kaslr_virtual_offset,
        info.banner.trim_end()
    );
    let doc = json!({
        "technique": technique, "file": path, "bytes": text.len(), "types": types, "symbols": symbols,
        "typed_globals": typed, "kaslr_virtual_offset": info.kaslr_virtual_offset, "banner": info.banner,
    });
    Ok(Output { doc, table, anomalies: Vec::new(), findings: 0 })
}
