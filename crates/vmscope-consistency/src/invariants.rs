//! Rules of the kernel's own data, checked on vmscope-linux views.
