//! A process's environment: the strings between `mm->env_start` and `env_end` in
//! its own memory, as `/proc/PID/environ` reads them.

use serde::{Deserialize, Serialize};
use vmscope_mem::PhysMem;

use super::{Anomaly, Fields, with_struct};
use crate::kernel::Ctx;

/// The environment of one process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    /// The process.
    pub pid: i32,
    /// Its `comm`.
    pub comm: String,
    /// `NAME=value` strings in memory order; empty for a kernel thread; `None` when
    /// the pages are not present (see the anomalies).
    pub vars: Option<Vec<String>>,
    /// Whether the area was longer than the limit and only its start was read.
    pub truncated: bool,
    /// What was wrong on the way.
    pub anomalies: Vec<Anomaly>,
}

impl<M: PhysMem> Ctx<'_, M> {
    /// The environment of process `pid`; `None` if there is no such process.
    pub(crate) fn environment(&self, pid: i32) -> Option<Environment> {
        let mut an = Vec::new();
        let leader = self.find_leader(pid, &mut an)?;
        let mut env =
            Environment { pid: leader.pid, comm: leader.comm, vars: Some(Vec::new()), ..Environment::default() };
        if let Some(mm) = leader.mm {
            let mo = &self.o.mm;
            let span = mo.pgd.max(mo.env_start).max(mo.env_end) + 8;
            let got = with_struct(self.k, mm, span, "mm_struct", &mut an, |b| {
                Some((b.ptr(mo.pgd)?, b.ptr(mo.env_start)?, b.ptr(mo.env_end)?))
            })
            .flatten();
            if let Some((pgd, start, end)) = got {
                let len = end.offset_from(start).unwrap_or(0);
                let max = self.limits.max_environ;
                env.truncated = len > max as u64;
                let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX).min(max)];
                match self.k.read_user(pgd, start, &mut buf) {
                    Ok(()) => {
                        if buf.last() == Some(&0) {
                            buf.pop();
                        }
                        env.vars = Some(if buf.is_empty() {
                            Vec::new()
                        } else {
                            buf.split(|&c| c == 0).map(|v| String::from_utf8_lossy(v).into_owned()).collect()
                        });
                    }
                    Err(e) => {
                        an.push(Anomaly::UserMemoryUnavailable { pid, addr: start, error: e.to_string() });
                        env.vars = None;
                    }
                }
            }
        }
        env.anomalies = an;
        Some(env)
    }
}

#[cfg(test)]
mod tests {
    use crate::views::Limits;
    use crate::views::fixture::Fx;

    #[test]
    fn the_environment_as_proc_shows_it() {
        let mut fx = Fx::new();
        let t = fx.process(5, fx.init_task, 0, "sh", Some("sh"));
        fx.environ(t, 5, &["HOME=/", "TERM=linux", "EMPTY="]);
        fx.process(6, fx.init_task, 0, "noenv", Some("x"));
        fx.kthread(2, fx.init_task, "kthreadd");
        let (k, addrs) = fx.finish();
        let ctx = fx.ctx(&k, &addrs, Limits::default());
        let e = ctx.environment(5).expect("pid 5");
        assert_eq!(e.vars.as_deref(), Some(&["HOME=/".to_owned(), "TERM=linux".into(), "EMPTY=".into()][..]));
        assert!(!e.truncated && e.anomalies.is_empty());
        let cut = fx.ctx(&k, &addrs, Limits { max_environ: 8, ..Limits::default() }).environment(5).expect("pid 5");
        assert_eq!((cut.vars.as_deref(), cut.truncated), (Some(&["HOME=/".to_owned(), "T".into()][..]), true));
        // No environment set up: env_start == env_end.
        assert_eq!(ctx.environment(6).expect("pid 6").vars, Some(Vec::new()));
        assert_eq!(ctx.environment(2).expect("pid 2").vars, Some(Vec::new()));
        assert!(ctx.environment(99).is_none());
    }
}
