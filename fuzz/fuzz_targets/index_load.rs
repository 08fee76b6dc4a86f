//! Segment index loading: the bytes of a segment's `.index` and `.timeindex` files, as open
//! loads them (and rebuilds them from the log when they are refused).
//!
//! Input: a mode byte, the `.log` length (u64 LE), the `.index` file's length (u16 LE), then
//! the `.index` bytes followed by the `.timeindex` bytes. Mode bit 0 set: the two parts are
//! entries, which the target frames with a valid header, extent, count and CRC (as the
//! index writes them for that `.log` length), so that the fuzzer reaches the checks behind
//! the CRC. Mode bit 1 set: the load also expects the next offset the mode byte's upper
//! bits give (and framing records it).
//!
//! Beyond "no panic": a loaded index has what the loader promises (entries strictly
//! increasing, positions inside the log) and describes the `.log` length (and next offset)
//! it was loaded for, writes back exactly the bytes it was loaded from, answers lookups as a
//! linear scan does; and well-framed entries are refused exactly when they break those
//! promises.
#![no_main]

use brooklet::fuzzing::{frame_index, load_index};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 11 {
        return;
    }
    let (head, rest) = data.split_at(11);
    let mode = head[0];
    let log_len = u64::from_le_bytes(head[1..9].try_into().unwrap());
    let split = usize::from(u16::from_le_bytes(head[9..11].try_into().unwrap())).min(rest.len());
    let (a, b) = rest.split_at(split);
    let framed = mode & 1 == 1;
    let next_offset = u64::from(mode >> 2);
    let expected_next = (mode & 2 == 2).then_some(next_offset);
    let (offset_file, time_file) = if framed {
        frame_index(a, b, log_len, next_offset)
    } else {
        (a.to_vec(), b.to_vec())
    };

    let Some(index) = load_index(&offset_file, &time_file, log_len, expected_next) else {
        if framed {
            // Framing, count and CRC are valid: only the entries can be at fault.
            let (offsets, times) = entries(a, b);
            assert!(!promises_hold(&offsets, &times, log_len), "valid entries refused");
        }
        return;
    };
    let (offsets, times) = (index.offsets(), index.times());
    assert!(promises_hold(&offsets, &times, log_len), "invalid entries loaded");
    assert_eq!(
        index.max_timestamp(),
        times.last().map_or((i64::MIN, 0), |&(t, r)| (t, r))
    );

    // Written back, the index is the files it came from: the same `.log` length, and the
    // next offset recorded in them (read from the file when the load did not expect one).
    let recorded_next = u64::from_le_bytes(offset_file[20..28].try_into().unwrap());
    if let Some(next) = expected_next {
        assert_eq!(recorded_next, next, "loaded for another next offset");
    }
    let (offset_again, time_again) = index.encode(log_len, recorded_next);
    assert_eq!(offset_again, offset_file);
    assert_eq!(time_again, time_file);

    // Lookups as a linear scan answers them, at and around every entry.
    let mut probes: Vec<u32> = vec![0, u32::MAX];
    for &(r, _) in &offsets {
        probes.extend([r.wrapping_sub(1), r, r.wrapping_add(1)]);
    }
    for r in probes {
        let expected = offsets.iter().rev().find(|e| e.0 <= r).copied().unwrap_or((0, 0));
        assert_eq!(index.lookup(r), expected, "lookup({r})");
    }
    let mut stamps: Vec<i64> = vec![i64::MIN, i64::MAX];
    for &(t, _) in &times {
        stamps.extend([t.wrapping_sub(1), t, t.wrapping_add(1)]);
    }
    for t in stamps {
        let expected = times.iter().rev().find(|e| e.0 < t).map(|e| e.1);
        assert_eq!(index.time_lookup(t), expected, "time_lookup({t})");
    }
});

type Entries = (Vec<(u32, u32)>, Vec<(i64, u32)>);

/// The entries in the two parts, cut to whole entries, as `frame_index` reads them.
fn entries(a: &[u8], b: &[u8]) -> Entries {
    let offsets = a
        .chunks_exact(8)
        .map(|c| {
            (
                u32::from_le_bytes(c[..4].try_into().unwrap()),
                u32::from_le_bytes(c[4..].try_into().unwrap()),
            )
        })
        .collect();
    let times = b
        .chunks_exact(12)
        .map(|c| {
            (
                i64::from_le_bytes(c[..8].try_into().unwrap()),
                u32::from_le_bytes(c[8..].try_into().unwrap()),
            )
        })
        .collect();
    (offsets, times)
}

/// What the loader promises of the entries it returns.
fn promises_hold(offsets: &[(u32, u32)], times: &[(i64, u32)], log_len: u64) -> bool {
    offsets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1)
        && offsets.last().is_none_or(|e| u64::from(e.1) < log_len)
        && times.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
}
