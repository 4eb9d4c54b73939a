//! Whether a recorded pass was torn.
