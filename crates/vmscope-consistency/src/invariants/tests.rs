//! Every rule broken on purpose, one at a time, on synthetic kernels of many
//! shapes (vmscope-linux's fixture); and no violation on a consistent one.

use std::collections::BTreeSet;

use proptest::prelude::*;
use vmscope_linux::Limits;
use vmscope_linux::views::fixture::{DIRECT, Fx, layout::*};

use super::*;

/// A kernel's shape: extra processes (each with a parent among those before it,
/// and some threads), how far apart their pids are, extra modules.
#[derive(Debug, Clone)]
struct Shape {
    /// (index of the parent among the processes before, or none for init; threads)
    procs: Vec<(Option<usize>, usize)>,
    pid_step: u32,
    modules: usize,
}

impl Default for Shape {
    fn default() -> Self {
        Shape { procs: vec![(None, 0), (Some(0), 2), (None, 1)], pid_step: 1, modules: 0 }
    }
}

/// The fixture and handles to what the breaks need.
struct Built {
    fx: Fx,
    init: u64,
    kthreadd: u64,
    kworker: u64,
    sh: u64,
    app: u64,
    app_threads: [u64; 2],
    mods: [u64; 3],
}

fn build(shape: &Shape) -> Built {
    let mut fx = Fx::new();
    let init = fx.process(1, fx.init_task, 0, "init", None);
    let kthreadd = fx.kthread(2, fx.init_task, "kthreadd");
    let kworker = fx.kthread(3, kthreadd, "kworker/0:0");
    let sh = fx.process(10, init, 0, "sh", None);
    let app = fx.process(11, sh, 1000, "app", None);
    let app_threads = [fx.thread(app, 12, "app-1"), fx.thread(app, 4200, "app-2")];
    let mut next = 5000u32;
    let mut extra: Vec<u64> = Vec::new();
    for (i, &(parent, threads)) in shape.procs.iter().enumerate() {
        let p = parent.filter(|&p| p < i).map_or(init, |p| extra[p]);
        next += shape.pid_step;
        let t = fx.process(next as i32, p, 1000, &format!("p{i}"), None);
        for j in 0..threads {
            next += shape.pid_step;
            fx.thread(t, next as i32, &format!("p{i}-{j}"));
        }
        extra.push(t);
    }
    let mods = [fx.module("a", 100, 0, &[], &[]), fx.module("b", 100, 0, &[], &[]), fx.module("c", 100, 0, &[], &[])];
    for i in 0..shape.modules {
        fx.module(&format!("m{i}"), 100, 0, &[], &[]);
    }
    Built { fx, init, kthreadd, kworker, sh, app, app_threads, mods }
}

/// Removes the list node at `node` from its list, keeping the list consistent.
fn unlink(fx: &mut Fx, node: u64) {
    let (next, prev) = (fx.r64(node), fx.r64(node + 8));
    fx.w64(prev, next);
    fx.w64(next + 8, prev);
}

/// Breaks `rule`, and that rule alone.
fn break_rule(b: &mut Built, rule: Rule) {
    let fx = &mut b.fx;
    match rule {
        // sh->tasks.next and app->tasks.prev (its successor) lead to memory that is
        // not there: the forward walk stops at sh, the backward one at app, and no
        // two links read disagree — a segment of the list is missing.
        Rule::TaskListForwardBackward => {
            fx.w64(b.sh + TASKS, DIRECT + (1 << 40));
            fx.w64(b.app + TASKS + 8, DIRECT + (1 << 40));
        }
        // kthreadd, kworker, sh follow each other forward; their prevs are
        // permuted so that backward they come as sh, kthreadd, kworker read
        // forward: the same tasks both ways, in another order.
        Rule::TaskListLinks => {
            let (x, y, z) = (b.kthreadd + TASKS, b.kworker + TASKS, b.sh + TASKS);
            let (before, after) = (fx.r64(x + 8), fx.r64(z));
            fx.w64(after + 8, x);
            fx.w64(x + 8, z);
            fx.w64(z + 8, y);
            fx.w64(y + 8, before);
        }
        Rule::ParentsListed => {
            let stranger = fx.alloc(TASK_SIZE);
            fx.w64(b.app + PARENT, stranger);
        }
        Rule::ChildrenAgree => unlink(fx, b.app + SIBLING),
        Rule::ThreadCount => {
            let sig = fx.r64(b.app + SIGNAL);
            fx.w32(sig + NR_THREADS, 5);
        }
        Rule::ThreadGroupShared => {
            let mm = fx.alloc(128);
            fx.w64(b.app_threads[1] + MM, mm);
        }
        Rule::PidTable => {
            // The struct pid of thread 4200 lets go of its task.
            let pid = b.fx.pids[&4200];
            b.fx.w64(pid + PID_TASKS, 0);
        }
        Rule::NrThreads => {
            let n = fx.r64(fx.nr_threads) as u32;
            fx.w32(fx.nr_threads, n + 1);
        }
        Rule::ModuleListForwardBackward => {
            fx.w64(b.mods[1], DIRECT + (1 << 40));
            fx.w64(b.mods[2] + 8, DIRECT + (1 << 40));
        }
        Rule::ModuleListLinks => {
            // a, b, c forward; their prevs permuted as for the task list.
            let [x, y, z] = b.mods;
            let (before, after) = (fx.r64(x + 8), fx.r64(z));
            fx.w64(after + 8, x);
            fx.w64(x + 8, z);
            fx.w64(z + 8, y);
            fx.w64(y + 8, before);
        }
        Rule::ModuleState => fx.w32(b.mods[2] + MODULE_STATE, 7),
    }
}

fn rules_fired(c: &Checked) -> BTreeSet<&'static str> {
    c.violations.iter().map(|v| v.rule.name()).collect()
}

fn checked(b: &Built) -> Checked {
    check(&b.fx.kernel(Limits::default()))
}

fn only(rule: Rule, shape: &Shape) -> Checked {
    let mut b = build(shape);
    break_rule(&mut b, rule);
    let c = checked(&b);
    assert_eq!(rules_fired(&c), BTreeSet::from([rule.name()]), "{rule:?} broken: {:#?}", c.violations);
    for v in &c.violations {
        assert!(!v.pages.is_empty() && v.pages.windows(2).all(|w| w[0] < w[1]), "{v:?}");
    }
    c
}

#[test]
fn a_consistent_kernel_breaks_no_rule() {
    let b = build(&Shape::default());
    let c = checked(&b);
    assert!(c.violations.is_empty(), "{:#?}", c.violations);
    assert!(c.anomalies.is_empty(), "{:#?}", c.anomalies);
    // init_task, init, kthreadd, kworker, sh, app + 2 threads, 3 extra + 3 threads.
    assert_eq!((c.tasks, c.modules), (14, 3));
    let _ = (b.init, b.app_threads[0]);
}

#[test]
fn task_list_forward_backward() {
    let c = only(Rule::TaskListForwardBackward, &Shape::default());
    let d = &c.violations[0].detail;
    assert!(d.contains("forward walk did not return") && d.contains("only backward: task 11 (app)"), "{d}");
}

#[test]
fn task_list_links() {
    let c = only(Rule::TaskListLinks, &Shape::default());
    assert!(c.violations.iter().any(|v| v.detail.contains("task 2 (kthreadd)")), "{:#?}", c.violations);
}

#[test]
fn parents_listed() {
    let c = only(Rule::ParentsListed, &Shape::default());
    assert_eq!(c.violations.len(), 1);
    assert!(c.violations[0].detail.starts_with("task 11 (app)") && c.violations[0].detail.contains("parent"));
}

#[test]
fn children_agree() {
    let c = only(Rule::ChildrenAgree, &Shape::default());
    assert!(c.violations[0].detail.contains("not on the children list of its real_parent task 10 (sh)"));
}

#[test]
fn thread_count() {
    let c = only(Rule::ThreadCount, &Shape::default());
    assert!(c.violations[0].detail.contains("nr_threads is 5, its thread list holds 3"));
}

#[test]
fn thread_group_shared() {
    let c = only(Rule::ThreadGroupShared, &Shape::default());
    assert!(c.violations[0].detail.starts_with("task 4200 (app-2)"), "{}", c.violations[0].detail);
}

#[test]
fn an_exiting_thread_without_its_mm_is_no_violation() {
    let mut b = build(&Shape::default());
    b.fx.w64(b.app_threads[1] + MM, 0);
    b.fx.w32(b.app_threads[1] + FLAGS, PF_EXITING);
    assert!(checked(&b).violations.is_empty());
}

#[test]
fn pid_table() {
    let c = only(Rule::PidTable, &Shape::default());
    assert!(c.violations[0].detail.contains("task 4200"), "{}", c.violations[0].detail);
}

#[test]
fn nr_threads() {
    let c = only(Rule::NrThreads, &Shape::default());
    assert_eq!(c.violations[0].detail, "nr_threads is 14, 13 tasks found (init_task not counted)");
}

#[test]
fn module_list_forward_backward() {
    only(Rule::ModuleListForwardBackward, &Shape::default());
}

#[test]
fn module_list_links() {
    only(Rule::ModuleListLinks, &Shape::default());
}

#[test]
fn module_state() {
    let c = only(Rule::ModuleState, &Shape::default());
    assert!(c.violations[0].detail.contains("module c"));
}

#[test]
fn every_rule_has_a_distinct_name_its_serde_name() {
    let names: BTreeSet<&str> = Rule::ALL.iter().map(|r| r.name()).collect();
    assert_eq!(names.len(), Rule::ALL.len());
    for r in Rule::ALL {
        assert_eq!(serde_json::to_value(r).expect("serializes"), serde_json::Value::from(r.name()));
        assert!(!r.describe().is_empty());
    }
}

#[test]
fn origin_is_extrinsic_only_when_a_page_of_the_evidence_was_torn() {
    let v = Violation::new(Rule::ThreadCount, "x".into(), [9, 3, 7, 3]);
    assert_eq!(v.pages, [3, 7, 9]);
    assert_eq!(v.origin(&[]), Origin::Intrinsic);
    assert_eq!(v.origin(&[1, 2, 4, 8, 10]), Origin::Intrinsic);
    assert_eq!(v.origin(&[1, 7]), Origin::Extrinsic);
    assert_eq!(v.origin(&[9]), Origin::Extrinsic);
}

#[test]
fn the_pages_of_a_violation_are_where_its_evidence_lies() {
    let c = only(Rule::ThreadCount, &Shape::default());
    let b = build(&Shape::default());
    let page = |va: u64| (va - DIRECT) >> 12;
    let sig = {
        let mut fx = b.fx;
        fx.r64(b.app + SIGNAL)
    };
    let v = &c.violations[0];
    for va in [b.app, b.app_threads[0], b.app_threads[1], sig] {
        assert!(v.pages.contains(&page(va)), "{:#x} not in {:?}", va, v.pages);
    }
    // A page the guest wrote elsewhere does not make it extrinsic; one of these does.
    assert_eq!(v.origin(&[0]), Origin::Intrinsic);
    assert_eq!(v.origin(&[page(sig)]), Origin::Extrinsic);
}

fn shapes() -> impl Strategy<Value = Shape> {
    (prop::collection::vec((prop::option::of(0usize..8), 0usize..4), 0..10), 1u32..600, 0usize..5)
        .prop_map(|(procs, pid_step, modules)| Shape { procs, pid_step, modules })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Consistent kernels of every shape: no violation, no anomaly.
    #[test]
    fn no_false_positive(shape in shapes()) {
        let c = checked(&build(&shape));
        prop_assert!(c.violations.is_empty(), "{:#?}", c.violations);
        prop_assert!(c.anomalies.is_empty(), "{:#?}", c.anomalies);
    }

    /// Each rule broken alone, on every shape, fires that rule and no other.
    #[test]
    fn each_break_fires_its_rule_alone(shape in shapes(), which in 0..Rule::ALL.len()) {
        only(Rule::ALL[which], &shape);
    }
}
