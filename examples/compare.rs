//! brooklet side by side with a raw file, a crossbeam channel, SQLite and the commitlog
//! crate: every scenario of `benches/compare.rs` once, with fixed record counts, printed as
//! ONE table (records/s, MB/s, latency, brooklet's ratio to each peer) followed by the
//! project's targets (BENCHMARKS.md, "Targets"; met or missed, on ratios measured in this same run).
//!
//! ```sh
//! cargo run --release --example compare                 # about a minute on 2 cores
//! cargo run --release --example compare -- --plot       # also writes benches/compare-*.png
//! cargo run --release --example compare -- --scale 0.1  # 10x fewer records (a smoke run)
//! ```
//!
//! Each throughput figure is the median of `--reps` runs (default 5); within a throughput
//! scenario the systems take turns, run by run, so that a slow phase of the machine is shared by all of
//! them rather than borne by one (see [`interleaved`]). A scenario that fails
//! (a panic in a peer) is reported as such and the run goes on; the exit status is 0 unless
//! the arguments are wrong.

#[path = "../benches/common/compare.rs"]
mod compare;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use compare::*;

/// Records of the batched, consume and hand-over scenarios (and of the log the open
/// scenario reopens).
const RECORDS: usize = 1_000_000;
/// Records of the one-at-a-time scenario.
const SINGLE_RECORDS: usize = 100_000;
/// Records per thread of the durable scenario.
const SYNCED_RECORDS: usize = 500;
/// Samples of each latency scenario.
const LATENCY_SAMPLES: usize = 50_000;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Scenario {
    Batched,
    Single,
    Durable,
    Consume,
    Handover,
    Latency,
    Open,
}

impl Scenario {
    fn title(self) -> &'static str {
        match self {
            Scenario::Batched => "batched produce (Written)",
            Scenario::Single => "one-at-a-time produce (Written)",
            Scenario::Durable => "durable produce (Synced / fsync)",
            Scenario::Consume => "sequential consume (warm)",
            Scenario::Handover => "thread hand-over, SPSC",
            Scenario::Latency => "producer -> consumer latency",
            Scenario::Open => "open after clean close",
        }
    }
}

enum Measure {
    /// `records` in `time` (the median of the repetitions).
    Throughput {
        records: u64,
        time: Duration,
    },
    /// p50, p99, p99.9.
    Latency([Duration; 3]),
    /// One open.
    Open(Duration),
    Failed(String),
}

struct Row {
    scenario: Scenario,
    system: &'static str,
    /// brooklet's rows; the first in a scenario is the one the ratios use.
    brooklet: bool,
    measure: Measure,
}

impl Row {
    fn rate(&self) -> Option<f64> {
        match self.measure {
            Measure::Throughput { records, time } => Some(records as f64 / time.as_secs_f64()),
            _ => None,
        }
    }

    /// The figure where lower is better (latency p50, open time), in seconds.
    fn time(&self) -> Option<f64> {
        match &self.measure {
            Measure::Latency(p) => Some(p[0].as_secs_f64()),
            Measure::Open(d) => Some(d.as_secs_f64()),
            _ => None,
        }
    }
}

struct Args {
    scale: f64,
    reps: usize,
    plot: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        scale: 1.0,
        reps: 5,
        plot: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--plot" => args.plot = Some(PathBuf::from("benches")),
            "--plot-dir" => args.plot = Some(PathBuf::from(it.next().ok_or("--plot-dir needs a directory")?)),
            "--scale" => {
                args.scale = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|s: &f64| *s > 0.0 && *s <= 100.0)
                    .ok_or("--scale needs a number in (0, 100]")?;
            }
            "--reps" => {
                args.reps = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|r| *r >= 1)
                    .ok_or("--reps needs a positive integer")?;
            }
            "-h" | "--help" => {
                return Err("usage: compare [--plot | --plot-dir DIR] [--scale F] [--reps N]".into());
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

/// Runs `f`, turning a panic into a `Failed` measure, so one broken peer does not end the run.
fn guarded(f: impl FnOnce() -> Measure) -> Measure {
    caught(f).unwrap_or_else(Measure::Failed)
}

/// Runs `f`, turning a panic into its message.
fn caught<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_else(|| "panicked".into())
    })
}

/// Adds one row of the table, reporting a failed measure as it happens.
fn add(rows: &mut Vec<Row>, scenario: Scenario, system: &'static str, brooklet: bool, measure: Measure) {
    if let Measure::Failed(e) = &measure {
        eprintln!("  {} / {system}: FAILED: {e}", Scenario::title(scenario));
    }
    rows.push(Row {
        scenario,
        system,
        brooklet,
        measure,
    });
}

/// Adds the rows of one scenario measured by [`interleaved`].
fn add_all(rows: &mut Vec<Row>, scenario: Scenario, measured: Vec<(&'static str, bool, Measure)>) {
    for (system, brooklet, measure) in measured {
        add(rows, scenario, system, brooklet, measure);
    }
}

/// One system of a throughput scenario: its row, its record count and one timed run.
struct Contender<'a> {
    system: &'static str,
    brooklet: bool,
    records: usize,
    run: Box<dyn FnMut() -> Duration + 'a>,
}

impl<'a> Contender<'a> {
    fn new(system: &'static str, brooklet: bool, records: usize, run: impl FnMut() -> Duration + 'a) -> Self {
        Contender {
            system,
            brooklet,
            records,
            run: Box::new(run),
        }
    }
}

/// The median time of `reps` runs of each contender, as a throughput, run in turns: the
/// first run of every contender, then the second of every one, and so on. A slow phase of
/// the machine (the disk writing back what an earlier run wrote, say) then falls on all of
/// them alike instead of on whichever ran during it, so the ratios between rows hold even
/// when the absolute figures swing. A contender that panics is reported as failed and is
/// not run again.
fn interleaved(reps: usize, mut contenders: Vec<Contender<'_>>) -> Vec<(&'static str, bool, Measure)> {
    let mut times: Vec<Result<Vec<Duration>, String>> = contenders.iter().map(|_| Ok(Vec::new())).collect();
    for _ in 0..reps {
        for (c, t) in contenders.iter_mut().zip(&mut times) {
            let Ok(done) = t else { continue };
            match caught(&mut c.run) {
                Ok(took) => done.push(took),
                Err(e) => *t = Err(e),
            }
        }
    }
    contenders
        .into_iter()
        .zip(times)
        .map(|(c, t)| {
            let measure = match t {
                Ok(mut times) => {
                    times.sort_unstable();
                    Measure::Throughput {
                        records: c.records as u64,
                        time: times[times.len() / 2],
                    }
                }
                Err(e) => Measure::Failed(e),
            };
            (c.system, c.brooklet, measure)
        })
        .collect()
}

/// The median of `reps` opens.
fn open_time(reps: usize, mut f: impl FnMut() -> Duration) -> Measure {
    guarded(|| {
        let mut times: Vec<Duration> = (0..reps.max(3)).map(|_| f()).collect();
        times.sort_unstable();
        Measure::Open(times[times.len() / 2])
    })
}

fn scaled(n: usize, scale: f64) -> usize {
    ((n as f64 * scale) as usize).max(10)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    let reps = args.reps;
    let n = scaled(RECORDS, args.scale);
    let n_single = scaled(SINGLE_RECORDS, args.scale);
    let n_synced = scaled(SYNCED_RECORDS, args.scale);
    let n_latency = scaled(LATENCY_SAMPLES, args.scale);
    eprintln!(
        "compare: {n} records (batched, consume, hand-over, open), {n_single} one at a time, \
         {n_synced} per thread durable, {n_latency} latency samples; median of {reps}"
    );
    let data = Data::new(n);
    let single = Data::new(n_single);
    let synced = Data::new(n_synced);
    let mut rows: Vec<Row> = Vec::new();
    eprintln!("- batched produce");
    #[cfg_attr(not(target_os = "linux"), allow(unused_mut))]
    let mut batched = vec![
        Contender::new("brooklet send_batch(1000)", true, n, || brooklet_send_batch(&data)),
        Contender::new("brooklet PartitionLog::append(1000)", true, n, || {
            brooklet_log_append(&data, BATCH)
        }),
        Contender::new("raw file, 64 KiB BufWriter", false, n, || raw_append(&data, false)),
    ];
    #[cfg(target_os = "linux")]
    batched.push(Contender::new("raw file, BufWriter, blocks reserved", false, n, || {
        raw_append_reserved(&data)
    }));
    batched.extend([
        Contender::new("raw file + crc32 per record", false, n, || raw_append(&data, true)),
        Contender::new("SQLite, tx of 1000 (NORMAL)", false, n, || sqlite_insert_batched(&data)),
        Contender::new("commitlog append(1000)", false, n, || commitlog_append(&data, BATCH)),
    ]);
    add_all(&mut rows, Scenario::Batched, interleaved(reps, batched));

    eprintln!("- one-at-a-time produce");
    let m = n_single;
    add_all(
        &mut rows,
        Scenario::Single,
        interleaved(
            reps,
            vec![
                Contender::new("brooklet send", true, m, || brooklet_send_each(&single)),
                Contender::new("brooklet PartitionLog::append(1)", true, m, || {
                    brooklet_log_append(&single, 1)
                }),
                Contender::new("brooklet send, mapped writes", true, m, || {
                    brooklet_send_each_with(&single, true)
                }),
                Contender::new("brooklet PartitionLog::append(1), mapped", true, m, || {
                    brooklet_log_append_with(&single, 1, true)
                }),
                Contender::new("raw file, write(2) per record", false, m, || {
                    raw_write_per_record(&single)
                }),
                Contender::new("SQLite, 1 row per tx (NORMAL)", false, m, || {
                    sqlite_insert_each(&single, "NORMAL")
                }),
                Contender::new("commitlog append(1)", false, m, || commitlog_append(&single, 1)),
            ],
        ),
    );

    eprintln!("- durable produce");
    let mut fsync_rounds = Vec::new();
    let m = n_synced;
    add_all(
        &mut rows,
        Scenario::Durable,
        interleaved(
            reps,
            vec![
                Contender::new("brooklet send Synced, 1 thread", true, m, || {
                    brooklet_send_synced(&synced, 1)
                }),
                Contender::new("brooklet send Synced, 8 threads", true, 8 * m, || {
                    let (took, metrics) = brooklet_send_synced_metrics(&synced, 8);
                    fsync_rounds.push((metrics.records_sent, metrics.fsyncs, metrics.fsync_time));
                    took
                }),
                Contender::new("raw file, pwrite + fdatasync", false, m, || {
                    raw_write_fdatasync(&synced)
                }),
                Contender::new("SQLite, 1 row per tx (FULL)", false, m, || {
                    sqlite_insert_each(&synced, "FULL")
                }),
            ],
        ),
    );

    eprintln!("- building the consume fixtures ({n} records per system)");
    let fixtures = Fixtures::build(&data);
    let expected = (n, (n * RECORD_BYTES) as u64);
    let checked = |got: (usize, u64), what: &str| assert_eq!(got, expected, "{what} read back wrong");
    let timed = |what: &'static str, read: &mut dyn FnMut() -> (usize, u64)| {
        let start = Instant::now();
        let got = read();
        let took = start.elapsed();
        checked(got, what);
        took
    };
    eprintln!("- sequential consume");
    {
        let broker = brooklet::Broker::open(fixtures.brooklet_dir()).unwrap();
        let mut consumer = brooklet_consumer(&broker);
        let conn = sqlite_open(&fixtures.sqlite_path(), "NORMAL");
        let log = commitlog_open(&fixtures.commitlog_dir());
        add_all(
            &mut rows,
            Scenario::Consume,
            interleaved(
                reps,
                vec![
                    Contender::new("brooklet poll", true, n, || {
                        timed("brooklet", &mut || brooklet_poll_all(&mut consumer, n))
                    }),
                    Contender::new("raw file, 64 KiB BufReader", false, n, || {
                        timed("raw", &mut || raw_read(&fixtures.raw_path(), false))
                    }),
                    Contender::new("raw file + crc32 per record", false, n, || {
                        timed("raw crc", &mut || raw_read(&fixtures.raw_crc_path(), true))
                    }),
                    Contender::new("SQLite, SELECT ORDER BY id", false, n, || {
                        timed("SQLite", &mut || sqlite_read_all(&conn))
                    }),
                    Contender::new("commitlog read(1 MiB)", false, n, || {
                        timed("commitlog", &mut || commitlog_read_all(&log))
                    }),
                ],
            ),
        );
    }

    eprintln!("- open after clean close");
    let sc = Scenario::Open;
    add(
        &mut rows,
        sc,
        "brooklet PartitionLog::open",
        true,
        open_time(reps, || brooklet_log_open(&fixtures.brooklet_partition_dir(), n)),
    );
    add(
        &mut rows,
        sc,
        "brooklet Broker::open",
        true,
        open_time(reps, || brooklet_broker_open(&fixtures.brooklet_dir())),
    );
    add(
        &mut rows,
        sc,
        "raw file open(2)",
        false,
        open_time(reps, || raw_reopen(&fixtures.raw_path())),
    );
    add(
        &mut rows,
        sc,
        "SQLite open + max(id)",
        false,
        open_time(reps, || sqlite_reopen(&fixtures.sqlite_path(), n)),
    );
    add(
        &mut rows,
        sc,
        "commitlog CommitLog::new",
        false,
        open_time(reps, || commitlog_reopen(&fixtures.commitlog_dir(), n)),
    );
    let sizes = [
        ("brooklet", Fixtures::size_of(&fixtures.brooklet_dir())),
        ("raw", Fixtures::size_of(&fixtures.raw_path())),
        ("SQLite", Fixtures::size_of(&fixtures.sqlite_path())),
        ("commitlog", Fixtures::size_of(&fixtures.commitlog_dir())),
    ];
    drop(fixtures);

    eprintln!("- thread hand-over");
    let handover = vec![
        Contender::new("brooklet send_batch -> poll", true, n, || brooklet_pipeline(&data)),
        Contender::new("crossbeam, 1 record per send", false, n, || crossbeam_spsc(&data, 1)),
        Contender::new("crossbeam, Vec of 1000 per send", false, n, || {
            crossbeam_spsc(&data, BATCH)
        }),
    ];
    add_all(&mut rows, Scenario::Handover, interleaved(reps, handover));

    eprintln!("- latency");
    let sc = Scenario::Latency;
    let lat = |f: fn(&Data, usize) -> Vec<std::time::Duration>| {
        guarded(|| Measure::Latency(percentiles(f(&single, n_latency))))
    };
    add(
        &mut rows,
        sc,
        "brooklet send -> blocked poll",
        true,
        lat(brooklet_latencies),
    );
    add(
        &mut rows,
        sc,
        "raw file write(2) -> spin + pread",
        false,
        lat(raw_file_latencies),
    );
    add(
        &mut rows,
        sc,
        "crossbeam send -> blocked recv",
        false,
        lat(crossbeam_latencies),
    );

    println!();
    print_table(&rows, n, n_single, n_synced, n_latency);
    println!();
    println!(
        "on disk for {n} records: {}",
        sizes
            .iter()
            .map(|(s, b)| format!("{s} {:.1} MB", *b as f64 / 1e6))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !fsync_rounds.is_empty() {
        let records: u64 = fsync_rounds.iter().map(|r| r.0).sum();
        let fsyncs: u64 = fsync_rounds.iter().map(|r| r.1).sum::<u64>().max(1);
        let waited: Duration = fsync_rounds.iter().map(|r| r.2).sum();
        println!(
            "brooklet Synced, 8 threads (all {} runs): {records} sends, {fsyncs} fsync rounds, {:.2} sends per fsync, \
             {} of fsync time per round",
            fsync_rounds.len(),
            records as f64 / fsyncs as f64,
            fmt_dur(waited / fsyncs as u32)
        );
    }
    println!();
    print_targets(&rows);
    if let Some(dir) = &args.plot {
        match plot::write(dir, &rows) {
            Ok(paths) => {
                for p in paths {
                    println!("wrote {}", p.display());
                }
            }
            Err(e) => eprintln!("plot failed: {e}"),
        }
    }
    println!("\ntotal run time {:.1} s", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

fn fmt_dur(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// The ratio column: brooklet's figure over this row's, for the scenario's first brooklet
/// row. Throughput: brooklet records/s ÷ peer records/s (higher is better for brooklet);
/// latency and open: brooklet time ÷ peer time (lower is better).
fn ratio_cell(rows: &[Row], row: &Row) -> String {
    if row.brooklet {
        return "—".into();
    }
    let Some(b) = rows.iter().find(|r| r.scenario == row.scenario && r.brooklet) else {
        return "—".into();
    };
    match (b.rate(), row.rate(), b.time(), row.time()) {
        (Some(b), Some(p), _, _) => format!("{:.2}x", b / p),
        (_, _, Some(b), Some(p)) => format!("{:.2}x time", b / p),
        _ => "—".into(),
    }
}

fn print_table(rows: &[Row], n: usize, n_single: usize, n_synced: usize, n_latency: usize) {
    let header = ["scenario", "system", "records/s", "MB/s", "latency", "brooklet ratio"];
    let mut cells: Vec<[String; 6]> = Vec::new();
    let mut scenarios: Vec<Scenario> = rows.iter().map(|r| r.scenario).collect();
    scenarios.dedup();
    for sc in scenarios {
        let mut first = true;
        for row in rows.iter().filter(|r| r.scenario == sc) {
            let (rate, mbs, lat) = match &row.measure {
                Measure::Throughput { records, time } => {
                    let rate = *records as f64 / time.as_secs_f64();
                    (
                        fmt_rate(rate),
                        format!("{:.1}", rate * RECORD_BYTES as f64 / 1e6),
                        format!("{}/rec", fmt_dur(*time / (*records).max(1) as u32)),
                    )
                }
                Measure::Latency(p) => (
                    "—".into(),
                    "—".into(),
                    format!("{} / {} / {}", fmt_dur(p[0]), fmt_dur(p[1]), fmt_dur(p[2])),
                ),
                Measure::Open(d) => ("—".into(), "—".into(), fmt_dur(*d)),
                Measure::Failed(_) => ("failed".into(), "—".into(), "—".into()),
            };
            cells.push([
                if first { sc.title().to_string() } else { String::new() },
                row.system.to_string(),
                rate,
                mbs,
                lat,
                ratio_cell(rows, row),
            ]);
            first = false;
        }
    }
    let width = |i: usize| {
        cells
            .iter()
            .map(|c| c[i].chars().count())
            .chain([header[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..6).map(width).collect();
    let line = |c: &[String]| {
        let mut s = String::new();
        for (i, cell) in c.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            if (2..4).contains(&i) || i == 5 {
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.push_str(&" ".repeat(pad));
            }
            s.push_str(if i + 1 < c.len() { "  " } else { "" });
        }
        s.trim_end().to_string()
    };
    let header: Vec<String> = header.iter().map(|s| s.to_string()).collect();
    println!("{}", line(&header));
    println!("{}", "-".repeat(widths.iter().sum::<usize>() + 2 * 5));
    let mut prev_scenario_row = true;
    for c in &cells {
        if !c[0].is_empty() && !prev_scenario_row {
            println!();
        }
        prev_scenario_row = false;
        println!("{}", line(c));
    }
    println!();
    println!(
        "records: {n} batched/consume/hand-over/open, {n_single} one-at-a-time, {n_synced} per thread durable, \
         {n_latency} latency samples; 16-byte keys, 100-byte values; MB/s counts the 116 payload bytes."
    );
    println!(
        "latency column: time per record for throughputs, p50 / p99 / p99.9 for latencies. brooklet ratio: the \
         scenario's first brooklet row ÷ this row (records/s; 'time' = latency p50 or open time, lower is better)."
    );
}

// ---------------------------------------------------------------------------------------
// Targets (BENCHMARKS.md)
// ---------------------------------------------------------------------------------------

fn find<'a>(rows: &'a [Row], scenario: Scenario, system: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.scenario == scenario && r.system == system)
}

fn rate(rows: &[Row], scenario: Scenario, system: &str) -> Option<f64> {
    find(rows, scenario, system).and_then(Row::rate)
}

fn print_targets(rows: &[Row]) {
    use Scenario::*;
    let mut lines: Vec<(String, String, Option<bool>)> = Vec::new();
    let mut ratio = |what: &str, b: (Scenario, &str), p: (Scenario, &str), min: f64| {
        let value = rate(rows, b.0, b.1).zip(rate(rows, p.0, p.1)).map(|(b, p)| b / p);
        lines.push((
            format!("{what} ≥ {min}x"),
            value.map_or("n/a".into(), |v| format!("{v:.2}x")),
            value.map(|v| v >= min),
        ));
    };
    let send_batch = (Batched, "brooklet send_batch(1000)");
    let append = (Batched, "brooklet PartitionLog::append(1000)");
    let poll = (Consume, "brooklet poll");
    ratio(
        "batched produce (send_batch) vs raw file",
        send_batch,
        (Batched, "raw file, 64 KiB BufWriter"),
        0.6,
    );
    ratio(
        "batched produce (PartitionLog::append) vs raw file",
        append,
        (Batched, "raw file, 64 KiB BufWriter"),
        0.6,
    );
    ratio(
        "sequential consume (poll) vs raw read",
        poll,
        (Consume, "raw file, 64 KiB BufReader"),
        0.5,
    );
    ratio(
        "batched produce (send_batch) vs SQLite tx of 1000",
        send_batch,
        (Batched, "SQLite, tx of 1000 (NORMAL)"),
        8.0,
    );
    ratio(
        "sequential consume vs SQLite read",
        poll,
        (Consume, "SQLite, SELECT ORDER BY id"),
        3.0,
    );
    let sqlite_full = (Durable, "SQLite, 1 row per tx (FULL)");
    ratio(
        "Synced send, 1 thread vs SQLite FULL 1 row/tx",
        (Durable, "brooklet send Synced, 1 thread"),
        sqlite_full,
        1.0,
    );
    ratio(
        "Synced send, 8 threads vs SQLite FULL 1 row/tx",
        (Durable, "brooklet send Synced, 8 threads"),
        sqlite_full,
        4.0,
    );
    ratio(
        "batched append (PartitionLog::append) vs commitlog",
        append,
        (Batched, "commitlog append(1000)"),
        1.0,
    );
    ratio(
        "batched produce (send_batch) vs commitlog",
        send_batch,
        (Batched, "commitlog append(1000)"),
        1.0,
    );
    let one_commitlog = (Single, "commitlog append(1)");
    ratio(
        "one-at-a-time (PartitionLog::append) vs commitlog",
        (Single, "brooklet PartitionLog::append(1)"),
        one_commitlog,
        1.5,
    );
    ratio(
        "one-at-a-time (Producer::send) vs commitlog",
        (Single, "brooklet send"),
        one_commitlog,
        1.5,
    );
    ratio(
        "one-at-a-time (append), mapped writes, vs commitlog",
        (Single, "brooklet PartitionLog::append(1), mapped"),
        one_commitlog,
        1.5,
    );
    ratio(
        "one-at-a-time (send), mapped writes, vs commitlog",
        (Single, "brooklet send, mapped writes"),
        one_commitlog,
        1.5,
    );
    ratio(
        "sequential read (poll) vs commitlog",
        poll,
        (Consume, "commitlog read(1 MiB)"),
        1.0,
    );
    for (what, system) in [
        ("blocking send", "brooklet send"),
        ("blocking send, mapped writes", "brooklet send, mapped writes"),
    ] {
        let value = rate(rows, Single, system);
        lines.push((
            format!("{what} ≥ 1 M records/s"),
            value.map_or("n/a".into(), |v| format!("{:.2} M/s", v / 1e6)),
            value.map(|v| v >= 1e6),
        ));
    }
    let lat = |system: &str| match find(rows, Latency, system).map(|r| &r.measure) {
        Some(Measure::Latency(p)) => Some(*p),
        _ => None,
    };
    let brooklet = lat("brooklet send -> blocked poll");
    let floor = lat("raw file write(2) -> spin + pread");
    let v = brooklet
        .zip(floor)
        .map(|(b, f)| b[0].as_secs_f64() / f[0].as_secs_f64());
    lines.push((
        "latency p50 within 5x of the spinning file reader's p50".into(),
        match (v, brooklet, floor) {
            (Some(v), Some(b), Some(f)) => format!("{v:.2}x ({} vs {})", fmt_dur(b[0]), fmt_dur(f[0])),
            _ => "n/a".into(),
        },
        v.map(|v| v <= 5.0),
    ));
    lines.push((
        "latency p99 under 100 µs".into(),
        brooklet.map_or("n/a".into(), |b| fmt_dur(b[1])),
        brooklet.map(|b| b[1] < Duration::from_micros(100)),
    ));
    let w0 = lines.iter().map(|l| l.0.chars().count()).max().unwrap_or(0);
    let w1 = lines.iter().map(|l| l.1.chars().count()).max().unwrap_or(0);
    println!("targets (see BENCHMARKS.md; ratios from this run)");
    for (what, value, ok) in &lines {
        let mark = match ok {
            Some(true) => "✅",
            Some(false) => "❌",
            None => "?",
        };
        println!(
            "  {what}{}  {}{value}  {mark}",
            " ".repeat(w0 - what.chars().count()),
            " ".repeat(w1 - value.chars().count())
        );
    }
    let met = lines.iter().filter(|l| l.2 == Some(true)).count();
    println!("  {met} of {} met", lines.len());
}

// ---------------------------------------------------------------------------------------
// Plots
// ---------------------------------------------------------------------------------------

mod plot {
    use super::*;
    use plotters::prelude::*;
    use plotters::style::{FontStyle, register_font};

    /// Where a TrueType font may be; text is drawn only if one is found (plotters' ab_glyph
    /// backend needs the font bytes; nothing is installed for it).
    const FONTS: &[&str] = &[
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    ];

    fn load_font() -> bool {
        let env = std::env::var("BROOKLET_PLOT_FONT").ok();
        for path in env.iter().map(String::as_str).chain(FONTS.iter().copied()) {
            if let Ok(bytes) = std::fs::read(path) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    }

    fn color(system: &str) -> RGBColor {
        if system.starts_with("brooklet") {
            RGBColor(31, 119, 180)
        } else if system.starts_with("raw") {
            RGBColor(127, 127, 127)
        } else if system.starts_with("SQLite") {
            RGBColor(255, 127, 14)
        } else if system.starts_with("commitlog") {
            RGBColor(44, 160, 44)
        } else {
            RGBColor(148, 103, 189)
        }
    }

    struct Bar {
        label: String,
        value: f64,
        text: String,
        color: RGBColor,
    }

    /// Horizontal bars on a log axis, in groups; labels left of the bars, values at their end.
    fn hbars(
        path: &Path,
        title: &str,
        axis: &str,
        fmt: fn(f64) -> String,
        groups: &[(String, Vec<Bar>)],
        text: bool,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (row_h, group_h, top, bottom, left, right) = (22i32, 30i32, 60i32, 50i32, 330i32, 110i32);
        let rows: usize = groups.iter().map(|g| g.1.len()).sum();
        let height = top + bottom + rows as i32 * row_h + groups.len() as i32 * group_h;
        let width = 1100i32;
        let root = BitMapBackend::new(path, (width as u32, height as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        let values = groups
            .iter()
            .flat_map(|g| g.1.iter().map(|b| b.value))
            .filter(|v| *v > 0.0);
        let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let (lo, hi) = (lo.log10().floor(), hi.log10().ceil().max(lo.log10().floor() + 1.0));
        let plot_w = (width - left - right) as f64;
        let x_of = |v: f64| left + ((v.log10() - lo) / (hi - lo) * plot_w).round() as i32;
        let font = |size: i32| ("sans-serif", size).into_font();
        // Decade grid lines and their labels.
        let mut d = lo;
        while d <= hi + 1e-9 {
            let x = x_of(10f64.powf(d));
            root.draw(&PathElement::new(
                vec![(x, top - 5), (x, height - bottom)],
                RGBColor(220, 220, 220),
            ))?;
            if text {
                root.draw(&Text::new(fmt(10f64.powf(d)), (x - 12, height - bottom + 6), font(13)))?;
            }
            d += 1.0;
        }
        if text {
            root.draw(&Text::new(title.to_string(), (10, 12), font(20)))?;
            root.draw(&Text::new(axis.to_string(), (left, height - 22), font(13)))?;
        }
        let mut y = top;
        for (name, bars) in groups {
            if text {
                root.draw(&Text::new(name.clone(), (10, y + 8), font(15).style(FontStyle::Bold)))?;
            } else {
                root.draw(&PathElement::new(vec![(10, y + 15), (width - 10, y + 15)], BLACK))?;
            }
            y += group_h;
            for bar in bars {
                if bar.value > 0.0 {
                    let x1 = x_of(bar.value).max(left + 1);
                    root.draw(&Rectangle::new(
                        [(left, y + 3), (x1, y + row_h - 3)],
                        bar.color.filled(),
                    ))?;
                    if text {
                        root.draw(&Text::new(bar.text.clone(), (x1 + 5, y + 4), font(13)))?;
                    }
                }
                if text {
                    root.draw(&Text::new(bar.label.clone(), (24, y + 4), font(13)))?;
                }
                y += row_h;
            }
        }
        root.present()?;
        Ok(())
    }

    fn si(v: f64) -> String {
        if v >= 1e6 {
            format!("{}M", v / 1e6)
        } else if v >= 1e3 {
            format!("{}k", v / 1e3)
        } else {
            format!("{v}")
        }
    }

    fn micros(v: f64) -> String {
        if v >= 1.0 {
            format!("{v} µs")
        } else {
            format!("{} ns", v * 1e3)
        }
    }

    pub fn write(dir: &Path, rows: &[Row]) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
        std::fs::create_dir_all(dir)?;
        let text = load_font();
        if !text {
            eprintln!("plot: no TrueType font found; drawing bars without text");
        }
        let mut by_scenario: BTreeMap<Scenario, Vec<Bar>> = BTreeMap::new();
        for r in rows {
            if let Some(rate) = r.rate() {
                by_scenario.entry(r.scenario).or_default().push(Bar {
                    label: r.system.to_string(),
                    value: rate,
                    text: format!("{}/s", fmt_rate(rate)),
                    color: color(r.system),
                });
            }
        }
        let groups: Vec<(String, Vec<Bar>)> = by_scenario
            .into_iter()
            .map(|(sc, bars)| (sc.title().to_string(), bars))
            .collect();
        let throughput = dir.join("compare-throughput.png");
        hbars(
            &throughput,
            "brooklet vs. peers: records/s (log scale, higher is better)",
            "records per second; 16-byte key + 100-byte value per record",
            si,
            &groups,
            text,
        )?;
        let mut groups: Vec<(String, Vec<Bar>)> = Vec::new();
        for r in rows {
            if let Measure::Latency(p) = &r.measure {
                let bars = ["p50", "p99", "p99.9"]
                    .iter()
                    .zip(p)
                    .map(|(q, d)| Bar {
                        label: (*q).to_string(),
                        value: d.as_secs_f64() * 1e6,
                        text: fmt_dur(*d),
                        color: color(r.system),
                    })
                    .collect();
                groups.push((r.system.to_string(), bars));
            }
        }
        let latency = dir.join("compare-latency.png");
        hbars(
            &latency,
            "producer -> consumer latency, one record at a time (log scale, lower is better)",
            "microseconds from send to the consumer holding the record",
            micros,
            &groups,
            text,
        )?;
        Ok(vec![throughput, latency])
    }
}
