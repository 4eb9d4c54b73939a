//! Differences between two views of one guest: what appeared, what went, and what
//! changed in what stayed — between two passes, two techniques, or a view and its
//! double collect.
//!
//! ```
//! use vmscope_consistency::diff;
//! use vmscope_linux::ProcessList;
//!
//! let d = diff::processes(&ProcessList::default(), &ProcessList::default());
//! assert!(d.is_empty());
//! ```

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use vmscope_linux::{ModuleList, ProcessList};

/// One item of a view, by key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// What identifies it across views: a process by `tid@start_time_ns` (a pid is
    /// reused, a start time is not), a module by name.
    pub key: String,
    /// A name for people (a process's comm, a module's name).
    pub name: String,
}

/// One field that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// The field, as serialized (e.g. `state`, `rss_pages`).
    pub field: String,
    /// Its value in the first view.
    pub before: Value,
    /// Its value in the second view.
    pub after: Value,
}

/// An item in both views whose fields differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changed {
    /// The item.
    pub item: Item,
    /// Which fields, in field order.
    pub fields: Vec<FieldChange>,
}

/// What differs between two views. Anomalies are not compared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ViewDiff {
    /// Items only in the second view, by key.
    pub added: Vec<Item>,
    /// Items only in the first view, by key.
    pub removed: Vec<Item>,
    /// Items in both with fields that differ, by key.
    pub changed: Vec<Changed>,
}

impl ViewDiff {
    /// Whether the views hold the same items with the same fields.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Which items of two views are only in one of them, by key — the cheap half of a
/// diff (no field is compared), for callers that diff often, such as a watch.
#[derive(Debug, PartialEq, Eq)]
pub struct Membership<'a, T> {
    /// Items only in the second view, in its order.
    pub added: Vec<&'a T>,
    /// Items only in the first view, in its order.
    pub removed: Vec<&'a T>,
}

/// Items of `a` and `b` whose keys only one of them has.
pub fn membership<'a, T, K: Ord>(a: &'a [T], b: &'a [T], key: impl Fn(&T) -> K) -> Membership<'a, T> {
    let keys = |v: &[T]| -> std::collections::BTreeSet<K> { v.iter().map(&key).collect() };
    let (ka, kb) = (keys(a), keys(b));
    Membership {
        added: b.iter().filter(|x| !ka.contains(&key(x))).collect(),
        removed: a.iter().filter(|x| !kb.contains(&key(x))).collect(),
    }
}

/// Compares keyed items field by field, through their serialized form (so a field
/// added to a view is compared without touching this code).
fn diff_by<T: Serialize>(a: &[T], b: &[T], key: impl Fn(&T) -> Item) -> ViewDiff {
    let index = |v: &[T]| -> BTreeMap<String, (Item, Value)> {
        v.iter()
            .map(|x| {
                let item = key(x);
                (item.key.clone(), (item, serde_json::to_value(x).unwrap_or(Value::Null)))
            })
            .collect()
    };
    let (a, b) = (index(a), index(b));
    let mut d = ViewDiff::default();
    for (k, (item, va)) in &a {
        let Some((_, vb)) = b.get(k) else { continue };
        let fields = match (va, vb) {
            (Value::Object(fa), Value::Object(fb)) => {
                let mut names: Vec<&String> = fa.keys().chain(fb.keys()).collect();
                names.sort();
                names.dedup();
                names
                    .into_iter()
                    .filter_map(|f| {
                        let (x, y) = (fa.get(f).unwrap_or(&Value::Null), fb.get(f).unwrap_or(&Value::Null));
                        (x != y).then(|| FieldChange { field: f.clone(), before: x.clone(), after: y.clone() })
                    })
                    .collect()
            }
            (x, y) if x != y => {
                vec![FieldChange { field: String::new(), before: x.clone(), after: y.clone() }]
            }
            _ => Vec::new(),
        };
        if !fields.is_empty() {
            d.changed.push(Changed { item: item.clone(), fields });
        }
    }
    let (va, vb): (Vec<_>, Vec<_>) = (a.into_values().collect(), b.into_values().collect());
    let m = membership(&va, &vb, |(item, _)| item.key.clone());
    d.added = m.added.into_iter().map(|(item, _)| item.clone()).collect();
    d.removed = m.removed.into_iter().map(|(item, _)| item.clone()).collect();
    d
}

/// Processes of two views, keyed by thread id and start time.
pub fn processes(a: &ProcessList, b: &ProcessList) -> ViewDiff {
    diff_by(&a.processes, &b.processes, |p| Item {
        key: format!("{}@{}", p.tid, p.start_time_ns),
        name: p.comm.clone(),
    })
}

/// Modules of two views, keyed by name.
pub fn modules(a: &ModuleList, b: &ModuleList) -> ViewDiff {
    diff_by(&a.modules, &b.modules, |m| Item { key: m.name.clone(), name: m.name.clone() })
}

#[cfg(test)]
mod tests {
    use vmscope_linux::Limits;
    use vmscope_linux::views::fixture::{Fx, layout::*};

    use super::*;

    #[test]
    fn added_removed_changed() {
        let mut fx = Fx::new();
        let init = fx.process(1, fx.init_task, 0, "init", None);
        let sh = fx.process(100, init, 0, "sh", None);
        fx.module("a", 100, 0, &[], &[]);
        let b = fx.module("b", 100, 0, &[], &[]);
        let k = fx.kernel(Limits::default());
        let (p0, m0) = (k.processes(), k.modules());
        assert!(processes(&p0, &p0).is_empty() && modules(&m0, &m0).is_empty());

        // sh exits and its pid is reused by a process started later; init sleeps
        // uninterruptibly; module b goes and c comes.
        let t = fx.r64(sh + TASKS);
        let p = fx.r64(sh + TASKS + 8);
        fx.w64(p, t);
        fx.w64(t + 8, p);
        let again = fx.process(100, init, 0, "sh2", None);
        fx.w64(again + 112, 777);
        fx.w32(init + 40, 2);
        let (n, pr) = (fx.r64(b), fx.r64(b + 8));
        fx.w64(pr, n);
        fx.w64(n + 8, pr);
        fx.module("c", 100, 0, &[], &[]);
        let k = fx.kernel(Limits::default());
        let (p1, m1) = (k.processes(), k.modules());

        let d = processes(&p0, &p1);
        assert_eq!(d.added, [Item { key: "100@777".into(), name: "sh2".into() }]);
        assert_eq!(d.removed, [Item { key: "100@0".into(), name: "sh".into() }]);
        assert_eq!(d.changed.len(), 1);
        assert_eq!(d.changed[0].item.name, "init");
        let fields: Vec<&str> = d.changed[0].fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["state"]);
        assert_eq!(
            (&d.changed[0].fields[0].before, &d.changed[0].fields[0].after),
            (&Value::from("S"), &Value::from("D"))
        );
        assert!(!d.is_empty());

        let d = modules(&m0, &m1);
        let keys = |v: &[Item]| v.iter().map(|i| i.key.clone()).collect::<Vec<_>>();
        assert_eq!((keys(&d.added), keys(&d.removed)), (vec!["c".to_owned()], vec!["b".to_owned()]));
        assert!(d.changed.is_empty());
        let json = serde_json::to_string(&d).expect("serializes");
        assert!(json.contains("\"added\""), "{json}");
    }
}
