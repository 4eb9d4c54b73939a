//! Sets and maps keyed by guest address, as the walks keep them (the nodes a walk
//! met, the tasks found, the thread groups read), with a hash that costs one
//! multiplication.
//!
//! Why not the standard SipHash: a pass over 10,000 tasks makes some 50,000 inserts,
//! and hashing was a fifth of its instructions (callgrind). Why not an unkeyed
//! multiplicative hash: the guest chooses these addresses, and could make them
//! collide. The key here is drawn at random once per process; a guest would have to
//! guess it to build collisions, and even then every walk stays bounded by
//! [`Limits`](super::Limits), only slower.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::OnceLock;

use vmscope_mem::Gva;

/// A set of guest addresses (or of keys made of them).
pub(crate) type AddrSet<K = Gva> = HashSet<K, AddrHash>;

/// A map from guest addresses (or from keys made of them).
pub(crate) type AddrMap<K, V> = HashMap<K, V, AddrHash>;

/// The nodes a walk met: the first [`FEW`] in place, searched in turn, the rest in an
/// [`AddrSet`]. Most lists a pass walks (a thread group, a task's children) hold a
/// handful of nodes, and a set's table costs an allocation and a hash per node.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    few: [Gva; FEW],
    len: usize,
    many: AddrSet,
}

/// Nodes a [`Seen`] keeps in place.
const FEW: usize = 8;

impl Seen {
    /// Adds `a`; whether it was new.
    pub fn insert(&mut self, a: Gva) -> bool {
        if self.few[..self.len].contains(&a) {
            return false;
        }
        if self.len < FEW {
            self.few[self.len] = a;
            self.len += 1;
            return true;
        }
        self.many.insert(a)
    }

    /// Whether `a` was added.
    pub fn contains(&self, a: &Gva) -> bool {
        self.few[..self.len].contains(a) || self.many.contains(a)
    }
}

/// The keyed hash of [`AddrSet`] and [`AddrMap`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct AddrHash {
    key: u64,
}

impl Default for AddrHash {
    fn default() -> Self {
        static KEY: OnceLock<u64> = OnceLock::new();
        // RandomState's keys are random per process (the standard library seeds them
        // from the OS); one hash of a constant with them is a random key.
        AddrHash { key: *KEY.get_or_init(|| RandomState::new().hash_one(0x5eed_u64)) }
    }
}

impl BuildHasher for AddrHash {
    type Hasher = AddrHasher;

    fn build_hasher(&self) -> AddrHasher {
        AddrHasher { key: self.key, hash: 0 }
    }
}

/// One address hashed: a 64×64→128-bit multiplication by a fixed odd constant of the
/// address mixed with the key, the two halves folded together, so that every bit of
/// the address reaches the low bits (which pick the bucket) and the high ones (the
/// table's tag).
#[derive(Debug)]
pub(crate) struct AddrHasher {
    key: u64,
    hash: u64,
}

/// An odd constant with well-spread bits (2^64 / φ).
const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for AddrHasher {
    fn write_u64(&mut self, n: u64) {
        let p = u128::from(self.hash ^ n ^ self.key) * u128::from(MUL);
        self.hash = (p as u64) ^ ((p >> 64) as u64);
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only addresses are hashed here (`Gva` hashes as one `u64`); anything else
        // goes through in 8-byte words all the same.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_a_slab_apart_spread_over_buckets() {
        // task_structs 0x2600 bytes apart, as a slab lays them out: the low bits of
        // their hashes must differ, or they would share a handful of buckets.
        let h = AddrHash::default();
        let low: HashSet<u64> =
            (0..4096u64).map(|i| h.hash_one(Gva::new(0xffff_8880_0400_0000 + i * 0x2600)) & 0xfff).collect();
        assert!(low.len() > 2400, "{} distinct low 12 bits of 4096", low.len());
        let mut set = AddrSet::default();
        assert!(set.insert(Gva::new(8)) && !set.insert(Gva::new(8)) && set.contains(&Gva::new(8)));
    }

    #[test]
    fn seen_is_a_set_below_and_above_its_few() {
        let mut seen = Seen::default();
        for i in 0..3 * FEW as u64 {
            assert!(seen.insert(Gva::new(8 * i)), "{i} is new");
            assert!(!seen.insert(Gva::new(8 * i)), "{i} is not new twice");
        }
        assert!((0..3 * FEW as u64).all(|i| seen.contains(&Gva::new(8 * i))));
        assert!(!seen.contains(&Gva::new(8 * 3 * FEW as u64)));
    }
}
