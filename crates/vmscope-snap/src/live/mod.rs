//! live-snap.
