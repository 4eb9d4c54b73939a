//! `vmscope-lab`: the study's experiments on real guests. Run through `cargo xtask lab`.

mod env;
mod plot;
mod table;

fn main() -> anyhow::Result<()> {
    Ok(())
}
