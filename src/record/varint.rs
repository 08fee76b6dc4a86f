//! LEB128 varints (unsigned) and zig-zag varints (signed), as in Kafka's record format.
//!
//! Decoders take untrusted bytes: they never read past the slice, reject encodings longer
//! than the type allows, and report where they stopped.

/// Why a varint could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarintError {
    /// The slice ended inside the varint.
    Truncated,
    /// More continuation bytes than a `u64` can hold.
    Overlong,
}

/// Number of bytes [`put_u64`] writes for `value`.
#[inline]
pub(crate) fn len_u64(value: u64) -> usize {
    // The common cases (lengths and deltas of small records) without counting bits.
    if value < 1 << 7 {
        return 1;
    }
    if value < 1 << 14 {
        return 2;
    }
    // 1 byte per started group of 7 bits.
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Number of bytes [`put_i64`] writes for `value`.
#[inline]
pub(crate) fn len_i64(value: i64) -> usize {
    len_u64(zigzag(value))
}

#[inline]
fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

#[inline]
fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// Appends `value` as an unsigned LEB128 varint.
#[inline]
pub(crate) fn put_u64(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends `value` as a zig-zag varint.
#[inline]
pub(crate) fn put_i64(out: &mut Vec<u8>, value: i64) {
    put_u64(out, zigzag(value));
}

/// Decodes an unsigned varint from the front of `buf`: `(value, bytes used)`.
#[inline(always)]
pub(crate) fn get_u64(buf: &[u8]) -> Result<(u64, usize), VarintError> {
    // Fast path: one byte, the common case for lengths and deltas of small records.
    if let Some(&b) = buf.first()
        && b < 0x80
    {
        return Ok((u64::from(b), 1));
    }
    // Two bytes: lengths of 128..16383, the common case for record bodies.
    if let [b0, b1, ..] = *buf
        && b0 >= 0x80
        && b1 < 0x80
    {
        return Ok((u64::from(b0 & 0x7f) | (u64::from(b1) << 7), 2));
    }
    let mut value = 0u64;
    for (i, &byte) in buf.iter().enumerate().take(10) {
        let part = u64::from(byte & 0x7f);
        if i == 9 && byte > 1 {
            return Err(VarintError::Overlong);
        }
        value |= part << (7 * i);
        if byte < 0x80 {
            return Ok((value, i + 1));
        }
    }
    if buf.len() >= 10 {
        Err(VarintError::Overlong)
    } else {
        Err(VarintError::Truncated)
    }
}

/// Decodes a zig-zag varint from the front of `buf`: `(value, bytes used)`.
#[inline]
pub(crate) fn get_i64(buf: &[u8]) -> Result<(i64, usize), VarintError> {
    get_u64(buf).map(|(v, n)| (unzigzag(v), n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        let cases: [(u64, &[u8]); 5] = [
            (0, &[0]),
            (1, &[1]),
            (127, &[0x7f]),
            (128, &[0x80, 1]),
            (300, &[0xac, 0x02]),
        ];
        for (value, bytes) in cases {
            let mut out = Vec::new();
            put_u64(&mut out, value);
            assert_eq!(out, bytes);
            assert_eq!(len_u64(value), bytes.len());
            assert_eq!(get_u64(bytes), Ok((value, bytes.len())));
        }
        let mut out = Vec::new();
        put_i64(&mut out, -1);
        assert_eq!(out, [1]);
        assert_eq!(get_i64(&[1]), Ok((-1, 1)));
        assert_eq!(len_u64(u64::MAX), 10);
    }

    #[test]
    fn rejects_truncated_and_overlong() {
        assert_eq!(get_u64(&[]), Err(VarintError::Truncated));
        assert_eq!(get_u64(&[0x80, 0x80]), Err(VarintError::Truncated));
        assert_eq!(get_u64(&[0xff; 11]), Err(VarintError::Overlong));
        // 10th byte may only carry the top bit of a u64.
        assert_eq!(
            get_u64(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            Err(VarintError::Overlong)
        );
    }

    proptest! {
        #[test]
        fn round_trip(u in any::<u64>(), i in any::<i64>()) {
            let mut out = Vec::new();
            put_u64(&mut out, u);
            prop_assert_eq!(out.len(), len_u64(u));
            prop_assert_eq!(get_u64(&out), Ok((u, out.len())));
            out.clear();
            put_i64(&mut out, i);
            prop_assert_eq!(out.len(), len_i64(i));
            prop_assert_eq!(get_i64(&out), Ok((i, out.len())));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = get_u64(&bytes);
        }
    }
}
