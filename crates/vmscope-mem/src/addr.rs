//! Address newtypes: one per address space, no arithmetic operators.

use std::fmt;

/// The size of a base page on x86-64.
pub const PAGE_SIZE: u64 = 4096;

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident, $short:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[derive(serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            /// Wraps a raw address.
            #[inline]
            pub const fn new(raw: u64) -> Self {
                Self(raw)
            }

            /// The raw address.
            #[inline]
            pub const fn raw(self) -> u64 {
                self.0
            }

            /// `self + delta`, or `None` on overflow.
            #[inline]
            pub const fn checked_add(self, delta: u64) -> Option<Self> {
                match self.0.checked_add(delta) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// `self - delta`, or `None` on underflow.
            #[inline]
            pub const fn checked_sub(self, delta: u64) -> Option<Self> {
                match self.0.checked_sub(delta) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// The distance from `base` up to `self`, or `None` if `self < base`.
            #[inline]
            pub const fn offset_from(self, base: Self) -> Option<u64> {
                self.0.checked_sub(base.0)
            }

            /// The offset within a page of `page_size` bytes (a power of two).
            #[inline]
            pub const fn offset_in_page(self, page_size: u64) -> u64 {
                debug_assert!(page_size.is_power_of_two());
                self.0 & (page_size - 1)
            }

            /// The start of the page of `page_size` bytes (a power of two) holding `self`.
            #[inline]
            pub const fn page_base(self, page_size: u64) -> Self {
                debug_assert!(page_size.is_power_of_two());
                Self(self.0 & !(page_size - 1))
            }

            /// Whether `self` is a multiple of `align` (a power of two).
            #[inline]
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align - 1) == 0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($short, "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

address_type!(
    /// A guest-physical address.
    Gpa,
    "Gpa"
);
address_type!(
    /// A guest-virtual address.
    Gva,
    "Gva"
);
address_type!(
    /// A host-virtual address (in the hypervisor process or in ours).
    Hva,
    "Hva"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_math() {
        let a = Gva::new(0xffff_8880_1234_5678);
        assert_eq!(a.offset_in_page(PAGE_SIZE), 0x678);
        assert_eq!(a.page_base(PAGE_SIZE), Gva::new(0xffff_8880_1234_5000));
        assert_eq!(a.page_base(1 << 21).raw(), 0xffff_8880_1220_0000);
        assert!(Gpa::new(u64::MAX).checked_add(1).is_none());
        assert_eq!(Gpa::new(0x2000).offset_from(Gpa::new(0x1000)), Some(0x1000));
        assert_eq!(Gpa::new(0x1000).offset_from(Gpa::new(0x2000)), None);
        assert_eq!(format!("{:?}", Gpa::new(0x10)), "Gpa(0x10)");
    }
}
