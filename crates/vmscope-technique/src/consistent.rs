//! Passes that say how consistent their view is, and the consistent techniques: a
//! live pass that records its read set, is validated, tried again when torn, and
//! read once halted when every try was torn.

use std::time::Duration;

use serde::Serialize;
use vmscope_consistency::ReadSet;
use vmscope_consistency::validate::{self, Method, Verdict};
use vmscope_hv::{DirtyLog, Hypervisor, PauseGuard};
use vmscope_mem::PhysMem;

use crate::reader::Reader;
use crate::stop::{Holding, Stoppable};
use crate::{Error, Result};

/// A pass's result with what is known of its consistency.
#[derive(Debug, Clone)]
pub struct Observed<R> {
    /// What the pass returned.
    pub value: R,
    /// How consistent the view it read is.
    pub consistency: Consistency,
}

/// How consistent one pass's view is, and how that was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Consistency {
    /// The verdict on the pass whose view was returned.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Whether that view is torn (only a live technique's can be).
    pub torn: bool,
    /// Live passes run (a consistent technique tries again when one is torn).
    pub tries: u32,
    /// Of those, how many were torn.
    pub torn_tries: u32,
    /// Whether the view was read with the guest paused after every live try was torn.
    pub fell_back: bool,
}

impl Consistency {
    pub(crate) fn once(verdict: Verdict) -> Self {
        let torn = verdict.torn();
        Consistency { verdict, torn, tries: 1, torn_tries: u32::from(torn), fell_back: false }
    }
}

/// One live pass through `reader`, recording its read set, then its verdict: by
/// `dirty`'s log where given (cleared before the pass), else by a double collect
/// (through the reader without its cache, so the second collect reads guest memory).
pub(crate) fn live<R>(
    reader: &Reader,
    dirty: Option<&dyn DirtyLog>,
    hole_refresh: Duration,
    f: &mut impl FnMut(&dyn PhysMem) -> R,
) -> Result<(R, Verdict)> {
    reader.begin_pass(hole_refresh)?;
    if let Some(log) = dirty {
        validate::clear_dirty_log(log)?;
    }
    let set = ReadSet::new(reader.mem());
    let value = f(&set);
    let recorded = set.finish();
    let verdict = match dirty {
        Some(log) => validate::by_dirty_log(&recorded, &log.fetch().map_err(vmscope_consistency::Error::from)?),
        None => validate::by_double_collect(&recorded, reader.uncached(), reader.recollect())?,
    };
    Ok((value, verdict))
}

/// One pass through `reader` with the guest paused (unless someone else paused it),
/// its read set recorded.
pub(crate) fn halted<R>(
    reader: &Reader,
    hv: &dyn Hypervisor,
    hole_refresh: Duration,
    f: &mut impl FnMut(&dyn PhysMem) -> R,
) -> Result<(R, Verdict)> {
    let holding = Holding::new();
    let pause = PauseGuard::new(hv)?;
    let pass = reader.begin_pass(hole_refresh).map(|()| {
        let set = ReadSet::new(Stoppable(reader.mem()));
        let value = f(&set);
        (value, set.finish())
    });
    pause.release()?;
    drop(holding);
    let (value, recorded) = pass?;
    Ok((value, Verdict::untorn(Method::Halted, &recorded)))
}

/// The consistent techniques: up to `tries` live passes until one is not torn, then
/// one halted pass; without a hypervisor to pause, [`Error::Unvalidated`].
pub(crate) fn validated<R>(
    reader: &Reader,
    hv: Option<&dyn Hypervisor>,
    dirty: Option<&dyn DirtyLog>,
    (tries, hole_refresh): (u32, Duration),
    f: &mut impl FnMut(&dyn PhysMem) -> R,
) -> Result<Observed<R>> {
    let tries = tries.max(1);
    let mut last_torn = 0;
    for i in 1..=tries {
        let (value, verdict) = live(reader, dirty, hole_refresh, f)?;
        if !verdict.torn() {
            let consistency = Consistency { verdict, torn: false, tries: i, torn_tries: i - 1, fell_back: false };
            return Ok(Observed { value, consistency });
        }
        last_torn = verdict.torn_pages.len();
    }
    let Some(hv) = hv else {
        return Err(Error::Unvalidated { tries, torn_pages: last_torn });
    };
    let (value, verdict) = halted(reader, hv, hole_refresh, f)?;
    Ok(Observed { value, consistency: Consistency { verdict, torn: false, tries, torn_tries: tries, fell_back: true } })
}
