//! Real kernels without booting them: each vmlinux that `cargo xtask images` built
//! is laid out in a buffer at its physical load addresses — what RAM holds right
//! after a boot without KASLR — and discovery, kallsyms, BTF, profiles from every
//! source and ISF round trips are checked on it.
//!
//! Skipped (with a `SKIPPED:` line) when the images are not built.

use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use vmscope_linux::types::btf::BtfTypes;
use vmscope_linux::{Evidence, Hints, Offsets, Profile, SymbolSource, SymbolTable, discover, elf::Elf};
use vmscope_mem::{Gpa, Gva, MemoryMap, SliceMem};
use vmscope_x86::PagingMode;

/// `/proc/kallsyms` (vmlinux part) of each known build, at link-time addresses:
/// build ID, symbols, SHA-256 — taken from the guests themselves (as root).
const KNOWN: &[(&str, usize, &str)] = &[
    (
        "bb603a9147d3efe4744bf83c83eee397c591cc20",
        87182,
        "4117daf70980364b8f501aaae922da68d9d5957fa9fdacdaac16669d2d5b995e",
    ),
    (
        "3bde3ce03156c39bec3310fbdd6bd14bfbefb62e",
        157881,
        "d63022e8b1de08ae6b79199a3186a832d41b73b6c081f15f6f0477a175b0ad32",
    ),
];

fn vmlinuxes() -> Vec<PathBuf> {
    match vmscope_testbed::GuestImages::locate() {
        Ok(images) => images.kernels.iter().map(|k| k.vmlinux.clone()).collect(),
        Err(e) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED: real vmlinux checks of vmscope-linux: {e}");
            Vec::new()
        }
    }
}

/// The vmlinux's loadable segments at their physical addresses.
fn boot_image(elf: &Elf<'_>) -> SliceMem<Vec<u8>> {
    let segs = elf.load_segments().unwrap();
    let end = segs.iter().map(|s| s.paddr + s.memsz).max().unwrap();
    let size = (end + (4 << 20)).next_multiple_of(2 << 20);
    let mut ram = vec![0u8; size as usize];
    for s in &segs {
        ram[s.paddr as usize..s.paddr as usize + s.data.len()].copy_from_slice(s.data);
    }
    SliceMem::new(ram, MemoryMap::flat(size))
}

fn sha256(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn discovery_and_kallsyms_on_the_image() {
    for path in vmlinuxes() {
        let bytes = std::fs::read(&path).unwrap();
        let elf = Elf::parse(&bytes).unwrap();
        let mem = boot_image(&elf);
        let (info, k) = discover(&mem, &Hints::none()).unwrap();
        let id: String = elf.build_id().unwrap().unwrap().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(info.build_id.as_deref(), Some(id.as_str()), "{}", path.display());
        assert_eq!((info.kaslr_virtual_offset, info.kaslr_physical_offset), (0, 0));
        assert_eq!(info.text_pa, Gpa::new(0x100_0000));
        assert_eq!(info.paging, PagingMode::Level4);
        assert!(info.banner.starts_with("Linux version "), "{:?}", info.banner);
        assert_eq!(elf.section(".BTF").unwrap().unwrap().data.len() as u64, info.btf.unwrap().1);
        assert_eq!(k.symbols.addr("_text"), Some(Gva::new(0xffff_ffff_8100_0000)));

        // With registers: CR3 (the kernel's own tables here), CR4, LSTAR.
        let entry = k.symbols.addr("entry_SYSCALL_64").unwrap();
        let cr3 = info.kernel_root.gpa().raw();
        let (with_regs, _) = discover(&mem, &Hints::from_registers(cr3, 0).with_lstar(entry)).unwrap();
        assert_eq!((with_regs.text_pa, with_regs.kernel_root), (info.text_pa, info.kernel_root));
        assert!(matches!(with_regs.evidence[0], Evidence::Cr3KernelMapping { .. }), "{:?}", with_regs.evidence);
        assert!(with_regs.evidence.contains(&Evidence::LstarIsEntrySyscall { lstar: entry }));
        assert!(with_regs.evidence.contains(&Evidence::PagingFromCr4 { cr4: 0 }));
        // A syscall entry that is not the kernel's is reported.
        let hook = entry.checked_add(0x40).unwrap();
        let (hooked, _) = discover(&mem, &Hints::from_registers(cr3, 0).with_lstar(hook)).unwrap();
        assert!(hooked.evidence.contains(&Evidence::LstarMismatch { lstar: hook, entry_syscall: entry }));

        // Without the banner at the start of .rodata, a scan of all RAM finds the
        // tables all the same.
        let Some(&Evidence::RodataBanner { rodata }) = info.evidence.first() else { panic!("{:?}", info.evidence) };
        let mut ram = mem.bytes().to_vec();
        ram[rodata.raw() as usize..rodata.raw() as usize + 0x1000].fill(0);
        let len = ram.len() as u64;
        let (scanned, _) = discover(&SliceMem::new(ram, MemoryMap::flat(len)), &Hints::none()).unwrap();
        assert!(matches!(scanned.evidence[0], Evidence::FullScan { .. }), "{:?}", scanned.evidence);
        assert_eq!((scanned.text_pa, scanned.kernel_root), (info.text_pa, info.kernel_root));

        let text = k.symbols.to_proc_kallsyms();
        match KNOWN.iter().find(|(b, ..)| *b == id) {
            Some((_, count, hash)) => {
                assert_eq!(text.lines().count(), *count);
                assert_eq!(sha256(&text), *hash, "{}: kallsyms differ from the guest's /proc/kallsyms", path.display());
            }
            None => eprintln!(
                "SKIPPED: kallsyms of {} (build {id}) against the guest's /proc/kallsyms: no sha256 recorded \
                 for this build in KNOWN (boot it, hash its /proc/kallsyms as root, add it); decoded {} symbols",
                path.display(),
                k.symbols.len()
            ),
        }
    }
}

#[test]
fn every_type_source_gives_the_same_profile() {
    for path in vmlinuxes() {
        let bytes = std::fs::read(&path).unwrap();
        let elf = Elf::parse(&bytes).unwrap();
        let mem = boot_image(&elf);
        let (info, k) = discover(&mem, &Hints::none()).unwrap();

        // BTF read from "memory" and BTF from the ELF section.
        let (gpa, len) = info.btf.unwrap();
        let blob = &mem.bytes()[gpa.raw() as usize..(gpa.raw() + len) as usize];
        let from_mem = Profile::from_btf(blob, k.symbols.clone()).unwrap();
        let from_elf = Profile::from_vmlinux(&bytes, k.symbols.clone()).unwrap();
        assert_eq!(from_elf.build_id(), info.build_id.as_deref());
        let offsets = Offsets::resolve(&from_mem).unwrap();
        assert_eq!(offsets, Offsets::resolve(&from_elf).unwrap());

        // Types through ISF and back.
        let roots = Offsets::TYPES;
        let isf = from_mem.to_isf(Some(roots), 0).unwrap();
        let back = Profile::from_isf(isf.as_bytes()).unwrap();
        assert_eq!(offsets, Offsets::resolve(&back).unwrap(), "{}", path.display());
        let names = back.types().struct_names();
        assert!(names.len() > roots.len(), "embedded types are written too");
        for name in &names {
            let (a, b) = (from_mem.struct_def(name).unwrap(), back.struct_def(name).unwrap());
            assert_eq!(a.size, b.size, "{name}");
            for m in a.members.iter().filter(|m| !m.name.is_empty()) {
                let (fa, fb) = (from_mem.field(name, &m.name).unwrap(), back.field(name, &m.name).unwrap());
                assert_eq!(
                    (fa.bit_offset, fa.bit_size, fa.offset),
                    (fb.bit_offset, fb.bit_size, fb.offset),
                    "{name}.{}",
                    m.name
                );
            }
        }
        for e in back.types().enum_names() {
            assert_eq!(from_mem.enum_def(&e).map(|d| d.values.len()), back.enum_def(&e).map(|d| d.values.len()), "{e}");
        }
        // Symbols through ISF: link-time addresses, every name.
        for s in k.symbols.iter().step_by(97) {
            assert_eq!(back.symbol(s.name), k.symbols.addr(s.name), "{}", s.name);
        }

        // A System.map of the same symbols, plus the same types.
        let map = k.symbols.to_proc_kallsyms();
        let sysmap = Profile::from_system_map(&map, Arc::new(BtfTypes::parse(blob).unwrap())).unwrap();
        assert_eq!(sysmap.symbols().source(), SymbolSource::SystemMap);
        assert_eq!(sysmap.symbols().len(), k.symbols.len());
        assert_eq!(Offsets::resolve(&sysmap).unwrap(), offsets);
        let slid = sysmap.slid(0x20_0000);
        assert_eq!(slid.symbol("_text"), Some(Gva::new(0xffff_ffff_8120_0000)));
        assert_eq!(slid.symbol("fixed_percpu_data"), sysmap.symbol("fixed_percpu_data"), "absolute symbols stay");
    }
}

#[test]
fn btf_answers_nested_anonymous_bitfield_and_enum_queries() {
    for path in vmlinuxes() {
        let bytes = std::fs::read(&path).unwrap();
        let p = Profile::from_vmlinux(&bytes, SymbolTable::from_iter(SymbolSource::Kallsyms, [])).unwrap();
        assert_eq!(p.struct_size("list_head").unwrap(), 16);
        assert_eq!(p.offset_of("list_head", "prev").unwrap(), 8);
        // mm_struct's members sit in an anonymous struct.
        let pgd = p.field("mm_struct", "pgd").unwrap();
        assert!(p.struct_def("mm_struct").unwrap().members.iter().all(|m| m.name != "pgd"));
        assert_eq!(pgd.offset % 8, 0);
        // Nested through a typedef'd struct: kuid_t.val.
        assert_eq!(p.offset_of("cred", "uid.val").unwrap(), p.offset_of("cred", "uid").unwrap());
        // Bitfields.
        let bf = p.field("task_struct", "sched_reset_on_fork").unwrap();
        assert_eq!(bf.bit_size, Some(1));
        assert!(bf.bit_offset >= bf.offset * 8 && bf.bit_offset < bf.offset * 8 + 64);
        // Indexing into arrays.
        let comm = p.field("task_struct", "comm[3]").unwrap();
        assert_eq!(comm.offset, p.offset_of("task_struct", "comm").unwrap() + 3);
        // Enumerators, named and anonymous enums alike.
        assert_eq!(p.enum_value("MODULE_STATE_LIVE").unwrap(), 0);
        assert_eq!(p.enum_value("MM_ANONPAGES").unwrap(), 1);
        assert!(p.enum_value("NO_SUCH_ENUMERATOR").is_err());
        assert!(p.field("task_struct", "no_such_field").is_err());
        assert!(p.struct_size("no_such_struct").is_err());
    }
}

#[test]
fn the_profile_cache_serves_only_its_own_build() {
    use vmscope_linux::{AttachOptions, Kernel, ProfileCache};
    for path in vmlinuxes() {
        let bytes = std::fs::read(&path).unwrap();
        let mem = boot_image(&Elf::parse(&bytes).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let cache = ProfileCache::in_dir(dir.path());
        let opts = |c| AttachOptions { cache: Some(c), ..AttachOptions::default() };

        let first = Kernel::attach_with(&mem, opts(&cache)).unwrap();
        assert!(!first.offsets_from_cache());
        let (banner, id) = (first.info().banner.clone(), first.info().build_id.clone().unwrap());
        assert!(first.processes().processes.is_empty(), "a kernel that never ran has no tasks");
        assert!(first.modules().modules.is_empty());
        let again = Kernel::attach_with(&mem, opts(&cache)).unwrap();
        assert!(again.offsets_from_cache());
        assert_eq!(again.offsets(), first.offsets());
        assert!(again.profile().unwrap().struct_size("task_struct").unwrap() > 1000, "types load on demand");

        // Another process reading the same directory.
        let other = ProfileCache::in_dir(dir.path());
        assert!(Kernel::attach_with(&mem, opts(&other)).unwrap().offsets_from_cache());
        // Same build ID, another banner (or the reverse): not this kernel.
        assert!(other.get("Linux version 0.0", &id).is_none());
        assert!(other.get(&banner, "0123").is_none());
        // An entry written by a build whose offsets code differs: ignored.
        let file = dir.path().join(format!("{id}.json"));
        let mut entry: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let shape = entry["shape"].as_u64().expect("the entry records the shape of its offsets code");
        entry["shape"] = (shape ^ 1).into();
        std::fs::write(&file, serde_json::to_vec(&entry).unwrap()).unwrap();
        assert!(ProfileCache::in_dir(dir.path()).get(&banner, &id).is_none());

        // An entry that does not fit the memory is caught, dropped and replaced.
        let mut bad = first.offsets().clone();
        bad.task.comm += 8;
        cache.put(&banner, &id, &bad);
        let fixed = Kernel::attach_with(&mem, opts(&cache)).unwrap();
        assert!(!fixed.offsets_from_cache());
        assert_eq!(fixed.offsets(), first.offsets());
        assert_eq!(cache.get(&banner, &id).as_ref(), Some(first.offsets()));
    }
}
