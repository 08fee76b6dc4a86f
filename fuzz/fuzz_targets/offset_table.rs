//! The committed-offset table: the keys and values of the offsets log's records, the
//! offsets snapshot file, and the replay of an offsets-log batch into the table.
//!
//! Input: a mode byte (taken modulo 5), then:
//! - 0: a record key;  1: a record value. A decoded key or value encodes back to exactly
//!   the input (the encodings are canonical).
//! - 2: a snapshot file;  3: a snapshot payload, which the target frames with a valid
//!   header, length and CRC to reach the bincode decoder. A decoded snapshot re-encodes to
//!   a file that decodes to the same snapshot.
//! - 4: a batch of the offsets log (length and CRC sealed by the target), replayed into an
//!   empty table as open replays the log: it succeeds exactly when every record has a valid
//!   key and value (or is a tombstone), and then the table holds each key's last commit.
#![no_main]

use std::collections::BTreeMap;

use brooklet::fuzzing::{
    decode_batch, decode_offset_key, decode_offset_snapshot, decode_offset_value, encode_offset_key,
    encode_offset_value, frame_offset_snapshot, replay_offsets_batch, seal_batch,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 5 {
        0 => {
            if let Some((group, tp)) = decode_offset_key(rest) {
                assert_eq!(encode_offset_key(&group, &tp).unwrap().as_ref(), rest);
            }
        }
        1 => {
            if let Some(om) = decode_offset_value(rest) {
                assert_eq!(encode_offset_value(&om).as_ref(), rest);
            }
        }
        2 | 3 => {
            let file = if mode % 5 == 3 {
                frame_offset_snapshot(rest)
            } else {
                rest.to_vec()
            };
            if let Ok(snapshot) = decode_offset_snapshot(&file) {
                let again = snapshot.encode().unwrap();
                assert_eq!(decode_offset_snapshot(&again).unwrap(), snapshot);
                assert!(again.len() <= file.len(), "re-encoded snapshot grew");
                let _ = (snapshot.covered(), snapshot.entries());
            }
        }
        _ => {
            let mut bytes = rest.to_vec();
            seal_batch(&mut bytes);
            let Ok(batch) = decode_batch(&bytes, 1 << 20, true) else {
                return;
            };
            let replayed = replay_offsets_batch(&batch);
            // The model: every record's key and value decoded, in log order.
            let mut model = BTreeMap::new();
            let mut ok = true;
            for record in batch.iter() {
                let Ok(record) = record else {
                    ok = false;
                    break;
                };
                let Some((group, tp)) = record.key().and_then(decode_offset_key) else {
                    ok = false;
                    break;
                };
                match record.value() {
                    Some(v) => {
                        let Some(om) = decode_offset_value(v) else {
                            ok = false;
                            break;
                        };
                        model.entry(group).or_insert_with(BTreeMap::new).insert(tp, om);
                    }
                    None => {
                        if let Some(g) = model.get_mut(&group) {
                            g.remove(&tp);
                            if g.is_empty() {
                                model.remove(&group);
                            }
                        }
                    }
                }
            }
            match replayed {
                Ok(table) => {
                    assert!(ok, "replay accepted an undecodable record");
                    assert_eq!(table, model);
                }
                Err(e) => assert!(!ok, "replay refused valid records: {e}"),
            }
        }
    }
});
