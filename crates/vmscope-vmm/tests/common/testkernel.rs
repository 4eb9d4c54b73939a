//! The test kernel's manifest, lists and journal as a reader outside the guest sees
//! them (layouts: guest-images/testkernel/tk.h). Virtual addresses are resolved with
//! the manifest's own mapping table, so these readers do not depend on vmscope-x86.

use std::time::{Duration, Instant};

use vmscope_mem::{Gpa, PhysMem};

/// Where the manifest is (TK_MANIFEST_PA).
pub const MANIFEST_PA: u64 = 0x10_0000;
/// The bytes "VMSCTK01".
pub const MAGIC: u64 = u64::from_le_bytes(*b"VMSCTK01");
/// No node (journal `prev` of an insert at the head; padding in `order`).
pub const NO_NODE: u8 = 0xff;

/// One entry of the manifest's mapping table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TkMapping {
    pub va: u64,
    pub pa: u64,
    pub size: u64,
    pub page_size: u64,
    pub flags: u64,
    pub name: String,
}

/// The manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub version: u32,
    pub cr3: u64,
    pub ram_end: u64,
    pub nr_cpus: u32,
    pub nr_lists: u32,
    pub mappings: Vec<TkMapping>,
    pub symbols: Vec<(String, u64, u64)>,
    pub lists_va: u64,
    pub nodes_va: u64,
    pub journal_va: u64,
    pub journal_entries: u64,
    pub ops_va: u64,
    pub percpu_va: u64,
    pub cpus_online_va: u64,
    pub node_size: u64,
    pub nodes_per_list: u64,
    pub max_len: u64,
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

impl Manifest {
    /// Reads the manifest, or `None` while its magic is not there yet.
    pub fn read(mem: &impl PhysMem) -> Option<Manifest> {
        let mut h = [0u8; 192];
        mem.read(Gpa::new(MANIFEST_PA), &mut h).ok()?;
        if u64_at(&h, 0) != MAGIC {
            return None;
        }
        let nr_mappings = u32_at(&h, 36) as usize;
        let nr_symbols = u32_at(&h, 40) as usize;
        let mut mb = vec![0u8; nr_mappings * 64];
        mem.read(Gpa::new(u64_at(&h, 48)), &mut mb).ok()?;
        let mappings = mb
            .chunks(64)
            .map(|c| TkMapping {
                va: u64_at(c, 0),
                pa: u64_at(c, 8),
                size: u64_at(c, 16),
                page_size: u64_at(c, 24),
                flags: u64_at(c, 32),
                name: cstr(&c[40..64]),
            })
            .collect();
        let mut sb = vec![0u8; nr_symbols * 40];
        mem.read(Gpa::new(u64_at(&h, 56)), &mut sb).ok()?;
        let symbols = sb
            .chunks(40)
            .map(|c| (cstr(&c[..24]), u64_at(c, 24), u64_at(c, 32)))
            .collect();
        Some(Manifest {
            version: u32_at(&h, 8),
            cr3: u64_at(&h, 16),
            ram_end: u64_at(&h, 24),
            nr_cpus: u32_at(&h, 32),
            nr_lists: u32_at(&h, 44),
            mappings,
            symbols,
            lists_va: u64_at(&h, 64),
            nodes_va: u64_at(&h, 72),
            journal_va: u64_at(&h, 80),
            journal_entries: u64_at(&h, 88),
            ops_va: u64_at(&h, 96),
            percpu_va: u64_at(&h, 104),
            cpus_online_va: u64_at(&h, 112),
            node_size: u64_at(&h, 120),
            nodes_per_list: u64_at(&h, 128),
            max_len: u64_at(&h, 136),
        })
    }

    /// Waits until the manifest is there and `cpus` cpus run the mutator.
    pub fn wait(mem: &impl PhysMem, cpus: u64, timeout: Duration) -> Manifest {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = Manifest::read(mem)
                && m.read_u64(mem, m.cpus_online_va) >= cpus
            {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "no test kernel manifest with {cpus} cpus online"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The physical address of `va` by the manifest's mapping table.
    pub fn pa(&self, va: u64) -> u64 {
        self.mappings
            .iter()
            .find(|m| va >= m.va && va - m.va < m.size)
            .map(|m| m.pa + (va - m.va))
            .unwrap_or_else(|| panic!("{va:#x} is in no manifest mapping"))
    }

    /// A symbol's address.
    pub fn symbol(&self, name: &str) -> u64 {
        self.symbols
            .iter()
            .find(|s| s.0 == name)
            .map(|s| s.1)
            .unwrap_or_else(|| panic!("no symbol {name}"))
    }

    /// Reads a u64 at virtual `va`.
    pub fn read_u64(&self, mem: &impl PhysMem, va: u64) -> u64 {
        mem.read_u64(Gpa::new(self.pa(va)))
            .expect("reading guest memory")
    }

    /// The global op counter: the next op number (ops begun = value - 1).
    pub fn ops(&self, mem: &impl PhysMem) -> u64 {
        self.read_u64(mem, self.ops_va)
    }

    /// The mutator loop count of `cpu`.
    pub fn iterations(&self, mem: &impl PhysMem, cpu: u64) -> u64 {
        self.read_u64(mem, self.percpu_va + cpu * 64)
    }

    /// Every list as the guest's memory holds it now.
    pub fn lists(&self, mem: &impl PhysMem) -> Vec<ListView> {
        (0..u64::from(self.nr_lists))
            .map(|l| self.list(mem, l))
            .collect()
    }

    /// List `l`, walked from its head along `next` (bounded).
    pub fn list(&self, mem: &impl PhysMem, l: u64) -> ListView {
        let head_va = self.lists_va + l * 64;
        let mut b = [0u8; 64];
        mem.read(Gpa::new(self.pa(head_va)), &mut b)
            .expect("reading a list head");
        let head = head_va + 32;
        let mut ids = Vec::new();
        let mut p = u64_at(&b, 32);
        let mut broken = false;
        while p != head {
            if ids.len() as u64 > self.max_len
                || !self.mappings.iter().any(|m| p >= m.va && p - m.va < m.size)
            {
                broken = true;
                break;
            }
            let mut n = [0u8; 24];
            mem.read(Gpa::new(self.pa(p)), &mut n)
                .expect("reading a node");
            ids.push(u64_at(&n, 16) as u8);
            p = u64_at(&n, 0);
        }
        ListView {
            seq: u64_at(&b, 0),
            last_op: u64_at(&b, 16),
            len: u64_at(&b, 24),
            ids,
            broken,
        }
    }

    /// The whole journal ring.
    pub fn journal(&self, mem: &impl PhysMem) -> Vec<JournalEntry> {
        let mut raw = vec![0u8; (self.journal_entries * 32) as usize];
        mem.read(Gpa::new(self.pa(self.journal_va)), &mut raw)
            .expect("reading the journal");
        raw.chunks(32)
            .map(|c| JournalEntry {
                op_no: u64_at(c, 0),
                op: c[8],
                list: c[9],
                node: c[10],
                prev: c[11],
                len: c[12],
                cpu: c[13],
                order: c[16..16 + usize::from(c[12]).min(16)].to_vec(),
            })
            .filter(|e| e.op_no != 0)
            .collect()
    }
}

/// A list as read from memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListView {
    /// The sequence counter: odd while a writer is inside.
    pub seq: u64,
    pub last_op: u64,
    pub len: u64,
    /// Node ids from head to tail.
    pub ids: Vec<u8>,
    /// The walk left the mapped area or ran too long (a torn read).
    pub broken: bool,
}

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    pub op_no: u64,
    pub op: u8,
    pub list: u8,
    pub node: u8,
    pub prev: u8,
    pub len: u8,
    pub cpu: u8,
    /// The list's content after this op.
    pub order: Vec<u8>,
}

/// The content of list `l` after the last op the journal holds for it (empty if the
/// journal has none), and that op's number.
pub fn journal_state(journal: &[JournalEntry], l: u64) -> (u64, Vec<u8>) {
    journal
        .iter()
        .filter(|e| u64::from(e.list) == l)
        .max_by_key(|e| e.op_no)
        .map(|e| (e.op_no, e.order.clone()))
        .unwrap_or((0, Vec::new()))
}

/// Checks every list whose seq is even against the journal; returns how many were
/// checked. Panics with the difference on a mismatch.
pub fn assert_lists_match_journal(m: &Manifest, mem: &impl PhysMem) -> usize {
    let journal = m.journal(mem);
    let lists = m.lists(mem);
    let mut checked = 0;
    for (l, view) in lists.iter().enumerate() {
        if view.seq % 2 == 1 {
            continue; // a writer was caught mid-update: intrinsic, not our business here
        }
        let (op, order) = journal_state(&journal, l as u64);
        assert!(
            !view.broken,
            "list {l} is broken although its seq {} is even",
            view.seq
        );
        assert_eq!(
            view.last_op, op,
            "list {l}: last_op vs the journal's latest op for it"
        );
        assert_eq!(
            view.ids, order,
            "list {l} (seq {}, op {op}) differs from the journal",
            view.seq
        );
        assert_eq!(
            view.len as usize,
            view.ids.len(),
            "list {l}: len field vs walk"
        );
        checked += 1;
    }
    checked
}
