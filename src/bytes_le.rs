//! Little-endian field readers shared by the batch format and the index files.
//!
//! Each reads a fixed-width integer at `at` in a slice whose length the caller has checked;
//! a short slice yields 0 rather than a panic (the crate denies slice indexing).

/// The `u16` at `b[at..at + 2]`, or 0 if the slice is shorter.
pub(crate) fn le_u16(b: &[u8], at: usize) -> u16 {
    b.get(at..at.saturating_add(2))
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_le_bytes)
}

/// The `u32` at `b[at..at + 4]`, or 0 if the slice is shorter.
pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at.saturating_add(4))
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

/// The `u64` at `b[at..at + 8]`, or 0 if the slice is shorter.
pub(crate) fn le_u64(b: &[u8], at: usize) -> u64 {
    b.get(at..at.saturating_add(8))
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_bounds_and_zero_when_short() {
        let b = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(le_u16(&b, 1), 0x0302);
        assert_eq!(le_u32(&b, 0), 0x0403_0201);
        assert_eq!(le_u64(&b, 1), 0x0908_0706_0504_0302);
        assert_eq!(le_u64(&b, 2), 0);
        assert_eq!(le_u32(&b, usize::MAX), 0);
    }
}
