//! End-to-end tests of vmscope, one file per feature under `tests/`: real Debian
//! kernels under QEMU, compared with what the guest says about itself through its
//! agent. What the tests share (images, guests, the agent) is `vmscope-testbed`.
