//! A cache of resolved field offsets, keyed by the kernel's banner *and* its build
//! ID (both read from guest memory at every attach): a cached entry is only ever
//! used for the very build it was made from.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::offsets::Offsets;

/// Bumped whenever the file's layout changes; older files are ignored.
const FORMAT: u32 = 12;

/// The source of [`Offsets`] and of how they are resolved: an entry written by a
/// build whose offsets code differs in any byte is ignored. (A version number to bump
/// by hand was forgotten once: serde read a field the old entry lacked as absent,
/// and a view silently lost what that field gave it.)
const OFFSETS_SOURCE: &[&[u8]] = &[
    include_bytes!("offsets/mod.rs"),
    include_bytes!("offsets/checks.rs"),
    include_bytes!("offsets/ids.rs"),
    include_bytes!("offsets/maps.rs"),
    include_bytes!("offsets/mounts.rs"),
    include_bytes!("offsets/net.rs"),
    include_bytes!("offsets/printk.rs"),
    include_bytes!("offsets/vfs.rs"),
];

/// FNV-1a over [`OFFSETS_SOURCE`], at compile time.
const SHAPE: u64 = {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut f = 0;
    while f < OFFSETS_SOURCE.len() {
        let bytes = OFFSETS_SOURCE[f];
        let mut i = 0;
        while i < bytes.len() {
            h ^= bytes[i] as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
            i += 1;
        }
        f += 1;
    }
    h
};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    format: u32,
    /// [`SHAPE`] of the build that wrote it.
    shape: u64,
    banner: String,
    build_id: String,
    offsets: Offsets,
}

/// Resolved offsets per kernel build, in memory and optionally in a directory
/// (one JSON file per build ID).
///
/// ```
/// let cache = vmscope_linux::ProfileCache::in_memory();
/// assert!(cache.get("Linux version 6.1 ...", "bb60").is_none());
/// ```
#[derive(Debug, Default)]
pub struct ProfileCache {
    dir: Option<PathBuf>,
    entries: Mutex<HashMap<(String, String), Offsets>>,
}

impl ProfileCache {
    /// A cache that lives as long as this value.
    pub fn in_memory() -> Self {
        ProfileCache::default()
    }

    /// A cache that also persists to `dir` (created on first store).
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        ProfileCache { dir: Some(dir.into()), entries: Mutex::default() }
    }

    /// The user's cache: `$XDG_CACHE_HOME/vmscope`, else `~/.cache/vmscope`; `None`
    /// when neither variable is set.
    pub fn per_user() -> Option<Self> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(Self::in_dir(base.join("vmscope")))
    }

    fn path(&self, build_id: &str) -> Option<PathBuf> {
        let safe = build_id.bytes().all(|b| b.is_ascii_hexdigit()) && !build_id.is_empty();
        Some(self.dir.as_ref()?.join(format!("{build_id}.json"))).filter(|_| safe)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Offsets>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The offsets stored for exactly this banner and build ID.
    pub fn get(&self, banner: &str, build_id: &str) -> Option<Offsets> {
        let key = (banner.to_owned(), build_id.to_owned());
        if let Some(o) = self.lock().get(&key) {
            return Some(o.clone());
        }
        let bytes = std::fs::read(self.path(build_id)?).ok()?;
        let e: Entry = serde_json::from_slice(&bytes).ok()?;
        if e.format != FORMAT || e.shape != SHAPE || e.banner != banner || e.build_id != build_id {
            return None;
        }
        self.lock().insert(key, e.offsets.clone());
        Some(e.offsets)
    }

    /// Stores offsets for this banner and build ID. Failing to write the file is
    /// not an error: the cache is an optimisation.
    pub fn put(&self, banner: &str, build_id: &str, offsets: &Offsets) {
        self.lock().insert((banner.to_owned(), build_id.to_owned()), offsets.clone());
        if let (Some(dir), Some(path)) = (&self.dir, self.path(build_id)) {
            let e = Entry {
                format: FORMAT,
                shape: SHAPE,
                banner: banner.into(),
                build_id: build_id.into(),
                offsets: offsets.clone(),
            };
            if let Ok(json) = serde_json::to_vec(&e) {
                let _ = std::fs::create_dir_all(dir).and_then(|_| std::fs::write(path, json));
            }
        }
    }

    /// Forgets the entry for this build (e.g. when it failed a check).
    pub fn evict(&self, banner: &str, build_id: &str) {
        self.lock().remove(&(banner.to_owned(), build_id.to_owned()));
        if let Some(p) = self.path(build_id) {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Entries held in memory.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no entry is held in memory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shape_covers_every_offsets_file() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/offsets");
        let files = std::fs::read_dir(dir).unwrap().filter(|e| e.as_ref().unwrap().path().is_file()).count();
        assert_eq!(OFFSETS_SOURCE.len(), files, "list every file of src/offsets in OFFSETS_SOURCE");
    }
}
