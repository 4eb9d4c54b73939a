//! Guest RAM as QEMU itself reads it: the ground truth that tests hold vmscope's
//! readers, snapshots and dumps against, through no code of vmscope's reading path.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use vmscope_hv::qemu::QmpHypervisor;
use vmscope_mem::{FileMem, FileSegment, MemoryMap};

/// Has QEMU write every region of `map` to a file in `dir` with `pmemsave` (its own
/// read of guest-physical memory) and serves the files as one [`FileMem`] laid out
/// as `map`. Pause the guest first for a picture of one instant.
///
/// QEMU reads every page, so on memfd RAM it allocates the pages the guest never
/// touched, as `dump-guest-memory` does: call it last on a guest whose holes matter.
pub fn qemu_pmemsave(hv: &QmpHypervisor, map: &MemoryMap, dir: &Path) -> FileMem {
    let segments = map
        .regions()
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let path = dir.join(format!("pmemsave-{i}.bin"));
            hv.qmp()
                .execute_with(
                    "pmemsave",
                    Some(json!({"val": r.gpa.raw(), "size": r.size, "filename": path})),
                    Duration::from_secs(300),
                )
                .unwrap_or_else(|e| panic!("pmemsave of {} ({} bytes at {}): {e}", r.name, r.size, r.gpa));
            let file = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let len = file.metadata().unwrap().len();
            assert_eq!(len, r.size, "QEMU saved {len} of {} bytes of {}", r.size, r.name);
            FileSegment { start: r.offset, len: r.size, file, file_offset: 0 }
        })
        .collect();
    FileMem::segmented(segments, map.clone()).expect("one file per region")
}
