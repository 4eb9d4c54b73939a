//! Processes and threads: `init_task.tasks` walked, each task read once and its
//! credentials, signal struct, mm and command line followed from there.

use serde::{Deserialize, Serialize};
use vmscope_mem::{Gva, PhysMem};

use super::{AddrMap, Anomaly, BATCH, Bytes, Fields, Layout, Parts, Read, field, owner, plausible, with_struct};
use crate::kernel::Ctx;
use crate::kmem::member;
use crate::offsets::{NR_MM_COUNTERS_MAX, RssLayout, TaskOffsets};

/// The most of a kernel thread's `kthread.full_name` read. (/proc prints at most 63
/// bytes of it, through a 64-byte buffer.)
pub const FULL_NAME_MAX: usize = 64;

/// `PF_KTHREAD` in `task_struct.flags`: a kernel thread. (A `#define`, so not in
/// BTF; its value has been the same since Linux 2.6.)
pub const PF_KTHREAD: u32 = 0x0020_0000;

/// The state letters `/proc/PID/stat` prints, indexed by `fls()` of the reported
/// state (`task_state_array` in fs/proc/array.c, stable user ABI).
const STATE_LETTERS: &[u8; 9] = b"RSDTtXZPI";
/// `TASK_REPORT`: the state bits `/proc` reports.
const TASK_REPORT: u32 = 0x7f;
/// `TASK_IDLE` = `TASK_UNINTERRUPTIBLE | TASK_NOLOAD`: reported as `I`.
const TASK_IDLE: u32 = 0x402;
/// `TASK_RTLOCK_WAIT`: reported as `D`.
const TASK_RTLOCK_WAIT: u32 = 0x1000;

/// The letter `/proc` shows for a task's `__state` and `exit_state`.
pub fn state_letter(state: u32, exit_state: u32) -> char {
    let mut report = (state | exit_state) & TASK_REPORT;
    if state & TASK_IDLE == TASK_IDLE {
        report = 0x80;
    }
    if state & TASK_RTLOCK_WAIT != 0 {
        report = 2;
    }
    let idx = (32 - report.leading_zeros()) as usize;
    STATE_LETTERS.get(idx).map_or('?', |&c| c as char)
}

/// One process (thread group), as its leader's task describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// Thread-group id (what `ps` calls the PID).
    pub pid: i32,
    /// The leader's own task id (equals `pid`).
    pub tid: i32,
    /// The parent's PID (`real_parent->tgid`; 0 for children of the idle task).
    pub ppid: i32,
    /// `comm` (every byte of the array, and an [`Anomaly::Unterminated`], when it
    /// holds no NUL).
    pub comm: String,
    /// A kernel thread's full name when its comm is truncated (`kthread.full_name`,
    /// 5.17+): what /proc shows as its name, up to [`FULL_NAME_MAX`] bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    /// Whether `full_name` is the first [`FULL_NAME_MAX`] bytes of a longer name.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full_name_truncated: bool,
    /// State letter as `/proc` shows it (R, S, D, T, t, X, Z, P, I).
    pub state: char,
    /// Real user id (`real_cred->uid`).
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// Effective user id.
    pub euid: u32,
    /// Effective group id.
    pub egid: u32,
    /// Start time, ns of monotonic time after boot (`start_time`).
    pub start_time_ns: u64,
    /// Start time, ns of boot time (`start_boottime`; what `/proc/PID/stat` shows).
    pub start_boottime_ns: Option<u64>,
    /// User CPU time of the whole group, ns: live threads plus exited ones.
    pub utime_ns: u64,
    /// System CPU time of the whole group, ns.
    pub stime_ns: u64,
    /// Resident pages: file + anon + shmem counters of the mm (per-CPU deltas
    /// summed where the kernel keeps them per CPU). `None` without an mm.
    pub rss_pages: Option<u64>,
    /// Threads (`signal->nr_threads`).
    pub threads: u32,
    /// A kernel thread (`PF_KTHREAD`).
    pub kernel_thread: bool,
    /// Arguments, read through the process's own page tables; empty for kernel
    /// threads; `None` when the pages are not present (see the anomalies).
    pub cmdline: Option<Vec<String>>,
    /// Address of the leader's `task_struct`.
    pub task: Gva,
}

/// The process list and what was wrong on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessList {
    /// Processes in `init_task.tasks` order.
    pub processes: Vec<Process>,
    /// Anomalies met.
    pub anomalies: Vec<Anomaly>,
}

/// One thread of a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thread {
    /// Task id.
    pub tid: i32,
    /// `comm` (as [`Process::comm`]).
    pub comm: String,
    /// State letter.
    pub state: char,
    /// User CPU time, ns.
    pub utime_ns: u64,
    /// System CPU time, ns.
    pub stime_ns: u64,
    /// Address of its `task_struct`.
    pub task: Gva,
}

/// The threads of one process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadList {
    /// The process.
    pub pid: i32,
    /// Its threads, leader first.
    pub threads: Vec<Thread>,
    /// Anomalies met.
    pub anomalies: Vec<Anomaly>,
}

/// What the process and thread views read of a `task_struct`.
fn task_layout(o: &TaskOffsets) -> Layout {
    let fields = [
        (o.pid, 4),
        (o.tgid, 4),
        (o.state, o.state_size),
        (o.exit_state, 4),
        (o.flags, 4),
        (o.real_parent, 8),
        (o.mm, 8),
        (o.real_cred, 8),
        (o.signal, 8),
        (o.start_time, 8),
        (o.utime, 8),
        (o.stime, 8),
        (o.comm, o.comm_len),
    ];
    let optional = [(o.start_boottime, 8), (o.kthread, 8), (o.rss_cache, 4 * NR_MM_COUNTERS_MAX)];
    Layout::new(o.size, fields.into_iter().chain(optional.into_iter().filter_map(|(off, len)| Some((off?, len)))))
}

/// A process as the per-process views (memory maps, open files, environment)
/// need it.
#[derive(Debug, Clone)]
pub(crate) struct Leader {
    /// Its `task_struct`.
    pub task: Gva,
    /// Thread-group id.
    pub pid: i32,
    pub comm: String,
    pub mm: Option<Gva>,
    pub files: Option<Gva>,
    pub fs: Option<Gva>,
}

/// A per-process view of one process or of every process, in task-list order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerProcess<T> {
    /// One entry per process.
    pub processes: Vec<T>,
    /// Anomalies of finding the processes (the task-list walk).
    pub anomalies: Vec<Anomaly>,
}

/// A task's fields, read once.
struct Task<'r> {
    addr: Gva,
    fields: Parts<'r>,
}

impl<'r> Task<'r> {
    fn fields(&self) -> Parts<'r> {
        self.fields
    }
}

/// The tasks of `addrs` that `reads` (from [`Ctx::read_tasks`] of them) hold, in
/// order; those that could not be read are recorded as they are passed.
fn tasks<'a, 'r: 'a, 'l: 'r>(
    addrs: &'a [Gva],
    reads: &'r [Read<'l>],
    an: &'a mut Vec<Anomaly>,
) -> impl Iterator<Item = Task<'r>> + use<'a, 'r, 'l> {
    let each = addrs
        .chunks(BATCH)
        .zip(reads)
        .flat_map(|(batch, read)| batch.iter().enumerate().map(move |(i, &addr)| (addr, read.get(i))));
    each.filter_map(move |(addr, read)| match read {
        Ok(fields) => Some(Task { addr, fields }),
        Err(e) => {
            an.push(Anomaly::Unreadable { what: "task_struct".into(), addr, error: e.to_string() });
            None
        }
    })
}

impl<M: PhysMem> Ctx<'_, M> {
    /// The tasks at `addrs`, read [`BATCH`] at a time; [`tasks`] takes them out.
    fn read_tasks<'l>(&self, addrs: &[Gva], layout: &'l Layout) -> Vec<Read<'l>> {
        addrs.chunks(BATCH).map(|batch| layout.read_each(self.k, batch)).collect()
    }

    fn thread_of(&self, t: &Task<'_>, an: &mut Vec<Anomaly>) -> Option<Thread> {
        let (b, o) = (t.fields(), &self.o.task);
        let tid = b.i32(o.pid)?;
        let comm = b.cstr(o.comm, o.comm_len)?.unwrap_or_else(|all| {
            an.push(Anomaly::Unterminated {
                what: "task_struct".into(),
                addr: t.addr,
                field: "comm".into(),
                len: o.comm_len,
            });
            all
        });
        Some(Thread {
            tid,
            comm,
            state: state_letter(b.uint(o.state, o.state_size)? as u32, b.u32(o.exit_state)?),
            utime_ns: b.u64(o.utime)?,
            stime_ns: b.u64(o.stime)?,
            task: t.addr,
        })
    }

    /// The tasks of the thread group whose `signal` is at `signal`.
    fn thread_addrs(&self, signal: Gva, an: &mut Vec<Anomaly>) -> Vec<Gva> {
        let Some(head) = field(signal, self.o.signal.thread_head, "signal.thread_head", an) else {
            return Vec::new();
        };
        let nodes = self.walk_list(head, "signal.thread_head", an);
        nodes.into_iter().filter_map(|n| owner(n, self.o.task.thread_node, "task_struct", an)).collect()
    }

    fn ptr_field(&self, b: &impl Fields, base: Gva, off: u64, what: &str, an: &mut Vec<Anomaly>) -> Option<Gva> {
        let v = b.ptr(off)?;
        if v.raw() == 0 {
            return None;
        }
        if !plausible(self.k, v, 8) {
            // `b` holds the bytes read from `base`, `off` among them: no overflow.
            let at = member(base, off).unwrap_or(base);
            an.push(Anomaly::BadPointer { what: what.into(), at, value: v });
            return None;
        }
        Some(v)
    }

    /// The full name of a kernel thread, when the kernel keeps one, and whether it
    /// was cut at [`FULL_NAME_MAX`] bytes.
    fn kthread_full_name(&self, b: &impl Fields, task: Gva, an: &mut Vec<Anomaly>) -> Option<(String, bool)> {
        let (Some(kt), Some(fno)) = (self.o.task.kthread, self.o.task.kthread_full_name) else { return None };
        let kthread = self.ptr_field(b, task, kt, "task.worker_private (kthread)", an)?;
        let at = member(kthread, fno).ok()?;
        let name = self.k.read_ptr(at).ok().filter(|p| p.raw() != 0)?;
        if !plausible(self.k, name, 1) {
            an.push(Anomaly::BadPointer { what: "kthread.full_name".into(), at, value: name });
            return None;
        }
        // The kernel allocates it to size, /proc shows what fits its buffer: a
        // prefix is what is wanted here.
        let s = self.k.read_cstr_prefix(name, FULL_NAME_MAX).ok().filter(|s| !s.bytes.is_empty())?;
        Some((String::from_utf8_lossy(&s.bytes).into_owned(), s.truncated))
    }

    /// Bytes of `mm_struct` the views need: up to the last of pgd, the argument
    /// bounds and the RSS counters.
    fn mm_span(&self) -> u64 {
        let mo = &self.o.mm;
        let last = mo.rss_counters.iter().copied().max().unwrap_or(0);
        let rss_end = match &mo.rss {
            RssLayout::Atomic { base, stride } => base + last * stride + 8,
            RssLayout::PerCpu { base, stride, count, counters } => base + last * stride + (*count).max(*counters) + 8,
        };
        (mo.pgd.max(mo.arg_start).max(mo.arg_end) + 8).max(rss_end)
    }

    /// Resident pages from the mm's counters (in `mm_bytes`), with the changes not
    /// yet folded in: the per-CPU deltas of 6.2+ read from the per-CPU areas, or, up
    /// to 6.1, the threads' cached counts (`cached`, by counter).
    /// /proc shows the counters alone; vmscope's figure is what the page tables hold.
    fn rss(&self, mm_bytes: &Bytes<'_>, cached: &RssCached, an: &mut Vec<Anomaly>) -> Option<u64> {
        let mut total = 0u64;
        for &i in &self.o.mm.rss_counters {
            let v: i64 = match &self.o.mm.rss {
                RssLayout::Atomic { base, stride } => mm_bytes.u64(base + i * stride)? as i64,
                RssLayout::PerCpu { base, stride, count, counters } => {
                    let c = base + i * stride;
                    let mut v = mm_bytes.u64(c + count)? as i64;
                    let pcpu = mm_bytes.u64(c + counters)?;
                    if pcpu != 0 {
                        for off in &self.addrs.per_cpu_offsets {
                            // A per-CPU pointer plus the CPU's offset, modulo 2^64 as
                            // the kernel's `per_cpu_ptr` computes it.
                            let addr = Gva::new(pcpu.wrapping_add(*off));
                            match self.k.read_u32(addr) {
                                Ok(d) => v = v.saturating_add(i64::from(d as i32)),
                                Err(e) => an.push(Anomaly::Unreadable {
                                    what: "per-CPU rss counter".into(),
                                    addr,
                                    error: e.to_string(),
                                }),
                            }
                        }
                    }
                    v
                }
            };
            total = total.saturating_add(v.saturating_add(cached.get(i as usize).copied().unwrap_or(0)).max(0) as u64);
        }
        Some(total)
    }

    /// Adds a thread's cached page-count changes (up to 6.1) to `sum`; nothing where
    /// the kernel keeps none.
    fn add_rss_cached(&self, task: &impl Fields, sum: &mut RssCached) {
        let Some(base) = self.o.task.rss_cache else { return };
        for (i, s) in (0u64..).zip(sum.iter_mut()) {
            *s = s.saturating_add(task.i32(base + 4 * i).map_or(0, i64::from));
        }
    }

    fn cmdline(&self, pid: i32, mm_bytes: &Bytes<'_>, an: &mut Vec<Anomaly>) -> Option<Vec<String>> {
        let mo = &self.o.mm;
        let (pgd, start, end) = (mm_bytes.ptr(mo.pgd)?, mm_bytes.ptr(mo.arg_start)?, mm_bytes.ptr(mo.arg_end)?);
        let Some(len) = end.offset_from(start).filter(|&n| n > 0) else {
            return Some(Vec::new());
        };
        let len = usize::try_from(len).unwrap_or(usize::MAX).min(self.limits.max_cmdline);
        let mut buf = vec![0u8; len];
        if let Err(e) = self.k.read_user(pgd, start, &mut buf) {
            an.push(Anomaly::UserMemoryUnavailable { pid, addr: start, error: e.to_string() });
            return None;
        }
        // A process that rewrote its arguments (setproctitle) may have lost the
        // final NUL: then, as /proc does, the first string is all there is.
        if buf.last() != Some(&0) {
            buf.truncate(buf.iter().position(|&b| b == 0).unwrap_or(buf.len()));
            buf.push(0);
        }
        let args = buf[..buf.len() - 1].split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        Some(args)
    }

    fn process(
        &self,
        t: &Task<'_>,
        layout: &Layout,
        tgids: &AddrMap<Gva, i32>,
        an: &mut Vec<Anomaly>,
    ) -> Option<Process> {
        let (b, o) = (t.fields(), &self.o.task);
        let (pid, tgid) = (b.i32(o.pid)?, b.i32(o.tgid)?);
        if pid <= 0 || tgid <= 0 || pid > 1 << 22 || tgid > 1 << 22 {
            an.push(Anomaly::InvalidField {
                what: "task_struct".into(),
                addr: t.addr,
                field: "pid/tgid".into(),
                value: format!("{pid}/{tgid}"),
            });
            return None;
        }
        let th = self.thread_of(t, an)?;
        let flags = b.u32(o.flags)?;

        let ppid = match self.ptr_field(&b, t.addr, o.real_parent, "task.real_parent", an) {
            // The parent is usually a task of this walk: its tgid is already known.
            Some(p) if tgids.contains_key(&p) => tgids[&p],
            Some(p) => member(p, o.tgid).and_then(|at| self.k.read_u32(at)).map(|v| v as i32).unwrap_or_else(|e| {
                an.push(Anomaly::Unreadable { what: "parent task".into(), addr: p, error: e.to_string() });
                -1
            }),
            None => 0,
        };

        let (mut uid, mut gid, mut euid, mut egid) = (u32::MAX, u32::MAX, u32::MAX, u32::MAX);
        if let Some(c) = self.ptr_field(&b, t.addr, o.real_cred, "task.real_cred", an) {
            let co = &self.o.cred;
            let end = co.uid.max(co.gid).max(co.euid).max(co.egid) + 4;
            match self.k.read_vec(c, end as usize) {
                Ok(cb) => {
                    let cb = Bytes(&cb);
                    (uid, gid) = (cb.u32(co.uid)?, cb.u32(co.gid)?);
                    (euid, egid) = (cb.u32(co.euid)?, cb.u32(co.egid)?);
                }
                Err(e) => an.push(Anomaly::Unreadable { what: "cred".into(), addr: c, error: e.to_string() }),
            }
        }

        let (mut threads, mut utime, mut stime) = (1u32, th.utime_ns, th.stime_ns);
        // Page-count changes the threads hold back from the mm (up to 6.1).
        let mut rss_cached = RssCached::default();
        self.add_rss_cached(&b, &mut rss_cached);
        if let Some(s) = self.ptr_field(&b, t.addr, o.signal, "task.signal", an) {
            let so = &self.o.signal;
            match self.k.read_vec(s, (so.thread_head.max(so.nr_threads).max(so.utime).max(so.stime) + 16) as usize) {
                Ok(sb) => {
                    let sb = Bytes(&sb);
                    threads = sb.i32(so.nr_threads).map_or(1, |n| n.max(0) as u32);
                    utime = sb.u64(so.utime).unwrap_or(0);
                    stime = sb.u64(so.stime).unwrap_or(0);
                    if threads > 1 {
                        // The leader's own anomalies are recorded above already.
                        let mut again = Vec::new();
                        let addrs = self.thread_addrs(s, an);
                        let reads = self.read_tasks(&addrs, layout);
                        let threads: Vec<Task<'_>> = tasks(&addrs, &reads, an).collect();
                        for task in threads {
                            let sink = if task.addr == t.addr { &mut again } else { &mut *an };
                            let Some(tt) = self.thread_of(&task, sink) else { continue };
                            utime = utime.saturating_add(tt.utime_ns);
                            stime = stime.saturating_add(tt.stime_ns);
                            if task.addr != t.addr {
                                self.add_rss_cached(&task.fields(), &mut rss_cached);
                            }
                        }
                    } else {
                        utime = utime.saturating_add(th.utime_ns);
                        stime = stime.saturating_add(th.stime_ns);
                    }
                }
                Err(e) => an.push(Anomaly::Unreadable { what: "signal_struct".into(), addr: s, error: e.to_string() }),
            }
        }

        let kernel_thread = flags & PF_KTHREAD != 0;
        let full = if kernel_thread { self.kthread_full_name(&b, t.addr, an) } else { None };
        let (full_name, full_name_truncated) = full.map_or((None, false), |(name, cut)| (Some(name), cut));
        let (mut rss_pages, mut cmdline) = (None, if kernel_thread { Some(Vec::new()) } else { None });
        if let Some(mm) = self.ptr_field(&b, t.addr, o.mm, "task.mm", an).filter(|_| !kernel_thread) {
            match self.k.read_vec(mm, self.mm_span() as usize) {
                Ok(mb) => {
                    cmdline = self.cmdline(pid, &Bytes(&mb), an);
                    rss_pages = self.rss(&Bytes(&mb), &rss_cached, an);
                }
                Err(e) => an.push(Anomaly::Unreadable { what: "mm_struct".into(), addr: mm, error: e.to_string() }),
            }
        } else if !kernel_thread {
            // An exiting process has dropped its mm: nothing to read.
            cmdline = Some(Vec::new());
        }

        Some(Process {
            pid: tgid,
            tid: pid,
            ppid,
            comm: th.comm,
            full_name,
            full_name_truncated,
            state: th.state,
            uid,
            gid,
            euid,
            egid,
            start_time_ns: b.u64(o.start_time)?,
            start_boottime_ns: o.start_boottime.and_then(|off| b.u64(off)),
            utime_ns: utime,
            stime_ns: stime,
            rss_pages,
            threads,
            kernel_thread,
            cmdline,
            task: t.addr,
        })
    }

    /// The process (thread-group leader) of task `addr`, read as the per-process
    /// views need it: one read of the fields they use.
    pub(crate) fn leader(&self, addr: Gva, an: &mut Vec<Anomaly>) -> Option<Leader> {
        let o = &self.o.task;
        let files = self.o.files;
        let fields = [(o.pid, 4), (o.tgid, 4), (o.mm, 8), (o.comm, o.comm_len)]
            .into_iter()
            .chain(files.iter().flat_map(|f| [(f.task_files, 8), (f.task_fs, 8)]));
        let (lo, hi) =
            fields.fold((u64::MAX, 0), |(lo, hi), (off, len)| (lo.min(off), hi.max(off.saturating_add(len))));
        if hi <= lo || hi - lo > o.size {
            return None; // offsets outside the struct: the types are wrong
        }
        let start = member(addr, lo).ok()?;
        let (pid, comm, raw) = with_struct(self.k, start, hi - lo, "task_struct", an, |b| {
            let ptr = |off: u64| b.ptr(off - lo).map(|v| (off, v));
            Some((
                b.i32(o.tgid - lo)?,
                b.cstr(o.comm - lo, o.comm_len)?.unwrap_or_else(|all| all),
                [Some(ptr(o.mm)?), files.and_then(|f| ptr(f.task_files)), files.and_then(|f| ptr(f.task_fs))],
            ))
        })??;
        let [mm, files, fs] = raw.map(|p| {
            let (off, v) = p?;
            if v.raw() == 0 {
                return None;
            }
            if !plausible(self.k, v, 8) {
                an.push(Anomaly::BadPointer {
                    what: "task_struct pointer".into(),
                    at: member(addr, off).unwrap_or(addr),
                    value: v,
                });
                return None;
            }
            Some(v)
        });
        Some(Leader { task: addr, pid, comm, mm, files, fs })
    }

    /// Every process, as [`leader`](Self::leader) reads it, in task-list order.
    pub(crate) fn leaders(&self, an: &mut Vec<Anomaly>) -> Vec<Leader> {
        let addrs = self.task_addrs(an);
        addrs.into_iter().take_while(|_| !self.meter.exhausted(self.k)).filter_map(|a| self.leader(a, an)).collect()
    }

    /// The process `pid`, if the task list has it.
    pub(crate) fn find_leader(&self, pid: i32, an: &mut Vec<Anomaly>) -> Option<Leader> {
        let tgid = self.o.task.tgid;
        let addr = self
            .task_addrs(an)
            .into_iter()
            .find(|&t| member(t, tgid).and_then(|at| self.k.read_u32(at)).is_ok_and(|v| v as i32 == pid))?;
        self.leader(addr, an)
    }

    /// `each` of process `pid` (`None`: no such process), or of every process.
    pub(crate) fn per_process<T>(&self, pid: Option<i32>, each: impl FnMut(&Leader) -> T) -> Option<PerProcess<T>> {
        let mut anomalies = Vec::new();
        let leaders = match pid {
            Some(pid) => vec![self.find_leader(pid, &mut anomalies)?],
            None => self.leaders(&mut anomalies),
        };
        Some(PerProcess { processes: leaders.iter().map(each).collect(), anomalies })
    }

    /// The task list after `init_task`, as task addresses.
    fn task_addrs(&self, an: &mut Vec<Anomaly>) -> Vec<Gva> {
        let Some(head) = field(self.addrs.init_task, self.o.task.tasks, "init_task.tasks", an) else {
            return Vec::new();
        };
        self.walk_list(head, "init_task.tasks", an)
            .into_iter()
            .filter_map(|n| owner(n, self.o.task.tasks, "task_struct", an))
            .collect()
    }

    pub(crate) fn processes(&self) -> ProcessList {
        let mut anomalies = Vec::new();
        let mut processes = Vec::new();
        let layout = task_layout(&self.o.task);
        let addrs = self.task_addrs(&mut anomalies);
        // A batch at a time, so that what a pass holds is one batch of tasks, not
        // every task of the list. A new task joins the list at its tail, after its
        // parent, so the parent's tgid is usually known by then (else it is read).
        let mut tgids: AddrMap<Gva, i32> = AddrMap::default();
        for batch in addrs.chunks(BATCH) {
            if self.meter.exhausted(self.k) {
                break;
            }
            let reads = [layout.read_each(self.k, batch)];
            let tasks: Vec<Task<'_>> = tasks(batch, &reads, &mut anomalies).collect();
            tgids.extend(tasks.iter().filter_map(|t| Some((t.addr, t.fields().i32(self.o.task.tgid)?))));
            for t in tasks {
                if self.meter.exhausted(self.k) {
                    break;
                }
                if let Some(p) = self.process(&t, &layout, &tgids, &mut anomalies) {
                    processes.push(p);
                } else if t.fields().i32(self.o.task.pid).is_none() {
                    anomalies.push(Anomaly::Unreadable {
                        what: "task fields".into(),
                        addr: t.addr,
                        error: "short read".into(),
                    });
                }
            }
        }
        ProcessList { processes, anomalies }
    }

    /// The threads of the group led by task `t` (the leader alone when its signal
    /// struct is unreadable), each read as `layout` says.
    fn group_threads(&self, t: &Task<'_>, layout: &Layout, an: &mut Vec<Anomaly>) -> Vec<Thread> {
        let mut threads = Vec::new();
        match self.ptr_field(&t.fields(), t.addr, self.o.task.signal, "task.signal", an) {
            Some(s) => {
                let addrs = self.thread_addrs(s, an);
                let reads = self.read_tasks(&addrs, layout);
                let group: Vec<Task<'_>> = tasks(&addrs, &reads, an).collect();
                for tt in group {
                    threads.extend(self.thread_of(&tt, an));
                }
            }
            None => threads.extend(self.thread_of(t, an)),
        }
        threads
    }

    pub(crate) fn threads(&self, pid: i32) -> Option<ThreadList> {
        let mut anomalies = Vec::new();
        let layout = task_layout(&self.o.task);
        let addrs = self.task_addrs(&mut anomalies);
        for batch in addrs.chunks(BATCH) {
            if self.meter.exhausted(self.k) {
                break;
            }
            let reads = self.read_tasks(batch, &layout);
            // Up to the process: the tasks after it are not its business.
            let Some(t) = tasks(batch, &reads, &mut anomalies).find(|t| t.fields().i32(self.o.task.tgid) == Some(pid))
            else {
                continue;
            };
            let threads = self.group_threads(&t, &layout, &mut anomalies);
            return Some(ThreadList { pid, threads, anomalies });
        }
        None
    }

    /// The threads of every process, in task-list order, and the anomalies of the
    /// task-list walk (each list has its own).
    pub(crate) fn all_threads(&self) -> (Vec<ThreadList>, Vec<Anomaly>) {
        let mut anomalies = Vec::new();
        let layout = task_layout(&self.o.task);
        let addrs = self.task_addrs(&mut anomalies);
        let mut lists = Vec::new();
        for batch in addrs.chunks(BATCH) {
            let reads = self.read_tasks(batch, &layout);
            let batch: Vec<Task<'_>> = tasks(batch, &reads, &mut anomalies).collect();
            for t in batch {
                if self.meter.exhausted(self.k) {
                    break;
                }
                let Some(pid) = t.fields().i32(self.o.task.tgid) else { continue };
                let mut an = Vec::new();
                let threads = self.group_threads(&t, &layout, &mut an);
                lists.push(ThreadList { pid, threads, anomalies: an });
            }
        }
        (lists, anomalies)
    }
}

/// Page-count changes held in `task_struct.rss_stat`, by counter (`MM_FILEPAGES`, ...).
type RssCached = [i64; NR_MM_COUNTERS_MAX as usize];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_letters() {
        assert_eq!(state_letter(0, 0), 'R');
        assert_eq!(state_letter(1, 0), 'S');
        assert_eq!(state_letter(2, 0), 'D');
        assert_eq!(state_letter(0x402, 0), 'I');
        assert_eq!(state_letter(4, 0), 'T');
        assert_eq!(state_letter(8, 0), 't');
        assert_eq!(state_letter(0, 0x20), 'Z');
        assert_eq!(state_letter(0, 0x10), 'X');
        assert_eq!(state_letter(0x40, 0), 'P');
        assert_eq!(state_letter(0x1000 | 2, 0), 'D');
    }
}
