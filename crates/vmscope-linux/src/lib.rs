//! Linux knowledge for introspection, with no profile to install: the kernel is
//! found in guest-physical memory, its symbols decoded from its own kallsyms
//! tables, its types read from its own BTF, and every field offset looked up by
//! name. On top: processes, threads, the process tree, modules, memory maps, open
//! files, sockets, mounts, namespaces and cgroups, credentials, environments and the
//! kernel log, each a plain serde-serializable value
//! with the [`Anomaly`]s met while reading it.
//!
//! ```no_run
//! use vmscope_linux::{Hints, Kernel};
//! # fn mem() -> vmscope_mem::SliceMem<Vec<u8>> { unimplemented!() }
//!
//! // `mem` is any PhysMem: a technique's reader of a live guest, or a dump.
//! let kernel = Kernel::attach(mem(), Hints::none())?;
//! println!("{} ({}), KASLR {:+#x}", kernel.info().release, kernel.info().paging, kernel.info().kaslr_virtual_offset);
//! for p in &kernel.processes().processes {
//!     println!("{:>6} {:>6} {:>5} {} {}", p.pid, p.ppid, p.uid, p.state, p.comm);
//! }
//! for m in &kernel.modules().modules {
//!     println!("{} {} {}", m.name, m.size, m.state);
//! }
//! # Ok::<(), vmscope_linux::Error>(())
//! ```
//!
//! The pieces work alone too; this one runs on any bytes:
//!
//! ```
//! use vmscope_linux::{kallsyms, SymbolTable, SymbolSource};
//!
//! // kallsyms is found by structure; bytes that are not a table are an error.
//! assert!(kallsyms::decode_window(&[0x41; 8192], vmscope_mem::Gpa::new(0)).is_err());
//!
//! // A System.map gives a symbol table like the one decoded from memory.
//! let map = SymbolTable::from_system_map("ffffffff81000000 T _text\nffffffff82000100 D linux_banner\n")?;
//! assert_eq!(map.source(), SymbolSource::SystemMap);
//! let at = vmscope_mem::Gva::new(0xffffffff81000010);
//! assert_eq!(map.symbolize(at).map(|(s, off)| (s.name, off)), Some(("_text", 0x10)));
//! # Ok::<(), vmscope_linux::Error>(())
//! ```
//!
//! - [`discovery`]: the kernel image, KASLR offsets, paging mode, `init_top_pgt`,
//!   banner, build ID — and the [`Evidence`] each came from.
//! - [`kallsyms`]: the symbol table, equal to the guest's `/proc/kallsyms`.
//! - [`types`] and [`Profile`]: struct sizes, field offsets (nested, anonymous,
//!   bitfields), enum values, from BTF in memory, a vmlinux, or an ISF file; ISF
//!   written back out; [`ProfileCache`] keyed by banner and build ID.
//! - [`views`]: processes, threads, tree, modules, module symbols, memory maps
//!   ([`Kernel::memory_map`]), open files ([`Kernel::open_files`]), the kernel log
//!   ([`Kernel::kernel_log`]), environments ([`Kernel::environment`]), sockets
//!   ([`Kernel::sockets`]), mounts ([`Kernel::mounts`]), namespaces and cgroup
//!   ([`Kernel::namespaces`]), credentials ([`Kernel::credentials`]); and, raw for
//!   consistency checks, the task graph ([`Kernel::task_graph`]), the PID table
//!   ([`Kernel::pid_table`]) and the module list both ways ([`Kernel::module_graph`]).
//! - [`checks`] ([`Kernel::check`]): rootkit checks — system call tables and dispatch,
//!   IDT, tty and keyboard hooks, hidden processes and modules, shared credentials —
//!   each [`Finding`] with its evidence.
//!
//! What this crate deliberately does not do: talk to a hypervisor (registers come
//! in as [`Hints`]), pause the guest (wrap the memory in a halting decorator for a
//! consistent pass), write guest memory, or hard-code an offset or layout for a
//! kernel version. It supports x86-64 kernels with `CONFIG_KALLSYMS_ALL` (data
//! symbols such as `init_task` must be in kallsyms) and BTF in memory
//! (`CONFIG_DEBUG_INFO_BTF`) or types from a vmlinux or ISF file. The
//! `/proc/kallsyms` lines of BPF programs and ftrace or kprobe trampolines are not
//! rebuilt.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cache;
pub mod checks;
pub mod discovery;
pub mod elf;
mod error;
pub mod kallsyms;
mod kernel;
mod kmem;
pub mod offsets;
mod profile;
mod symbols;
pub mod types;
pub mod views;
pub mod vmcoreinfo;

pub use cache::ProfileCache;
pub use checks::{CheckKind, CheckReport, Finding};
pub use discovery::{Evidence, Hints, KernelInfo, discover};
pub use error::{Error, Result};
pub use kernel::{AttachOptions, Kernel};
pub use kmem::{CStrPrefix, KernelMem};
pub use offsets::Offsets;
pub use profile::Profile;
pub use symbols::{Symbol, SymbolSource, SymbolTable};
pub use views::creds::Credentials;
pub use views::environ::Environment;
pub use views::files::{AllOpenFiles, FileKind, OpenFile, OpenFiles};
pub use views::graph::{Link, ModuleGraph, ModuleNode, RawList, TaskGraph, TaskNode};
pub use views::kmsg::{KernelLog, LogFormat, LogRecord, format_log};
pub use views::maps::{MemoryMap, MemoryMaps, Vma, VmaKind, format_maps};
pub use views::modules::{Module, ModuleList, ModuleSymbol};
pub use views::mounts::{MountInfo, MountNamespace, MountTable};
pub use views::namespaces::Namespaces;
pub use views::pids::{PidEntry, PidTable};
pub use views::process::{PerProcess, Process, ProcessList, Thread, ThreadList};
pub use views::sockets::{Owner, Proto, Socket, SocketTable, UnixInfo, state_name};
pub use views::tree::{ProcessTree, TreeNode};
pub use views::{Anomaly, Budget, Limits, Resource};
