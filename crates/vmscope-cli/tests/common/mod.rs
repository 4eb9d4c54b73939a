//! Shared by the command's tests: a QEMU started by hand from the README.
#![allow(dead_code)]

pub mod watch;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vmscope_agent::Client;

/// `vmscope --qemu PID --qmp SECOND-MONITOR args...` on a test bed guest, with its
/// profile cache in `cache`; its output, or a panic with its stderr.
pub fn vmscope_on(g: &vmscope_testbed::Guest, cache: &Path, args: &[&str]) -> std::process::Output {
    let o = vmscope_for(g, cache, args).output().unwrap();
    assert!(o.status.success(), "vmscope {args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    o
}

/// QEMU started from the README's command line (daemonized, as a user would);
/// killed on drop.
pub struct ReadmeQemu {
    pid: u32,
    dir: tempfile::TempDir,
}

impl ReadmeQemu {
    /// QEMU as the README starts it, with kernel `kernel`.
    pub fn start(kernel: &str) -> Self {
        Self::start_with(kernel, true)
    }

    /// The same without its `-qmp` monitor when `qmp` is false: a QEMU vmscope can
    /// read but not pause.
    pub fn start_with(kernel: &str, qmp: bool) -> Self {
        Self::start_edited(
            kernel,
            |line| if qmp { line } else { line.replace("-qmp unix:qmp.sock,server=on,wait=off", "") },
        )
    }

    /// QEMU from the README's command line after `edit` (flags taken out or changed).
    pub fn start_edited(kernel: &str, edit: impl FnOnce(String) -> String) -> Self {
        let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
        let section = readme.split("## Any QEMU").nth(1).expect("the README section");
        let block = section.split("```sh").nth(1).and_then(|b| b.split("```").next()).expect("its command block");
        let images = vmscope_testbed::GuestImages::locate().unwrap_or_else(|e| panic!("{e}")).dir;
        let line = block
            .replace("\\\n", " ")
            .replace("target/guest-images", &images.display().to_string())
            .replace("linux-6.1", &format!("linux-{kernel}"));
        let line = edit(line);
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!("{} -daemonize -pidfile qemu.pid", line.trim()))
            .current_dir(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "the README's QEMU command failed");
        let pid: u32 = std::fs::read_to_string(dir.path().join("qemu.pid")).unwrap().trim().parse().unwrap();
        let q = ReadmeQemu { pid, dir };
        let t = Instant::now();
        while !std::fs::read_to_string(q.dir.path().join("console.log")).unwrap_or_default().contains("VMSCOPE-READY") {
            assert!(t.elapsed() < Duration::from_secs(120), "the guest never became ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        q
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The directory QEMU started in (its sockets and console).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `vmscope --qemu PID args...` with its profile cache in `cache`.
    pub fn vmscope_env(&self, args: &[&str], cache: &Path) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_vmscope"))
            .arg("--qemu")
            .arg(self.pid.to_string())
            .args(args)
            .env("XDG_CACHE_HOME", cache)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    /// Loads the `dummy` and `crc7` modules and runs the shell line `line` as alice
    /// (uid 1001) in the guest: the processes and modules the tests look for.
    pub fn load_modules_and_run_as_alice(&self, line: &str) {
        let mut a = self.agent();
        a.sh("insmod /lib/modules/dummy.ko && insmod /lib/modules/crc7.ko").unwrap();
        let argv = vec!["/bin/sh".into(), "-c".into(), line.into()];
        let r = a.exec(vmscope_agent::ExecRequest { argv, uid: Some(1001), ..Default::default() }).unwrap();
        assert!(r.success(), "{line}: {}", r.status_text());
    }

    pub fn agent(&self) -> Client {
        Client::connect(self.dir.path().join("agent.sock"), Duration::from_secs(30)).unwrap()
    }

    /// Runs `vmscope --qemu PID args...` from the directory QEMU started in.
    pub fn vmscope(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_vmscope"))
            .arg("--qemu")
            .arg(self.pid.to_string())
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }
}

/// `vmscope --qemu PID --qmp SECOND-MONITOR args...` for a testbed guest (the test
/// keeps the first monitor), with its profile cache in `cache`.
pub fn vmscope_for(g: &vmscope_testbed::Guest, cache: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vmscope"));
    c.arg("--qemu")
        .arg(g.vm.pid().to_string())
        .arg("--qmp")
        .arg(g.vm.extra_qmp_socket())
        .args(args)
        .env("XDG_CACHE_HOME", cache);
    c
}

impl Drop for ReadmeQemu {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a pid we started and a signal number; no memory.
        unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
    }
}
