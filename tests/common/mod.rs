//! Small helpers shared by the integration tests.
#![allow(dead_code)]

use brooklet::{LogRecord, PartitionLog, Record};

/// A fresh temporary directory, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

/// `n` records `key-{i}` / `value-{i}` with timestamps `base_ts + i`.
pub fn make_records(n: usize, base_ts: i64) -> Vec<Record> {
    (0..n)
        .map(|i| {
            Record::new()
                .key(format!("key-{i}"))
                .value(format!("value-{i}"))
                .timestamp(base_ts + i as i64)
        })
        .collect()
}

/// Every readable record from `from` to the visible end, through consecutive `read` calls of
/// `max_bytes` each (records of the first batch below `from` are skipped).
pub fn read_from(log: &PartitionLog, from: u64, max_bytes: usize) -> Vec<LogRecord> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let batches = log.read(next, max_bytes).expect("read");
        let Some(last) = batches.last() else { break };
        let after = last.last_offset() + 1;
        assert!(
            after > next,
            "read({next}) made no progress: last batch ends at {}",
            last.last_offset()
        );
        for batch in &batches {
            for record in batch.records() {
                let record = record.expect("decode record");
                if record.offset >= next {
                    out.push(record);
                }
            }
        }
        next = after;
    }
    out
}

/// Every readable record, from the log start offset to the visible end.
pub fn read_all(log: &PartitionLog) -> Vec<LogRecord> {
    read_from(log, log.log_start_offset(), 1 << 20)
}

/// SplitMix64: a small seeded generator, so a failing randomized test can be replayed.
pub struct Rng(pub u64);

impl Rng {
    /// The next pseudo-random value.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value below `n` (0 for `n` = 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A checkpoint file as `checkpoint.rs` documents it: magic, version, count, values, CRC.
pub fn checkpoint_bytes(version: u16, values: &[u64]) -> Vec<u8> {
    let mut out = b"BRKC".to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(values.len() as u16).to_le_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Sets the recovery point to `offset`, as a crash leaves it when the log was last synced
/// through `offset` (the point moves at a sync after a roll, and at a clean close).
pub fn synced_through(dir: &std::path::Path, offset: u64) {
    std::fs::write(dir.join("recovery-point"), checkpoint_bytes(1, &[offset])).unwrap();
}

/// Runs `f` while a child process, spawned from another thread, sits between its fork and
/// its exec (for a second), holding a copy of every descriptor this process has open — as
/// any process spawned by an application can, at any moment.
pub fn while_a_child_is_between_fork_and_exec(f: impl FnOnce()) {
    use std::io::{Read, Write};
    use std::os::unix::process::CommandExt;
    let (mut forked, mut in_child) = std::io::pipe().expect("create a pipe");
    let mut command = std::process::Command::new("true");
    // SAFETY: the closure runs in the forked child before exec and calls only `write(2)`
    // and `nanosleep(2)`, both async-signal-safe; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            in_child.write_all(b"x")?;
            std::thread::sleep(std::time::Duration::from_secs(1));
            Ok(())
        });
    }
    let spawner = std::thread::spawn(move || command.spawn().and_then(|mut child| child.wait()));
    let mut byte = [0u8; 1];
    forked.read_exact(&mut byte).expect("the child forked");
    f();
    let status = spawner.join().expect("the spawning thread").expect("spawn and wait");
    assert!(status.success(), "{status}");
}

/// A command that runs this test binary again as a child process, running only the ignored
/// test `test` (the child's side of a test with real processes), with the environment
/// variable `env` naming `dir`.
pub fn child_test(test: &str, env: &str, dir: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", test, "--ignored", "--nocapture", "--test-threads", "1"])
        .env(env, dir);
    command
}
