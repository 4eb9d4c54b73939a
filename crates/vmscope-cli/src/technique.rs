//! The techniques of the study, by name, as the command line and the lab offer them.

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
}

impl Technique {
    /// Every technique, fastest-first as a default would try them.
    pub const ALL: [Technique; 7] = [
        Technique::LiveMap,
        Technique::LiveRead,
        Technique::HaltMap,
        Technique::HaltRead,
        Technique::HaltSnap,
        Technique::LiveSnap,
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
        }
    }

    /// Whether it pauses the guest (needs the hypervisor's control channel).
    pub fn needs_hypervisor(self) -> bool {
        matches!(self, Technique::HaltRead | Technique::HaltMap | Technique::HaltSnap | Technique::LiveSnap)
    }

    /// Whether it reads guest memory (everything but the agent).
    pub fn reads_memory(self) -> bool {
        self != Technique::Agent
    }

    /// The study's four axes: (cooperation, snapshot, liveness, access).
    pub fn axes(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Technique::Agent => ("guest agent", "no", "live", "agent reads /proc"),
            Technique::LiveRead => ("none", "no", "live", "syscalls"),
            Technique::HaltRead => ("none", "no", "halt", "syscalls"),
            Technique::LiveMap => ("none", "no", "live", "memory mapping"),
            Technique::HaltMap => ("none", "no", "halt", "memory mapping"),
            Technique::HaltSnap => ("none", "yes", "halt", "copy of RAM"),
            Technique::LiveSnap => ("none", "yes", "live", "copy of RAM"),
        }
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
}
