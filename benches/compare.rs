//! brooklet side by side with the alternatives, in one run (issue 7): a raw file (the
//! ceiling of an append-only log on this disk, and the latency floor through a file), a
//! crossbeam channel (the ceiling of handing records between threads), SQLite (rusqlite,
//! bundled; WAL) and the commitlog crate. The runner `examples/compare.rs` runs the same
//! scenario code (`benches/common/compare.rs`, which says what each one times) and prints
//! one table with the ratios and the targets; this bench gives criterion's statistics.
//!
//! Groups (records are a 16-byte key and a 100-byte value, the same for every system):
//! - `compare_batched`: 200,000 records per iteration to a fresh file / log / database:
//!   raw `BufWriter` (with and without a CRC-32 per record), brooklet `send_batch` of 1,000
//!   and `PartitionLog::append` of 1,000 (`Written`), SQLite transactions of 1,000
//!   (`synchronous=NORMAL`), commitlog `append` of 1,000-message buffers.
//! - `compare_single`: 20,000 records one per call: raw `write(2)`, brooklet `send` and
//!   `PartitionLog::append` (`Written`), both also with mapped writes (`_mapped`: a store
//!   into a shared map of the active segment instead of a `write(2)`), SQLite one row per
//!   transaction (`NORMAL`), commitlog `append` of one message.
//! - `compare_durable`: 100 records per thread, each durable before the call returns: raw
//!   `pwrite` + `fdatasync`, brooklet `send` `Synced` on 1 and 8 threads, SQLite one row per
//!   transaction with `synchronous=FULL`. (commitlog 0.2 has no durable mode: its `flush`
//!   never fsyncs the data files.)
//! - `compare_consume`: 2,000,000 records written once per system (warm page cache), read
//!   in order each iteration: raw `BufReader` (with and without CRC checks), brooklet
//!   `Consumer::poll`, SQLite `SELECT … ORDER BY id`, commitlog `read` of 1 MiB.
//! - `compare_open`: opening those 2,000,000-record stores after a clean close.
//! - `compare_handover`: 200,000 records from a producer thread to a consumer thread:
//!   crossbeam (one record or a `Vec` of 1,000 per send) and brooklet `send_batch` → `poll`.
//! - `compare_latency`: one record at a time, producer to consumer: brooklet `send` → a
//!   consumer blocked in `poll`, the file floor (`write(2)`, an atomic end offset, a spinning
//!   reader's `pread`), crossbeam `send` → blocked `recv`. p50/p99/p99.9 of 50,000 samples
//!   each are printed to stderr; criterion times the mean of 5,000.

#[path = "common/compare.rs"]
mod compare;

use std::hint::black_box;
use std::time::Duration;

use compare::*;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

const BATCHED_RECORDS: usize = 200_000;
const SINGLE_RECORDS: usize = 20_000;
const SYNCED_RECORDS: usize = 100;
const CONSUME_RECORDS: usize = 2_000_000;
const LATENCY_SAMPLES: usize = 50_000;
const LATENCY_BENCH_SAMPLES: usize = 5_000;

fn configure(group: &mut BenchmarkGroup<'_, WallTime>, measurement_secs: u64) {
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(measurement_secs))
        .sampling_mode(SamplingMode::Flat);
}

/// A bench whose every iteration is one call of `f` (which times itself).
fn timed(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut f: impl FnMut() -> Duration) {
    group.bench_function(name, |b| b.iter_custom(|iters| (0..iters).map(|_| f()).sum()));
}

fn batched(c: &mut Criterion) {
    let data = Data::new(BATCHED_RECORDS);
    let mut group = c.benchmark_group("compare_batched");
    configure(&mut group, 5);
    group.throughput(Throughput::Elements(BATCHED_RECORDS as u64));
    timed(&mut group, "raw_bufwriter", || raw_append(&data, false));
    #[cfg(target_os = "linux")]
    timed(&mut group, "raw_bufwriter_reserved", || raw_append_reserved(&data));
    timed(&mut group, "raw_bufwriter_crc32", || raw_append(&data, true));
    timed(&mut group, "brooklet_send_batch_1000", || brooklet_send_batch(&data));
    timed(&mut group, "brooklet_log_append_1000", || {
        brooklet_log_append(&data, BATCH)
    });
    timed(&mut group, "sqlite_tx_1000_normal", || sqlite_insert_batched(&data));
    timed(&mut group, "commitlog_append_1000", || commitlog_append(&data, BATCH));
    group.finish();
}

fn single(c: &mut Criterion) {
    let data = Data::new(SINGLE_RECORDS);
    let mut group = c.benchmark_group("compare_single");
    configure(&mut group, 4);
    group.throughput(Throughput::Elements(SINGLE_RECORDS as u64));
    timed(&mut group, "raw_write_per_record", || raw_write_per_record(&data));
    timed(&mut group, "brooklet_send", || brooklet_send_each(&data));
    timed(&mut group, "brooklet_log_append_1", || brooklet_log_append(&data, 1));
    timed(&mut group, "brooklet_send_mapped", || {
        brooklet_send_each_with(&data, true)
    });
    timed(&mut group, "brooklet_log_append_1_mapped", || {
        brooklet_log_append_with(&data, 1, true)
    });
    timed(&mut group, "sqlite_row_per_tx_normal", || {
        sqlite_insert_each(&data, "NORMAL")
    });
    timed(&mut group, "commitlog_append_1", || commitlog_append(&data, 1));
    group.finish();
}

fn durable(c: &mut Criterion) {
    let data = Data::new(SYNCED_RECORDS);
    let mut group = c.benchmark_group("compare_durable");
    configure(&mut group, 5);
    group.throughput(Throughput::Elements(SYNCED_RECORDS as u64));
    timed(&mut group, "raw_pwrite_fdatasync", || raw_write_fdatasync(&data));
    timed(&mut group, "brooklet_synced_1_thread", || {
        brooklet_send_synced(&data, 1)
    });
    timed(&mut group, "sqlite_row_per_tx_full", || {
        sqlite_insert_each(&data, "FULL")
    });
    group.throughput(Throughput::Elements(8 * SYNCED_RECORDS as u64));
    timed(&mut group, "brooklet_synced_8_threads", || {
        brooklet_send_synced(&data, 8)
    });
    group.finish();
}

fn consume_and_open(c: &mut Criterion) {
    // Built on first use, so that a filtered run (`cargo bench --bench compare -- latency`)
    // skips it.
    let fixtures: std::cell::OnceCell<Fixtures> = std::cell::OnceCell::new();
    let fixtures = || fixtures.get_or_init(|| Fixtures::build(&Data::new(CONSUME_RECORDS)));
    let n = CONSUME_RECORDS;
    let expected = (n, (n * RECORD_BYTES) as u64);
    let mut group = c.benchmark_group("compare_consume");
    configure(&mut group, 8);
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("raw_bufreader", |b| {
        let path = fixtures().raw_path();
        b.iter(|| assert_eq!(black_box(raw_read(&path, false)), expected));
    });
    group.bench_function("raw_bufreader_crc32", |b| {
        let path = fixtures().raw_crc_path();
        b.iter(|| assert_eq!(black_box(raw_read(&path, true)), expected));
    });
    group.bench_function("brooklet_poll", |b| {
        let broker = brooklet::Broker::open(fixtures().brooklet_dir()).unwrap();
        let mut consumer = brooklet_consumer(&broker);
        b.iter(|| assert_eq!(black_box(brooklet_poll_all(&mut consumer, n)), expected));
    });
    group.bench_function("sqlite_select_by_id", |b| {
        let conn = sqlite_open(&fixtures().sqlite_path(), "NORMAL");
        b.iter(|| assert_eq!(black_box(sqlite_read_all(&conn)), expected));
    });
    group.bench_function("commitlog_read_1mib", |b| {
        let log = commitlog_open(&fixtures().commitlog_dir());
        b.iter(|| assert_eq!(black_box(commitlog_read_all(&log)), expected));
    });
    group.finish();

    let mut group = c.benchmark_group("compare_open");
    configure(&mut group, 3);
    timed(&mut group, "raw_open", || raw_reopen(&fixtures().raw_path()));
    timed(&mut group, "brooklet_partition_log_open", || {
        brooklet_log_open(&fixtures().brooklet_partition_dir(), n)
    });
    timed(&mut group, "brooklet_broker_open", || {
        brooklet_broker_open(&fixtures().brooklet_dir())
    });
    timed(&mut group, "sqlite_open", || {
        sqlite_reopen(&fixtures().sqlite_path(), n)
    });
    timed(&mut group, "commitlog_open", || {
        commitlog_reopen(&fixtures().commitlog_dir(), n)
    });
    group.finish();
}

fn handover(c: &mut Criterion) {
    let data = Data::new(BATCHED_RECORDS);
    let mut group = c.benchmark_group("compare_handover");
    configure(&mut group, 4);
    group.throughput(Throughput::Elements(BATCHED_RECORDS as u64));
    timed(&mut group, "crossbeam_1_per_send", || crossbeam_spsc(&data, 1));
    timed(&mut group, "crossbeam_vec_1000", || crossbeam_spsc(&data, BATCH));
    timed(&mut group, "brooklet_send_batch_to_poll", || brooklet_pipeline(&data));
    group.finish();
}

fn latency(c: &mut Criterion) {
    let data = Data::new(1_000);
    type Scenario = fn(&Data, usize) -> Vec<Duration>;
    let scenarios: [(&str, Scenario); 3] = [
        ("brooklet_send_to_poll", brooklet_latencies),
        ("raw_file_spin_pread", raw_file_latencies),
        ("crossbeam_ping", crossbeam_latencies),
    ];
    let mut group = c.benchmark_group("compare_latency");
    configure(&mut group, 4);
    group.throughput(Throughput::Elements(LATENCY_BENCH_SAMPLES as u64));
    for (name, f) in scenarios {
        let mut printed = false;
        group.bench_function(name, |b| {
            // The percentiles, from their own run, once (skipped when the bench is filtered out).
            if !std::mem::replace(&mut printed, true) {
                let [p50, p99, p999] = percentiles(f(&data, LATENCY_SAMPLES));
                eprintln!("compare_latency/{name}: n={LATENCY_SAMPLES} p50={p50:.2?} p99={p99:.2?} p99.9={p999:.2?}");
            }
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| f(&data, LATENCY_BENCH_SAMPLES).iter().sum::<Duration>())
                    .sum()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, batched, single, durable, consume_and_open, handover, latency);
criterion_main!(benches);
