//! The study's workloads inside a guest, each reduced to one figure.
//!
//! The guest must have been booted with [`crate::GuestImages::workload_disks`] (see
//! [`crate::boot_with_workloads`]): the workload image is mounted read-only at /mnt/w,
//! a scratch ext4 disk at /mnt/w/scratch, and every tool runs with
//! `chroot /mnt/w`, i.e. with the image's own Debian 12 C library. Servers (busybox
//! httpd, netserver, iperf3 -s) listen on 127.0.0.1 for the duration of one run.
//!
//! ```no_run
//! use std::time::Duration;
//! use vmscope_testbed::workloads::{Workload, run};
//! let mut g = vmscope_testbed::boot_with_workloads("6.1", |_| {});
//! let f = run(&mut g.agent, Workload::SysbenchCpu, Duration::from_secs(3)).unwrap();
//! println!("sysbench cpu: {} {}", f.value, f.unit);
//! ```

use std::time::Duration;

use vmscope_agent::{Client, ExecRequest};

use crate::{Error, Result};

/// One benchmark, with the settings that keep it to about the requested duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Workload {
    /// x264 `--preset ultrafast` on the image's synthetic 352x288 clip (50 frames;
    /// not bounded by the duration): frames/s.
    X264,
    /// `sysbench cpu`, 1 thread: events/s.
    SysbenchCpu,
    /// `sysbench memory` (1 KiB blocks, writes): MiB/s.
    SysbenchMemory,
    /// `sysbench threads`, 2 threads: events/s.
    SysbenchThreads,
    /// `sysbench fileio` random read/write on 4 files of 16 MiB on the scratch disk:
    /// read plus written MiB/s.
    SysbenchFileio,
    /// httperf fetching a small page from busybox httpd on 127.0.0.1, one connection
    /// at a time: requests/s.
    Httperf,
    /// netperf TCP_STREAM to netserver on 127.0.0.1: Mbit/s (10^6 bit/s).
    Netperf,
    /// bonnie++ block writes of a 256 MiB file on the scratch disk: KiB/s (64 MiB
    /// wrote too fast for bonnie to time now and then: it printed +++++).
    Bonnie,
    /// stress-ng `--stream` (STREAM copy/scale/add/triad), one instance, arrays sized
    /// for a 1 MiB cache, at least 6 s (shorter runs report no rate): MB/s read plus
    /// written.
    Stream,
    /// fio sequential 1 MiB writes on the scratch disk: MiB/s.
    Fio,
    /// iperf3 TCP on 127.0.0.1, as the receiver saw it: Mbit/s.
    Iperf3,
}

/// What one run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    /// The figure; higher is better for every workload here.
    pub value: f64,
    /// Its unit.
    pub unit: &'static str,
}

impl Workload {
    /// Every workload, in the order the study lists them (fio and iperf3 last).
    pub const ALL: [Workload; 11] = [
        Workload::X264,
        Workload::SysbenchCpu,
        Workload::SysbenchMemory,
        Workload::SysbenchThreads,
        Workload::SysbenchFileio,
        Workload::Httperf,
        Workload::Netperf,
        Workload::Bonnie,
        Workload::Stream,
        Workload::Fio,
        Workload::Iperf3,
    ];

    /// A short name (`sysbench-cpu`).
    pub fn name(self) -> &'static str {
        match self {
            Workload::X264 => "x264",
            Workload::SysbenchCpu => "sysbench-cpu",
            Workload::SysbenchMemory => "sysbench-memory",
            Workload::SysbenchThreads => "sysbench-threads",
            Workload::SysbenchFileio => "sysbench-fileio",
            Workload::Httperf => "httperf",
            Workload::Netperf => "netperf",
            Workload::Bonnie => "bonnie++",
            Workload::Stream => "stream",
            Workload::Fio => "fio",
            Workload::Iperf3 => "iperf3",
        }
    }

    /// The unit of its figure.
    pub fn unit(self) -> &'static str {
        match self {
            Workload::X264 => "frames/s",
            Workload::SysbenchCpu | Workload::SysbenchThreads => "events/s",
            Workload::SysbenchMemory | Workload::SysbenchFileio | Workload::Fio => "MiB/s",
            Workload::Httperf => "requests/s",
            Workload::Netperf | Workload::Iperf3 => "Mbit/s",
            Workload::Bonnie => "KiB/s",
            Workload::Stream => "MB/s",
        }
    }

    /// The guest shell line that runs it for about `secs` seconds.
    pub fn command(self, secs: u64) -> String {
        const C: &str = "chroot /mnt/w";
        const DUMMY_IF: &str = "(ip link show vmscope0 >/dev/null 2>&1 || (insmod /lib/modules/dummy.ko; \
            ip link add vmscope0 type dummy && ip addr add 192.0.2.1/24 dev vmscope0 && ip link set vmscope0 up))";
        const FILEIO: &str = "sysbench fileio --file-total-size=64M --file-num=4";
        match self {
            Workload::X264 => format!("{C} x264 --preset ultrafast --quiet -o /dev/null /data/video.y4m 2>&1"),
            Workload::SysbenchCpu => format!("{C} sysbench cpu --threads=1 --time={secs} run"),
            Workload::SysbenchMemory => {
                format!("{C} sysbench memory --threads=1 --memory-total-size=1T --time={secs} run")
            }
            Workload::SysbenchThreads => format!("{C} sysbench threads --threads=2 --time={secs} run"),
            Workload::SysbenchFileio => format!(
                "{C} /bin/sh -c 'cd /scratch && {FILEIO} prepare >/dev/null && \
                 {FILEIO} --file-test-mode=rndrw --time={secs} run; r=$?; {FILEIO} cleanup >/dev/null; exit $r'"
            ),
            Workload::Httperf => format!(
                "mkdir -p /tmp/www && echo vmscope > /tmp/www/index.html && \
                 (httpd -f -p 127.0.0.1:8080 -h /tmp/www </dev/null >/dev/null 2>&1 & echo $! > /tmp/httpd.pid) && \
                 sleep 0.3 && {C} httperf --server 127.0.0.1 --port 8080 --uri /index.html --num-conns {n} 2>&1; \
                 r=$?; kill $(cat /tmp/httpd.pid); exit $r",
                n = 60 * secs.max(1)
            ),
            // glibc's getaddrinfo (AI_ADDRCONFIG) resolves nothing, not even 127.0.0.1,
            // while loopback is the only interface with an address: netperf needs one more.
            Workload::Netperf => format!(
                "{DUMMY_IF} && ({C} netserver -D -p 12865 </dev/null >/dev/null 2>&1 & echo $! > /tmp/netserver.pid) && sleep 0.5 && \
                 {C} netperf -H 127.0.0.1 -p 12865 -l {secs} -t TCP_STREAM -P 0 2>&1; r=$?; \
                 kill $(cat /tmp/netserver.pid); exit $r"
            ),
            Workload::Bonnie => {
                format!("{C} bonnie++ -d /scratch -s 256 -r 128 -n 0 -f -u root -q 2>/dev/null")
            }
            // Under TCG one pass over the default arrays (4x the host's L3) outlasts a
            // short run and stress-ng then reports no rate; 4 MiB arrays finish in time.
            // stress-ng 0.15 reports no rate for runs under about 5 s either.
            Workload::Stream => format!(
                "{C} /bin/sh -c 'cd /tmp && stress-ng --stream 1 --stream-l3-size 1M -t {} --metrics-brief 2>&1'",
                secs.max(6)
            ),
            Workload::Fio => format!(
                "{C} fio --name=seqwrite --directory=/scratch --rw=write --bs=1M --size=64M --ioengine=psync \
                 --runtime={secs} --time_based --end_fsync=1 2>&1; r=$?; rm -f /mnt/w/scratch/seqwrite*; exit $r"
            ),
            Workload::Iperf3 => format!(
                "({C} iperf3 -s -1 -p 5201 </dev/null >/dev/null 2>&1 &) && sleep 0.5 && \
                 {C} iperf3 -c 127.0.0.1 -p 5201 -t {secs} -f m 2>&1"
            ),
        }
    }

    /// The figure in its output, if it has one.
    pub fn parse(self, out: &str) -> Option<f64> {
        match self {
            // "encoded 50 frames, 12.34 fps, 1.23 kb/s"
            Workload::X264 => after(out, "frames, ").and_then(num),
            Workload::SysbenchCpu => after(out, "events per second:").and_then(num),
            // "102400.00 MiB transferred (1234.56 MiB/sec)"
            Workload::SysbenchMemory => after(out, "MiB transferred (").and_then(num),
            Workload::SysbenchThreads => {
                let events = after(out, "total number of events:").and_then(num)?;
                let time = after(out, "total time:").and_then(num)?;
                (time > 0.0).then(|| events / time)
            }
            Workload::SysbenchFileio => {
                Some(after(out, "read, MiB/s:").and_then(num)? + after(out, "written, MiB/s:").and_then(num)?)
            }
            // "Request rate: 123.4 req/s (8.1 ms/req)"
            Workload::Httperf => after(out, "Request rate:").and_then(num),
            // "131072  16384  16384    3.00    1234.56"
            Workload::Netperf => {
                out.lines().rev().find(|l| !l.trim().is_empty())?.split_whitespace().last().and_then(num)
            }
            // CSV: format, version, name, concurrency, seed, size, chunk size, seeks,
            // seek processes, putc, putc%, put_block, ...
            Workload::Bonnie => {
                let line = out.lines().rev().find(|l| l.matches(',').count() > 10)?;
                line.split(',').nth(11).and_then(num)
            }
            // "stream: memory rate: 1234.56 MB read per sec, 567.89 MB write per sec, ..."
            Workload::Stream => {
                let rate = after(out, "memory rate:")?;
                let read = num(rate)?;
                let write = after(rate, "read per sec,").and_then(num).unwrap_or(0.0);
                Some(read + write)
            }
            // "WRITE: bw=12.3MiB/s (12.9MB/s), ..."
            Workload::Fio => {
                let bw = after(out, "WRITE: bw=")?;
                let v = num(bw)?;
                let unit = bw.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
                let scale = [("KiB/s", 1.0 / 1024.0), ("MiB/s", 1.0), ("GiB/s", 1024.0), ("B/s", 1.0 / 1048576.0)]
                    .iter()
                    .find(|(u, _)| unit.starts_with(u))?
                    .1;
                Some(v * scale)
            }
            // "[  5]   0.00-3.00   sec   456 MBytes  1234 Mbits/sec                  receiver"
            Workload::Iperf3 => {
                let line = out.lines().find(|l| l.trim_end().ends_with("receiver"))?;
                let w: Vec<&str> = line.split_whitespace().collect();
                let i = w.iter().position(|x| *x == "Mbits/sec")?;
                num(w.get(i.checked_sub(1)?)?)
            }
        }
    }
}

/// The text after the first `key`.
fn after<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    s.find(key).map(|i| &s[i + key.len()..])
}

/// The number at the start of `s` (after blanks).
fn num(s: &str) -> Option<f64> {
    let s = s.trim_start();
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    s[..end].parse().ok()
}

/// Runs `w` for about `duration` in the guest behind `agent` and returns its figure.
/// The guest must have the workload disks mounted ([`crate::boot_with_workloads`]).
pub fn run(agent: &mut Client, w: Workload, duration: Duration) -> Result<Figure> {
    let secs = duration.as_secs().max(1);
    let line = w.command(secs);
    let r = agent
        .exec(ExecRequest {
            argv: vec!["/bin/sh".into(), "-c".into(), line.clone()],
            // Slow emulation and file set-up get a generous margin over the duration.
            timeout_ms: u32::try_from(secs * 1000 + 90_000).unwrap_or(u32::MAX),
            ..Default::default()
        })
        .map_err(|e| Error::Workload(format!("{}: agent: {e}", w.name())))?;
    let out = String::from_utf8_lossy(&r.stdout);
    let fail = |why: &str| {
        Error::Workload(format!(
            "{} {why} ({}):\n$ {line}\n{out}{}",
            w.name(),
            r.status_text(),
            String::from_utf8_lossy(&r.stderr)
        ))
    };
    if !r.success() {
        return Err(fail("failed"));
    }
    match w.parse(&out) {
        Some(value) => Ok(Figure { value, unit: w.unit() }),
        None => Err(fail("printed no figure")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_tools_output() {
        let cases = [
            (Workload::X264, "encoded 50 frames, 12.34 fps, 100.00 kb/s\n", 12.34),
            (Workload::SysbenchCpu, "CPU speed:\n    events per second:   345.67\n", 345.67),
            (Workload::SysbenchMemory, "1024.00 MiB transferred (512.50 MiB/sec)\n", 512.5),
            (Workload::SysbenchThreads, "    total time:    2.0000s\n    total number of events:    500\n", 250.0),
            (Workload::SysbenchFileio, "    read, MiB/s:   1.50\n    written, MiB/s:   2.25\n", 3.75),
            (Workload::Httperf, "Request rate: 88.8 req/s (11.3 ms/req)\n", 88.8),
            (Workload::Netperf, "131072  16384  16384    3.00    1234.56   \n\n", 1234.56),
            (
                Workload::Bonnie,
                "1.98,2.00a,vmscope-guest,1,1796024435,64M,,8192,5,,,28523,94,72243,89,,,+++++,+++,8977,536,,,\n",
                28523.0,
            ),
            (
                Workload::Stream,
                "stress-ng: info: stream: memory rate: 100.50 MB read per sec, 50.25 MB write per sec\n",
                150.75,
            ),
            (Workload::Fio, "  WRITE: bw=512KiB/s (524kB/s), 512KiB/s-512KiB/s\n", 0.5),
            (
                Workload::Iperf3,
                "[  5]   0.00-3.00  sec   456 MBytes  1234 Mbits/sec                  receiver\n",
                1234.0,
            ),
        ];
        for (w, out, want) in cases {
            assert_eq!(w.parse(out), Some(want), "{}", w.name());
        }
        assert_eq!(Workload::SysbenchCpu.parse("no figure"), None);
    }
}
