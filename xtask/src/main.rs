//! `cargo xtask`: the project's automation. Run it without arguments for the list.

mod deps;
mod fuzz;
mod images;
mod lab;
mod test;
mod testkernel;

use std::path::PathBuf;

const TASKS: &str = "\
cargo xtask <task> [options]

tasks:
  images       build guest images from Debian packages into target/guest-images/
  testkernel   build only the test kernel for the built-in VMM
  lab          run the study's experiments on real guests (cargo xtask lab --help)
  test         install host tools and build images if missing, then run every test
               (unit, property, end-to-end against real guests), then every fuzz target
               for 15 s; extra args go to nextest
  fuzz         every cargo-fuzz target of fuzz/ for SECONDS each (default 60)
  lint         formatting, clippy and docs with warnings as errors, each library crate packaged
";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(task) = args.next() else {
        print!("{TASKS}");
        return Ok(());
    };
    let rest: Vec<String> = args.collect();
    match task.as_str() {
        "images" => {
            deps::ensure()?;
            images::run(&rest)
        }
        "test" => test::run(&rest),
        "lab" => lab::run(&rest),
        "lint" => test::lint(),
        "fuzz" => {
            let seconds = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(60);
            match fuzz::run(seconds, fuzz::Build::Thorough)? {
                fuzz::Fuzzed::Clean => Ok(()),
                fuzz::Fuzzed::Skipped(why) => {
                    eprintln!("SKIPPED: {why}");
                    Ok(())
                }
            }
        }
        "testkernel" => {
            let out = testkernel::build(&project_root(), &images::out_dir())?;
            println!("{}", out.display());
            Ok(())
        }
        _ => {
            eprint!("unknown task `{task}`\n\n{TASKS}");
            std::process::exit(2);
        }
    }
}

/// The workspace root.
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives one level below the root").to_path_buf()
}
