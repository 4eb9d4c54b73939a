//! `report.md` and the files beside it.

use std::path::{Path, PathBuf};

use crate::env::Environment;
use crate::table::Table;

/// A run's output directory and the report being written into it.
#[derive(Debug)]
pub struct Report {
    pub dir: PathBuf,
    env: Environment,
    sections: Vec<String>,
}

impl Report {
    pub fn new(dir: PathBuf, env: Environment) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("environment.json"), serde_json::to_vec_pretty(&env)?)?;
        Ok(Self { dir, env, sections: Vec::new() })
    }

    /// Adds an experiment's section: prose, its table (also written as `name.csv`),
    /// and the charts already written into the directory.
    pub fn section(
        &mut self,
        name: &str,
        title: &str,
        prose: &str,
        table: &Table,
        charts: &[&str],
    ) -> anyhow::Result<()> {
        table.write_csv(&self.dir.join(format!("{name}.csv")))?;
        let mut s = format!("## {title}\n\n{prose}\n\n{}\nData: [`{name}.csv`]({name}.csv)\n", table.markdown());
        for c in charts {
            s.push_str(&format!("\n![{c}]({c})\n"));
        }
        self.sections.push(s);
        self.write()
    }

    /// Rewrites report.md with what exists so far.
    pub fn write(&self) -> anyhow::Result<()> {
        let mut s = String::from("# vmscope lab report\n\n");
        s.push_str("Reproduces and extends *Exploring VM Introspection: Techniques and Trade-offs* (VEE 2015).\n\n");
        s.push_str("## Environment\n\n");
        s.push_str(&self.env.markdown());
        s.push('\n');
        for sec in &self.sections {
            s.push_str(sec);
            s.push('\n');
        }
        std::fs::write(self.dir.join("report.md"), s)?;
        Ok(())
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

/// `lab/results/<UTC time>-<commit>/` under the workspace root.
pub fn run_dir(root: &Path, env: &Environment) -> PathBuf {
    let stamp = env.date_utc.replace([':', '-'], "").replace('T', "-").trim_end_matches('Z').to_owned();
    root.join("lab/results").join(format!("{stamp}-{}", env.commit))
}

/// The arguments a run was started with, in `run.json`, for `cargo xtask lab --rerun
/// DIR/EXPERIMENT`.
#[derive(Debug, serde::Serialize)]
pub struct RunArgs {
    /// The lab's arguments, without the program name.
    pub args: Vec<String>,
    /// The experiments it ran, in order.
    pub experiments: Vec<String>,
}

impl RunArgs {
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::write(dir.join("run.json"), serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }
}
