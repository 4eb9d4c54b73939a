//! Instruction counts for the copy benchmark's reads, where timings on a small noisy
//! machine are not steady enough. Runs one read (a name from the benchmark's `READS`, or
//! `pass`) `N` times with one copy, inside `measured`, so callgrind can count just that:
//!
//! ```sh
//! cargo build --release -p vmscope-map --example copy_instructions
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured*' \
//!     --callgrind-out-file=/dev/null target/release/examples/copy_instructions page volatile 1000
//! ```
//!
//! The `Collected` total divided by `N` is the count per read.

#[path = "../benches/copy/cases.rs"]
mod cases;

use std::hint::black_box;

use cases::{Copier, Pass, READS, Ram, read, read_u64};
use vmscope_map::Mapped;
use vmscope_mem::Gpa;

#[inline(never)]
fn measured(m: &Mapped, what: &str, how: Copier, n: usize) -> u64 {
    let mut sum = 0u64;
    if what == "pass" {
        let mut pass = Pass::new();
        for _ in 0..n {
            sum = sum.wrapping_add(pass.run(m, black_box(how)));
        }
        return sum;
    }
    let &(_, at, len) = READS.iter().find(|r| r.0 == what).expect("a read the benchmark names");
    let mut buf = vec![0u8; len];
    for _ in 0..n {
        if len == 8 {
            sum = sum.wrapping_add(read_u64(m, how, black_box(Gpa::new(at))));
        } else {
            read(m, how, black_box(Gpa::new(at)), black_box(&mut buf));
        }
    }
    sum
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [what, how, n] = args.as_slice() else {
        eprintln!("usage: copy_instructions READ|pass memcpy|volatile|atomic N");
        std::process::exit(2);
    };
    let how = Copier::ALL.into_iter().find(|c| c.name() == how).expect("memcpy, volatile or atomic");
    let n: usize = n.parse().expect("N, a count");
    let ram = Ram::new();
    if let Some(&(_, at, len)) = READS.iter().find(|r| r.0 == what) {
        let mut buf = vec![0u8; len];
        read(&ram.mapped, how, Gpa::new(at), &mut buf);
        assert_eq!(buf, ram.bytes[at as usize..][..len], "the copy reads what the memfd holds");
    }
    println!("{}", measured(&ram.mapped, what, how, n));
}
