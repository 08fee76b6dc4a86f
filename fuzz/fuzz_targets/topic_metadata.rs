//! Topic metadata loading: the bytes of `meta/topics`, as open decodes them.
//!
//! Input: a mode byte, then the file's bytes (mode bit 0 clear) or its payload (bit 0 set:
//! the target frames it with a valid header, length and CRC, to reach the bincode decoder).
//!
//! Beyond "no panic": a decoded table gives every topic a configuration without panicking,
//! and re-encodes to a file that decodes to the same table and is no longer than the input
//! (a version 1 table, before topic ids, re-encodes as version 2: one byte more per topic,
//! for its unknown id, 0).
#![no_main]

use brooklet::fuzzing::{decode_topic_table, frame_topic_table};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let file = if mode & 1 == 1 {
        frame_topic_table(rest)
    } else {
        rest.to_vec()
    };
    let Ok(table) = decode_topic_table(&file) else {
        return;
    };
    for (name, config) in table.topics() {
        // What open checks next (a name that fails is a typed error there).
        let _ = brooklet::validate_topic_name(&name);
        let _ = config.partitions();
    }
    let again = table.encode().unwrap();
    assert_eq!(decode_topic_table(&again).unwrap(), table);
    let version_1 = file.get(4..6) == Some(&1u16.to_le_bytes()[..]);
    let ids = if version_1 { table.topics().len() } else { 0 };
    assert!(again.len() <= file.len() + ids, "re-encoded table grew");
});
