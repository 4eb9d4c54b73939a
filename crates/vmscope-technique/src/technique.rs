//! The techniques of the study, by name, and their place in its taxonomy.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One way of getting at guest state (DESIGN.md, "Techniques").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Technique {
    /// The guest agent answers from its /proc.
    Agent,
    /// Syscall reads of the hypervisor process while the guest runs.
    LiveRead,
    /// The same, with the guest paused for each pass.
    HaltRead,
    /// A read-only mapping of the RAM backing while the guest runs.
    LiveMap,
    /// The same, with the guest paused for each pass.
    HaltMap,
    /// Pause, copy all RAM, resume; introspect the copy.
    HaltSnap,
    /// Copy RAM while the guest runs, with a short final pause.
    LiveSnap,
    /// Live syscall reads while recording the read set; a torn pass (dirty log, or
    /// double collect) is tried again, and after the last try read once halted.
    ConsistentRead,
    /// The same over the read-only mapping of the RAM backing.
    ConsistentMap,
}

impl Technique {
    /// Every technique, fastest-first as a default would try them.
    pub const ALL: [Technique; 9] = [
        Technique::LiveMap,
        Technique::LiveRead,
        Technique::HaltMap,
        Technique::HaltRead,
        Technique::HaltSnap,
        Technique::LiveSnap,
        Technique::ConsistentMap,
        Technique::ConsistentRead,
        Technique::Agent,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Technique::Agent => "agent",
            Technique::LiveRead => "live-read",
            Technique::HaltRead => "halt-read",
            Technique::LiveMap => "live-map",
            Technique::HaltMap => "halt-map",
            Technique::HaltSnap => "halt-snap",
            Technique::LiveSnap => "live-snap",
            Technique::ConsistentRead => "consistent-read",
            Technique::ConsistentMap => "consistent-map",
        }
    }

    /// Whether it pauses the guest, if only briefly (it needs the hypervisor's
    /// control channel). The consistent techniques pause only to fall back, and work
    /// without a control channel as long as their passes validate.
    pub fn needs_hypervisor(self) -> bool {
        let a = self.axes();
        a.liveness == Liveness::Halt || a.snapshot
    }

    /// Whether it reads guest memory (everything but the agent).
    pub fn reads_memory(self) -> bool {
        self != Technique::Agent
    }

    /// Whether it validates every view it returns (consistent-read, consistent-map).
    pub fn validates(self) -> bool {
        matches!(self, Technique::ConsistentRead | Technique::ConsistentMap)
    }

    /// Where it sits on the study's four axes.
    pub fn axes(self) -> Axes {
        use {Cooperation as C, Liveness as L, MemoryAccess as A};
        let (cooperation, snapshot, liveness, access) = match self {
            Technique::Agent => (C::GuestAgent, false, L::Live, A::Agent),
            Technique::LiveRead => (C::None, false, L::Live, A::Syscall),
            Technique::HaltRead => (C::None, false, L::Halt, A::Syscall),
            Technique::LiveMap => (C::None, false, L::Live, A::Mapping),
            Technique::HaltMap => (C::None, false, L::Halt, A::Mapping),
            Technique::HaltSnap => (C::None, true, L::Halt, A::Copy),
            Technique::LiveSnap => (C::None, true, L::Live, A::Copy),
            Technique::ConsistentRead => (C::None, false, L::Live, A::Syscall),
            Technique::ConsistentMap => (C::None, false, L::Live, A::Mapping),
        };
        Axes { cooperation, snapshot, liveness, access }
    }
}

/// A technique's place in the study's taxonomy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Axes {
    /// Whether the guest helps.
    pub cooperation: Cooperation,
    /// Whether a copy of guest memory is introspected rather than the memory itself.
    pub snapshot: bool,
    /// Whether the guest runs while it is introspected.
    pub liveness: Liveness,
    /// How guest memory is reached.
    pub access: MemoryAccess,
}

/// Guest cooperation, the study's first axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cooperation {
    /// Nothing in the guest helps.
    None,
    /// An agent in the guest answers.
    GuestAgent,
}

/// Guest liveness, the study's third axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Liveness {
    /// The guest runs throughout (live-snap pauses it briefly at the end of a copy).
    Live,
    /// The guest is paused for each pass (or each copy).
    Halt,
}

/// Memory access type, the study's fourth axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryAccess {
    /// System calls on the hypervisor process or its RAM file.
    Syscall,
    /// A mapping of the RAM backing in the introspector.
    Mapping,
    /// A copy of guest RAM, taken by system calls.
    Copy,
    /// The agent reads its own /proc.
    Agent,
}

impl fmt::Display for Cooperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cooperation::None => "none",
            Cooperation::GuestAgent => "guest agent",
        })
    }
}

impl fmt::Display for Liveness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Liveness::Live => "live",
            Liveness::Halt => "halt",
        })
    }
}

impl fmt::Display for MemoryAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemoryAccess::Syscall => "syscalls",
            MemoryAccess::Mapping => "memory mapping",
            MemoryAccess::Copy => "copy of RAM",
            MemoryAccess::Agent => "agent reads /proc",
        })
    }
}

impl fmt::Display for Technique {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Technique {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Technique::ALL.into_iter().find(|t| t.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Technique::ALL.iter().map(|t| t.name()).collect();
            format!("unknown technique `{s}`; choose one of: {}", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in Technique::ALL {
            assert_eq!(t.name().parse::<Technique>().unwrap(), t);
        }
        assert!("live".parse::<Technique>().unwrap_err().contains("live-map"));
    }

    #[test]
    fn the_taxonomy() {
        let halting: Vec<_> = Technique::ALL.into_iter().filter(|t| t.needs_hypervisor()).collect();
        assert_eq!(halting, [Technique::HaltMap, Technique::HaltRead, Technique::HaltSnap, Technique::LiveSnap]);
        assert_eq!(Technique::LiveSnap.axes().liveness, Liveness::Live);
        assert_eq!(Technique::Agent.axes().cooperation, Cooperation::GuestAgent);
        assert!(
            Technique::ALL.into_iter().filter(|t| t.axes().snapshot).all(|t| t.axes().access == MemoryAccess::Copy)
        );
    }
}
