//! What one pass may spend — bytes read, list and tree nodes visited, wall time —
//! and the meter that stops a pass when it has spent it. A list bound
//! ([`Limits::max_list`](super::Limits)) bounds one walk; a budget bounds the
//! pass, which a hostile guest could otherwise make walk a million thread lists or
//! read a gigabyte.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use vmscope_mem::PhysMem;

use super::Anomaly;
use crate::kmem::KernelMem;

/// What one pass (a process list, one process's memory map, the kernel log, ...)
/// may spend before it stops and says so ([`Anomaly::Budget`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// Most bytes read from guest memory.
    pub max_bytes: u64,
    /// Most list and tree nodes visited, every walk of the pass together.
    pub max_nodes: u64,
    /// Most wall time.
    pub max_time: Duration,
}

impl Default for Budget {
    /// A pass over a guest of 10,000 tasks spends about 30 MiB and 20,000 nodes
    /// (`ps --threads`) and well under a second on any technique; the defaults
    /// leave room for ten times that, and stop a forged list of a million tasks.
    fn default() -> Self {
        Budget { max_bytes: 256 << 20, max_nodes: 1 << 18, max_time: Duration::from_secs(30) }
    }
}

impl Budget {
    /// No budget: a pass is not metered at all (what the benchmarks compare the
    /// metered pass against; the list bounds of [`Limits`](super::Limits) still hold).
    pub const fn unlimited() -> Self {
        Budget { max_bytes: u64::MAX, max_nodes: u64::MAX, max_time: Duration::MAX }
    }
}

/// What a pass ran out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// Bytes read.
    Bytes,
    /// Nodes visited.
    Nodes,
    /// Wall time (milliseconds).
    TimeMs,
}

impl Resource {
    /// The word the CLI and anomalies use.
    pub fn name(self) -> &'static str {
        match self {
            Resource::Bytes => "bytes",
            Resource::Nodes => "nodes",
            Resource::TimeMs => "ms",
        }
    }
}

/// The clock is asked once per this many checks: a check is made per node and
/// must cost next to nothing (`Instant::now` is about 25 ns).
const CLOCK_EVERY: u32 = 64;

/// One pass's spending against its [`Budget`]. Bytes are counted by the
/// [`KernelMem`] underneath (every read), nodes by the walks, time from the start.
#[derive(Debug)]
pub(crate) struct Meter {
    budget: Budget,
    /// False for [`Budget::unlimited`]: nothing to check.
    metered: bool,
    start: Instant,
    bytes_at_start: u64,
    nodes: AtomicU64,
    checks: AtomicU32,
    /// The resource that ran out (0: none yet), and how much had been spent then.
    out: AtomicU32,
    spent_then: AtomicU64,
}

impl Meter {
    /// Starts metering a pass over `k`.
    pub fn new<M: PhysMem>(budget: Budget, k: &KernelMem<M>) -> Self {
        Meter {
            budget,
            metered: budget != Budget::unlimited(),
            start: Instant::now(),
            bytes_at_start: k.bytes_read(),
            nodes: AtomicU64::new(0),
            checks: AtomicU32::new(0),
            out: AtomicU32::new(0),
            spent_then: AtomicU64::new(0),
        }
    }

    /// Counts `n` nodes visited.
    pub fn visit(&self, n: usize) {
        // A load and a store (see `KernelMem::count`): no locked instruction per node.
        let was = self.nodes.load(Ordering::Relaxed);
        self.nodes.store(was.saturating_add(n as u64), Ordering::Relaxed);
    }

    /// Whether the pass has spent its bytes or its time: then it stops where it
    /// is (every loop over objects asks before the next one).
    pub fn exhausted<M: PhysMem>(&self, k: &KernelMem<M>) -> bool {
        if !self.metered {
            return false;
        }
        if matches!(self.ran_out(), Some(Resource::Bytes | Resource::TimeMs)) {
            return true;
        }
        let bytes = k.bytes_read().saturating_sub(self.bytes_at_start);
        if bytes > self.budget.max_bytes {
            return self.trip(Resource::Bytes, bytes);
        }
        let checks = self.checks.load(Ordering::Relaxed);
        self.checks.store(checks.wrapping_add(1), Ordering::Relaxed);
        if checks.is_multiple_of(CLOCK_EVERY) {
            let took = self.start.elapsed();
            if took > self.budget.max_time {
                return self.trip(Resource::TimeMs, u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
            }
        }
        false
    }

    /// Whether a walk may not take another step: the pass has visited its nodes, or
    /// spent its bytes or time. (Out of nodes, the pass still reads what its walks
    /// found, within its bytes and time.)
    pub fn walk_exhausted<M: PhysMem>(&self, k: &KernelMem<M>) -> bool {
        if !self.metered {
            return false;
        }
        let nodes = self.nodes.load(Ordering::Relaxed);
        if nodes >= self.budget.max_nodes {
            return self.trip(Resource::Nodes, nodes);
        }
        self.exhausted(k)
    }

    /// Records that `what` ran out with `spent` (the first resource to run out is
    /// the one reported); true.
    fn trip(&self, what: Resource, spent: u64) -> bool {
        let code = what as u32 + 1;
        if self.out.compare_exchange(0, code, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            self.spent_then.store(spent, Ordering::Relaxed);
        } else if self.out.load(Ordering::Relaxed) == Resource::Nodes as u32 + 1 && what != Resource::Nodes {
            // Out of nodes first, now out of bytes or time too: the latter stops
            // everything, so it is what the loops must see.
            self.out.store(code, Ordering::Relaxed);
            self.spent_then.store(spent, Ordering::Relaxed);
        }
        true
    }

    /// What ran out, if anything did.
    fn ran_out(&self) -> Option<Resource> {
        match self.out.load(Ordering::Relaxed) {
            0 => None,
            1 => Some(Resource::Bytes),
            2 => Some(Resource::Nodes),
            _ => Some(Resource::TimeMs),
        }
    }

    /// The [`Anomaly::Budget`] of a pass that stopped early, if it did.
    pub fn anomaly(&self) -> Option<Anomaly> {
        let resource = self.ran_out()?;
        let limit = match resource {
            Resource::Bytes => self.budget.max_bytes,
            Resource::Nodes => self.budget.max_nodes,
            Resource::TimeMs => u64::try_from(self.budget.max_time.as_millis()).unwrap_or(u64::MAX),
        };
        Some(Anomaly::Budget { resource, limit, spent: self.spent_then.load(Ordering::Relaxed) })
    }
}

/// A view's result, to which a pass that ran out adds its [`Anomaly::Budget`].
pub(crate) trait Outcome {
    /// The anomalies the budget note joins, if the result has any.
    fn anomalies(&mut self) -> Option<&mut Vec<Anomaly>>;
}

impl<T: Outcome> Outcome for Option<T> {
    fn anomalies(&mut self) -> Option<&mut Vec<Anomaly>> {
        self.as_mut()?.anomalies()
    }
}

impl<T: Outcome> Outcome for crate::Result<T> {
    fn anomalies(&mut self) -> Option<&mut Vec<Anomaly>> {
        self.as_mut().ok()?.anomalies()
    }
}

impl<T> Outcome for (Vec<T>, Vec<Anomaly>) {
    fn anomalies(&mut self) -> Option<&mut Vec<Anomaly>> {
        Some(&mut self.1)
    }
}

/// [`Outcome`] for view types whose anomalies are their `anomalies` field.
macro_rules! outcome {
    ($($t:ty),* $(,)?) => {$(
        impl Outcome for $t {
            fn anomalies(&mut self) -> Option<&mut Vec<Anomaly>> {
                Some(&mut self.anomalies)
            }
        }
    )*};
}

outcome!(
    super::process::ProcessList,
    super::process::ThreadList,
    super::modules::ModuleList,
    super::maps::MemoryMap,
    super::maps::MemoryMaps,
    super::files::OpenFiles,
    super::files::AllOpenFiles,
    super::environ::Environment,
    super::kmsg::KernelLog,
    super::graph::TaskGraph,
    super::graph::ModuleGraph,
    super::pids::PidTable,
    super::mounts::MountTable,
    super::sockets::SocketTable,
    crate::checks::CheckReport,
);

impl<T> Outcome for super::process::PerProcess<T> {
    fn anomalies(&mut self) -> Option<&mut Vec<Anomaly>> {
        Some(&mut self.anomalies)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Budget, Resource};
    use crate::views::fixture::Fx;
    use crate::views::{Anomaly, Limits};

    fn budget_anomaly(an: &[Anomaly]) -> Option<Resource> {
        an.iter().find_map(|a| match a {
            Anomaly::Budget { resource, .. } => Some(*resource),
            _ => None,
        })
    }

    /// A forged task list of 2^20 nodes (as long as a list walk may go) ends at the
    /// pass's node budget, says so once, and read no more than the byte budget.
    #[test]
    fn a_forged_million_task_list_stops_at_the_budget() {
        let mut fx = Fx::new();
        fx.process(1, fx.init_task, 0, "init", Some("/sbin/init"));
        let head = fx.init_task; // `tasks` is at offset 0
        fx.forge_list(head, 1 << 20);
        let k = fx.kernel(Limits::default());
        let budget = Budget::default();

        let list = k.processes();
        assert_eq!(list.processes.first().map(|p| p.pid), Some(1), "what came before the forgery is listed");
        assert_eq!(budget_anomaly(&list.anomalies), Some(Resource::Nodes), "{:?}", &list.anomalies[..4]);
        let budgets = list.anomalies.iter().filter(|a| matches!(a, Anomaly::Budget { .. })).count();
        assert_eq!(budgets, 1);
        assert!(list.processes.len() as u64 <= budget.max_nodes);

        let before = k.kernel_mem().bytes_read();
        let (threads, an) = k.all_threads();
        assert_eq!(budget_anomaly(&an), Some(Resource::Nodes));
        assert!(threads.len() as u64 <= budget.max_nodes);
        let spent = k.kernel_mem().bytes_read() - before;
        assert!(spent <= budget.max_bytes + (1 << 20), "read {spent} bytes");
        assert_eq!(budget_anomaly(&k.task_graph().anomalies), Some(Resource::Nodes));
    }

    #[test]
    fn each_resource_stops_a_pass_and_a_roomy_budget_stops_none() {
        let mut fx = Fx::new();
        let init = fx.process(1, fx.init_task, 0, "init", Some("/sbin/init"));
        for pid in 2..40 {
            fx.process(pid, init, 0, "p", Some("p"));
        }
        let k = fx.kernel(Limits::default());
        let list = k.processes();
        assert_eq!(list.processes.len(), 39);
        assert_eq!(budget_anomaly(&list.anomalies), None, "{:?}", list.anomalies);

        let tight = |budget: Budget| k.with_limits(Limits { budget, ..Limits::default() });
        let roomy = Budget::default();
        let cases = [
            (Budget { max_nodes: 10, ..roomy }, Resource::Nodes),
            (Budget { max_bytes: 4096, ..roomy }, Resource::Bytes),
            (Budget { max_time: Duration::ZERO, ..roomy }, Resource::TimeMs),
        ];
        for (budget, resource) in cases {
            let list = tight(budget).processes();
            assert_eq!(budget_anomaly(&list.anomalies), Some(resource), "{budget:?}: {:?}", list.anomalies);
            assert!(list.processes.len() < 39, "{budget:?}: the pass stopped early");
            let mods = tight(budget).module_symbols();
            assert!(mods.0.is_empty() || budget_anomaly(&mods.1).is_some());
        }
    }
}
