//! `vmscope`: introspect a running QEMU guest.

fn main() {}
