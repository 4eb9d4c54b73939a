//! A watch: the views of one pass after another, told as events — a process started
//! or exited, a module loaded or unloaded — by [`diff::membership`] of each view with
//! the last one taken.
//!
//! ```
//! use vmscope_consistency::watch::{Views, Watcher};
//!
//! let mut w = Watcher::default();
//! assert!(w.update(Views::default()).events.is_empty()); // the first pass is the baseline
//! assert!(w.update(Views::default()).events.is_empty());
//! ```
//!
//! A view read while the guest runs can be caught mid-update: a broken task list
//! would show processes exiting and starting again that never did. A pass whose walk
//! met such an anomaly is set aside (no events, the baseline kept), unless the last
//! [`SETTLE_PASSES`] passes all were: a guest whose lists stay broken is still
//! watched. A view a technique does not give (`None`) is not watched.
//!
//! A new view is watched by a field of [`Views`], a [`Tracker`] in [`Watcher`] and
//! the variants of [`Event`] it is told by.

use serde::Serialize;
use vmscope_linux::{Anomaly, Module, ModuleList, Process, ProcessList};

use crate::diff;

/// Passes in a row set aside for anomalies, after which one is taken anyway.
pub const SETTLE_PASSES: u32 = 3;

/// What changed in the guest between two passes taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A process (thread group) that was not there before.
    ProcessStart {
        /// Its PID.
        pid: i32,
        /// Its parent's PID.
        ppid: i32,
        /// Its real user id.
        uid: u32,
        /// Its `comm`.
        comm: String,
    },
    /// A process that was there before and is not now (a PID reused by a process
    /// started meanwhile is an exit and a start: processes are told apart by start
    /// time).
    ProcessExit {
        /// Its PID.
        pid: i32,
        /// Its parent's PID, when last seen.
        ppid: i32,
        /// Its `comm`.
        comm: String,
    },
    /// A kernel module that was not live before (loaded, its init done).
    ModuleLoad {
        /// Its name.
        name: String,
        /// Its size in bytes.
        size: u64,
    },
    /// A kernel module that was live before and is not now (unloading, or gone).
    ModuleUnload {
        /// Its name.
        name: String,
    },
}

/// The views of one pass; `None`: not read by this watch.
#[derive(Debug, Clone, Default)]
pub struct Views {
    /// The process list.
    pub processes: Option<ProcessList>,
    /// The module list.
    pub modules: Option<ModuleList>,
}

/// The items of one view as last taken, and its key.
#[derive(Debug)]
pub struct Tracker<T, K> {
    last: Option<Vec<T>>,
    key: fn(&T) -> K,
}

impl<T, K: Ord> Tracker<T, K> {
    /// A tracker that tells items apart by `key`.
    pub fn new(key: fn(&T) -> K) -> Self {
        Self { last: None, key }
    }

    /// Takes `now` as the view of this pass: the items added and removed since the
    /// last one taken, as events (none for the first).
    pub fn take(&mut self, now: Vec<T>, added: impl Fn(&T) -> Event, removed: impl Fn(&T) -> Event) -> Vec<Event> {
        let events = match &self.last {
            None => Vec::new(),
            Some(last) => {
                let m = diff::membership(last, &now, self.key);
                m.removed.into_iter().map(removed).chain(m.added.into_iter().map(added)).collect()
            }
        };
        self.last = Some(now);
        events
    }
}

/// What one pass told.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    /// Events since the last pass taken: exits and unloads before starts and loads.
    pub events: Vec<Event>,
    /// Whether the pass was set aside for anomalies (no events; see the module docs).
    pub set_aside: bool,
}

/// The state of a watch between passes.
#[derive(Debug)]
pub struct Watcher {
    processes: Tracker<Process, (i32, u64)>,
    modules: Tracker<Module, String>,
    set_aside_in_a_row: u32,
}

impl Default for Watcher {
    fn default() -> Self {
        Self {
            processes: Tracker::new(|p| (p.tid, p.start_time_ns)),
            modules: Tracker::new(|m| m.name.clone()),
            set_aside_in_a_row: 0,
        }
    }
}

impl Watcher {
    /// Takes the views of one pass; the events since the last pass taken.
    pub fn update(&mut self, views: Views) -> Update {
        let anomalies =
            views.processes.iter().flat_map(|p| &p.anomalies).chain(views.modules.iter().flat_map(|m| &m.anomalies));
        if anomalies.into_iter().any(breaks_a_walk) && self.set_aside_in_a_row < SETTLE_PASSES {
            self.set_aside_in_a_row += 1;
            return Update { events: Vec::new(), set_aside: true };
        }
        self.set_aside_in_a_row = 0;
        let mut events = Vec::new();
        if let Some(p) = views.processes {
            events.extend(self.processes.take(
                p.processes,
                |p| Event::ProcessStart { pid: p.pid, ppid: p.ppid, uid: p.uid, comm: p.comm.clone() },
                |p| Event::ProcessExit { pid: p.pid, ppid: p.ppid, comm: p.comm.clone() },
            ));
        }
        if let Some(m) = views.modules {
            // A module is loaded once it is live: while loading, its init sections
            // still count in its size, and a load that fails never gets there.
            let live = m.modules.into_iter().filter(|m| m.state == "Live").collect();
            events.extend(self.modules.take(
                live,
                |m| Event::ModuleLoad { name: m.name.clone(), size: m.size },
                |m| Event::ModuleUnload { name: m.name.clone() },
            ));
        }
        Update { events, set_aside: false }
    }
}

/// Whether an anomaly means a list was not walked whole (so items may be missing
/// that are there), rather than a field of an item being odd.
fn breaks_a_walk(a: &Anomaly) -> bool {
    matches!(
        a,
        Anomaly::ListCycle { .. }
            | Anomaly::StepLimit { .. }
            | Anomaly::BrokenLink { .. }
            | Anomaly::BadPointer { .. }
            | Anomaly::Unreadable { .. }
            | Anomaly::RecoveredBackwards { .. }
    )
}

#[cfg(test)]
mod tests {
    use vmscope_linux::Limits;
    use vmscope_linux::views::fixture::{Fx, layout::*};

    use super::*;

    fn views(fx: &Fx) -> Views {
        let k = fx.kernel(Limits::default());
        Views { processes: Some(k.processes()), modules: Some(k.modules()) }
    }

    #[test]
    fn starts_exits_loads_unloads() {
        let mut fx = Fx::new();
        let init = fx.process(1, fx.init_task, 0, "init", None);
        let sh = fx.process(100, init, 0, "sh", None);
        let a = fx.module("a", 100, 0, &[], &[]);
        let mut w = Watcher::default();
        assert_eq!(w.update(views(&fx)), Update::default(), "the first pass is the baseline");
        assert_eq!(w.update(views(&fx)), Update::default(), "nothing changed");

        // sh exits and its pid is reused by a process started later; a goes, b comes.
        let (t, p) = (fx.r64(sh + TASKS), fx.r64(sh + TASKS + 8));
        fx.w64(p, t);
        fx.w64(t + 8, p);
        let again = fx.process(100, init, 0, "sh2", None);
        fx.w64(again + 112, 777);
        let (n, pr) = (fx.r64(a), fx.r64(a + 8));
        fx.w64(pr, n);
        fx.w64(n + 8, pr);
        fx.module("b", 4096, 0, &[], &[]);
        let u = w.update(views(&fx));
        assert_eq!(
            u.events,
            [
                Event::ProcessExit { pid: 100, ppid: 1, comm: "sh".into() },
                Event::ProcessStart { pid: 100, ppid: 1, uid: 0, comm: "sh2".into() },
                Event::ModuleUnload { name: "a".into() },
                Event::ModuleLoad { name: "b".into(), size: 4096 },
            ]
        );
        let json = serde_json::to_string(&u.events[1]).expect("serializes");
        assert_eq!(json, r#"{"event":"process-start","pid":100,"ppid":1,"uid":0,"comm":"sh2"}"#);
    }

    #[test]
    fn a_broken_walk_is_set_aside_until_it_stays_broken() {
        let mut fx = Fx::new();
        let init = fx.process(1, fx.init_task, 0, "init", None);
        let sh = fx.process(100, init, 0, "sh", None);
        let mut w = Watcher::default();
        w.update(views(&fx));
        // sh's `next` points into nowhere: the walk breaks before the list ends.
        let good = fx.r64(sh + TASKS);
        fx.w64(sh + TASKS, 0xffff_8000_dead_0000);
        for _ in 0..SETTLE_PASSES {
            let u = w.update(views(&fx));
            assert!(u.set_aside && u.events.is_empty(), "{u:?}");
        }
        let u = w.update(views(&fx));
        assert!(!u.set_aside, "taken after {SETTLE_PASSES} passes set aside");
        fx.w64(sh + TASKS, good);
        assert!(!w.update(views(&fx)).set_aside);
    }

    #[test]
    fn views_not_read_are_not_watched() {
        let mut fx = Fx::new();
        fx.process(1, fx.init_task, 0, "init", None);
        let mut w = Watcher::default();
        w.update(Views { processes: None, ..views(&fx) });
        let u = w.update(Views { modules: None, ..views(&fx) });
        assert!(u.events.is_empty(), "a first process view is a baseline, not starts: {u:?}");
    }
}
