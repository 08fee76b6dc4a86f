//! Injected I/O errors and simulated power loss, through `brooklet::io::FaultFs`.
//!
//! Every test keeps a model of what the log acknowledged, crashes it (an injected error,
//! `FaultFs::power_loss`), reopens the directory with the real file system, and checks that
//! what survived is exactly a prefix of what was appended, that covers every acknowledged
//! `Synced` record.

use std::fs;
use std::path::Path;
use std::sync::Arc;

#[path = "common/gate.rs"]
mod gate;

use brooklet::io::{EIO, ENOSPC, Fault, FaultFs, FaultOp, PowerLoss};
use brooklet::{AppendInfo, Durability, Error, LogConfig, LogRecord, PartitionLog, Record};
use gate::{Gate, GateFs};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// splitmix64, for reproducible random workloads.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Batch number `b` of the fixed workloads: 1–5 records with varied keys, values (some
/// tombstones, 0–300 bytes), headers and explicit timestamps.
fn batch(b: u64) -> Vec<Record> {
    let count = 1 + (b * 7 % 5);
    (0..count)
        .map(|i| {
            let n = b * 10 + i;
            let mut r = Record::new().timestamp(1_000_000 + n as i64 * 10 - if i % 3 == 2 { 25 } else { 0 });
            if n % 4 != 3 {
                r = r.key(format!("key-{}", n % 7));
            }
            if n % 9 != 8 {
                let len = ((n * 37) % 300) as usize;
                r = r.value((0..len).map(|j| (n as usize * 31 + j) as u8).collect::<Vec<u8>>());
            }
            if n.is_multiple_of(3) {
                r = r.header("trace", format!("t{n}"));
            }
            r
        })
        .collect()
}

/// A random batch: 1–4 records, values of 0–400 bytes, optional keys and headers, timestamps
/// around `1_000_000 + 10 * first_offset_hint` with some disorder.
fn random_batch(rng: &mut Rng, first_offset_hint: u64) -> Vec<Record> {
    let count = 1 + rng.below(4);
    (0..count)
        .map(|i| {
            let ts = 1_000_000 + (first_offset_hint + i) as i64 * 10 - rng.below(30) as i64;
            let mut r = Record::new().timestamp(ts);
            if rng.below(4) != 0 {
                r = r.key(format!("k{}", rng.below(100)));
            }
            if rng.below(10) != 0 {
                let len = rng.below(400) as usize;
                let fill = rng.next() as u8;
                r = r.value((0..len).map(|j| fill.wrapping_add(j as u8)).collect::<Vec<u8>>());
            }
            if rng.below(3) == 0 {
                r = r.header("h", format!("{}", rng.next()));
            }
            r
        })
        .collect()
}

fn same_record(got: &LogRecord, want: &Record) -> bool {
    got.key.as_ref() == want.key_bytes()
        && got.value.as_ref() == want.value_bytes()
        && got.headers.as_slice() == want.headers()
        && Some(got.timestamp) == want.timestamp_ms()
}

/// Every record from `from` to the visible end, through reads of about 4 KiB; every read and
/// every record must succeed.
fn read_from(log: &PartitionLog, from: u64, ctx: &str) -> Vec<LogRecord> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let batches = log
            .read(next, 4096)
            .unwrap_or_else(|e| panic!("{ctx}: read({next}) failed: {e:?}"));
        let Some(last) = batches.last() else { break };
        let after = last.last_offset() + 1;
        assert!(after > next, "{ctx}: read({next}) made no progress");
        for b in &batches {
            for r in b.records() {
                let r =
                    r.unwrap_or_else(|e| panic!("{ctx}: a record of the batch at {} failed: {e:?}", b.base_offset()));
                if r.offset >= next {
                    out.push(r);
                }
            }
        }
        next = after;
    }
    assert_eq!(
        next,
        log.visible_end_offset(),
        "{ctx}: reads stopped before the visible end"
    );
    out
}

fn open_faulty(dir: &Path, config: &LogConfig) -> (FaultFs, brooklet::Result<PartitionLog>) {
    let disk = FaultFs::new();
    let log = PartitionLog::open_with_vfs(dir, config.clone(), Arc::new(disk.clone()));
    (disk, log)
}

fn raw_os_error(e: &Error) -> Option<i32> {
    e.io_error().and_then(std::io::Error::raw_os_error)
}

/// What a workload did, as the application saw it.
#[derive(Default)]
struct Model {
    /// The records at every offset the log handed out in this process, acknowledged or not
    /// (an append that failed after taking its offsets, e.g. at the fsync, is here too).
    history: Vec<Record>,
    /// The offset after each batch of `history`.
    batch_ends: Vec<u64>,
    /// Every record below this was acknowledged durable (a `Synced` append or a `flush`).
    durable_end: u64,
    /// Every acknowledged append.
    acks: Vec<(AppendInfo, Durability)>,
    /// The offset the next append gets when the history starts at a later log start.
    start: u64,
}

impl Model {
    fn end(&self) -> u64 {
        self.start + self.history.len() as u64
    }

    /// Appends through `log`, checking the offsets it hands out against the model.
    fn append(
        &mut self,
        log: &PartitionLog,
        records: Vec<Record>,
        durability: Durability,
    ) -> brooklet::Result<AppendInfo> {
        let before = log.log_end_offset();
        assert_eq!(before, self.end(), "log end before an append");
        let n = records.len() as u64;
        let result = log.append(&records, durability);
        let after = log.log_end_offset();
        match &result {
            Ok(info) => {
                assert_eq!((info.base_offset, info.last_offset), (before, before + n - 1));
                assert_eq!(after, before + n);
                self.acks.push((*info, durability));
                if durability == Durability::Synced {
                    self.durable_end = after;
                }
            }
            Err(e) => assert!(
                after == before || after == before + n,
                "a failed append ({e:?}) moved the end from {before} to {after}"
            ),
        }
        if after == before + n {
            self.history.extend(records);
            self.batch_ends.push(after);
        }
        result
    }

    fn flush(&mut self, log: &PartitionLog) -> brooklet::Result<()> {
        let end = log.log_end_offset();
        let result = log.flush();
        if result.is_ok() {
            self.durable_end = end;
        }
        result
    }

    /// The log, still open in this process, serves exactly the history up to its visible
    /// end.
    fn check_in_process(&self, log: &PartitionLog, ctx: &str) {
        let got = read_from(log, self.start, ctx);
        assert!(log.visible_end_offset() <= self.end(), "{ctx}");
        self.check_records(&got, ctx);
    }

    /// After a crash and reopen: the log holds a prefix of the history, ending at a batch
    /// boundary, that covers every acknowledged-durable record; offsets are dense from the
    /// log start and every batch reads back.
    fn check_recovered(&self, log: &PartitionLog, ctx: &str) {
        let end = log.log_end_offset();
        assert_eq!(log.log_start_offset(), self.start, "{ctx}: log start");
        assert!(
            end >= self.durable_end,
            "{ctx}: log end {end} lost acknowledged records below {}",
            self.durable_end
        );
        assert!(
            end <= self.end(),
            "{ctx}: log end {end} past the history end {}",
            self.end()
        );
        assert!(
            end == self.start || self.batch_ends.contains(&end),
            "{ctx}: log end {end} is not a batch boundary"
        );
        assert_eq!(log.visible_end_offset(), end, "{ctx}");
        let got = read_from(log, self.start, ctx);
        assert_eq!(got.len() as u64, end - self.start, "{ctx}: records read");
        self.check_records(&got, ctx);
        for (info, durability) in &self.acks {
            if *durability == Durability::Synced {
                assert!(info.last_offset < end, "{ctx}: synced ack {info:?} lost");
            }
        }
    }

    fn check_records(&self, got: &[LogRecord], ctx: &str) {
        for (i, r) in got.iter().enumerate() {
            let offset = self.start + i as u64;
            assert_eq!(r.offset, offset, "{ctx}: offsets are not dense");
            assert!(
                same_record(r, &self.history[i]),
                "{ctx}: offset {offset} holds {r:?}, not what was appended there"
            );
        }
    }
}

/// Reopens `dir` with the real file system after a crash and checks it against `model`;
/// then checks that the recovered log takes appends at its end.
fn reopen_and_check(dir: &Path, config: &LogConfig, model: &Model, ctx: &str) -> PartitionLog {
    let log = PartitionLog::open(dir, config.clone()).unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e:?}"));
    model.check_recovered(&log, ctx);
    let end = log.log_end_offset();
    let info = log
        .append(
            &[Record::new().value("after the crash").timestamp(7)],
            Durability::Synced,
        )
        .unwrap_or_else(|e| panic!("{ctx}: append after recovery failed: {e:?}"));
    assert_eq!(info.base_offset, end, "{ctx}");
    log
}

fn no_tmp_files(dir: &Path) -> bool {
    fs::read_dir(dir)
        .unwrap()
        .all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".tmp"))
}

// ---------------------------------------------------------------------------------------
// 1–3. Single injected errors
// ---------------------------------------------------------------------------------------

/// A write that fails with ENOSPC is rolled back: the append returns the OS error, the end
/// does not move, the next append takes the same offsets, and after a reopen everything
/// acknowledged is there and nothing of the failed append.
#[test]
fn enospc_on_append_is_rolled_back() {
    let config = LogConfig::default();
    for durability in [Durability::Written, Durability::Synced] {
        let ctx = format!("{durability:?}");
        let dir = tempfile::tempdir().unwrap();
        let (disk, log) = open_faulty(dir.path(), &config);
        let log = log.unwrap();
        let mut model = Model::default();
        for b in 0..5 {
            model.append(&log, batch(b), Durability::Written).unwrap();
        }
        let end = log.log_end_offset();
        let size = log.size_bytes();
        disk.inject(Fault {
            op: FaultOp::Write,
            nth: 1,
            errno: ENOSPC,
            forever: false,
        });
        let failed = vec![Record::new().key("lost").value("no space").timestamp(1)];
        let err = model.append(&log, failed, durability).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{ctx}: {err:?}");
        assert_eq!(raw_os_error(&err), Some(ENOSPC), "{ctx}");
        assert_eq!(log.log_end_offset(), end, "{ctx}");
        assert_eq!(log.visible_end_offset(), end, "{ctx}");
        assert_eq!(log.size_bytes(), size, "{ctx}: the half-written batch was not cut back");
        assert_eq!(
            fs::metadata(dir.path().join("00000000000000000000.log")).unwrap().len(),
            size
        );
        model.check_in_process(&log, &ctx);

        let info = model.append(&log, batch(5), durability).unwrap();
        assert_eq!(info.base_offset, end, "{ctx}");
        model.append(&log, batch(6), Durability::Written).unwrap();
        model.check_in_process(&log, &ctx);
        log.close().unwrap();

        let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        assert!(log.recovery_report().clean_shutdown, "{ctx}");
        model.check_recovered(&log, &ctx);
        assert_eq!(log.log_end_offset(), model.end(), "{ctx}");
    }
}

/// Reserving blocks ahead of the writes is a hint: with every reservation failing (ENOSPC),
/// appends past the point where the log reserves (1 MiB) still succeed, a roll and a close
/// still work, and a power loss keeps exactly what was synced. Without the fault the same
/// workload reserves, a few times rather than per write.
#[test]
fn failed_reservations_cost_nothing_but_speed() {
    let config = LogConfig::default().segment_bytes(2 * 1024 * 1024);
    let value = vec![7u8; 20_000];
    let workload = |log: &PartitionLog, model: &mut Model| {
        for b in 0..200u64 {
            let records: Vec<Record> = (0..5)
                .map(|i| Record::new().key(format!("k{b}-{i}")).value(value.clone()).timestamp(9))
                .collect();
            let durability = if b % 10 == 9 {
                Durability::Synced
            } else {
                Durability::Written
            };
            model.append(log, records, durability).unwrap();
        }
    };
    let reservations = {
        let dir = tempfile::tempdir().unwrap();
        let (disk, log) = open_faulty(dir.path(), &config);
        let log = log.unwrap();
        workload(&log, &mut Model::default());
        // 200 writes of ~100 kB fill nine 2 MiB segments and 60% of a tenth.
        assert_eq!(log.segment_count(), 10);
        disk.count(FaultOp::Preallocate)
    };
    // One per segment: the first write past 1 MiB reserves as much again as the segment
    // holds, which reaches `segment_bytes`.
    assert_eq!(reservations, 10, "reservations for 200 writes");

    let dir = tempfile::tempdir().unwrap();
    let (disk, log) = open_faulty(dir.path(), &config);
    disk.inject(Fault {
        op: FaultOp::Preallocate,
        nth: 1,
        errno: ENOSPC,
        forever: true,
    });
    let log = log.unwrap();
    let mut model = Model::default();
    workload(&log, &mut model);
    assert_eq!(
        disk.count(FaultOp::Preallocate),
        reservations,
        "the failures were retried per write"
    );
    model.check_in_process(&log, "reservations failing");
    disk.power_loss(PowerLoss::DropUnsynced);
    drop(log);
    reopen_and_check(dir.path(), &config, &model, "reservations failing, then power loss");
}

/// While every write fails with EIO, every append fails and changes nothing; the log stays
/// readable. Once the disk is back, appends continue at the same offsets (across a segment
/// roll), and a reopen finds everything acknowledged.
#[test]
fn eio_forever_on_writes_then_recovery() {
    let config = LogConfig::default().segment_bytes(4096);
    let dir = tempfile::tempdir().unwrap();
    let (disk, log) = open_faulty(dir.path(), &config);
    let log = log.unwrap();
    let mut model = Model::default();
    for b in 0..8 {
        model.append(&log, batch(b), Durability::Written).unwrap();
    }
    let end = log.log_end_offset();
    disk.inject(Fault {
        op: FaultOp::Write,
        nth: 1,
        errno: EIO,
        forever: true,
    });
    // Enough failing appends that one of them has to roll the segment.
    for b in 8..24 {
        let durability = if b % 2 == 0 {
            Durability::Written
        } else {
            Durability::Synced
        };
        let err = model.append(&log, batch(b), durability).unwrap_err();
        assert_eq!(raw_os_error(&err), Some(EIO), "append {b}: {err:?}");
        assert_eq!(log.log_end_offset(), end);
        model.check_in_process(&log, "while writes fail");
    }
    assert!(log.segment_count() >= 2, "no append rolled the segment");
    disk.clear_faults();
    for b in 24..40 {
        let durability = if b % 3 == 0 {
            Durability::Synced
        } else {
            Durability::Written
        };
        model.append(&log, batch(b), durability).unwrap();
    }
    assert!(model.history.len() as u64 > end);
    model.check_in_process(&log, "after the disk is back");
    log.close().unwrap();

    let log = PartitionLog::open(dir.path(), config).unwrap();
    model.check_recovered(&log, "reopened");
    assert_eq!(log.log_end_offset(), model.end());
}

/// A failed fsync poisons the log: the append returns the I/O error, every later append and
/// flush returns `Error::Poisoned`, reads still work. Reopening recovers what is on disk:
/// with the page cache intact (process crash) everything written; after a power loss
/// exactly what was synced.
#[test]
fn failed_fsync_poisons_until_reopen() {
    let config = LogConfig::default();
    for power_loss in [false, true] {
        let ctx = format!("power loss: {power_loss}");
        let dir = tempfile::tempdir().unwrap();
        let (disk, log) = open_faulty(dir.path(), &config);
        let log = log.unwrap();
        let mut model = Model::default();
        for b in 0..6 {
            let d = if b % 2 == 0 {
                Durability::Written
            } else {
                Durability::Synced
            };
            model.append(&log, batch(b), d).unwrap();
        }
        let durable = model.durable_end;
        assert_eq!(durable, model.end());
        model.append(&log, batch(6), Durability::Written).unwrap();
        disk.inject(Fault {
            op: FaultOp::Sync,
            nth: 1,
            errno: EIO,
            forever: false,
        });
        let err = model.append(&log, batch(7), Durability::Synced).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{ctx}: {err:?}");
        assert_eq!(raw_os_error(&err), Some(EIO), "{ctx}");
        // The fault was once-only: the disk works, but the log must not trust it.
        for d in [Durability::Buffered, Durability::Written, Durability::Synced] {
            match log.append(&[Record::new().value("refused")], d) {
                Err(Error::Poisoned { path }) => assert_eq!(path, dir.path(), "{ctx}"),
                other => panic!("{ctx}: {d:?} append on a poisoned log gave {other:?}"),
            }
        }
        match log.flush() {
            Err(Error::Poisoned { path }) => assert_eq!(path, dir.path(), "{ctx}"),
            other => panic!("{ctx}: flush on a poisoned log gave {other:?}"),
        }
        model.check_in_process(&log, &ctx);
        assert_eq!(log.visible_end_offset(), model.end(), "{ctx}");

        if power_loss {
            disk.power_loss(PowerLoss::DropUnsynced);
        }
        drop(log);
        let log = reopen_and_check(dir.path(), &config, &model, &ctx);
        assert!(
            !log.recovery_report().clean_shutdown,
            "{ctx}: a poisoned log left a marker"
        );
        // With the page cache intact everything written survives; after the power loss,
        // exactly what the last successful fsync covered.
        let expected_end = if power_loss { durable } else { model.end() };
        assert_eq!(log.recovery_report().log_end_offset, expected_end, "{ctx}");
    }
}

// ---------------------------------------------------------------------------------------
// 4. An error at the Nth operation, for every N
// ---------------------------------------------------------------------------------------

/// The fixed workload: 30 appends mixing Buffered, Written and Synced across a few 4 KiB
/// segments, a flush in the middle and one at the end. Stops at the first `Poisoned`.
fn fixed_workload(log: &PartitionLog, model: &mut Model) {
    for i in 0..30u64 {
        let durability = match i % 4 {
            1 => Durability::Synced,
            3 if i % 8 == 3 => Durability::Buffered,
            _ => Durability::Written,
        };
        if let Err(Error::Poisoned { .. }) = model.append(log, batch(i), durability) {
            return;
        }
        if i == 14 && matches!(model.flush(log), Err(Error::Poisoned { .. })) {
            return;
        }
    }
    let _ = model.flush(log);
}

/// SQLite-style: for every operation class and every N, the Nth operation of the workload
/// (counting from the open) fails once with EIO; also every Nth write with its rollback
/// failing too. Then power is lost. Whatever happened, the reopened log holds a prefix of
/// what was appended that covers every acknowledged `Synced` record, with dense offsets and
/// every batch readable.
#[test]
fn error_at_every_nth_operation_then_power_loss() {
    let config = LogConfig::default().segment_bytes(4096);
    // Count the operations of a clean run.
    let counts = {
        let dir = tempfile::tempdir().unwrap();
        let (disk, log) = open_faulty(dir.path(), &config);
        let log = log.unwrap();
        let mut model = Model::default();
        fixed_workload(&log, &mut model);
        assert!(log.segment_count() >= 3, "the workload should roll a few segments");
        assert_eq!(model.durable_end, model.end());
        let counts = [FaultOp::Write, FaultOp::Sync, FaultOp::Rename].map(|op| (op, disk.count(op)));
        log.close().unwrap();
        counts
    };
    let mut scenarios: Vec<(String, Vec<Fault>)> = Vec::new();
    for (op, count) in counts {
        assert!(count > 0, "{op:?} never happens");
        for nth in 1..=count {
            let fault = Fault {
                op,
                nth,
                errno: EIO,
                forever: false,
            };
            scenarios.push((format!("{op:?} #{nth} of {count} fails"), vec![fault]));
            if op == FaultOp::Write {
                let rollback = Fault {
                    op: FaultOp::SetLen,
                    nth: 1,
                    errno: EIO,
                    forever: false,
                };
                scenarios.push((format!("write #{nth} and its rollback fail"), vec![fault, rollback]));
            }
        }
    }
    for (ctx, faults) in &scenarios {
        let dir = tempfile::tempdir().unwrap();
        let disk = FaultFs::new();
        for f in faults {
            disk.inject(*f);
        }
        let mut model = Model::default();
        match PartitionLog::open_with_vfs(dir.path(), config.clone(), Arc::new(disk.clone())) {
            Ok(log) => {
                fixed_workload(&log, &mut model);
                model.check_in_process(&log, ctx);
                disk.power_loss(PowerLoss::DropUnsynced);
                drop(log);
            }
            Err(e) => {
                assert!(matches!(e, Error::Io { .. }), "{ctx}: open gave {e:?}");
                disk.power_loss(PowerLoss::DropUnsynced);
            }
        }
        reopen_and_check(dir.path(), &config, &model, ctx);
        assert!(no_tmp_files(dir.path()), "{ctx}: temp files left after open");
    }
}

/// Errors while recovering: a crashed log (torn tail, a later segment to delete) is opened
/// with the Nth operation failing; whether that open fails or not, a power loss and a
/// reopen still recover exactly the synced records.
#[test]
fn error_at_every_nth_operation_during_recovery() {
    let config = LogConfig::default().segment_bytes(4096);
    // A crashed directory, built from a cleanly closed log: the second-to-last segment ends
    // in a torn batch, and the marker and recovery point are gone.
    let template = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    {
        let log = PartitionLog::open(template.path(), config.clone()).unwrap();
        for b in 0..40 {
            model.append(&log, batch(b), Durability::Written).unwrap();
        }
        log.close().unwrap();
    }
    let mut bases: Vec<u64> = fs::read_dir(template.path())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".log").and_then(|s| s.parse().ok())
        })
        .collect();
    bases.sort_unstable();
    assert!(bases.len() >= 4);
    // Cut the second-to-last segment inside its last batch; the last segment then follows a
    // gap and must be deleted. Without a recovery point, every segment is scanned.
    let victim = template.path().join(format!("{:020}.log", bases[bases.len() - 2]));
    let victim_len = fs::metadata(&victim).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_len(victim_len - 10)
        .unwrap();
    fs::remove_file(template.path().join("clean-shutdown")).unwrap();
    fs::remove_file(template.path().join("recovery-point")).unwrap();
    // What a recovery keeps: every batch that ends before the cut.
    let survivors = {
        let scratch = tempfile::tempdir().unwrap();
        copy_dir(template.path(), scratch.path());
        let log = PartitionLog::open(scratch.path(), config.clone()).unwrap();
        assert!(log.recovery_report().truncation.is_some());
        assert_eq!(log.recovery_report().segments_deleted, vec![bases[bases.len() - 1]]);
        log.log_end_offset()
    };
    let counts = {
        let scratch = tempfile::tempdir().unwrap();
        copy_dir(template.path(), scratch.path());
        let (disk, log) = open_faulty(scratch.path(), &config);
        drop(log.unwrap());
        [FaultOp::Write, FaultOp::Sync, FaultOp::Rename, FaultOp::SetLen].map(|op| (op, disk.count(op)))
    };
    let recovered = Model {
        history: model.history[..survivors as usize].to_vec(),
        batch_ends: model.batch_ends.iter().copied().filter(|e| *e <= survivors).collect(),
        durable_end: survivors,
        ..Model::default()
    };
    for (op, count) in counts {
        for nth in 1..=count {
            let ctx = format!("recovery with {op:?} #{nth} of {count} failing");
            let dir = tempfile::tempdir().unwrap();
            copy_dir(template.path(), dir.path());
            let disk = FaultFs::new();
            disk.inject(Fault {
                op,
                nth,
                errno: EIO,
                forever: false,
            });
            match PartitionLog::open_with_vfs(dir.path(), config.clone(), Arc::new(disk.clone())) {
                Ok(log) => {
                    recovered.check_recovered(&log, &ctx);
                    disk.power_loss(PowerLoss::DropUnsynced);
                    drop(log);
                }
                Err(e) => {
                    assert!(matches!(e, Error::Io { .. }), "{ctx}: open gave {e:?}");
                    disk.power_loss(PowerLoss::DropUnsynced);
                }
            }
            let log = PartitionLog::open(dir.path(), config.clone()).unwrap_or_else(|e| panic!("{ctx}: {e:?}"));
            // Only the batch cut in two is lost; the segment after the gap is gone.
            assert_eq!(log.log_end_offset(), survivors, "{ctx}");
            recovered.check_recovered(&log, &ctx);
            assert!(
                !dir.path().join(format!("{:020}.log", bases[bases.len() - 1])).exists(),
                "{ctx}: the segment after the gap survived"
            );
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------
// 5. Power loss at random points
// ---------------------------------------------------------------------------------------

/// Runs a random workload for `seed` on a fresh FaultFs-backed log in `dir` and cuts the
/// power at a random point, keeping a random torn subset of the unsynced writes. Returns the
/// model of what was acknowledged.
fn random_crash(dir: &Path, config: &LogConfig, seed: u64) -> Model {
    let mut rng = Rng(seed);
    let (disk, log) = open_faulty(dir, config);
    let log = log.unwrap();
    let mut model = Model::default();
    let steps = 1 + rng.below(60);
    for _ in 0..steps {
        match rng.below(20) {
            0 => model.flush(&log).unwrap(),
            1..=4 => {
                let records = random_batch(&mut rng, model.end());
                model.append(&log, records, Durability::Buffered).unwrap();
            }
            5..=12 => {
                let records = random_batch(&mut rng, model.end());
                model.append(&log, records, Durability::Written).unwrap();
            }
            _ => {
                let records = random_batch(&mut rng, model.end());
                model.append(&log, records, Durability::Synced).unwrap();
            }
        }
    }
    disk.power_loss(PowerLoss::Torn { seed });
    drop(log);
    model
}

/// Power is lost at a random point of a random workload (random durabilities and sizes,
/// 4 KiB segments that roll), keeping a random torn prefix of each file's unsynced writes:
/// every `Synced` record survives intact, the log reads end to end, and it ends at a batch
/// boundary at or after the last synced acknowledgement.
#[test]
fn power_loss_at_random_points_keeps_synced_data() {
    let config = LogConfig::default().segment_bytes(4096);
    let mut truncations = 0;
    for seed in 0..200u64 {
        let ctx = format!("seed {seed} (replay: random_crash(dir, config, {seed}))");
        let dir = tempfile::tempdir().unwrap();
        let model = random_crash(dir.path(), &config, seed);
        let log = reopen_and_check(dir.path(), &config, &model, &ctx);
        truncations += usize::from(log.recovery_report().truncation.is_some());
    }
    // The torn states really exercise the cut.
    assert!(
        truncations > 20,
        "only {truncations} of 200 crashes needed a truncation"
    );
}

/// After the same random crashes, `offset_for_timestamp` still gives the first offset whose
/// timestamp is ≥ the target (compared with a brute-force search of what survived). Index
/// files of sealed segments are caches written without fsync, so a crash can tear them; they
/// must not make the answers wrong.
#[test]
fn power_loss_at_random_points_keeps_time_lookups_correct() {
    let config = LogConfig::default().segment_bytes(4096).index_interval_bytes(64);
    let mut wrong = Vec::new();
    for seed in 0..200u64 {
        let dir = tempfile::tempdir().unwrap();
        random_crash(dir.path(), &config, seed);
        let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        let records = read_from(&log, 0, &format!("seed {seed}"));
        let mut targets: Vec<i64> = records.iter().flat_map(|r| [r.timestamp, r.timestamp + 1]).collect();
        targets.sort_unstable();
        targets.dedup();
        for t in targets {
            let want = records.iter().find(|r| r.timestamp >= t).map(|r| r.offset);
            let got = log.offset_for_timestamp(t).unwrap();
            if got != want {
                wrong.push(format!(
                    "seed {seed}: offset_for_timestamp({t}) = {got:?}, want {want:?}"
                ));
                break;
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} crashes gave wrong answers: {wrong:#?}",
        wrong.len()
    );
}

// ---------------------------------------------------------------------------------------
// 6. Power loss right after a roll, and around retention
// ---------------------------------------------------------------------------------------

/// The index of the first append of `batch(0..)` that rolls a 4 KiB segment, and of the
/// first that moves the log start under `config`.
fn first_roll_and_retention(config: &LogConfig) -> (u64, Option<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    let mut roll = None;
    for b in 0..80 {
        let segments = log.segment_count();
        log.append(&batch(b), Durability::Written).unwrap();
        if roll.is_none() && log.segment_count() > segments {
            roll = Some(b);
        }
        if log.log_start_offset() > 0 {
            return (roll.unwrap(), Some(b));
        }
    }
    (roll.unwrap(), None)
}

/// Power is lost right after an append that rolled the segment (the new segment's file may
/// not be durable yet): synced data survives, and a synced rolling append survives whole.
#[test]
fn power_loss_right_after_a_roll() {
    let config = LogConfig::default().segment_bytes(4096);
    let (roll, _) = first_roll_and_retention(&config);
    for rolling in [Durability::Written, Durability::Synced] {
        for mode in [
            PowerLoss::DropUnsynced,
            PowerLoss::Torn { seed: 1 },
            PowerLoss::Torn { seed: 2 },
        ] {
            for before in [Durability::Written, Durability::Synced] {
                let ctx = format!("rolling append {rolling:?} after {before:?} appends, {mode:?}");
                let dir = tempfile::tempdir().unwrap();
                let (disk, log) = open_faulty(dir.path(), &config);
                let log = log.unwrap();
                let mut model = Model::default();
                for b in 0..roll {
                    model.append(&log, batch(b), before).unwrap();
                }
                assert_eq!(log.segment_count(), 1, "{ctx}");
                model.append(&log, batch(roll), rolling).unwrap();
                assert_eq!(log.segment_count(), 2, "{ctx}");
                disk.power_loss(mode);
                drop(log);
                let log = reopen_and_check(dir.path(), &config, &model, &ctx);
                if rolling == Durability::Synced {
                    assert_eq!(log.recovery_report().log_end_offset, model.end(), "{ctx}");
                }
            }
        }
    }
}

/// Protects: a `Synced` append whose records were fsynced is acknowledged even if moving
/// the recovery point afterwards fails (it is only an optimisation: a stale one means more
/// to scan at the next unclean open). Reporting `Io` there made producers retry records that
/// were already durable, i.e. duplicate them. The failed checkpoint is retried at the next
/// sync, so the recovery scan after a power loss starts from the new segment.
#[test]
fn a_synced_append_is_acknowledged_when_only_the_recovery_point_fails_to_persist() {
    let config = LogConfig::default().segment_bytes(4096);
    let (roll, _) = first_roll_and_retention(&config);
    // The rolling append ends with the checkpoint: write, sync and rename of its temp
    // file, then a sync of the directory. Count the operations of a clean run.
    let ops = [FaultOp::Write, FaultOp::Sync, FaultOp::Rename];
    let in_rolling_append = {
        let dir = tempfile::tempdir().unwrap();
        let (disk, log) = open_faulty(dir.path(), &config);
        let log = log.unwrap();
        for b in 0..roll {
            log.append(&batch(b), Durability::Written).unwrap();
        }
        let before = ops.map(|op| disk.count(op));
        log.append(&batch(roll), Durability::Synced).unwrap();
        ops.map(|op| disk.count(op))
            .iter()
            .zip(before)
            .map(|(a, b)| a - b)
            .collect::<Vec<u64>>()
    };
    for (op, count) in ops.into_iter().zip(in_rolling_append) {
        let ctx = format!("{op:?} of the recovery-point checkpoint fails");
        let dir = tempfile::tempdir().unwrap();
        let (disk, log) = open_faulty(dir.path(), &config);
        let log = log.unwrap();
        let mut model = Model::default();
        for b in 0..roll {
            model.append(&log, batch(b), Durability::Written).unwrap();
        }
        // The checkpoint's last write and rename; the sync of its temp file comes before
        // the directory's.
        let nth = if op == FaultOp::Sync { count - 1 } else { count };
        disk.inject(Fault {
            op,
            nth,
            errno: EIO,
            forever: false,
        });
        // The failed rename counts as one.
        let renames = disk.count(FaultOp::Rename) + u64::from(op == FaultOp::Rename);
        let info = model.append(&log, batch(roll), Durability::Synced);
        assert!(info.is_ok(), "{ctx}: {info:?}");
        assert_eq!(log.segment_count(), 2, "{ctx}");
        assert_eq!(log.synced_end_offset(), model.end(), "{ctx}");
        assert_eq!(
            disk.count(FaultOp::Rename),
            renames,
            "{ctx}: the checkpoint was renamed"
        );
        // The next sync retries the checkpoint (one rename); the one after has nothing to do.
        model.append(&log, batch(roll + 1), Durability::Synced).unwrap();
        assert_eq!(disk.count(FaultOp::Rename), renames + 1, "{ctx}: not retried");
        model.append(&log, batch(roll + 2), Durability::Synced).unwrap();
        assert_eq!(disk.count(FaultOp::Rename), renames + 1, "{ctx}");
        disk.power_loss(PowerLoss::DropUnsynced);
        drop(log);
        let log = reopen_and_check(dir.path(), &config, &model, &ctx);
        assert_eq!(log.recovery_report().log_end_offset, model.end(), "{ctx}");
        assert_eq!(
            log.recovery_report().segments_scanned,
            1,
            "{ctx}: scanned from a stale recovery point"
        );
    }
}

/// A stale (older, checksum-valid) index after a power loss. Phase 1 writes a record two
/// hours old and closes cleanly: segment 0's index files are fsynced, saying "max timestamp
/// = 2 h ago, log of N bytes". Phase 2 appends a recent record to segment 0 and rolls (all
/// `Synced`): the roll rewrites segment 0's index files in place without fsync. Power loss
/// reverts them to the phase-1 version, still well-formed; recovery scans only from the
/// recovery point (segment 1), so segment 0's index is loaded from its files, lazily.
/// Returns the directory, its config (1 h time retention) and the recent timestamp.
fn stale_time_index_after_power_loss() -> (tempfile::TempDir, LogConfig, i64) {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig::default()
        .segment_bytes(4096)
        .retention_ms(Some(std::time::Duration::from_secs(3600)));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let old = now - 2 * 3600 * 1000;

    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    log.append(&[Record::new().timestamp(old).value("old")], Durability::Synced)
        .unwrap();
    log.close().unwrap();

    let (disk, log) = open_faulty(dir.path(), &config);
    let log = log.unwrap();
    assert!(log.recovery_report().clean_shutdown);
    log.append(&[Record::new().timestamp(now).value("recent")], Durability::Synced)
        .unwrap();
    // Does not fit in the 4 KiB segment: rolls, sealing segment 0 (max timestamp = now).
    let info = log
        .append(
            &[Record::new().timestamp(now).value(vec![7u8; 3900])],
            Durability::Synced,
        )
        .unwrap();
    assert_eq!(info.base_offset, 2);
    assert_eq!(log.segment_count(), 2);
    assert_eq!(log.log_start_offset(), 0, "segment 0 holds a recent record: kept");
    disk.power_loss(PowerLoss::DropUnsynced);
    drop(log);
    (dir, config, now)
}

/// Protects: time retention after a power loss never deletes a segment holding recent
/// `Synced` records because of a stale time index. Index files record the exact `.log`
/// length (and next offset) they describe, and one describing another is rebuilt.
#[test]
fn time_retention_after_power_loss_keeps_a_segment_with_recent_synced_records() {
    let (dir, config, _) = stale_time_index_after_power_loss();
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert!(!log.recovery_report().clean_shutdown);
    assert_eq!(log.log_end_offset(), 3, "every Synced record survived the power loss");
    let report = log.enforce_retention().unwrap();
    assert_eq!(report.segments_deleted, Vec::<u64>::new(), "{report:?}");
    assert_eq!(log.log_start_offset(), 0);
    let values: Vec<(u64, Option<Vec<u8>>)> = read_from(&log, 0, "after retention")
        .into_iter()
        .map(|r| (r.offset, r.value.map(|v| v.to_vec())))
        .collect();
    assert_eq!(values.len(), 3);
    assert_eq!(values[0], (0, Some(b"old".to_vec())));
    assert_eq!(values[1], (1, Some(b"recent".to_vec())));
}

/// Protects: `offset_for_timestamp` after the same power loss finds the recent record in
/// the sealed segment, instead of skipping the segment on its stale max timestamp.
#[test]
fn offset_for_timestamp_after_power_loss_finds_recent_record_in_sealed_segment() {
    let (dir, config, now) = stale_time_index_after_power_loss();
    let log = PartitionLog::open(dir.path(), config.retention_ms(None)).unwrap();
    assert_eq!(log.offset_for_timestamp(now - 60_000).unwrap(), Some(1));
    assert_eq!(log.offset_for_timestamp(now).unwrap(), Some(1));
    assert_eq!(log.offset_for_timestamp(now + 1).unwrap(), None);
}

/// Retention persists the new log start before deleting segments. Power is lost right after
/// a retention, and — with every operation of the append that triggers it failing in turn —
/// in the middle of one: the reopened log start is the old or the new one, never one whose
/// data is gone; reading from it works, and every synced record at or after it survives.
#[test]
fn power_loss_around_retention() {
    let config = LogConfig::default().segment_bytes(4096).retention_bytes(Some(8192));
    let (_, retention) = first_roll_and_retention(&config);
    let retention = retention.expect("the workload should trigger retention");
    // Log start before and after, and the operations of the triggering append.
    let (old_start, new_start, counts) = {
        let dir = tempfile::tempdir().unwrap();
        let (disk, log) = open_faulty(dir.path(), &config);
        let log = log.unwrap();
        for b in 0..retention {
            log.append(&batch(b), Durability::Synced).unwrap();
        }
        let old = log.log_start_offset();
        let before = [FaultOp::Write, FaultOp::Sync, FaultOp::Rename].map(|op| disk.count(op));
        log.append(&batch(retention), Durability::Synced).unwrap();
        let new = log.log_start_offset();
        let counts = [FaultOp::Write, FaultOp::Sync, FaultOp::Rename]
            .iter()
            .zip(before)
            .map(|(op, b)| (*op, disk.count(*op) - b))
            .collect::<Vec<_>>();
        (old, new, counts)
    };
    assert!(new_start > old_start);

    let mut scenarios: Vec<(String, Option<Fault>, PowerLoss)> = vec![
        ("no error".into(), None, PowerLoss::DropUnsynced),
        ("no error".into(), None, PowerLoss::Torn { seed: 3 }),
    ];
    for (op, count) in counts {
        for nth in 1..=count {
            let fault = Fault {
                op,
                nth,
                errno: EIO,
                forever: false,
            };
            scenarios.push((
                format!("{op:?} #{nth} of {count} fails"),
                Some(fault),
                PowerLoss::DropUnsynced,
            ));
        }
    }
    for (what, fault, mode) in &scenarios {
        let ctx = format!("retention append, {what}, then {mode:?}");
        let dir = tempfile::tempdir().unwrap();
        let (disk, log) = open_faulty(dir.path(), &config);
        let log = log.unwrap();
        let mut model = Model::default();
        for b in 0..retention {
            model.append(&log, batch(b), Durability::Synced).unwrap();
        }
        if let Some(f) = fault {
            disk.inject(*f);
        }
        let _ = model.append(&log, batch(retention), Durability::Synced);
        let start_in_process = log.log_start_offset();
        assert!([old_start, new_start].contains(&start_in_process), "{ctx}");
        disk.power_loss(*mode);
        drop(log);

        let log = PartitionLog::open(dir.path(), config.clone()).unwrap_or_else(|e| panic!("{ctx}: {e:?}"));
        let start = log.log_start_offset();
        assert!(
            start == old_start || start == new_start,
            "{ctx}: log start {start}, expected {old_start} or {new_start}"
        );
        // A start the log acted on was persisted first, so it is never lost.
        if start_in_process == new_start {
            assert_eq!(start, new_start, "{ctx}: the log start moved backwards");
        }
        if start < log.log_end_offset() {
            let batches = log
                .read(start, 1)
                .unwrap_or_else(|e| panic!("{ctx}: read({start}): {e:?}"));
            assert_eq!(batches.first().map(|b| b.base_offset()), Some(start), "{ctx}");
        }
        // Compare from the recovered start: the model's history starts at 0.
        let skipped = start as usize;
        let from_start = Model {
            history: model.history[skipped..].to_vec(),
            batch_ends: model.batch_ends.clone(),
            durable_end: model.durable_end,
            acks: model
                .acks
                .iter()
                .copied()
                .filter(|(i, _)| i.base_offset >= start)
                .collect(),
            start,
        };
        from_start.check_recovered(&log, &ctx);
        for base in 0..start {
            assert!(
                !dir.path().join(format!("{base:020}.log")).exists(),
                "{ctx}: segment {base} below the log start is still there"
            );
        }
    }
}

/// `truncate_to` syncs its cut before returning: after a power loss right after it (and
/// after synced appends that reuse the cut offsets), the truncated records never come back,
/// the segments after the cut stay deleted, and the new synced records are the ones at
/// those offsets.
#[test]
fn power_loss_after_truncate_to() {
    let config = LogConfig::default().segment_bytes(4096);
    for mode in [
        PowerLoss::DropUnsynced,
        PowerLoss::Torn { seed: 5 },
        PowerLoss::Torn { seed: 6 },
    ] {
        for appends_after in [0u64, 3] {
            let ctx = format!("{appends_after} synced appends after truncate_to, {mode:?}");
            let dir = tempfile::tempdir().unwrap();
            let (disk, log) = open_faulty(dir.path(), &config);
            let log = log.unwrap();
            let mut model = Model::default();
            for b in 0..40 {
                model.append(&log, batch(b), Durability::Synced).unwrap();
            }
            let segments = log.segment_count();
            assert!(segments >= 4, "{ctx}");
            // Cut at a batch boundary in the second segment.
            let cut = *model.batch_ends.iter().find(|e| **e > model.end() / 4).unwrap();
            assert_eq!(log.truncate_to(cut).unwrap(), cut, "{ctx}");
            model.history.truncate(cut as usize);
            model.batch_ends.retain(|e| *e <= cut);
            model.durable_end = model.durable_end.min(cut);
            model.acks.retain(|(i, _)| i.last_offset < cut);
            assert!(log.segment_count() < segments, "{ctx}");
            for b in 100..100 + appends_after {
                model.append(&log, batch(b), Durability::Synced).unwrap();
            }
            disk.power_loss(mode);
            drop(log);
            let log = reopen_and_check(dir.path(), &config, &model, &ctx);
            assert_eq!(log.recovery_report().log_end_offset, model.end(), "{ctx}");
        }
    }
}

/// Protects: a recovery-point checkpoint that failed only at its final directory sync was
/// already renamed into place, so the file may hold the new, higher point (and the next
/// sync of the directory makes it durable). A later `truncate_to` below that point must
/// lower it: otherwise the next unclean open finds the log ending below a recovery point
/// that claims its records were synced, and refuses a healthy directory as damaged.
#[test]
fn truncate_to_lowers_a_recovery_point_whose_checkpoint_failed_after_its_rename() {
    let config = LogConfig::default().segment_bytes(4096);
    let (roll, _) = first_roll_and_retention(&config);
    let dir = tempfile::tempdir().unwrap();
    let (disk, log) = open_faulty(dir.path(), &config);
    let log = log.unwrap();
    let mut model = Model::default();
    for b in 0..roll + 3 {
        model.append(&log, batch(b), Durability::Written).unwrap();
    }
    assert_eq!(log.segment_count(), 2);
    // The flush syncs the sealed segment, the active one and the directory (the roll made
    // a file), then moves the recovery point: sync of the checkpoint's temp file, rename,
    // sync of the directory. Only that last sync fails.
    disk.inject(Fault {
        op: FaultOp::Sync,
        nth: 5,
        errno: EIO,
        forever: false,
    });
    let renames = disk.count(FaultOp::Rename);
    let syncs = disk.count(FaultOp::Sync);
    model.flush(&log).unwrap();
    assert_eq!(
        disk.count(FaultOp::Sync),
        syncs + 5,
        "the directory sync after the rename failed"
    );
    assert_eq!(
        disk.count(FaultOp::Rename),
        renames + 1,
        "the new recovery point was renamed into place"
    );
    // Cut inside the first segment: deleting the second one syncs the directory, which makes
    // the renamed checkpoint durable too.
    let cut = *model.batch_ends.iter().find(|e| **e > model.end() / 4).unwrap();
    assert!(
        cut < model.batch_ends[roll as usize - 1],
        "the cut is in the first segment"
    );
    assert_eq!(log.truncate_to(cut).unwrap(), cut);
    assert_eq!(log.segment_count(), 1);
    model.history.truncate(cut as usize);
    model.batch_ends.retain(|e| *e <= cut);
    model.durable_end = model.durable_end.min(cut);
    model.acks.retain(|(i, _)| i.last_offset < cut);
    disk.power_loss(PowerLoss::DropUnsynced);
    drop(log);
    let log = reopen_and_check(dir.path(), &config, &model, "after the truncation");
    assert_eq!(log.recovery_report().log_end_offset, cut);
}

/// Protects: a segment whose files a retention deletion failed to remove is deleted by
/// the next retention check, not left on disk (and out of `size_bytes`) until the log is
/// reopened. Retention takes two segments; removing the second one's `.log` fails once.
#[test]
fn a_failed_retention_deletion_is_retried_by_the_next_check() {
    let config = LogConfig::default().segment_bytes(4096);
    let dir = tempfile::tempdir().unwrap();
    let (disk, log) = open_faulty(dir.path(), &config);
    let log = log.unwrap();
    let mut b = 0;
    while log.segment_count() < 4 {
        log.append(&batch(b), Durability::Written).unwrap();
        b += 1;
    }
    let end = log.log_end_offset();
    let bases: Vec<u64> = segment_files(dir.path());
    assert_eq!(bases.len(), 4, "{bases:?}");
    let size_of = |base: u64| fs::metadata(dir.path().join(format!("{base:020}.log"))).unwrap().len();
    let (first, second) = (size_of(bases[0]), size_of(bases[1]));
    let before = log.size_bytes();
    // Keep only the last two segments.
    let keep = before - first - second;
    log.set_config(config.clone().retention_bytes(Some(keep))).unwrap();
    // Removals 1–3 are the first segment's .log, .index and .timeindex; the 4th is the
    // second segment's .log.
    disk.inject(Fault {
        op: FaultOp::Remove,
        nth: 4,
        errno: EIO,
        forever: false,
    });
    let err = log.enforce_retention().unwrap_err();
    assert_eq!(raw_os_error(&err), Some(EIO), "{err}");
    assert!(err.to_string().contains(&format!("{:020}.log", bases[1])), "{err}");
    // Both segments are out of the log; the second one's files are still there, and counted.
    assert_eq!(log.log_start_offset(), bases[2]);
    assert_eq!(log.segment_count(), 2);
    assert_eq!(segment_files(dir.path()), bases[1..].to_vec());
    assert_eq!(log.size_bytes(), before - first);

    // The next check deletes them, and reports it.
    let report = log.enforce_retention().unwrap();
    assert_eq!(report.segments_deleted, vec![bases[1]]);
    assert_eq!(report.bytes_deleted, second);
    assert_eq!(report.log_start_offset, bases[2]);
    assert_eq!(segment_files(dir.path()), bases[2..].to_vec());
    assert_eq!(log.size_bytes(), keep);
    let read = read_from(&log, bases[2], "after the retried deletion");
    assert_eq!(read.first().map(|r| r.offset), Some(bases[2]));
    assert_eq!(read.last().map(|r| r.offset), Some(end - 1));
}

/// The base offsets of the segment files (`.log`, `.index` or `.timeindex`) in `dir`,
/// sorted and deduplicated.
fn segment_files(dir: &Path) -> Vec<u64> {
    let mut bases: Vec<u64> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let (stem, ext) = name.split_once('.')?;
            ["log", "index", "timeindex"]
                .contains(&ext)
                .then(|| stem.parse().ok())
                .flatten()
        })
        .collect();
    bases.sort_unstable();
    bases.dedup();
    bases
}

// ---------------------------------------------------------------------------------------
// 7. Errors at close
// ---------------------------------------------------------------------------------------

/// A checkpoint rename at close fails with ENOSPC: close returns that error and leaves no
/// clean-shutdown marker (as documented), and the reopened log recovers with all the data.
/// Checked with everything synced before close, and with unsynced sealed segments (whose
/// flush at close moves the recovery point too).
#[test]
fn enospc_renaming_a_checkpoint_at_close() {
    let config = LogConfig::default().segment_bytes(4096);
    for synced_before in [true, false] {
        let run = |fault: Option<Fault>| {
            let dir = tempfile::tempdir().unwrap();
            let (disk, log) = open_faulty(dir.path(), &config);
            let log = log.unwrap();
            let mut model = Model::default();
            for b in 0..20 {
                model.append(&log, batch(b), Durability::Written).unwrap();
            }
            assert!(log.segment_count() >= 2);
            if synced_before {
                model.flush(&log).unwrap();
            }
            let renames_before = disk.count(FaultOp::Rename);
            if let Some(f) = fault {
                disk.inject(f);
            }
            let result = log.close();
            (dir, model, result, disk.count(FaultOp::Rename) - renames_before)
        };
        let (_, _, result, renames) = run(None);
        result.unwrap();
        assert!(renames >= 2, "close renamed {renames} checkpoints");
        for nth in 1..=renames {
            let ctx = format!("rename #{nth} of {renames} at close fails, synced before: {synced_before}");
            let (dir, model, result, _) = run(Some(Fault {
                op: FaultOp::Rename,
                nth,
                errno: ENOSPC,
                forever: false,
            }));
            let err = result.expect_err(&ctx);
            assert!(matches!(err, Error::Io { .. }), "{ctx}: {err:?}");
            assert_eq!(raw_os_error(&err), Some(ENOSPC), "{ctx}");
            let log = PartitionLog::open(dir.path(), config.clone()).unwrap_or_else(|e| panic!("{ctx}: {e:?}"));
            assert!(
                !log.recovery_report().clean_shutdown,
                "{ctx}: close failed, yet the next open found a clean-shutdown marker"
            );
            model.check_recovered(&log, &ctx);
            assert_eq!(log.log_end_offset(), model.end(), "{ctx}");
            assert!(no_tmp_files(dir.path()), "{ctx}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 8. Truncation interrupted at every step
// ---------------------------------------------------------------------------------------

/// How a test stops the "machine" after an interrupted call.
#[derive(Debug, Clone, Copy)]
enum Crash {
    /// The process dies: the files stay exactly as the call left them.
    Process,
    /// The power fails: only what was synced is certain.
    Power(PowerLoss),
}

/// Names and lengths of the segment files in `dir`.
fn log_files(dir: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    files.sort();
    files
}

/// One truncation scenario: builds a log, then names the offset to truncate to, the end the
/// call must leave, and the model to check the reopened log against (its records from the
/// expected log start, with every record that must survive acknowledged durable).
struct TruncationCase {
    name: &'static str,
    setup: fn(&PartitionLog, &mut Model) -> u64,
}

/// Appends 40 synced batches over several 4 KiB segments and picks a cut at a batch
/// boundary in the second segment.
fn setup_cut(log: &PartitionLog, model: &mut Model) -> u64 {
    for b in 0..40 {
        model.append(log, batch(b), Durability::Synced).unwrap();
    }
    assert!(log.segment_count() >= 4);
    *model.batch_ends.iter().find(|e| **e > model.end() / 4).unwrap()
}

/// As `setup_cut`, then moves the log start inside a batch of the second segment and
/// truncates at it: the batch holding the offset starts below the log start, so the log
/// restarts empty at the log start.
fn setup_restart(log: &PartitionLog, model: &mut Model) -> u64 {
    setup_cut(log, model);
    let end = *model.batch_ends.iter().find(|e| **e > model.end() / 4).unwrap();
    // A batch of at least two records that ends at or after `end`.
    let i = model
        .batch_ends
        .iter()
        .position(|e| *e >= end && model.batch_ends.windows(2).any(|w| w[1] == *e && w[1] - w[0] >= 2))
        .unwrap();
    let start = model.batch_ends[i] - 1;
    assert_eq!(log.delete_records_before(start).unwrap(), start);
    start
}

/// `truncate_to` fails at each of its writes, syncs, renames and truncations in turn (and
/// does not fail at all), then the process dies or the power fails. In process: the call
/// either succeeds, or fails leaving the log usable and unchanged, or — once it deleted or
/// cut a file — fails and poisons the log. After reopening: the log is the old one cut at a
/// batch boundary at or after the requested end (exactly there if the call succeeded), with
/// no hole, every record readable, and every synced record below the end still there. Both
/// the ordinary cut and the restart-empty-at-the-log-start case are covered.
#[test]
fn truncate_to_interrupted_at_every_step_leaves_a_prefix() {
    let config = LogConfig::default().segment_bytes(4096);
    let ops = [FaultOp::Write, FaultOp::Sync, FaultOp::Rename, FaultOp::SetLen];
    let cases = [
        TruncationCase {
            name: "cut",
            setup: setup_cut,
        },
        TruncationCase {
            name: "restart at the log start",
            setup: setup_restart,
        },
    ];
    for case in &cases {
        // How many operations of each class a truncation runs.
        let counts: Vec<(FaultOp, u64)> = {
            let dir = tempfile::tempdir().unwrap();
            let (disk, log) = open_faulty(dir.path(), &config);
            let log = log.unwrap();
            let offset = (case.setup)(&log, &mut Model::default());
            let before = ops.map(|op| disk.count(op));
            log.truncate_to(offset).unwrap();
            ops.iter()
                .zip(before)
                .map(|(op, b)| (*op, disk.count(*op) - b))
                .collect()
        };
        let mut faults = vec![None];
        for (op, count) in counts {
            for nth in 1..=count {
                faults.push(Some(Fault {
                    op,
                    nth,
                    errno: EIO,
                    forever: false,
                }));
            }
        }
        for fault in &faults {
            for crash in [
                Crash::Process,
                Crash::Power(PowerLoss::DropUnsynced),
                Crash::Power(PowerLoss::Torn { seed: 7 }),
            ] {
                let ctx = format!("{}: {fault:?}, then {crash:?}", case.name);
                let dir = tempfile::tempdir().unwrap();
                let (disk, log) = open_faulty(dir.path(), &config);
                let log = log.unwrap();
                let mut model = Model::default();
                let offset = (case.setup)(&log, &mut model);
                let start = log.log_start_offset();
                let old_end = log.log_end_offset();
                let files = log_files(dir.path());
                if let Some(f) = fault {
                    disk.inject(*f);
                }
                let expected_end = offset.max(start);
                // Compare from the log start: the model's history starts at 0.
                let from_start = Model {
                    history: model.history[start as usize..].to_vec(),
                    batch_ends: model.batch_ends.clone(),
                    durable_end: expected_end,
                    acks: model
                        .acks
                        .iter()
                        .copied()
                        .filter(|(i, _)| i.base_offset >= start && i.last_offset < expected_end)
                        .collect(),
                    start,
                };
                let result = log.truncate_to(offset);
                match &result {
                    Ok(end) => assert_eq!(*end, expected_end, "{ctx}"),
                    Err(e) if log_files(dir.path()) != files => {
                        assert!(!matches!(e, Error::Poisoned { .. }), "{ctx}: {e:?}");
                        let after = log.flush();
                        assert!(
                            matches!(after, Err(Error::Poisoned { .. })),
                            "{ctx}: truncate_to failed ({e:?}) after changing the files, yet the log was not poisoned: flush gave {after:?}"
                        );
                    }
                    Err(e) => {
                        assert!(matches!(e, Error::Io { .. }), "{ctx}: {e:?}");
                        assert_eq!(
                            log.log_end_offset(),
                            old_end,
                            "{ctx}: a failed truncation moved the end"
                        );
                        assert_eq!(log.visible_end_offset(), old_end, "{ctx}");
                        from_start.check_in_process(&log, &ctx);
                    }
                }
                if let Crash::Power(mode) = crash {
                    disk.power_loss(mode);
                }
                drop(log);

                let reopened =
                    PartitionLog::open(dir.path(), config.clone()).unwrap_or_else(|e| panic!("{ctx}: {e:?}"));
                assert_eq!(reopened.log_start_offset(), start, "{ctx}: log start");
                let end = reopened.log_end_offset();
                if result.is_ok() {
                    assert_eq!(end, expected_end, "{ctx}: a completed truncation came undone");
                }
                from_start.check_recovered(&reopened, &ctx);
                drop(reopened);
                reopen_and_check(dir.path(), &config, &from_start, &ctx);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// 9. A stale recovery point
// ---------------------------------------------------------------------------------------

/// The segment files are gone but the recovery point still says 100-odd. No crash leaves
/// that (a restart-empty lowers the point to the log start before it deletes a segment):
/// the records the point vouches for were lost, so open refuses the directory, creating
/// nothing, as for any damage below the point. Before, it started an empty log (and had to
/// lower the point, or, after new unsynced appends rolled a few segments and the power
/// failed, the next open trusted the segments below the stale point without scanning them
/// and served a hole). Once the operator accepts the loss by removing the recovery-point
/// file, the empty log takes appends and a power loss leaves no hole.
#[test]
fn open_without_segments_refuses_a_recovery_point_above_the_log_start() {
    let config = LogConfig::default().segment_bytes(4096);
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    for b in 0..40 {
        log.append(&batch(b), Durability::Written).unwrap();
    }
    let stale = log.log_end_offset();
    log.close().unwrap();
    for entry in fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".log") || name.ends_with(".index") || name.ends_with(".timeindex") {
            fs::remove_file(path).unwrap();
        }
    }
    let files = |dir: &Path| {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = files(dir.path());
    match PartitionLog::open(dir.path(), config.clone()) {
        Err(Error::Corrupt { path, position, reason }) => {
            assert_eq!(
                (path, position),
                (dir.path().join(format!("{:020}.log", 0)), 0),
                "{reason}"
            );
            assert!(
                reason.contains(&format!("records below offset {stale} were synced")),
                "{reason}"
            );
        }
        other => panic!("open gave {other:?}"),
    }
    assert_eq!(files(dir.path()), before, "a refused open created or removed files");
    fs::remove_file(dir.path().join("recovery-point")).unwrap();

    let (disk, log) = open_faulty(dir.path(), &config);
    let log = log.unwrap();
    assert_eq!(log.log_end_offset(), 0);
    let mut model = Model::default();
    while log.segment_count() < 4 || log.log_end_offset() < stale + 5 {
        let b = model.batch_ends.len() as u64;
        model.append(&log, batch(b), Durability::Written).unwrap();
    }
    // Moving the log start syncs the directory, so the new segments' names are durable while
    // their contents are not.
    let start = model.batch_ends[0];
    assert_eq!(log.delete_records_before(start).unwrap(), start);
    disk.power_loss(PowerLoss::DropUnsynced);
    drop(log);

    let from_start = Model {
        history: model.history[start as usize..].to_vec(),
        batch_ends: model.batch_ends.clone(),
        durable_end: start,
        acks: Vec::new(),
        start,
    };
    reopen_and_check(dir.path(), &config, &from_start, "after accepting the loss");
}

// ---------------------------------------------------------------------------------------
// 10. A `Synced` append racing `truncate_to`
// ---------------------------------------------------------------------------------------

/// A log in `dir` through a [`GateFs`] over `disk`, holding batches 0..5, and a writer C
/// whose `Synced` append of "C" the gate holds in its fsync (the round leader's): the gate,
/// the log and C's thread.
fn log_with_c_held_in_its_fsync(
    dir: &Path,
    disk: FaultFs,
) -> (
    Arc<Gate>,
    Arc<PartitionLog>,
    std::thread::JoinHandle<Result<AppendInfo, Error>>,
) {
    let gate = Arc::new(Gate::default());
    let fs = GateFs {
        inner: disk,
        gate: Arc::clone(&gate),
    };
    let log = Arc::new(PartitionLog::open_with_vfs(dir, LogConfig::default(), Arc::new(fs)).unwrap());
    for b in 0..5 {
        log.append(&batch(b), Durability::Written).unwrap();
    }
    gate.set(|s| s.0 = true);
    let c = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || log.append(&[Record::new().value("C")], Durability::Synced))
    };
    gate.wait_until(|s| s.1);
    (gate, log, c)
}

/// A `Synced` append whose records a `truncate_to` removes while the append waits for its
/// fsync must fail with `Error::Truncated`, not be acknowledged: its offsets now belong to
/// whatever is appended next.
///
/// Choreography: writer C's fsync is held at the gate (C holds the group-commit turn);
/// `truncate_to(end)` queues for the turn; writer A appends at `end` and queues behind it;
/// the gate opens: C completes, the truncation removes A's record, and A's turn comes.
#[test]
fn synced_append_cut_by_a_racing_truncation_is_not_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (gate, log, c) = log_with_c_held_in_its_fsync(dir.path(), FaultFs::new());
    let cut = log.log_end_offset();
    let truncation = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || log.truncate_to(cut))
    };
    // Let the truncation queue for the sync turn first.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let a = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || log.append(&[Record::new().value("A")], Durability::Synced))
    };
    while log.log_end_offset() == cut {
        std::thread::yield_now();
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    gate.set(|s| s.2 = true);

    let c = c.join().unwrap().unwrap();
    assert_eq!(c.base_offset, cut - 1);
    assert_eq!(truncation.join().unwrap().unwrap(), cut);
    match a.join().unwrap() {
        Err(Error::Truncated { offset, .. }) => assert_eq!(offset, cut),
        other => panic!("an append whose record was truncated before its fsync returned {other:?}"),
    }
    // The offset goes to the next append, which is acknowledged.
    let next = log.append(&[Record::new().value("next")], Durability::Synced).unwrap();
    assert_eq!(next.base_offset, cut);
    let batches = log.read(cut, 1 << 20).unwrap();
    let record = batches[0].records().next().unwrap().unwrap();
    assert_eq!(record.value.as_deref(), Some(&b"next"[..]));
}

/// A `Synced` append whose own write succeeded must be acknowledged once its records are
/// synced, even if the round that syncs them also tries to write another caller's
/// `Buffered` records and that write fails: the failure belongs to those records (which
/// stay buffered), not to records that are in the log — reporting it to the `Synced`
/// caller would make it retry, and duplicate, records that are stored and durable.
///
/// Choreography: writer C's fsync is held at the gate (C leads a round); writer A appends
/// `Synced` (its record is written) and waits for the next round; a `Buffered` append
/// fills the buffer; the next write is made to fail; the gate opens: C completes, and A
/// leads the next round, whose write of the buffer fails.
#[test]
fn synced_append_is_acknowledged_when_the_round_fails_to_write_others_buffered_records() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FaultFs::new();
    let (gate, log, c) = log_with_c_held_in_its_fsync(dir.path(), disk.clone());
    let a_offset = log.log_end_offset();
    let a = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || log.append(&[Record::new().value("A")], Durability::Synced))
    };
    // A's record is in the OS once it is visible.
    while log.visible_end_offset() <= a_offset {
        std::thread::yield_now();
    }
    let b = log.append(&[Record::new().value("B")], Durability::Buffered).unwrap();
    assert_eq!(b.base_offset, a_offset + 1);
    disk.inject(Fault {
        op: FaultOp::Write,
        nth: 1,
        errno: ENOSPC,
        forever: false,
    });
    gate.set(|s| s.2 = true);

    assert_eq!(c.join().unwrap().unwrap().base_offset, a_offset - 1);
    let a = a
        .join()
        .unwrap()
        .expect("A's record was written; a failed write of B's must not fail A");
    assert_eq!(a.base_offset, a_offset);
    assert!(log.synced_end_offset() > a_offset, "A was acknowledged unsynced");
    // B failed to reach the OS only: still buffered, written by the next flush.
    assert_eq!(log.visible_end_offset(), a_offset + 1);
    assert_eq!(log.log_end_offset(), a_offset + 2);
    log.flush().unwrap();
    let values: Vec<Vec<u8>> = log
        .read(a_offset - 1, 1 << 20)
        .unwrap()
        .iter()
        .flat_map(|batch| {
            batch
                .records()
                .map(|r| r.unwrap().value.unwrap().to_vec())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(values, [b"C".to_vec(), b"A".to_vec(), b"B".to_vec()]);
}
