//! Record batch decoding: the bytes of a segment file, as reads and recovery decode them.
//!
//! Input: one mode byte, then the batch bytes. Mode bit 0 set: the target first writes a
//! valid length field and CRC into the bytes (`seal_batch`), so that the fuzzer gets past
//! the checksum into record parsing and decompression.
//!
//! Beyond "no panic": a batch that decodes with its CRC verified decodes the same without;
//! the header fields are consistent; `validate_records` (recovery's check) agrees with the
//! two record iterators, which agree with each other; and a valid batch's records re-encode
//! (with its codec, and uncompressed) into batches that decode to the same records.
#![no_main]

use brooklet::fuzzing::{BatchError, decode_batch, encode_batch, seal_batch, validate_batch_records};
use brooklet::{Error, LogRecord, Record, TimestampType};
use libfuzzer_sys::fuzz_target;

/// The readers' decompression limit: the default `max_batch_bytes` (1 MiB).
const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 {
        seal_batch(&mut bytes);
    }
    let checked = decode_batch(&bytes, LIMIT, true);
    let unchecked = decode_batch(&bytes, LIMIT, false);
    if let Ok(batch) = &checked {
        assert_eq!(Ok(batch), unchecked.as_ref(), "the CRC check changed a decoded batch");
    }
    let batch = match unchecked {
        Ok(batch) => batch,
        Err(BatchError::Torn { needed: Some(n) }) => {
            assert!(n > bytes.len(), "torn, needing {n} bytes, with {} present", bytes.len());
            return;
        }
        Err(_) => return,
    };

    // Header consistency.
    let (base, last, count) = (batch.base_offset(), batch.last_offset(), batch.record_count());
    assert!(count >= 1 && last >= base && u64::from(count) <= last - base + 1);
    assert!(batch.size_bytes() <= bytes.len());
    assert_eq!(batch.as_bytes().as_ref(), &bytes[..batch.size_bytes()]);
    assert!(batch.compression().is_some());

    // The iterators against each other and against validate_records.
    let owned: Vec<Result<LogRecord, String>> = batch.records().map(|r| r.map_err(|e| e.to_string())).collect();
    let borrowed: Vec<Result<LogRecord, String>> = batch
        .iter()
        .map(|r| r.map(|r| r.to_log_record()).map_err(|e| e.to_string()))
        .collect();
    assert_eq!(owned, borrowed);
    assert!(owned.len() <= count as usize);
    let parsed: Vec<&LogRecord> = owned.iter().filter_map(|r| r.as_ref().ok()).collect();
    // After an error the iteration ends.
    assert!(parsed.len() + 1 >= owned.len());
    for pair in parsed.windows(2) {
        assert!(pair[0].offset < pair[1].offset, "offsets out of order");
    }
    for r in &parsed {
        assert!(
            r.offset >= base && r.offset <= last,
            "offset {} outside {base}..={last}",
            r.offset
        );
        if batch.timestamp_type() == TimestampType::LogAppendTime {
            assert_eq!(r.timestamp, batch.max_timestamp());
        }
    }
    let all_parsed = parsed.len() == count as usize;
    match validate_batch_records(&batch) {
        Ok(()) => assert!(all_parsed, "validate_records accepted records that do not iterate"),
        Err(BatchError::Corrupt(reason)) if all_parsed => {
            // The only thing validation checks beyond the records themselves.
            assert!(reason.contains("after the last record"), "{reason}");
            return;
        }
        Err(_) => {
            assert!(!all_parsed);
            return;
        }
    }

    // A valid batch's records re-encode to the same records, at dense offsets; but a
    // negative timestamp, which a batch can hold (written before brooklet refused one, or by
    // another writer) and reads back, is refused when written.
    let records: Vec<Record> = parsed
        .iter()
        .map(|r| {
            let mut record = Record::new().timestamp(r.timestamp);
            if let Some(k) = &r.key {
                record = record.key(k.clone());
            }
            if let Some(v) = &r.value {
                record = record.value(v.clone());
            }
            for h in &r.headers {
                record = record.header(h.name.clone(), h.value.clone());
            }
            record
        })
        .collect();
    if let Some(r) = parsed.iter().find(|r| r.timestamp < 0) {
        let refused = encode_batch(
            &records,
            base,
            0,
            brooklet::Compression::None,
            TimestampType::CreateTime,
        );
        assert!(
            matches!(refused, Err(Error::InvalidTimestamp { timestamp }) if timestamp == r.timestamp),
            "{refused:?}"
        );
        return;
    }
    let codec = batch.compression().unwrap();
    for codec in [codec, brooklet::Compression::None] {
        let encoded = encode_batch(&records, base, 0, codec, TimestampType::CreateTime).unwrap();
        let again = decode_batch(&encoded, 2 * LIMIT, true).unwrap();
        validate_batch_records(&again).unwrap();
        assert_eq!(again.compression(), Some(codec));
        let decoded: Vec<LogRecord> = again.records().collect::<Result<_, _>>().unwrap();
        assert_eq!(decoded.len(), parsed.len());
        for (i, (d, p)) in decoded.iter().zip(&parsed).enumerate() {
            assert_eq!(d.offset, base + i as u64);
            assert_eq!(
                (d.timestamp, &d.key, &d.value, &d.headers),
                (p.timestamp, &p.key, &p.value, &p.headers)
            );
        }
    }
});
