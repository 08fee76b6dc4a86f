//! The raw-file baseline of the benches and the comparison runner: records written as
//! `u32 LE key length, key, u32 LE value length, value[, u32 LE CRC-32 of key and value]`
//! through a 64 KiB `BufWriter`, read back through a 64 KiB `BufReader`. One copy, so every
//! bench judges brooklet against the same baseline code.

#![allow(dead_code)] // each user calls a subset

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

/// The raw baseline's buffer size.
pub const RAW_BUF: usize = 64 * 1024;

/// Writes `pairs` (key, value) length-prefixed through a 64 KiB `BufWriter`; with `crc`,
/// each record is followed by the CRC-32 (crc32fast) of its key and value. Returns the file,
/// flushed to the OS.
pub fn raw_write<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    file: File,
    pairs: impl IntoIterator<Item = (K, V)>,
    crc: bool,
) -> File {
    let mut w = BufWriter::with_capacity(RAW_BUF, file);
    for (k, v) in pairs {
        let (k, v) = (k.as_ref(), v.as_ref());
        w.write_all(&(k.len() as u32).to_le_bytes()).unwrap();
        w.write_all(k).unwrap();
        w.write_all(&(v.len() as u32).to_le_bytes()).unwrap();
        w.write_all(v).unwrap();
        if crc {
            let mut h = crc32fast::Hasher::new();
            h.update(k);
            h.update(v);
            w.write_all(&h.finalize().to_le_bytes()).unwrap();
        }
    }
    w.into_inner().map_err(|e| e.into_error()).unwrap()
}

/// Reads a raw file through a 64 KiB `BufReader`, copying out every key and value; with
/// `crc`, checks each record's CRC. Returns (records, sum of key and value lengths).
pub fn raw_read(path: &Path, crc: bool) -> (usize, u64) {
    let mut r = BufReader::with_capacity(RAW_BUF, File::open(path).unwrap());
    let mut scratch = vec![0u8; 1 << 16];
    let mut len = [0u8; 4];
    let (mut count, mut sum) = (0usize, 0u64);
    loop {
        match r.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("{e}"),
        }
        let klen = u32::from_le_bytes(len) as usize;
        r.read_exact(&mut scratch[..klen]).unwrap();
        let mut h = crc.then(crc32fast::Hasher::new);
        if let Some(h) = h.as_mut() {
            h.update(&scratch[..klen]);
        }
        r.read_exact(&mut len).unwrap();
        let vlen = u32::from_le_bytes(len) as usize;
        r.read_exact(&mut scratch[..vlen]).unwrap();
        if let Some(mut h) = h {
            h.update(&scratch[..vlen]);
            r.read_exact(&mut len).unwrap();
            assert_eq!(h.finalize(), u32::from_le_bytes(len), "raw record {count} corrupt");
        }
        count += 1;
        sum += (klen + vlen) as u64;
    }
    (count, sum)
}
