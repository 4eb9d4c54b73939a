//! What the volatile copy costs live-map: reads through `Mapped` of a 64 MiB memfd
//! filled with data (so every read takes the hole guard's fast path), in one run, with
//! three copies out of the mapping. Each benchmark id ends in
//! - `/memcpy`: the plain `copy_nonoverlapping` the crate used before (the baseline;
//!   sound here only because nothing writes the memfd during the benchmark),
//! - `/volatile`: the crate's read path as shipped,
//! - `/atomic`: relaxed `AtomicU64` loads with `AtomicU8` at the edges, the other
//!   race-free copy, measured to show why the crate does not use it.
//!
//! Run with `cargo bench -p vmscope-map --bench copy`; see the crate README for figures.

mod cases;

use std::hint::black_box;

use cases::{Copier, Pass, READS, Ram, read, read_u64};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vmscope_mem::Gpa;

fn bench(c: &mut Criterion) {
    let ram = Ram::new();
    let m = &ram.mapped;

    for &(name, at, len) in READS {
        let mut g = c.benchmark_group(format!("read/{name}"));
        g.throughput(Throughput::Bytes(len as u64));
        let mut buf = vec![0u8; len];
        for how in Copier::ALL {
            read(m, how, Gpa::new(at), &mut buf);
            assert_eq!(buf, ram.bytes[at as usize..][..len], "{} copies what the memfd holds", how.name());
            let id = BenchmarkId::from_parameter(how.name());
            if len == 8 {
                g.bench_function(id, |b| b.iter(|| read_u64(m, how, black_box(Gpa::new(at)))));
            } else {
                g.bench_function(id, |b| b.iter(|| read(m, how, black_box(Gpa::new(at)), black_box(&mut buf))));
            }
        }
        g.finish();
    }

    let mut g = c.benchmark_group("pass_256_tasks");
    let mut pass = Pass::new();
    let want = pass.run(m, Copier::Memcpy);
    for how in Copier::ALL {
        assert_eq!(pass.run(m, how), want, "{} reads what memcpy reads", how.name());
        g.bench_function(BenchmarkId::from_parameter(how.name()), |b| b.iter(|| pass.run(m, black_box(how))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
