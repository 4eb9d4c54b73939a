//! `cargo xtask`: the project's automation. Run it without arguments for the list.

use std::path::PathBuf;

const TASKS: &str = "\
cargo xtask <task>

tasks:
  images     build guest images from Debian packages into target/guest-images/
  test       build images if missing, then run every test (unit, property, end-to-end)
  ci         what .ci/run does: images, tests, clippy
";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(task) = args.next() else {
        print!("{TASKS}");
        return Ok(());
    };
    let rest: Vec<String> = args.collect();
    match task.as_str() {
        _ => {
            eprint!("unknown task `{task}`\n\n{TASKS}");
            let _ = rest;
            std::process::exit(2);
        }
    }
}

/// The workspace root.
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives one level below the root").to_path_buf()
}
