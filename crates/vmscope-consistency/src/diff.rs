//! Differences between two views of one guest.
