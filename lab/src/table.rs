//! Result tables: one per experiment, written as CSV and as a markdown table.

use std::fmt::Write as _;
use std::path::Path;

/// Rows of named columns; every value already formatted.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[&str]) -> Self {
        Self { columns: columns.iter().map(|c| c.to_string()).collect(), rows: Vec::new() }
    }

    pub fn push(&mut self, row: Vec<String>) {
        assert_eq!(row.len(), self.columns.len(), "a row must have one value per column");
        self.rows.push(row);
    }

    pub fn write_csv(&self, path: &Path) -> std::io::Result<()> {
        let mut s = String::new();
        let line = |s: &mut String, cells: &[String]| {
            let escaped: Vec<String> =
                cells
                    .iter()
                    .map(|c| {
                        if c.contains([',', '"', '\n']) { format!("\"{}\"", c.replace('"', "\"\"")) } else { c.clone() }
                    })
                    .collect();
            s.push_str(&escaped.join(","));
            s.push('\n');
        };
        line(&mut s, &self.columns);
        for r in &self.rows {
            line(&mut s, r);
        }
        std::fs::write(path, s)
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "| {} |", self.columns.join(" | "));
        let _ = writeln!(s, "|{}", " --- |".repeat(self.columns.len()));
        for r in &self.rows {
            let _ = writeln!(s, "| {} |", r.join(" | "));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_escapes_and_markdown_aligns() {
        let mut t = Table::new(&["technique", "note"]);
        t.push(vec!["live-map".into(), "a, \"b\"".into()]);
        let dir = std::env::temp_dir().join(format!("vmscope-lab-table-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        t.write_csv(&dir.join("t.csv")).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("t.csv")).unwrap(), "technique,note\nlive-map,\"a, \"\"b\"\"\"\n");
        assert!(t.markdown().starts_with("| technique | note |\n| --- | --- |\n"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
