//! The command channel on ttyS1: framed, binary-safe, with exit status, user ids and
//! timeouts — the ground truth every other test relies on.

use std::time::{Duration, Instant};

use vmscope_agent::{ExecRequest, Request, Response};
use vmscope_testbed::boot;

fn sh_req(line: &str) -> ExecRequest {
    ExecRequest { argv: vec!["/bin/sh".into(), "-c".into(), line.into()], ..Default::default() }
}

#[test]
fn exec_status_binary_output_uid_and_timeout() {
    let mut g = boot("6.1");
    assert_eq!(g.agent.release(), g.kernel.release);

    // Every byte value survives, both ways.
    let all: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let r =
        g.agent.exec(ExecRequest { argv: vec!["/bin/cat".into()], stdin: all.clone(), ..Default::default() }).unwrap();
    assert!(r.success(), "{r:?}");
    assert_eq!(r.stdout, all);

    // Exit status and stderr.
    let r = g.agent.exec(sh_req("echo oops >&2; exit 7")).unwrap();
    assert_eq!((r.code, r.stderr.as_slice()), (Some(7), &b"oops\n"[..]));
    assert!(g.agent.sh("exit 3").is_err());

    // Killed by a signal.
    let r = g.agent.exec(sh_req("kill -9 $$")).unwrap();
    assert_eq!(r.signal, Some(9), "{r:?}");

    // Runs as another user.
    let r = g.agent.exec(ExecRequest { uid: Some(1002), ..sh_req("id -u; id -g") }).unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "1002\n1002\n");

    // A command that outlives its deadline is killed and reported.
    let t = Instant::now();
    let r = g.agent.exec(ExecRequest { timeout_ms: 500, ..sh_req("sleep 30") }).unwrap();
    assert!(r.timed_out && t.elapsed() < Duration::from_secs(10), "{r:?} after {:?}", t.elapsed());

    // A daemon left holding stdout does not block the answer.
    let t = Instant::now();
    let out = g.sh("sleep 300 & echo started");
    assert_eq!(out, "started\n");
    assert!(t.elapsed() < Duration::from_secs(5));

    // The channel still works after all that, and reads big files whole.
    let kallsyms = g.agent.read_file("/proc/kallsyms", 64 << 20).unwrap();
    let lines = kallsyms.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
    let wc: usize = g.sh("wc -l < /proc/kallsyms").trim().parse().unwrap();
    assert_eq!(lines, wc);
    assert!(lines > 50_000, "only {lines} symbols");
}

#[test]
fn channel_recovers_from_garbage_and_abandoned_requests() {
    use std::io::Write;
    let mut g = boot("6.12");
    // Garbage straight onto the port, then a request we stop waiting for.
    let mut raw = std::os::unix::net::UnixStream::connect(g.vm.agent_socket());
    if let Ok(s) = raw.as_mut() {
        // QEMU serves one client per chardev socket: this one waits in the backlog.
        let _ = s.write_all(b"VMSaVMSa\x01\x00\x00\x00garbage");
    }
    let slow = g.agent.call_with(&Request::Exec(sh_req("sleep 2; echo late")), Duration::from_millis(200));
    assert!(slow.is_err());
    // The late answer is skipped; the next call gets its own.
    match g.agent.call(&Request::Ping { nonce: 42 }).unwrap() {
        Response::Pong { nonce, .. } => assert_eq!(nonce, 42),
        other => panic!("{other:?}"),
    }
    assert_eq!(g.sh("echo ok"), "ok\n");
}

#[test]
fn agent_answers_processes_and_modules() {
    let mut g = boot("6.1");
    g.sh("insmod /lib/modules/dummy.ko");
    let procs = g.agent.processes().unwrap();
    let init = procs.iter().find(|p| p.pid == 1).expect("pid 1");
    assert_eq!((init.ppid, init.uid), (0, 0));
    assert!(procs.iter().any(|p| p.comm == "kthreadd" && p.cmdline.is_empty()));
    assert!(procs.iter().any(|p| p.comm == "vmscope-agent"));
    // Same pids as /proc, but for the shell pipeline that lists them.
    let listed: std::collections::BTreeSet<i32> =
        g.sh("ls /proc").split_whitespace().filter_map(|w| w.parse().ok()).collect();
    let answered: std::collections::BTreeSet<i32> = procs.iter().map(|p| p.pid).collect();
    assert!(answered.is_subset(&listed), "agent pids not in /proc: {:?}", answered.difference(&listed));
    assert!(listed.difference(&answered).count() <= 2, "missing: {:?}", listed.difference(&answered));
    let mods = g.agent.modules().unwrap();
    let dummy = mods.iter().find(|m| m.name == "dummy").expect("dummy loaded");
    let truth = g.sh("grep '^dummy ' /proc/modules");
    assert_eq!(truth.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap(), dummy.size);
}
