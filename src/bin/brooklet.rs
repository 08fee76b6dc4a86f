//! `brooklet`: the command-line tool for a brooklet data directory — topics, a console
//! producer and consumer, consumer groups with their lag, segment dumps and a checker.
//!
//! Commands that only read open the directory with `Broker::open_read_only`, so they work
//! while an application holds it; commands that write need it free and say so when it is in
//! use. Errors are one line on stderr and exit code 1; `dump-log`, `verify` and `consume`
//! exit with 2 when they find damage (`consume` prints the healthy partitions first).
//! `consume` and `produce` stop cleanly on SIGINT, SIGTERM or SIGHUP (a group commits, the
//! directory is closed) and exit with 128 + the signal's number.

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::todo,
    clippy::unimplemented
)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::c_int;
use std::io::{self, BufRead, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use brooklet::inspect::{self, PartitionCheck};
use brooklet::{
    Broker, ConsumerConfig, ConsumerRecordRef, DamagePolicy, Durability, Error, GroupState, OffsetAndMetadata,
    OffsetReset, OffsetSpec, PartitionLog, Producer, ProducerConfig, ProducerRecord, RecordMetadata, RecoveryReport,
    TopicConfig, TopicPartition,
};
use clap::{Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  brooklet --dir data topics create orders --partitions 3
  printf 'user-1:{\"amount\":42}\\n' | brooklet --dir data produce orders --key-separator :
  brooklet --dir data consume orders --from-beginning --follow --print-key
  brooklet --dir data groups describe analytics
  brooklet --dir data verify";

/// Inspect and drive a brooklet data directory: topics, produce, consume, groups, dump-log,
/// verify.
///
/// Reading commands work while an application holds the directory (they open it read-only);
/// writing commands (topics create/alter/delete/add-partitions, produce, consume --group,
/// groups reset-offsets --execute, groups delete) need it free.
#[derive(Debug, Parser)]
#[command(name = "brooklet", version, after_help = EXAMPLES)]
struct Cli {
    /// The data directory (as given to Broker::open).
    #[arg(long, global = true, value_name = "DIR", env = "BROOKLET_DIR")]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List, describe, create, alter, delete topics and add partitions.
    #[command(
        subcommand,
        after_help = "Examples:\n  brooklet --dir data topics list\n  brooklet --dir data topics create orders --partitions 3 --config retention.ms=86400000"
    )]
    Topics(TopicsCommand),
    /// Send the lines of stdin as records (the console producer).
    ///
    /// A line ends at \n or at the end of the input (a \r that ends it is dropped too, so Windows line endings give
    /// the same records); its other bytes are sent as they are, UTF-8 or not. A line that cannot be produced (no key
    /// separator, or a record larger than the topic's max.message.bytes) stops the input:
    /// the lines before it are produced, none after it.
    #[command(
        after_help = "Examples:\n  printf 'hello\\nworld\\n' | brooklet --dir data produce orders\n  printf 'user-1:{\"amount\":42}\\n' | brooklet --dir data produce orders --key-separator : --header source=cli\n\nCtrl-C (SIGINT), SIGTERM or SIGHUP makes it stop taking lines within 0.2 s, also while it waits for one: it produces the lines it took, prints the summary, closes the directory cleanly, says after which line it stopped, and exits with 130 (SIGINT), 143 (SIGTERM) or 129 (SIGHUP), as a shell reports a command the signal stopped. A second signal ends it at once."
    )]
    Produce(ProduceArgs),
    /// Print records of a topic (the console consumer).
    #[command(
        after_help = "Examples:\n  brooklet --dir data consume orders --from-beginning\n  brooklet --dir data consume orders --follow --print-key --print-timestamp\n  brooklet --dir data consume orders --partition 0 --offset 42 --max-records 10 --format json | jq .value\n  brooklet --dir data consume orders --group audit --from-beginning\n\nCtrl-C (SIGINT), SIGTERM or SIGHUP stops it at its next poll (within 0.2 s): a group commits what it printed and the directory is closed cleanly; it exits with 130 (SIGINT), 143 (SIGTERM) or 129 (SIGHUP), as a shell reports a command the signal stopped. A second signal ends it at once. Closing its output (| head) stops it the same way, with exit 0, at its next write (with --follow on an idle topic, at the next record).\n\nA damaged partition (see verify) is read up to its damage, with a warning on stderr naming the offset it stops at; the other partitions are printed in full, and the exit status is 2."
    )]
    Consume(ConsumeArgs),
    /// List, describe (with lag), reset and delete consumer groups.
    #[command(
        subcommand,
        after_help = "Examples:\n  brooklet --dir data groups list\n  brooklet --dir data groups describe analytics\n  brooklet --dir data groups reset-offsets analytics --to-earliest --topic orders --execute"
    )]
    Groups(GroupsCommand),
    /// Print every batch of a segment file (offsets, count, timestamps, codec, size, checksum).
    #[command(
        after_help = "Examples:\n  brooklet dump-log data/orders-0/00000000000000000000.log\n  brooklet --dir data dump-log orders-0/00000000000000000000.log --records\n\nExits with 2 if the file is damaged."
    )]
    DumpLog {
        /// The segment file (`<dir>/<topic>-<partition>/<base offset>.log`). A relative path
        /// that does not exist as given is looked up under --dir, if one is given.
        path: PathBuf,
        /// Print the records of each batch too (keys, values and header values as text;
        /// bytes that are not UTF-8 as \xNN).
        #[arg(long)]
        records: bool,
    },
    /// Check every segment and index file of the directory; exits with 2 on damage.
    #[command(
        after_help = "Examples:\n  brooklet --dir data verify\n\nChecks each batch's framing, checksum, records and offsets (contiguous across segments) and each index file against the batches. Reads only: it works while an application holds the directory (the batch being appended at that moment may show as torn)."
    )]
    Verify,
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// The topics, with partition counts, records and size.
    #[command(after_help = "Example:\n  brooklet --dir data topics list")]
    List,
    /// A topic's settings and, per partition, its offsets and size.
    #[command(after_help = "Example:\n  brooklet --dir data topics describe orders")]
    Describe {
        /// The topic.
        topic: String,
    },
    /// Create a topic.
    #[command(
        after_help = "Example:\n  brooklet --dir data topics create orders --partitions 3 --config segment.bytes=1048576"
    )]
    Create {
        /// The topic.
        topic: String,
        /// How many partitions.
        #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
        partitions: u32,
        /// A setting, as Kafka names it (repeatable): segment.bytes (4096 to 4294967295),
        /// segment.ms, retention.ms (-1 = no limit, the default, or 1 and up),
        /// retention.bytes (-1 = no limit, the default, or 0 and up), max.message.bytes (1024
        /// to 4294967295; above segment.bytes, that is the limit), message.timestamp.type
        /// (CreateTime or LogAppendTime), cleanup.policy (only delete: compact is refused,
        /// there is no compaction yet).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
    },
    /// Change a topic's settings (as kafka-configs --alter); they apply to its partitions
    /// at their next append, roll or retention check, and stay across restarts.
    #[command(
        after_help = "Examples:\n  brooklet --dir data topics alter orders --config retention.ms=604800000\n  brooklet --dir data topics alter orders --config retention.bytes=1073741824 --delete-config segment.ms\n\nPrints each setting that changed, old and new. Stored records are never rewritten: a lowered max.message.bytes leaves stored batches alone, and a topic switched to LogAppendTime keeps earlier records' create times."
    )]
    Alter {
        /// The topic.
        topic: String,
        /// A setting to change, as `topics create --config` takes it (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// A setting to put back to its default (repeatable), as kafka-configs
        /// --delete-config.
        #[arg(long = "delete-config", value_name = "KEY")]
        delete_config: Vec<String>,
    },
    /// Delete a topic and its files.
    #[command(after_help = "Example:\n  brooklet --dir data topics delete orders")]
    Delete {
        /// The topic.
        topic: String,
    },
    /// Grow a topic to COUNT partitions.
    #[command(
        after_help = "Examples:\n  brooklet --dir data topics add-partitions orders 6\n  brooklet --dir data topics add-partitions orders --partitions 6"
    )]
    AddPartitions {
        /// The topic.
        topic: String,
        /// The new total partition count.
        #[arg(
            required_unless_present = "partitions",
            conflicts_with = "partitions",
            allow_negative_numbers = true
        )]
        count: Option<u32>,
        /// The new total partition count, as `kafka-topics --alter --partitions` takes it.
        #[arg(long, value_name = "COUNT", allow_negative_numbers = true)]
        partitions: Option<u32>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DurabilityArg {
    /// In memory, written out within 5 ms (the producer's linger) and at the end (acks=0).
    Buffered,
    /// Handed to the OS: survives a crash of this process (acks=1).
    Written,
    /// fdatasync'd: survives power loss (acks=all).
    Synced,
}

#[derive(Debug, Args)]
struct ProduceArgs {
    /// The topic.
    topic: String,
    /// Split each line at the first SEP into key and value (Kafka's parse.key). Not empty.
    #[arg(long, value_name = "SEP", value_parser = non_empty_separator)]
    key_separator: Option<String>,
    /// A header for every record (repeatable).
    #[arg(long = "header", value_name = "KEY=VALUE", value_parser = key_value)]
    headers: Vec<(String, String)>,
    /// Send every record to this partition (default: by key, else spread).
    #[arg(long, allow_negative_numbers = true)]
    partition: Option<u32>,
    /// How durable each record is before it counts as sent.
    #[arg(long, value_enum, default_value = "written")]
    durability: DurabilityArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// The value (with the --print-* fields before it, tab-separated), its bytes as stored:
    /// what was produced comes back byte for byte, UTF-8 or not.
    Text,
    /// One JSON object per line: topic, partition, offset, timestamp, timestamp_type
    /// (CreateTime or LogAppendTime), key, value, headers (an object by name: of a name that
    /// repeats, the last value). Keys, values and header values are JSON strings: bytes that
    /// are not UTF-8 become U+FFFD there (use text for the exact bytes).
    Json,
}

#[derive(Debug, Args)]
struct ConsumeArgs {
    /// The topic.
    topic: String,
    /// Consume as a member of this group (needs the directory free). At exit it commits, for
    /// every partition it was assigned, how far it got (never past a record it read but did
    /// not print), so its next run prints the rest. Without it nothing is committed and the
    /// directory may be in use.
    #[arg(long)]
    group: Option<String>,
    /// Start at the oldest record (default: only new records; a group resumes at its commit).
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Keep waiting for new records (of a whole topic: also from partitions an application
    /// adds meanwhile). Without it, consume stops at the end each partition had when it
    /// started, however fast an application writes.
    #[arg(long)]
    follow: bool,
    /// Stop after N records.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    max_records: Option<u64>,
    /// Read only this partition.
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    partition: Option<u32>,
    /// Start at this offset, or at `earliest` or `latest`, as kafka-console-consumer's
    /// --offset (needs --partition; a number at most the partition's end offset).
    #[arg(long, value_name = "O", requires = "partition", allow_negative_numbers = true, value_parser = parse_offset)]
    offset: Option<OffsetArg>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Print the key before the value.
    #[arg(long)]
    print_key: bool,
    /// Print the headers (`name=value,…`, or `NO_HEADERS`) before the key and value.
    #[arg(long)]
    print_headers: bool,
    /// Print the timestamp first, as kafka-console-consumer does
    /// (`CreateTime:1700000000000`), then the time it names in UTC.
    #[arg(long)]
    print_timestamp: bool,
    /// Print the partition (`Partition:0`) after the timestamp, as kafka-console-consumer does.
    #[arg(long)]
    print_partition: bool,
    /// Print the offset (`Offset:42`) after the partition, as kafka-console-consumer does.
    #[arg(long)]
    print_offset: bool,
}

#[derive(Debug, Subcommand)]
enum GroupsCommand {
    /// The groups with committed offsets.
    #[command(after_help = "Example:\n  brooklet --dir data groups list")]
    List,
    /// Per partition: committed offset, log end offset, lag, owner.
    #[command(after_help = "Example:\n  brooklet --dir data groups describe analytics")]
    Describe {
        /// The group.
        group: String,
    },
    /// Move a group's committed offsets (the group must have no running members). As
    /// Kafka's tool, it only shows the plan unless --execute is given.
    #[command(
        after_help = "Examples:\n  brooklet --dir data groups reset-offsets analytics --to-earliest            # show the plan\n  brooklet --dir data groups reset-offsets analytics --to-earliest --execute  # apply it\n  brooklet --dir data groups reset-offsets analytics --to-datetime 2024-05-01T12:00:00Z --topic orders --execute"
    )]
    ResetOffsets(ResetArgs),
    /// Delete a group's committed offsets.
    #[command(after_help = "Example:\n  brooklet --dir data groups delete analytics")]
    Delete {
        /// The group.
        group: String,
    },
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("to").required(true).args(["to_earliest", "to_latest", "to_offset", "to_datetime"])))]
struct ResetArgs {
    /// The group.
    group: String,
    /// To each partition's first stored offset.
    #[arg(long)]
    to_earliest: bool,
    /// To each partition's end.
    #[arg(long)]
    to_latest: bool,
    /// To this offset (clamped into each partition's log).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    to_offset: Option<u64>,
    /// To the first record at or after this UTC time: YYYY-MM-DD[THH:MM[:SS[.mmm]]][Z], or
    /// milliseconds since the epoch.
    #[arg(long, value_name = "T")]
    to_datetime: Option<String>,
    /// Only this topic's partitions (default: every partition the group committed).
    #[arg(long)]
    topic: Option<String>,
    /// Apply the reset; without it, only print the offsets it would set (a dry run, as
    /// Kafka's `kafka-consumer-groups --reset-offsets`).
    #[arg(long)]
    execute: bool,
}

/// `eprintln!` that ignores a failed write: stderr into a pipe whose reader is gone (`2>&1 |
/// head`) loses the line rather than panicking (exit 101), as stdout does ([`Output`]).
/// The line goes out in one write: `writeln!` on unbuffered stderr writes each piece of the
/// format on its own, and the lines of two commands sharing a terminal or log file came out
/// spliced (`brooklet: error: brooklet: error: the directory …`).
macro_rules! stderr_line {
    ($($arg:tt)*) => {{
        let mut line = format!($($arg)*);
        line.push('\n');
        let _ = io::stderr().write_all(line.as_bytes());
    }};
}

/// What went wrong, as the one line printed on stderr.
struct Failure(String);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure(e.to_string())
    }
}

type CliResult<T> = Result<T, Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(Failure(message)) => {
            stderr_line!("brooklet: error: {message}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> CliResult<ExitCode> {
    let dir = || {
        cli.dir
            .clone()
            .ok_or_else(|| Failure("no data directory: pass --dir DIR (or set BROOKLET_DIR)".into()))
    };
    let mut out = Output::new();
    let code = match cli.command {
        Command::Topics(cmd) => topics(&dir()?, cmd, &mut out).map(|()| ExitCode::SUCCESS)?,
        Command::Produce(args) => produce(&dir()?, &args, &mut out)?,
        Command::Consume(args) => consume(&dir()?, &args, &mut out)?,
        Command::Groups(cmd) => groups(&dir()?, cmd, &mut out).map(|()| ExitCode::SUCCESS)?,
        Command::DumpLog { path, records } => {
            return dump_log(&segment_path(&path, cli.dir.as_deref())?, records, &mut out);
        }
        Command::Verify => return verify(&dir()?, &mut out),
    };
    out.flush()?;
    Ok(code)
}

/// Buffered stdout. Once a reader closes the pipe (`| head`), everything written after is
/// dropped quietly, as other tools stop there; `consume` checks [`broken`](Self::broken) to
/// stop, commit and close the directory cleanly (exiting here would skip that).
struct Output {
    inner: BufWriter<io::Stdout>,
    broken: bool,
}

impl Output {
    fn new() -> Self {
        Output {
            inner: BufWriter::new(io::stdout()),
            broken: false,
        }
    }

    fn line(&mut self, text: &str) -> CliResult<()> {
        self.bytes_line(text.as_bytes())
    }

    /// `bytes` as they are (UTF-8 or not), then a newline.
    fn bytes_line(&mut self, bytes: &[u8]) -> CliResult<()> {
        if self.broken {
            return Ok(());
        }
        let result = self.inner.write_all(bytes).and_then(|()| self.inner.write_all(b"\n"));
        self.check(result)
    }

    fn flush(&mut self) -> CliResult<()> {
        if self.broken {
            return Ok(());
        }
        let result = self.inner.flush();
        self.check(result)
    }

    /// Whether the reader of stdout is gone (what was written since the last successful
    /// flush may not have reached it).
    fn broken(&self) -> bool {
        self.broken
    }

    fn check(&mut self, result: io::Result<()>) -> CliResult<()> {
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.broken = true;
                Ok(())
            }
            Err(e) => Err(Failure(format!("cannot write to stdout: {e}"))),
        }
    }
}

/// The termination signals `consume` and `produce` handle.
#[cfg(unix)]
const STOP_SIGNALS: &[c_int] = &[
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
];
#[cfg(not(unix))]
const STOP_SIGNALS: &[c_int] = &[signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM];

/// SIGINT, SIGTERM and SIGHUP turned into a flag that the long-running commands check
/// between polls and lines, so that they stop there, commit and close the directory cleanly
/// (a signal's default action would end the process with every partition left unclean, to
/// be recovered at the next open). A second signal ends the process at once, in case the
/// clean stop hangs.
struct Interrupt {
    /// The number of the last signal received; 0 for none.
    received: Arc<AtomicUsize>,
}

impl Interrupt {
    fn install() -> CliResult<Interrupt> {
        let received = Arc::new(AtomicUsize::new(0));
        let armed = Arc::new(AtomicBool::new(false));
        for &signal in STOP_SIGNALS {
            let failed = |e: io::Error| Failure(format!("cannot handle signal {signal}: {e}"));
            // Registered first, so that it sees `armed` as an earlier signal left it.
            signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(&armed))
                .map_err(failed)?;
            signal_hook::flag::register(signal, Arc::clone(&armed)).map_err(failed)?;
            signal_hook::flag::register_usize(signal, Arc::clone(&received), signal.unsigned_abs() as usize)
                .map_err(failed)?;
        }
        Ok(Interrupt { received })
    }

    /// The signal received, if any.
    fn received(&self) -> Option<c_int> {
        match self.received.load(Ordering::SeqCst) {
            0 => None,
            signal => c_int::try_from(signal).ok(),
        }
    }
}

/// How long a command waits for records or a line before it checks for a signal again.
const SIGNAL_CHECK: Duration = Duration::from_millis(200);

/// A signal's name, for messages.
fn signal_name(signal: c_int) -> String {
    match signal {
        signal_hook::consts::SIGINT => "SIGINT".into(),
        signal_hook::consts::SIGTERM => "SIGTERM".into(),
        #[cfg(unix)]
        signal_hook::consts::SIGHUP => "SIGHUP".into(),
        other => format!("signal {other}"),
    }
}

/// The exit status after a stop by `signal`: 128 + its number, as a shell reports a command
/// that the signal ended.
fn signal_exit(signal: c_int) -> ExitCode {
    ExitCode::from(u8::try_from(128 + signal).unwrap_or(1))
}

/// Fails unless `dir` is an existing directory.
fn check_dir(dir: &Path) -> CliResult<()> {
    if !dir.exists() {
        return Err(Failure(format!("{} does not exist", dir.display())));
    }
    if !dir.is_dir() {
        return Err(Failure(format!("{} is not a directory", dir.display())));
    }
    Ok(())
}

/// Opens the directory for reading, beside any application that holds it.
fn open_reader(dir: &Path) -> CliResult<Broker> {
    let broker = open_reader_unwarned(dir)?;
    warn_damage(&broker);
    Ok(broker)
}

/// [`open_reader`] without its damage warnings: for `consume`, which warns of damage when
/// a read reaches it, naming the offset it stops printing at.
fn open_reader_unwarned(dir: &Path) -> CliResult<Broker> {
    check_dir(dir)?;
    let broker = Broker::open_read_only(dir).map_err(|e| match e {
        // Only the topic table missing: another missing file (a partition's directory) is
        // damage to name as it is.
        Error::Io {
            ref source, ref path, ..
        } if source.kind() == io::ErrorKind::NotFound && *path == dir.join("meta").join("topics") => Failure(format!(
            "{} is not a brooklet data directory (no meta/topics)",
            dir.display()
        )),
        other => other.into(),
    })?;
    // A read-only open runs no recovery and cuts nothing, so its reports are empty today;
    // checked all the same, so that a reader would say so if it ever did.
    warn_recoveries(&broker);
    Ok(broker)
}

/// One line on stderr for each partition a read-only open found damaged (valid batches
/// that stop short of the writer's clean end or recovery point): the open itself succeeds,
/// so that the rest stays readable, and reports the damage only through `tracing`; a count
/// or listing printed without this line would pass a shorter log off as whole. A read that
/// reaches the damage still fails with it.
fn warn_damage(broker: &Broker) {
    for (tp, log) in partition_logs(broker) {
        if let Err(e) = log.refresh() {
            stderr_line!("brooklet: warning: {tp}: {e}");
        }
    }
}

/// Every partition of every topic, with its log (those that cannot be had are skipped).
fn partition_logs(broker: &Broker) -> Vec<(TopicPartition, Arc<PartitionLog>)> {
    let mut logs = Vec::new();
    for topic in broker.list_topics() {
        let Ok(description) = broker.describe_topic(&topic) else {
            continue;
        };
        for p in &description.partitions {
            let tp = TopicPartition::new(topic.as_str(), p.partition);
            if let Ok(log) = broker.partition_log(&tp) {
                logs.push((tp, log));
            }
        }
    }
    logs
}

/// The partitions of `topic` (or only `partition`) whose valid batches stop short of where
/// the writer left them, with the damage: found as a reading command finds it, by a
/// read-only open of each partition beside the writable one `broker` holds (it scans the
/// last segment, which a writable open after a clean shutdown trusts). A partition that
/// cannot be opened so reports nothing here: the writer's open checked it.
fn damaged_partitions(broker: &Broker, topic: &str, partition: Option<u32>) -> Vec<(TopicPartition, Error)> {
    let Ok(description) = broker.describe_topic(topic) else {
        return Vec::new();
    };
    description
        .partitions
        .iter()
        .filter(|d| partition.is_none_or(|p| p == d.partition))
        .filter_map(|d| {
            let tp = TopicPartition::new(topic, d.partition);
            let log = broker.partition_log(&tp).ok()?;
            let reader = PartitionLog::open_read_only(log.dir(), log.config()).ok()?;
            reader.refresh().err().map(|e| (tp, e))
        })
        .collect()
}

/// Opens the directory for writing: it must not be in use.
fn open_writer(dir: &Path, action: &str) -> CliResult<Broker> {
    open_writer_with(dir, action, DamagePolicy::default())
}

/// [`open_writer`] with the given policy for partitions its open finds damaged.
fn open_writer_with(dir: &Path, action: &str, damage: DamagePolicy) -> CliResult<Broker> {
    check_dir(dir)?;
    if !dir.join("meta").join("topics").exists() {
        if !action.starts_with("create") {
            return Err(Failure(format!(
                "{} is not a brooklet data directory (no meta/topics)",
                dir.display()
            )));
        }
        // A new data directory is made in a new or empty directory only: a mistyped --dir
        // naming some other directory would mix its files with the data directory's.
        if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
            return Err(Failure(format!(
                "{} is not a brooklet data directory (no meta/topics) and not empty: a new one is made only in a new \
                 or empty directory",
                dir.display()
            )));
        }
    }
    let broker = Broker::builder().damage_policy(damage).open(dir).map_err(|e| match e {
        Error::Locked { .. } => Failure(format!(
            "the directory {} is in use by another process (an application has it open); {action} writes to it, so stop that process first — reading commands work meanwhile",
            dir.display()
        )),
        other => other.into(),
    })?;
    warn_recoveries(&broker);
    Ok(broker)
}

/// One line on stderr for each partition whose open found it not closed cleanly and had to
/// cut a torn or damaged tail or delete segments: the library reports that only through
/// `tracing`, which the CLI does not collect, and a user should learn that bytes were cut.
/// stdout is left as it is.
fn warn_recoveries(broker: &Broker) {
    for (tp, log) in partition_logs(broker) {
        if let Some(warning) = recovery_warning(&tp, log.recovery_report()) {
            stderr_line!("brooklet: warning: {warning}");
        }
    }
}

/// What a recovery did to `tp`, if it lost or removed anything.
fn recovery_warning(tp: &TopicPartition, report: &RecoveryReport) -> Option<String> {
    if report.clean_shutdown || (report.truncation.is_none() && report.segments_deleted.is_empty()) {
        return None;
    }
    let mut done = Vec::new();
    if let Some(cut) = &report.truncation {
        done.push(format!(
            "cut {} bytes at byte {} of {} ({})",
            cut.bytes_removed,
            cut.position,
            cut.path.display(),
            cut.reason
        ));
    }
    if !report.segments_deleted.is_empty() {
        let bases: Vec<String> = report.segments_deleted.iter().map(u64::to_string).collect();
        done.push(format!(
            "deleted {} segment(s) (base offsets {})",
            bases.len(),
            bases.join(", ")
        ));
    }
    Some(format!("{tp} was not closed cleanly: recovery {}", done.join(" and ")))
}

/// Renders rows under headers, each column as wide as its widest cell; columns of numbers
/// are right-aligned.
fn table(headers: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    let mut numeric = vec![true; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
            if let Some(n) = numeric.get_mut(i) {
                *n &= cell == "-" || cell.parse::<f64>().is_ok();
            }
        }
    }
    let render = |cells: &mut dyn Iterator<Item = &str>| {
        let mut line = String::new();
        for (i, cell) in cells.enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            if i > 0 {
                line.push_str("  ");
            }
            if numeric.get(i).copied().unwrap_or(false) {
                line.push_str(&format!("{cell:>width$}"));
            } else {
                line.push_str(&format!("{cell:<width$}"));
            }
        }
        line.trim_end().to_owned()
    };
    let mut lines = vec![render(&mut headers.iter().copied())];
    for row in rows {
        lines.push(render(&mut row.iter().map(String::as_str)));
    }
    lines
}

fn print_table(out: &mut Output, headers: &[&str], rows: &[Vec<String>]) -> CliResult<()> {
    for line in table(headers, rows) {
        out.line(&line)?;
    }
    Ok(())
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = "KiB";
    for u in UNITS.iter().skip(1) {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    format!("{value:.1} {unit}")
}

fn topics(dir: &Path, cmd: TopicsCommand, out: &mut Output) -> CliResult<()> {
    match cmd {
        TopicsCommand::List => {
            let broker = open_reader(dir)?;
            let mut rows = Vec::new();
            for name in broker.list_topics() {
                let d = broker.describe_topic(&name)?;
                let records: u64 = d.partitions.iter().map(|p| p.log_end_offset - p.log_start_offset).sum();
                let size: u64 = d.partitions.iter().map(|p| p.size_bytes).sum();
                rows.push(vec![
                    name,
                    d.partitions.len().to_string(),
                    records.to_string(),
                    human_bytes(size),
                ]);
            }
            if rows.is_empty() {
                return out.line("no topics");
            }
            print_table(out, &["TOPIC", "PARTITIONS", "RECORDS", "SIZE"], &rows)
        }
        TopicsCommand::Describe { topic } => {
            let broker = open_reader(dir)?;
            let d = broker.describe_topic(&topic)?;
            out.line(&format!("topic {}", d.name))?;
            // Kafka's TopicId: tells this creation of the name from an earlier one.
            out.line(&format!("  {:<24}{}", "id", d.id))?;
            for (key, value) in d.config.properties() {
                out.line(&format!("  {key:<24}{value}"))?;
            }
            out.line("")?;
            let rows: Vec<Vec<String>> = d
                .partitions
                .iter()
                .map(|p| {
                    vec![
                        p.partition.to_string(),
                        p.log_start_offset.to_string(),
                        p.log_end_offset.to_string(),
                        (p.log_end_offset - p.log_start_offset).to_string(),
                        human_bytes(p.size_bytes),
                    ]
                })
                .collect();
            print_table(
                out,
                &["PARTITION", "START OFFSET", "END OFFSET", "RECORDS", "SIZE"],
                &rows,
            )
        }
        TopicsCommand::Create {
            topic,
            partitions,
            config,
        } => {
            let settings = with_settings(TopicConfig::with_partitions(partitions), &config, &[])?;
            // Checked before the directory is made, so that a refused name leaves none.
            brooklet::validate_topic_name(&topic)?;
            if dir.exists() {
                check_dir(dir)?;
            }
            std::fs::create_dir_all(dir)
                .map_err(|e| Failure(format!("cannot create directory {}: {e}", dir.display())))?;
            let broker = open_writer(dir, "create")?;
            broker.create_topic(&topic, settings)?;
            out.line(&format!("created topic {topic} with {partitions} partition(s)"))
        }
        TopicsCommand::Alter {
            topic,
            config,
            delete_config,
        } => {
            if config.is_empty() && delete_config.is_empty() {
                return Err(Failure(
                    "nothing to change: give --config KEY=VALUE or --delete-config KEY".into(),
                ));
            }
            if let Some(key) = delete_config.iter().map(|k| k.trim()).find(|k| {
                config
                    .iter()
                    .any(|pair| pair.split_once('=').is_some_and(|(set, _)| set.trim() == *k))
            }) {
                return Err(Failure(format!("{key} is given to both --config and --delete-config")));
            }
            let broker = open_writer(dir, "topics alter")?;
            let old = broker.describe_topic(&topic)?.config;
            let new = with_settings(old.clone(), &config, &delete_config)?;
            broker.alter_topic_config(&topic, new.clone())?;
            let before = old.properties();
            let mut changed = 0;
            for ((key, was), (_, now)) in before.iter().zip(new.properties()) {
                if *was != now {
                    out.line(&format!("  {key:<24}{was} -> {now}"))?;
                    changed += 1;
                }
            }
            out.line(&format!("altered topic {topic}: {changed} setting(s) changed"))
        }
        TopicsCommand::Delete { topic } => {
            let broker = open_writer(dir, "topics delete")?;
            broker.delete_topic(&topic)?;
            out.line(&format!("deleted topic {topic}"))
        }
        TopicsCommand::AddPartitions {
            topic,
            count,
            partitions,
        } => {
            let count = count
                .or(partitions)
                .ok_or_else(|| Failure("topics add-partitions: give the new partition count".into()))?;
            let broker = open_writer(dir, "topics add-partitions")?;
            broker.add_partitions(&topic, count)?;
            out.line(&format!("topic {topic} now has {count} partitions"))
        }
    }
}

/// `config` with each `--config KEY=VALUE` of `set` applied, and each `--delete-config KEY`
/// of `reset` put back to its default; checked as a whole.
fn with_settings(mut config: TopicConfig, set: &[String], reset: &[String]) -> CliResult<TopicConfig> {
    for pair in set {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| Failure(format!("--config {pair:?} is not KEY=VALUE")))?;
        config = config.set(key.trim(), value.trim())?;
    }
    let defaults = TopicConfig::default().properties();
    for key in reset {
        let key = key.trim();
        let default = defaults
            .iter()
            .find(|(name, _)| *name == key && *name != "partitions")
            .map(|(_, value)| value.as_str());
        // An unknown name goes to `set`, whose error lists the known ones.
        config = config.set(key, default.unwrap_or(""))?;
    }
    config.validate()?;
    Ok(config)
}

/// `--header`'s `KEY=VALUE`; anything else is a usage error (exit 2), as clap reports the
/// other malformed arguments.
fn key_value(pair: &str) -> Result<(String, String), String> {
    pair.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{pair:?} is not KEY=VALUE"))
}

/// `line` split at the first `sep`, if any.
fn split_once_bytes<'a>(line: &'a [u8], sep: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    if sep.is_empty() {
        return None;
    }
    let at = line.windows(sep.len()).position(|w| w == sep)?;
    Some((line.get(..at)?, line.get(at + sep.len()..)?))
}

/// `--key-separator`: an empty one would match before every line's first byte.
fn non_empty_separator(sep: &str) -> Result<String, String> {
    if sep.is_empty() {
        Err("the separator must not be empty".into())
    } else {
        Ok(sep.to_owned())
    }
}

/// What the stdin thread hands over.
enum Input {
    /// One line, without its line ending.
    Line(Vec<u8>),
    /// A line longer than the longest the thread takes (the thread stops): no record of it
    /// could fit in the topic, so it is not read further (a file without newlines is not
    /// gathered whole in memory only to be refused).
    TooLong,
    /// The end of stdin.
    End,
    /// A read failed (the thread stops).
    Failed(io::Error),
}

/// Lines sent with one `send_batch` at most (more only when that many are already waiting).
const CHUNK_RECORDS: usize = 1000;
/// Line bytes sent with one `send_batch` at most.
const CHUNK_BYTES: usize = 1 << 20;

/// Reads stdin on a thread of its own, so that `produce` notices a signal while a read
/// blocks (on a terminal, waiting for the next line). The thread is left blocked at exit.
/// A line longer than `max_line` bytes (its line ending aside) is [`Input::TooLong`].
fn read_stdin_lines(max_line: usize) -> CliResult<mpsc::Receiver<Input>> {
    let (lines, receiver) = mpsc::sync_channel(CHUNK_RECORDS);
    // Enough for the longest line and its \n; a line that fills it without one is too long.
    let take = u64::try_from(max_line).unwrap_or(u64::MAX).saturating_add(1);
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut input = io::stdin().lock();
            loop {
                let mut buf = Vec::new();
                let item = match input.by_ref().take(take).read_until(b'\n', &mut buf) {
                    Ok(0) => Input::End,
                    Ok(_) if buf.last() != Some(&b'\n') && buf.len() > max_line => Input::TooLong,
                    Ok(_) => {
                        if buf.last() == Some(&b'\n') {
                            buf.pop();
                        }
                        if buf.last() == Some(&b'\r') {
                            buf.pop();
                        }
                        Input::Line(buf)
                    }
                    Err(e) => Input::Failed(e),
                };
                let last = !matches!(item, Input::Line(_));
                if lines.send(item).is_err() || last {
                    return;
                }
            }
        })
        .map_err(|e| Failure(format!("cannot start the thread that reads stdin: {e}")))?;
    Ok(receiver)
}

/// Why `send_in_order` stopped.
enum SendFailure {
    /// The record at this index alone is larger than its partition's batch limit.
    TooLarge { index: usize, size: usize, max: usize },
    /// Any other error of a `send_batch` (records of partitions written before it stay).
    Other(Error),
}

/// Sends `records` in their order and stops at the first one too large: those before it
/// are written, nothing from it on. `send_batch` refuses a call holding a record too large
/// before writing any of it, so halving such a call finds the record and writes each record
/// before it once.
fn send_in_order(
    producer: &Producer,
    records: &[ProducerRecord],
    sent: &mut Vec<RecordMetadata>,
) -> Option<SendFailure> {
    match producer.send_batch(records) {
        Ok(metadata) => {
            sent.extend(metadata.iter());
            None
        }
        Err(Error::RecordTooLarge { .. }) if records.len() > 1 => {
            let (head, tail) = records.split_at(records.len() / 2);
            if let Some(failure) = send_in_order(producer, head, sent) {
                return Some(failure);
            }
            send_in_order(producer, tail, sent).map(|failure| match failure {
                SendFailure::TooLarge { index, size, max } => SendFailure::TooLarge {
                    index: index + head.len(),
                    size,
                    max,
                },
                other => other,
            })
        }
        Err(Error::RecordTooLarge { size, max }) => Some(SendFailure::TooLarge { index: 0, size, max }),
        Err(e) => Some(SendFailure::Other(e)),
    }
}

/// Per partition: records, first and last offset.
type ProduceSummary = BTreeMap<u32, (u64, u64, u64)>;

/// Why `produce` stopped before the end of stdin.
enum ProduceStop {
    /// A line or read that could not be produced: the error message.
    Failed(String),
    /// A signal.
    Signal(c_int),
}

fn produce(dir: &Path, args: &ProduceArgs, out: &mut Output) -> CliResult<ExitCode> {
    // A name no topic can have is said so, not reported as a topic that does not exist.
    brooklet::validate_topic_name(&args.topic)?;
    let headers = args.headers.as_slice();
    let interrupt = Interrupt::install()?;
    let broker = open_writer(dir, "produce")?;
    // Fail before reading stdin if the topic or partition does not exist.
    let description = broker.describe_topic(&args.topic)?;
    let partitions = description.partitions.len() as u32;
    if let Some(p) = args.partition
        && p >= partitions
    {
        return Err(Error::InvalidPartition {
            topic: args.topic.clone(),
            partition: p,
            partitions,
        }
        .into());
    }
    // A partition damaged below its end (bytes that rotted after a clean shutdown, which a
    // writable open does not scan for) would store the records after the damage, where
    // every reader stops: refused, before stdin is read, with the exit status of damage.
    let damaged = damaged_partitions(&broker, &args.topic, args.partition);
    if !damaged.is_empty() {
        for (tp, e) in &damaged {
            stderr_line!("brooklet: warning: {tp}: {e}");
        }
        let list: Vec<String> = damaged.iter().map(|(tp, _)| tp.to_string()).collect();
        stderr_line!(
            "brooklet: error: nothing produced: {} is damaged, and records produced to it would be stored after the \
             damage, where readers stop (brooklet verify lists the damage)",
            list.join(", ")
        );
        broker.close()?;
        return Ok(ExitCode::from(2));
    }
    // The setting that sets the batch limit, to name it when a line is too large.
    let setting = |name: &str| {
        description
            .config
            .properties()
            .into_iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    };
    let limit_name = |max: usize| {
        if setting("max.message.bytes").is_some_and(|v| v == max.to_string()) {
            "max.message.bytes"
        } else {
            // A max.message.bytes above segment.bytes: a batch must fit in a segment.
            "segment.bytes"
        }
    };
    // The batch limit: a line longer than it, less the key separator it may hold, makes a
    // record larger than it (framing adds to the key and value), so none is read further.
    let limit = ["max.message.bytes", "segment.bytes"]
        .into_iter()
        .filter_map(|name| setting(name)?.parse::<usize>().ok())
        .min()
        .unwrap_or(usize::MAX);
    let max_line = limit.saturating_add(args.key_separator.as_ref().map_or(0, String::len));
    let durability = match args.durability {
        DurabilityArg::Buffered => Durability::Buffered,
        DurabilityArg::Written => Durability::Written,
        DurabilityArg::Synced => Durability::Synced,
    };
    let producer = broker.producer(ProducerConfig::default().durability(durability));
    let mut summary = ProduceSummary::new();
    let mut sent: Vec<RecordMetadata> = Vec::new();
    // Sends the lines gathered in `chunk` (the first of them is line `first`), in order:
    // a line that fails stops everything after it.
    let mut send = |chunk: &mut Vec<ProducerRecord>, first: usize, summary: &mut ProduceSummary| -> Option<String> {
        if chunk.is_empty() {
            return None;
        }
        sent.clear();
        let failure = send_in_order(&producer, chunk, &mut sent);
        for meta in sent.drain(..) {
            let entry = summary.entry(meta.partition).or_insert((0, meta.offset, meta.offset));
            entry.0 += 1;
            entry.1 = entry.1.min(meta.offset);
            entry.2 = entry.2.max(meta.offset);
        }
        let lines = chunk.len();
        chunk.clear();
        match failure? {
            SendFailure::TooLarge { index, size, max } => Some(format!(
                "line {} is one record of {size} bytes, too large for topic {}: its {} is {max} bytes",
                first + index,
                args.topic,
                limit_name(max)
            )),
            SendFailure::Other(e) => Some(format!("cannot produce lines {first} to {}: {e}", first + lines - 1)),
        }
    };
    // Lines are bytes (a value need not be UTF-8), gathered while more are waiting and sent
    // in order; a bad line stops the input after the records before it are produced.
    let lines = read_stdin_lines(max_line)?;
    let mut chunk: Vec<ProducerRecord> = Vec::new();
    let mut chunk_bytes = 0usize;
    let mut number = 0usize;
    let stopped = loop {
        let first = number + 1 - chunk.len();
        if let Some(signal) = interrupt.received() {
            break send(&mut chunk, first, &mut summary)
                .map(ProduceStop::Failed)
                .or(Some(ProduceStop::Signal(signal)));
        }
        let next = if chunk.is_empty() {
            lines
                .recv_timeout(SIGNAL_CHECK)
                .map_err(|e| e == mpsc::RecvTimeoutError::Disconnected)
        } else {
            lines.try_recv().map_err(|e| e == mpsc::TryRecvError::Disconnected)
        };
        let line = match next {
            Ok(Input::Line(line)) => line,
            // Nothing waiting: send what was gathered (a terminal's lines go out one by one).
            Err(false) => match send(&mut chunk, first, &mut summary) {
                Some(failure) => break Some(ProduceStop::Failed(failure)),
                None => {
                    chunk_bytes = 0;
                    continue;
                }
            },
            Ok(Input::End) | Err(true) => break send(&mut chunk, first, &mut summary).map(ProduceStop::Failed),
            Ok(Input::TooLong) => {
                number += 1;
                let failure = send(&mut chunk, first, &mut summary).unwrap_or_else(|| {
                    format!(
                        "line {number} is more than {max_line} bytes long, too large for topic {}: its {} is {limit} bytes",
                        args.topic,
                        limit_name(limit)
                    )
                });
                break Some(ProduceStop::Failed(failure));
            }
            Ok(Input::Failed(e)) => {
                let failure = send(&mut chunk, first, &mut summary)
                    .unwrap_or_else(|| format!("cannot read line {} of stdin: {e}", number + 1));
                break Some(ProduceStop::Failed(failure));
            }
        };
        number += 1;
        let mut record = ProducerRecord::new(args.topic.as_str());
        match &args.key_separator {
            Some(sep) => match split_once_bytes(&line, sep.as_bytes()) {
                Some((key, value)) => record = record.key(key.to_vec()).value(value.to_vec()),
                None => {
                    let failure = send(&mut chunk, first, &mut summary).unwrap_or_else(|| {
                        format!(
                            "line {number} has no key separator {sep:?}: {:?}",
                            String::from_utf8_lossy(&line)
                        )
                    });
                    break Some(ProduceStop::Failed(failure));
                }
            },
            None => record = record.value(line.clone()),
        }
        for (k, v) in headers {
            record = record.header(k.clone(), v.clone());
        }
        if let Some(p) = args.partition {
            record = record.partition(p);
        }
        chunk_bytes += line.len();
        chunk.push(record);
        if chunk.len() >= CHUNK_RECORDS || chunk_bytes >= CHUNK_BYTES {
            if let Some(failure) = send(&mut chunk, first, &mut summary) {
                break Some(ProduceStop::Failed(failure));
            }
            chunk_bytes = 0;
        }
    };
    producer.close()?;
    drop(producer);
    // Closed here rather than dropped, so that a failure to close reaches the exit status.
    broker.close()?;
    let total: u64 = summary.values().map(|s| s.0).sum();
    out.line(&format!(
        "produced {total} record(s) to {} in {} partition(s)",
        args.topic,
        summary.len()
    ))?;
    if !summary.is_empty() {
        let rows: Vec<Vec<String>> = summary
            .iter()
            .map(|(p, (n, first, last))| vec![p.to_string(), n.to_string(), first.to_string(), last.to_string()])
            .collect();
        print_table(out, &["PARTITION", "RECORDS", "FIRST OFFSET", "LAST OFFSET"], &rows)?;
    }
    match stopped {
        None => Ok(ExitCode::SUCCESS),
        Some(ProduceStop::Failed(reason)) => Err(Failure(format!(
            "{reason}; stopped there: the {total} record(s) before it were produced"
        ))),
        Some(ProduceStop::Signal(signal)) => {
            out.flush()?;
            stderr_line!(
                "brooklet: interrupted by {}: stopped after line {number} of stdin; the {total} record(s) up to it were produced",
                signal_name(signal)
            );
            Ok(signal_exit(signal))
        }
    }
}

fn lossy(bytes: Option<&[u8]>) -> Option<String> {
    bytes.map(|b| String::from_utf8_lossy(b).into_owned())
}

/// `bytes` as text for `dump-log`: UTF-8 as it is, any other byte as `\xNN`.
fn escaped(bytes: &[u8]) -> String {
    let mut text = String::new();
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        for b in chunk.invalid() {
            text.push_str(&format!("\\x{b:02x}"));
        }
    }
    text
}

/// `consume --offset`: a number, or one of the partition's ends.
#[derive(Debug, Clone, Copy)]
enum OffsetArg {
    At(u64),
    Earliest,
    Latest,
}

fn parse_offset(s: &str) -> Result<OffsetArg, String> {
    match s {
        "earliest" => Ok(OffsetArg::Earliest),
        "latest" => Ok(OffsetArg::Latest),
        _ => s
            .parse()
            .map(OffsetArg::At)
            .map_err(|_| format!("{s:?} is not an offset: give a number, earliest or latest")),
    }
}

/// One record as the line `consume` prints (without the newline). Text gives keys, values
/// and header values as the bytes stored.
fn format_record(r: &ConsumerRecordRef<'_>, args: &ConsumeArgs) -> Vec<u8> {
    match args.format {
        Format::Json => {
            let headers: serde_json::Map<String, serde_json::Value> = r
                .headers()
                .map(|(k, v)| {
                    (
                        k.to_owned(),
                        serde_json::Value::String(String::from_utf8_lossy(v).into_owned()),
                    )
                })
                .collect();
            serde_json::json!({
                "topic": r.topic(),
                "partition": r.partition(),
                "offset": r.offset(),
                "timestamp": r.timestamp(),
                "timestamp_type": format!("{:?}", r.timestamp_type()),
                "key": lossy(r.key()),
                "value": lossy(r.value()),
                "headers": headers,
            })
            .to_string()
            .into_bytes()
        }
        Format::Text => {
            let mut fields: Vec<Vec<u8>> = Vec::new();
            if args.print_timestamp {
                // As kafka-console-consumer's print.timestamp: the type (named as in the
                // JSON format), a colon, the ms.
                fields.push(
                    format!(
                        "{:?}:{} ({})",
                        r.timestamp_type(),
                        r.timestamp(),
                        format_time(r.timestamp())
                    )
                    .into_bytes(),
                );
            }
            // The order of kafka-console-consumer's fields: timestamp, partition, offset,
            // headers, key, value.
            if args.print_partition {
                fields.push(format!("Partition:{}", r.partition()).into_bytes());
            }
            if args.print_offset {
                fields.push(format!("Offset:{}", r.offset()).into_bytes());
            }
            if args.print_headers {
                let headers: Vec<Vec<u8>> = r.headers().map(|(k, v)| [k.as_bytes(), b"=", v].concat()).collect();
                fields.push(if headers.is_empty() {
                    b"NO_HEADERS".to_vec()
                } else {
                    headers.join(&b","[..])
                });
            }
            if args.print_key {
                fields.push(r.key().map_or_else(|| b"null".to_vec(), <[u8]>::to_vec));
            }
            fields.push(r.value().map_or_else(|| b"null".to_vec(), <[u8]>::to_vec));
            fields.join(&b"\t"[..])
        }
    }
}

/// The hint on stderr when `consume` started at the end of each partition and found nothing.
const NO_NEW_RECORDS: &str = "brooklet: no new records (consume starts at the end of each partition, as Kafka's \
                              console consumer; --from-beginning reads what is stored, --follow waits for new records)";

fn consume(dir: &Path, args: &ConsumeArgs, out: &mut Output) -> CliResult<ExitCode> {
    brooklet::validate_topic_name(&args.topic)?;
    let interrupt = Interrupt::install()?;
    let broker = match &args.group {
        // A damaged partition is left offline, not a failed open: the others are printed.
        Some(_) => open_writer_with(
            dir,
            "consume --group (it commits the group's offsets)",
            DamagePolicy::Offline,
        )?,
        None => open_reader_unwarned(dir)?,
    };
    let description = broker.describe_topic(&args.topic)?;
    // --offset as a number (it needs --partition).
    let mut offset = None;
    let partitions: Vec<u32> = match args.partition {
        Some(p) => {
            let Some(d) = description.partitions.iter().find(|d| d.partition == p) else {
                return Err(Error::InvalidPartition {
                    topic: args.topic.clone(),
                    partition: p,
                    partitions: description.partitions.len() as u32,
                }
                .into());
            };
            offset = args.offset.map(|o| match o {
                OffsetArg::At(offset) => offset,
                OffsetArg::Earliest => d.log_start_offset,
                OffsetArg::Latest => d.log_end_offset,
            });
            // Refused rather than moved to an end by the reset policy, which would print
            // something else than asked for, or nothing, without saying why.
            if let Some(offset) = offset {
                if offset > d.log_end_offset {
                    return Err(Failure(format!(
                        "offset {offset} is past the end of {}-{p}: its end offset is {} (the offset the next record gets)",
                        args.topic, d.log_end_offset
                    )));
                }
                if offset < d.log_start_offset {
                    return Err(Failure(format!(
                        "offset {offset} is before the start of {}-{p}: its first stored offset is {}",
                        args.topic, d.log_start_offset
                    )));
                }
            }
            vec![p]
        }
        None => description.partitions.iter().map(|d| d.partition).collect(),
    };
    // Without --follow, stop at the ends as they are now.
    let ends: BTreeMap<u32, u64> = description
        .partitions
        .iter()
        .map(|d| (d.partition, d.log_end_offset))
        .collect();
    let reset = if args.from_beginning {
        OffsetReset::Earliest
    } else {
        OffsetReset::Latest
    };
    let config = ConsumerConfig::default()
        .group_id(args.group.clone())
        .client_id("brooklet-cli")
        .auto_offset_reset(reset)
        .enable_auto_commit(false);
    let mut consumer = broker.consumer(config)?;
    let tps: Vec<TopicPartition> = partitions
        .iter()
        .map(|p| TopicPartition::new(args.topic.as_str(), *p))
        .collect();
    // Whether the group starts from commits of its own, for the hint below.
    let mut resumes = false;
    if args.group.is_some() {
        for tp in &tps {
            resumes |= consumer.committed(tp)?.is_some();
        }
    }
    if args.group.is_some() && args.partition.is_none() {
        consumer.subscribe(&[args.topic.as_str()])?;
    } else {
        consumer.assign(&tps)?;
        if let (Some(offset), Some(tp)) = (offset, tps.first()) {
            consumer.seek(tp, offset)?;
        }
    }
    let mut printed = 0u64;
    let mut signal = None;
    // Partitions a read failed in, with the offset it failed at: not read any further.
    let mut damaged: BTreeMap<TopicPartition, u64> = BTreeMap::new();
    // Partitions the open found damaged (left offline): their valid batches end at the
    // damage, so their end is not the end to stop at, but the read there, which reports it.
    let damaged_at_open: BTreeSet<TopicPartition> = if broker.is_read_only() {
        tps.iter()
            .filter(|tp| broker.partition_log(tp).is_ok_and(|log| log.refresh().is_err()))
            .cloned()
            .collect()
    } else {
        broker
            .damaged_partitions()
            .into_iter()
            .map(|(tp, _)| tp)
            .filter(|tp| tps.contains(tp))
            .collect()
    };
    // Per partition: the offset after the last record printed, to tell a jump.
    let mut expected: BTreeMap<TopicPartition, u64> = BTreeMap::new();
    // Following beside an application: the topic table is re-read, so that a deleted topic
    // ends the follow; of a whole topic, partitions the application adds are followed too.
    let mut refreshed = (args.follow && broker.is_read_only()).then(Instant::now);
    loop {
        if args.max_records.is_some_and(|max| printed >= max) {
            break;
        }
        signal = interrupt.received();
        if signal.is_some() {
            break;
        }
        if let Some(at) = refreshed.as_mut()
            && at.elapsed() >= TOPIC_REFRESH
        {
            *at = Instant::now();
            follow_new_partitions(&broker, &mut consumer, &args.topic, args.partition)?;
        }
        let records = match consumer.poll(SIGNAL_CHECK) {
            Ok(records) => records,
            // The topic was there when the command started: deleted since, unless a refresh
            // of the table finds it created again (then the consumer reads the new one).
            Err(Error::UnknownTopic { topic }) => {
                if refreshed.is_some() {
                    follow_new_partitions(&broker, &mut consumer, &args.topic, args.partition)?;
                    if broker.describe_topic(&args.topic).is_ok() {
                        continue;
                    }
                }
                return Err(Failure(format!(
                    "topic {topic:?} was deleted while it was being consumed"
                )));
            }
            // Created again with fewer partitions: a whole topic goes on with those it has.
            Err(Error::InvalidPartition {
                topic,
                partition,
                partitions,
            }) => {
                if refreshed.is_none() || args.partition.is_some() {
                    return Err(Failure(format!(
                        "partition {topic}-{partition} no longer exists: the topic was deleted and created again \
                         with {partitions} partition(s)"
                    )));
                }
                follow_new_partitions(&broker, &mut consumer, &args.topic, args.partition)?;
                continue;
            }
            Err(e) => {
                // A damaged partition is set aside (paused) with a warning, so that the
                // healthy ones are still printed; the exit status reports it at the end.
                let Some(tp) = failed_partition(&broker, &consumer, &e) else {
                    return Err(e.into());
                };
                let at = consumer.position(&tp)?;
                out.flush()?;
                stderr_line!(
                    "brooklet: warning: {tp}: {e}; its records from offset {at} on are not printed (brooklet verify lists the damage)"
                );
                consumer.pause(std::slice::from_ref(&tp))?;
                damaged.insert(tp, at);
                continue;
            }
        };
        // Per partition: the offset after the last record printed, the first record of
        // this poll, and the first one read but not printed (past --max-records, or past the
        // end at the start without --follow).
        let mut next: BTreeMap<TopicPartition, u64> = BTreeMap::new();
        let mut first: BTreeMap<TopicPartition, u64> = BTreeMap::new();
        let mut unprinted: BTreeMap<TopicPartition, u64> = BTreeMap::new();
        for r in &records {
            let tp = r.topic_partition();
            first.entry(tp.clone()).or_insert(r.offset());
            // Without --follow, records written since the start are not printed.
            let past_end = !args.follow && r.offset() >= ends.get(&tp.partition).copied().unwrap_or(0);
            if past_end || args.max_records.is_some_and(|max| printed >= max) {
                unprinted.entry(tp).or_insert(r.offset());
                continue;
            }
            if let Some(&from) = expected.get(&tp)
                && r.offset() > from
            {
                // Offsets are dense: a jump is the consumer resetting after it fell behind
                // the log start. To the log start (--from-beginning), the records between
                // were deleted by retention before it read them; to the end (the default,
                // Kafka's latest), it also skipped records still stored.
                let start = broker.partition_log(&tp).map_or(0, |log| log.log_start_offset());
                let why = if r.offset() <= start {
                    "retention deleted them before they were read".to_string()
                } else {
                    format!(
                        "the consumer fell behind the log start ({start}, retention) and was reset to the end \
                         (--from-beginning resets to the log start)"
                    )
                };
                out.flush()?;
                stderr_line!(
                    "brooklet: warning: {tp}: skipped offsets {from} to {}: {why}",
                    r.offset() - 1
                );
            }
            out.bytes_line(&format_record(&r, args))?;
            expected.insert(tp.clone(), r.offset() + 1);
            next.insert(tp, r.offset() + 1);
            printed += 1;
        }
        out.flush()?;
        if out.broken() {
            // The reader is gone: this poll's records may not have reached it, so the group
            // resumes at them (at least once) rather than past them.
            for (tp, offset) in &first {
                consumer.seek(tp, *offset)?;
            }
            break;
        }
        // The position must not pass a record read but not printed: the commit below and
        // the one at exit stop before it.
        for (tp, offset) in &unprinted {
            consumer.seek(tp, *offset)?;
        }
        if args.group.is_some() && !next.is_empty() {
            let offsets: BTreeMap<TopicPartition, OffsetAndMetadata> = next
                .into_iter()
                .map(|(tp, o)| (tp, OffsetAndMetadata::new(o)))
                .collect();
            consumer.commit_offsets(&offsets)?;
        }
        let assignment = consumer.assignment();
        if !assignment.is_empty() && assignment.iter().all(|tp| damaged.contains_key(tp)) {
            // Nothing is left to read, even by following.
            break;
        }
        if !args.follow {
            // Done when every partition is at its end as it was at the start, however fast
            // an application writes meanwhile; a partition that is there is read no more.
            let mut done = !assignment.is_empty();
            for tp in assignment.iter().filter(|tp| !damaged.contains_key(*tp)) {
                // The end as it is now where an application truncated the partition below
                // the end at the start (the consumer moved back to the cut): else this
                // would wait for records that may never come.
                let end = ends.get(&tp.partition).copied().unwrap_or(0);
                let end = broker
                    .partition_log(tp)
                    .map_or(end, |log| end.min(log.visible_end_offset()));
                if consumer.position(tp)? >= end && !damaged_at_open.contains(tp) {
                    consumer.pause(std::slice::from_ref(tp))?;
                } else {
                    done = false;
                }
            }
            if done {
                break;
            }
        }
    }
    if args.group.is_some() {
        // As Kafka's console consumer commits at close: every assigned partition's position,
        // also of a partition nothing was printed from (a new group that found nothing
        // starts from here next time, rather than at the end as it is then).
        for tp in consumer.assignment() {
            consumer.position(&tp)?;
        }
        consumer.commit()?;
    }
    consumer.close()?;
    broker.close()?;
    if signal.is_none() && !damaged.is_empty() {
        let list: Vec<String> = damaged.iter().map(|(tp, at)| format!("{tp} at offset {at}")).collect();
        stderr_line!(
            "brooklet: error: {} damaged partition(s) could not be read to the end: {}",
            list.len(),
            list.join(", ")
        );
        return Ok(ExitCode::from(2));
    }
    if printed == 0 && !args.follow && signal.is_none() && args.max_records != Some(0) {
        // stdout stays empty for scripts; the hint goes to stderr.
        if args.from_beginning || offset.is_some() {
            stderr_line!("brooklet: no records to read");
        } else if resumes {
            stderr_line!(
                "brooklet: no new records for group {} since its committed offsets (groups reset-offsets moves them)",
                args.group.as_deref().unwrap_or_default()
            );
        } else {
            stderr_line!("{NO_NEW_RECORDS}");
        }
    }
    Ok(signal.map_or(ExitCode::SUCCESS, signal_exit))
}

/// The assigned partition whose read failed with `e`: the one whose directory holds the
/// file `e` names. `None` for an error that names no file of the consumer's partitions.
fn failed_partition(broker: &Broker, consumer: &brooklet::Consumer, e: &Error) -> Option<TopicPartition> {
    let (Error::Corrupt { path, .. } | Error::Io { path, .. }) = e else {
        return None;
    };
    consumer
        .assignment()
        .into_iter()
        .find(|tp| broker.partition_log(tp).is_ok_and(|log| path.starts_with(log.dir())))
}

/// How often `consume --follow` of a whole topic re-reads the topic table for partitions
/// the application added.
const TOPIC_REFRESH: Duration = Duration::from_secs(1);

/// Re-reads the topic table of `broker` (read-only) and, unless the consumer reads only
/// `partition`, assigns `consumer` the partitions of `topic` added since, from their first
/// record (all of them are new to this follower), and unassigns, with a warning, those it
/// no longer has (deleted and created again with fewer). A deleted topic makes the next
/// poll fail with `UnknownTopic`.
fn follow_new_partitions(
    broker: &Broker,
    consumer: &mut brooklet::Consumer,
    topic: &str,
    partition: Option<u32>,
) -> CliResult<()> {
    // A refresh racing the application (a topic created and deleted between reading the
    // table and opening its files) is tried again at the next one.
    if let Err(e) = broker.refresh_topics() {
        stderr_line!("brooklet: warning: could not re-read the topic table: {e}");
        return Ok(());
    }
    if partition.is_some() {
        return Ok(());
    }
    let Ok(description) = broker.describe_topic(topic) else {
        return Ok(());
    };
    let assigned = consumer.assignment();
    let all: Vec<TopicPartition> = description
        .partitions
        .iter()
        .map(|d| TopicPartition::new(topic, d.partition))
        .collect();
    let added: Vec<TopicPartition> = all.iter().filter(|tp| !assigned.contains(*tp)).cloned().collect();
    // The topic was deleted and created again with fewer partitions.
    let gone: Vec<String> = assigned
        .iter()
        .filter(|tp| !all.contains(*tp))
        .map(ToString::to_string)
        .collect();
    if !gone.is_empty() {
        stderr_line!(
            "brooklet: warning: {topic} was created again with {} partition(s): no longer following {}",
            all.len(),
            gone.join(", ")
        );
    }
    if !added.is_empty() || !gone.is_empty() {
        consumer.assign(&all)?;
        consumer.seek_to_beginning(&added)?;
    }
    Ok(())
}

fn groups(dir: &Path, cmd: GroupsCommand, out: &mut Output) -> CliResult<()> {
    match cmd {
        GroupsCommand::List => {
            let broker = open_reader(dir)?;
            let mut rows = Vec::new();
            for group in broker.list_groups() {
                let d = broker.describe_group(&group)?;
                let partitions = d.partitions.iter().filter(|p| p.committed.is_some()).count();
                rows.push(vec![group, partitions.to_string(), d.total_lag().to_string()]);
            }
            if rows.is_empty() {
                return out.line("no groups");
            }
            print_table(out, &["GROUP", "PARTITIONS", "LAG"], &rows)
        }
        GroupsCommand::Describe { group } => {
            let broker = open_reader(dir)?;
            let d = match broker.describe_group(&group) {
                Ok(d) => d,
                // Only committed offsets are on disk: the members of a group in the
                // application's process are not visible here.
                Err(Error::UnknownGroup { group }) => {
                    return Err(Failure(format!(
                        "group {group:?} has no committed offsets (a group whose members have not committed yet, \
                         in an application's process, is not visible to this command)"
                    )));
                }
                Err(e) => return Err(e.into()),
            };
            let state = match d.state {
                GroupState::Empty => "no members in this process",
                GroupState::Stable => "stable",
                GroupState::Rebalancing => "rebalancing",
            };
            out.line(&format!("group {} ({state}), total lag {}", d.group, d.total_lag()))?;
            let rows: Vec<Vec<String>> = d
                .partitions
                .iter()
                .map(|p| {
                    vec![
                        p.partition.topic.clone(),
                        p.partition.partition.to_string(),
                        p.committed.as_ref().map_or("-".into(), |c| c.offset.to_string()),
                        p.log_end_offset.to_string(),
                        p.lag.map_or("-".into(), |l| l.to_string()),
                        p.owner.clone().unwrap_or_else(|| "-".into()),
                        p.committed
                            .as_ref()
                            .filter(|c| c.commit_timestamp > 0)
                            .map_or("-".into(), |c| format_time(c.commit_timestamp)),
                    ]
                })
                .collect();
            print_table(
                out,
                &[
                    "TOPIC",
                    "PARTITION",
                    "COMMITTED",
                    "LOG END",
                    "LAG",
                    "OWNER",
                    "COMMITTED AT",
                ],
                &rows,
            )?;
            out.line("(owners are known only to the process running the group's consumers)")
        }
        GroupsCommand::ResetOffsets(args) => {
            let to = if args.to_earliest {
                OffsetSpec::Earliest
            } else if args.to_latest {
                OffsetSpec::Latest
            } else if let Some(o) = args.to_offset {
                OffsetSpec::Offset(o)
            } else if let Some(t) = &args.to_datetime {
                OffsetSpec::Timestamp(parse_time(t)?)
            } else {
                return Err(Failure(
                    "give one of --to-earliest, --to-latest, --to-offset, --to-datetime".into(),
                ));
            };
            let broker = if args.execute {
                open_writer(dir, "groups reset-offsets --execute")?
            } else {
                open_reader(dir)?
            };
            if args.topic.is_none() && broker.describe_group(&args.group).is_err() {
                return Err(Failure(format!(
                    "group {:?} has no committed offsets; name the topic with --topic",
                    args.group
                )));
            }
            let moved = if args.execute {
                broker.reset_offsets(&args.group, to, args.topic.as_deref())?
            } else {
                broker.plan_reset_offsets(&args.group, to, args.topic.as_deref())?
            };
            let rows: Vec<Vec<String>> = moved
                .iter()
                .map(|(tp, o)| vec![tp.topic.clone(), tp.partition.to_string(), o.to_string()])
                .collect();
            if args.execute {
                out.line(&format!("reset group {}:", args.group))?;
            } else {
                out.line(&format!(
                    "group {} would be reset to (dry run: nothing changed; add --execute to apply):",
                    args.group
                ))?;
            }
            print_table(out, &["TOPIC", "PARTITION", "NEW OFFSET"], &rows)
        }
        GroupsCommand::Delete { group } => {
            let broker = open_writer(dir, "groups delete")?;
            broker.delete_group(&group)?;
            out.line(&format!("deleted group {group}"))
        }
    }
}

/// The segment `dump-log` reads: `path` as given if it exists, else (if relative) under
/// `dir`.
fn segment_path(path: &Path, dir: Option<&Path>) -> CliResult<PathBuf> {
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    match dir {
        Some(dir) if path.is_relative() => {
            let under = dir.join(path);
            if under.exists() {
                Ok(under)
            } else {
                Err(Failure(format!(
                    "{} does not exist, nor does {}",
                    path.display(),
                    under.display()
                )))
            }
        }
        _ => Err(Failure(format!("{} does not exist", path.display()))),
    }
}

fn dump_log(path: &Path, records: bool, out: &mut Output) -> CliResult<ExitCode> {
    if path.extension().is_some_and(|e| e != "log") {
        return Err(Failure(format!(
            "{} is not a segment's .log file (index files are caches rebuilt from the .log; `verify` checks them)",
            path.display()
        )));
    }
    let dump = inspect::dump_segment(path)?;
    out.line(&format!(
        "{}: {} bytes, {} batch(es), base offset {}",
        dump.path.display(),
        dump.file_len,
        dump.batches.len(),
        dump.base_offset
            .map_or("unknown (not a segment name)".into(), |b| b.to_string())
    ))?;
    let mut rows = Vec::new();
    for b in &dump.batches {
        rows.push(vec![
            b.position.to_string(),
            b.base_offset.to_string(),
            b.last_offset.to_string(),
            b.record_count.to_string(),
            b.first_timestamp.map_or("-".into(), |t| t.to_string()),
            b.max_timestamp.to_string(),
            b.compression.map_or("-".into(), |c| format!("{c:?}").to_lowercase()),
            b.size_bytes.to_string(),
            match (&b.problem, b.crc_ok) {
                (None, _) => "ok".into(),
                (Some(_), false) => "BAD".into(),
                (Some(p), true) => format!("ok, but {p}"),
            },
        ]);
    }
    if records {
        // One table per batch, records under it.
        for (b, row) in dump.batches.iter().zip(&rows) {
            print_table(
                out,
                &[
                    "POSITION", "BASE", "LAST", "COUNT", "FIRST TS", "MAX TS", "CODEC", "SIZE", "CRC",
                ],
                std::slice::from_ref(row),
            )?;
            if let Some(batch) = &b.batch {
                for r in batch.iter() {
                    match r {
                        Ok(r) => {
                            let headers: Vec<String> =
                                r.headers().map(|(k, v)| format!("{k}={}", escaped(v))).collect();
                            out.line(&format!(
                                "  offset {} timestamp {} key {} value {} headers [{}]",
                                r.offset(),
                                r.timestamp(),
                                r.key().map_or_else(|| "null".into(), escaped),
                                r.value().map_or_else(|| "null".into(), escaped),
                                headers.join(", ")
                            ))?;
                        }
                        Err(e) => {
                            out.line(&format!("  unreadable record: {e}"))?;
                            break;
                        }
                    }
                }
            }
        }
    } else {
        print_table(
            out,
            &[
                "POSITION", "BASE", "LAST", "COUNT", "FIRST TS", "MAX TS", "CODEC", "SIZE", "CRC",
            ],
            &rows,
        )?;
    }
    for b in &dump.batches {
        if let Some(problem) = &b.problem {
            out.line(&format!("damaged: batch at byte {}: {problem}", b.position))?;
        }
    }
    if let Some((position, reason)) = &dump.stopped {
        out.line(&format!("damaged: stopped at byte {position}: {reason}"))?;
    }
    if dump.zero_tail > 0 {
        out.line(&format!(
            "then {} bytes of zeros: space allocated ahead of a writer with mapped writes (the next open cuts them)",
            dump.zero_tail
        ))?;
    }
    out.flush()?;
    Ok(if dump.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn verify(dir: &Path, out: &mut Output) -> CliResult<ExitCode> {
    check_dir(dir)?;
    // Neither of the directories every data directory has: not one (a mistyped --dir, or a
    // partition's directory), which is no damage. A data directory that lost its topic
    // table (meta/ still there) is, below.
    if !dir.join("meta").is_dir() && !dir.join("offsets").is_dir() {
        return Err(Failure(format!(
            "{} is not a brooklet data directory (no meta/topics)",
            dir.display()
        )));
    }
    let mut problems: Vec<String> = Vec::new();
    // The metadata: the topic table and the committed offsets must load.
    // The count of topics, or (the table did not load) what was checked instead.
    let topics = match Broker::open_read_only(dir) {
        Ok(broker) => format!("{} topic(s)", broker.list_topics().len()),
        Err(e) => {
            problems.push(format!("cannot open the directory read-only: {e}"));
            "the topic table (it does not load)".to_string()
        }
    };
    // Every partition directory: the topic table's, any other <name>-<n> with segments, and
    // the committed-offsets log.
    let mut partition_dirs: Vec<PathBuf> = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Failure(format!("cannot list {}: {e}", dir.display())))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && inspect::segment_files(&path).is_ok_and(|s| !s.is_empty()) {
            partition_dirs.push(path);
        }
    }
    let offsets_log = dir.join("offsets").join("log");
    if offsets_log.is_dir() {
        partition_dirs.push(offsets_log);
    }
    partition_dirs.sort();
    let mut total_bytes = 0u64;
    for d in &partition_dirs {
        for s in inspect::segment_files(d)? {
            total_bytes += std::fs::metadata(&s).map_or(0, |m| m.len());
        }
    }
    let bar = indicatif::ProgressBar::new(total_bytes);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} verifying [{bar:40}] {bytes}/{total_bytes} {wide_msg}")
            .map_err(|e| Failure(format!("progress bar: {e}")))?
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let mut sum = PartitionCheck::default();
    for d in &partition_dirs {
        let name = d.strip_prefix(dir).unwrap_or(d).display().to_string();
        bar.set_message(name.clone());
        let check = inspect::verify_partition(d, &mut |_, bytes| bar.inc(bytes))?;
        sum.segments += check.segments;
        sum.indexes += check.indexes;
        sum.batches += check.batches;
        sum.records += check.records;
        sum.bytes += check.bytes;
        for damage in check.damage {
            let at = damage.position.map_or(String::new(), |p| format!(" at byte {p}"));
            problems.push(format!("{}{at}: {}", damage.path.display(), damage.reason));
        }
    }
    bar.finish_and_clear();
    out.line(&format!(
        "checked {}, {} partition log(s) (offsets log included), {} segment(s), {} index file(s), {} batch(es), {} record(s), {} in {:.1?}",
        topics,
        partition_dirs.len(),
        sum.segments,
        sum.indexes,
        sum.batches,
        sum.records,
        human_bytes(sum.bytes),
        started.elapsed()
    ))?;
    if problems.is_empty() {
        out.line("no damage found")?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    for p in &problems {
        out.line(&format!("damaged: {p}"))?;
    }
    out.line(&format!(
        "{} problem(s) found. After a crash, Broker::open recovers each partition's tail (it cuts a torn or damaged \
         tail past the recovery point and rebuilds indexes). Damage to records the recovery point vouches for \
         (synced) is not repaired: after a crash the open fails with a corrupt-data error naming the partition's \
         recovery-point file, whose removal accepts losing the records from the damage on; after a clean shutdown, \
         reads stop there with a corrupt-data error (see RELIABILITY.md)",
        problems.len()
    ))?;
    out.flush()?;
    Ok(ExitCode::from(2))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn format_time(ms: i64) -> String {
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

/// Parses `YYYY-MM-DD[THH:MM[:SS[.mmm]]][Z]` (UTC) or milliseconds since the epoch.
fn parse_time(text: &str) -> CliResult<i64> {
    let bad = || {
        Failure(format!(
            "{text:?} is not a time: use YYYY-MM-DD[THH:MM[:SS[.mmm]]][Z] (UTC) or milliseconds since the epoch"
        ))
    };
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let t = text.trim_end_matches('Z');
    let (date, time) = t.split_once(['T', ' ']).unwrap_or((t, "00:00"));
    let mut date_parts = date.splitn(3, '-').map(str::parse::<i64>);
    let (Some(Ok(y)), Some(Ok(mo)), Some(Ok(d))) = (date_parts.next(), date_parts.next(), date_parts.next()) else {
        return Err(bad());
    };
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut time_parts = hms.splitn(3, ':').map(str::parse::<i64>);
    let (Some(Ok(h)), Some(Ok(mi))) = (time_parts.next(), time_parts.next()) else {
        return Err(bad());
    };
    let s = match time_parts.next() {
        Some(Ok(s)) => s,
        Some(Err(_)) => return Err(bad()),
        None => 0,
    };
    // Digits only: a sign would move the time back (".-5") or be ignored (".+5").
    if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let millis: i64 = format!("{frac:0<3}")
        .get(..3)
        .and_then(|f| f.parse().ok())
        .ok_or_else(bad)?;
    // A day the month does not have is refused rather than moved into the next month;
    // leap seconds are not taken (as Java's ISO formats, which Kafka's tool uses).
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = match mo {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=12).contains(&mo)
        || !(1..=month_days).contains(&d)
        || !(0..=23).contains(&h)
        || !(0..=59).contains(&mi)
        || !(0..=59).contains(&s)
        // Milliseconds since the epoch fit an i64 for some 292 million years either way:
        // a year past that would overflow (a panic, or a wrong time).
        || !(-290_000_000..=290_000_000).contains(&y)
    {
        return Err(bad());
    }
    Ok(((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60_000 + s * 1000 + millis)
}
