//! Experiment runs on Debian guests under QEMU.

use crate::experiments::Ctx;
use crate::table::Table;

pub fn frequency(_ctx: &mut Ctx, _table: &mut Table) -> anyhow::Result<()> {
    anyhow::bail!("the QEMU frequency run needs the Linux process list (vmscope-linux), not wired yet")
}
