//! End to end: the `brooklet` binary (built with `--features cli`) against real directories.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use brooklet::{Broker, ProducerConfig, ProducerRecord, partition_for_key};

fn brooklet(dir: &Path, args: &[&str]) -> Output {
    brooklet_with_stdin(dir, args, "")
}

fn brooklet_with_stdin(dir: &Path, args: &[&str], stdin: &str) -> Output {
    brooklet_with_stdin_bytes(dir, args, stdin.as_bytes())
}

fn brooklet_with_stdin_bytes(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = spawn(dir, args);
    // A command that fails before reading stdin may be gone already: its stdin is closed.
    match child.stdin.take().unwrap().write_all(stdin) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.unwrap(),
    }
    child.wait_with_output().unwrap()
}

/// Starts the binary with every stream piped.
fn spawn(dir: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_brooklet"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Sends `signal` (e.g. "INT") to the child with kill(1).
fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} failed");
}

/// The first `n` lines the child prints (its stdout is taken), failing after 60 s.
fn first_lines(child: &mut Child, n: usize) -> Vec<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        for _ in 0..n {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            if tx.send(line.trim_end_matches('\n').to_owned()).is_err() {
                break;
            }
        }
        // Keep reading until the child exits, so that it never blocks on a full pipe.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    (0..n)
        .map(|i| {
            rx.recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|e| panic!("line {i} of {n} did not come: {e}"))
        })
        .collect()
}

/// Waits (at most 60 s) for the child to exit after a signal.
fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the child did not exit after the signal");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every partition directory of `topic` (and the offsets log) holds a clean-shutdown marker.
fn assert_closed_cleanly(dir: &Path, topic: &str, partitions: u32) {
    for p in 0..partitions {
        let marker = dir.join(format!("{topic}-{p}")).join("clean-shutdown");
        assert!(marker.exists(), "{} is missing", marker.display());
    }
    let marker = dir.join("offsets").join("log").join("clean-shutdown");
    assert!(marker.exists(), "{} is missing", marker.display());
}

/// `groups describe`'s (partition, committed) per row of `topic`.
fn committed(dir: &Path, group: &str, topic: &str) -> Vec<(String, String)> {
    ok(dir, &["groups", "describe", group])
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cells| cells.first() == Some(&topic))
        .map(|cells| (cells[1].to_owned(), cells[2].to_owned()))
        .collect()
}

/// `[(partition, committed)]` as `committed` returns them.
fn offsets(pairs: &[(u32, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(p, o)| (p.to_string(), (*o).to_owned())).collect()
}

/// A key Kafka's partitioner sends to `partition` of `partitions`.
fn key_for(partition: u32, partitions: u32) -> String {
    (0..)
        .map(|i| format!("user-{i}"))
        .find(|k| partition_for_key(k.as_bytes(), partitions) == partition)
        .unwrap()
}

/// The lines of `text`, sorted (records of different partitions come in any order).
fn sorted_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines
}

const NO_NEW_RECORDS: &str = "brooklet: no new records (consume starts at the end of each partition, as Kafka's \
                              console consumer; --from-beginning reads what is stored, --follow waits for new records)\n";

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Runs and expects success.
fn ok(dir: &Path, args: &[&str]) -> String {
    let o = brooklet(dir, args);
    assert!(o.status.success(), "{args:?} failed: {}{}", stdout(&o), stderr(&o));
    stdout(&o)
}

/// The cells of the table row whose first cells are `first`.
fn row<'a>(text: &'a str, first: &[&str]) -> Vec<&'a str> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.len() >= first.len() && cells[..first.len()] == *first)
        .unwrap_or_else(|| panic!("no row {first:?} in:\n{text}"))
}

#[test]
fn topics_create_list_describe_add_partitions_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let out = ok(
        &dir,
        &[
            "topics",
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention.ms=86400000",
        ],
    );
    assert!(out.contains("created topic orders"), "{out}");
    ok(&dir, &["topics", "create", "audit"]);
    let list = ok(&dir, &["topics", "list"]);
    assert_eq!(row(&list, &["TOPIC"]), ["TOPIC", "PARTITIONS", "RECORDS", "SIZE"]);
    assert_eq!(row(&list, &["orders"])[..3], ["orders", "3", "0"]);
    assert_eq!(row(&list, &["audit"])[..3], ["audit", "1", "0"]);
    let describe = ok(&dir, &["topics", "describe", "orders"]);
    assert_eq!(row(&describe, &["retention.ms"]), ["retention.ms", "86400000"]);
    assert_eq!(row(&describe, &["2"])[..4], ["2", "0", "0", "0"]);
    let id = Broker::open_read_only(&dir)
        .unwrap()
        .describe_topic("orders")
        .unwrap()
        .id;
    assert_eq!(row(&describe, &["id"]), ["id", id.to_string().as_str()]);
    ok(&dir, &["topics", "add-partitions", "orders", "5"]);
    assert_eq!(row(&ok(&dir, &["topics", "list"]), &["orders"])[1], "5");
    // Also as kafka-topics --alter takes it.
    ok(&dir, &["topics", "add-partitions", "orders", "--partitions", "6"]);
    assert_eq!(row(&ok(&dir, &["topics", "list"]), &["orders"])[1], "6");
    ok(&dir, &["topics", "delete", "audit"]);
    assert!(!ok(&dir, &["topics", "list"]).contains("audit"));
    // Aligned: every line of the table has its columns at the same positions.
    let list = ok(&dir, &["topics", "list"]);
    let header = list.lines().next().unwrap();
    let records_col = header.find("RECORDS").unwrap() + "RECORDS".len();
    for line in list.lines().skip(1) {
        assert_eq!(
            line.chars().nth(records_col - 1).map(|c| c.is_ascii_digit()),
            Some(true),
            "{list}"
        );
    }
}

/// `topics alter` changes and resets settings, prints what changed, and the topic keeps
/// them; a bad setting or nothing to change is refused and changes nothing.
#[test]
fn topics_alter_changes_and_resets_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(
        &dir,
        &[
            "topics",
            "create",
            "orders",
            "--partitions",
            "2",
            "--config",
            "segment.ms=60000",
        ],
    );
    let out = ok(
        &dir,
        &[
            "topics",
            "alter",
            "orders",
            "--config",
            "retention.ms=604800000",
            "--config",
            "max.message.bytes=2048",
            "--delete-config",
            "segment.ms",
        ],
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "  segment.ms              60000 -> -1",
            "  retention.ms            -1 -> 604800000",
            "  max.message.bytes       1048576 -> 2048",
            "altered topic orders: 3 setting(s) changed",
        ],
        "{out}"
    );
    let describe = ok(&dir, &["topics", "describe", "orders"]);
    assert_eq!(row(&describe, &["retention.ms"]), ["retention.ms", "604800000"]);
    assert_eq!(row(&describe, &["max.message.bytes"]), ["max.message.bytes", "2048"]);
    assert_eq!(row(&describe, &["segment.ms"]), ["segment.ms", "-1"]);
    assert_eq!(row(&describe, &["partitions"]), ["partitions", "2"]);
    // The new limit holds for the next produce.
    let o = brooklet_with_stdin(&dir, &["produce", "orders"], &format!("{}\n", "x".repeat(3000)));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    for args in [
        &["topics", "alter", "orders"][..],
        &["topics", "alter", "orders", "--config", "retention.ms=-5"],
        &["topics", "alter", "orders", "--delete-config", "partitions"],
        &["topics", "alter", "nope", "--config", "retention.ms=1000"],
    ] {
        let o = brooklet(&dir, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1, "{args:?}: {}", stderr(&o));
    }
    // The count `describe` lists among the settings is raised by its own command.
    let o = brooklet(&dir, &["topics", "alter", "orders", "--config", "partitions=6"]);
    assert_eq!(
        (o.status.code(), stderr(&o).as_str()),
        (
            Some(1),
            "brooklet: error: invalid configuration for `partitions`: the partition count is not a setting: raise it \
             with Broker::add_partitions (brooklet topics add-partitions); it cannot be lowered\n"
        )
    );
    assert_eq!(ok(&dir, &["topics", "describe", "orders"]), describe);
}

/// A `--header` that is not `KEY=VALUE` is a usage error, as the other malformed
/// arguments are: exit 2, the header named, nothing produced (stdin is not read).
#[test]
fn a_malformed_header_is_a_usage_error_and_produces_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "orders", "--partitions", "1"]);
    let o = brooklet_with_stdin(&dir, &["produce", "orders", "--header", "bad"], "x\n");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("\"bad\" is not KEY=VALUE"), "{}", stderr(&o));
    let broker = Broker::open_read_only(&dir).unwrap();
    assert_eq!(broker.describe_topic("orders").unwrap().partitions[0].log_end_offset, 0);
}

#[test]
fn produce_from_stdin_then_consume() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "orders", "--partitions", "2"]);
    let lines: String = (0..10).map(|i| format!("user-{}:order-{i}\n", i % 3)).collect();
    let o = brooklet_with_stdin(
        &dir,
        &[
            "produce",
            "orders",
            "--key-separator",
            ":",
            "--header",
            "source=cli",
            "--durability",
            "synced",
        ],
        &lines,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("produced 10 record(s) to orders"), "{}", stdout(&o));
    // Everything, with keys and headers, stopping at the end.
    let out = ok(
        &dir,
        &[
            "consume",
            "orders",
            "--from-beginning",
            "--print-key",
            "--print-headers",
        ],
    );
    let mut got: Vec<&str> = out.lines().collect();
    got.sort_unstable();
    let mut want: Vec<String> = (0..10)
        .map(|i| format!("source=cli\tuser-{}\torder-{i}", i % 3))
        .collect();
    want.sort_unstable();
    assert_eq!(got, want);
    // Per key, in send order: user-0's orders arrive in order on their partition.
    let user0: Vec<&str> = out.lines().filter(|l| l.contains("\tuser-0\t")).collect();
    assert_eq!(
        user0,
        [
            "source=cli\tuser-0\torder-0",
            "source=cli\tuser-0\torder-3",
            "source=cli\tuser-0\torder-6",
            "source=cli\tuser-0\torder-9"
        ]
    );
    // Every field, in kafka-console-consumer's order.
    let all = ok(
        &dir,
        &[
            "consume",
            "orders",
            "--from-beginning",
            "--partition",
            "0",
            "--max-records",
            "1",
            "--print-timestamp",
            "--print-partition",
            "--print-offset",
            "--print-headers",
            "--print-key",
        ],
    );
    let fields: Vec<&str> = all.trim_end().split('\t').collect();
    assert_eq!(fields.len(), 6, "{all}");
    assert!(fields[0].starts_with("CreateTime:"), "{all}");
    assert_eq!(fields[1..4], ["Partition:0", "Offset:0", "source=cli"], "{all}");
    assert!(
        fields[4].starts_with("user-") && fields[5].starts_with("order-"),
        "{all}"
    );
    // JSON, one partition from an offset, a limit.
    let from_1 = [
        "consume",
        "orders",
        "--partition",
        "0",
        "--offset",
        "1",
        "--max-records",
    ];
    let json = ok(&dir, &[&from_1[..], &["2", "--format", "json"]].concat());
    let objects: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(objects.len(), 2);
    assert_eq!(objects[0]["offset"], 1);
    assert_eq!(objects[0]["partition"], 0);
    assert_eq!(objects[0]["headers"]["source"], "cli");
    assert_eq!(objects[0]["timestamp_type"], "CreateTime");
    // The timestamp as kafka-console-consumer prints it, type first.
    let line = ok(&dir, &[&from_1[..], &["1", "--print-timestamp"]].concat());
    let prefix = format!("CreateTime:{} (", objects[0]["timestamp"]);
    assert!(line.starts_with(&prefix), "{line:?} should start with {prefix:?}");
    assert!(
        line.trim_end()
            .ends_with(&format!(")\t{}", objects[0]["value"].as_str().unwrap())),
        "{line:?}"
    );
    // Without --from-beginning and without a group: only new records, so nothing here (and
    // a hint on stderr).
    let o = brooklet(&dir, &["consume", "orders"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "");
    assert!(
        stderr(&o).contains("--from-beginning reads what is stored"),
        "{}",
        stderr(&o)
    );
    // Plain lines without a separator; a line missing the separator is an error.
    let o = brooklet_with_stdin(&dir, &["produce", "orders", "--partition", "1"], "plain\n");
    assert!(o.status.success());
    let o = brooklet_with_stdin(&dir, &["produce", "orders", "--key-separator", ":"], "no separator\n");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no key separator"), "{}", stderr(&o));
    // A bad line stops the input; the lines before it are produced and counted.
    let o = brooklet_with_stdin(
        &dir,
        &["produce", "orders", "--key-separator", ":"],
        "k:v\nno separator\nk:w\n",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("produced 1 record(s)"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("line 2 has no key separator")
            && stderr(&o).contains("the 1 record(s) before it were produced"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn groups_describe_lag_and_reset_offsets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "orders", "--partitions", "1"]);
    let lines: String = (0..20).map(|i| format!("order-{i}\n")).collect();
    assert!(
        brooklet_with_stdin(&dir, &["produce", "orders"], &lines)
            .status
            .success()
    );
    // A group member reads 15 and commits them.
    let out = ok(
        &dir,
        &[
            "consume",
            "orders",
            "--group",
            "analytics",
            "--from-beginning",
            "--max-records",
            "15",
        ],
    );
    assert_eq!(out.lines().count(), 15);
    let describe = ok(&dir, &["groups", "describe", "analytics"]);
    assert_eq!(
        row(&describe, &["TOPIC"]),
        [
            "TOPIC",
            "PARTITION",
            "COMMITTED",
            "LOG",
            "END",
            "LAG",
            "OWNER",
            "COMMITTED",
            "AT"
        ]
    );
    assert_eq!(
        row(&describe, &["orders", "0"])[..6],
        ["orders", "0", "15", "20", "5", "-"]
    );
    assert_eq!(
        row(&ok(&dir, &["groups", "list"]), &["analytics"]),
        ["analytics", "1", "5"]
    );
    // The group resumes where it committed.
    let rest = ok(&dir, &["consume", "orders", "--group", "analytics"]);
    assert_eq!(
        rest.lines().collect::<Vec<_>>(),
        ["order-15", "order-16", "order-17", "order-18", "order-19"]
    );
    // Reset: without --execute only the plan is shown (as Kafka's tool), nothing moves.
    let plan = ok(&dir, &["groups", "reset-offsets", "analytics", "--to-earliest"]);
    assert!(plan.contains("dry run: nothing changed"), "{plan}");
    assert_eq!(row(&plan, &["orders", "0"]), ["orders", "0", "0"]);
    assert_eq!(
        row(&ok(&dir, &["groups", "describe", "analytics"]), &["orders", "0"])[2],
        "20"
    );
    // Applied: to earliest, to an offset, to a time in the future (= the end).
    ok(
        &dir,
        &["groups", "reset-offsets", "analytics", "--to-earliest", "--execute"],
    );
    assert_eq!(
        row(&ok(&dir, &["groups", "describe", "analytics"]), &["orders", "0"])[2..5],
        ["0", "20", "20"]
    );
    ok(
        &dir,
        &[
            "groups",
            "reset-offsets",
            "analytics",
            "--to-offset",
            "7",
            "--topic",
            "orders",
            "--execute",
        ],
    );
    assert_eq!(
        row(&ok(&dir, &["groups", "describe", "analytics"]), &["orders", "0"])[2],
        "7"
    );
    ok(
        &dir,
        &[
            "groups",
            "reset-offsets",
            "analytics",
            "--to-datetime",
            "2999-01-01T00:00:00Z",
            "--execute",
        ],
    );
    assert_eq!(
        row(&ok(&dir, &["groups", "describe", "analytics"]), &["orders", "0"])[2],
        "20"
    );
    ok(
        &dir,
        &[
            "groups",
            "reset-offsets",
            "analytics",
            "--to-datetime",
            "2000-01-01",
            "--execute",
        ],
    );
    assert_eq!(
        row(&ok(&dir, &["groups", "describe", "analytics"]), &["orders", "0"])[2],
        "0"
    );
    ok(&dir, &["groups", "delete", "analytics"]);
    assert_eq!(ok(&dir, &["groups", "list"]).trim(), "no groups");
}

#[test]
fn reading_works_while_an_application_holds_the_directory_and_writing_says_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "orders", "--partitions", "2"]);
    let app = Broker::open(&dir).unwrap();
    let producer = app.producer(ProducerConfig::default());
    for i in 0..6 {
        producer
            .send(ProducerRecord::new("orders").value(format!("v{i}")))
            .unwrap();
    }
    producer.flush().unwrap();
    let out = ok(&dir, &["consume", "orders", "--from-beginning"]);
    assert_eq!(out.lines().count(), 6);
    assert_eq!(row(&ok(&dir, &["topics", "list"]), &["orders"])[2], "6");
    ok(&dir, &["verify"]);
    for args in [
        &["topics", "create", "other"][..],
        &["topics", "delete", "orders"],
        &["groups", "delete", "g"],
        &["consume", "orders", "--group", "g"],
    ] {
        let o = brooklet(&dir, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("in use by another process"), "{err}");
    }
    let o = brooklet_with_stdin(&dir, &["produce", "orders"], "x\n");
    assert!(stderr(&o).contains("in use by another process"), "{}", stderr(&o));
    drop(producer);
    drop(app);
}

#[test]
fn dump_log_and_verify_find_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "orders", "--partitions", "1"]);
    for batch in 0..3 {
        let lines: String = (0..4).map(|i| format!("k{i}:b{batch}-r{i}\n")).collect();
        let o = brooklet_with_stdin(&dir, &["produce", "orders", "--key-separator", ":"], &lines);
        assert!(o.status.success());
    }
    let segment = dir.join("orders-0").join("00000000000000000000.log");
    let segment_arg = segment.to_str().unwrap();
    let dump = ok(&dir, &["dump-log", segment_arg]);
    assert_eq!(row(&dump, &["POSITION"]).last(), Some(&"CRC"));
    // `produce` sends the lines it has read by then as one batch, so how the twelve lines
    // were batched varies; the batches must tile the file and the offsets, each one whole.
    let len = std::fs::metadata(&segment).unwrap().len();
    let rows: Vec<Vec<u64>> = dump
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("POSITION"))
        .skip(1)
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            assert_eq!((cells.len(), cells[6], cells[8]), (9, "none", "ok"), "{l}");
            [0, 1, 2, 3, 7].iter().map(|&i| cells[i].parse().unwrap()).collect()
        })
        .collect();
    let (mut position, mut offset) = (0, 0);
    for r in &rows {
        assert_eq!(
            (r[0], r[1], r[2], r[3]),
            (position, offset, offset + r[3] - 1, r[3]),
            "{dump}"
        );
        (position, offset) = (position + r[4], offset + r[3]);
    }
    assert_eq!((position, offset), (len, 12), "{dump}");
    assert!(
        dump.starts_with(&format!(
            "{segment_arg}: {len} bytes, {} batch(es), base offset 0\n",
            rows.len()
        )),
        "{dump}"
    );
    let with_records = ok(&dir, &["dump-log", segment_arg, "--records"]);
    assert!(with_records.contains("offset 5 "), "{with_records}");
    assert!(with_records.contains("key k1 value b1-r1"), "{with_records}");
    let verify = ok(&dir, &["verify"]);
    assert!(verify.contains("no damage found"), "{verify}");

    // Flip a byte inside a batch's records: the last byte of the batch in the middle.
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = rows.iter().find(|r| r[0] + r[4] > len / 2).unwrap();
    bytes[(middle[0] + middle[4] - 1) as usize] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();
    // An index file is not a segment: refused, not reported as damaged.
    let index_arg = segment_arg.replace(".log", ".index");
    let o = brooklet(&dir, &["dump-log", &index_arg]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("is not a segment's .log file"), "{}", stderr(&o));
    let o = brooklet(&dir, &["dump-log", segment_arg]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stdout(&o).contains("BAD"), "{}", stdout(&o));
    let o = brooklet(&dir, &["verify"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stdout(&o).contains("damaged:"), "{}", stdout(&o));
    assert!(stdout(&o).contains("problem(s) found"), "{}", stdout(&o));
}

#[test]
fn errors_are_one_line_and_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "orders"]);
    for args in [
        &["consume", "nope"][..],
        &["topics", "describe", "nope"],
        &["groups", "describe", "nope"],
        &["topics", "create", "orders"],
        &["topics", "create", "bad name!"],
        &["topics", "create", "x", "--config", "nonsense=1"],
        &["consume", "orders", "--partition", "9"],
    ] {
        let o = brooklet(&dir, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("brooklet: error: "), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let o = brooklet(&dir, &["consume", "nope"]);
    assert!(stderr(&o).contains("topic \"nope\" does not exist"), "{}", stderr(&o));
    // Groups live in the application's process until they commit: not "does not exist".
    assert_eq!(
        stderr(&brooklet(&dir, &["groups", "describe", "nope"])),
        "brooklet: error: group \"nope\" has no committed offsets (a group whose members have not committed yet, \
         in an application's process, is not visible to this command)\n"
    );
    // A name no topic can have is said so, by the reading and the writing command alike.
    for o in [
        brooklet(&dir, &["consume", "bad name"]),
        brooklet_with_stdin(&dir, &["produce", "bad name"], "x\n"),
    ] {
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(
            stderr(&o),
            "brooklet: error: invalid topic name \"bad name\": character ' ' is not one of [a-zA-Z0-9._-]\n"
        );
    }
    // Times that do not exist are refused, not moved to a neighbouring day or minute.
    for time in [
        "2024-02-30",
        "2023-02-29",
        "2024-04-31",
        "2024-02-28T10:00:60Z",
        "2024-01-01T-1:00",
        "99999999999-01-01",
        "2024-01-01T00:00:00.-5",
    ] {
        let args = [
            "groups",
            "reset-offsets",
            "g",
            "--to-datetime",
            time,
            "--topic",
            "orders",
        ];
        let o = brooklet(&dir, &args);
        assert_eq!(o.status.code(), Some(1), "{time}: {}", stdout(&o));
        assert!(stderr(&o).contains("is not a time"), "{time}: {}", stderr(&o));
    }
    let plan = ok(
        &dir,
        &[
            "groups",
            "reset-offsets",
            "g",
            "--to-datetime",
            "2024-02-29T23:59:59.999Z",
            "--topic",
            "orders",
        ],
    );
    assert!(plan.contains("orders"), "{plan}");
    // Not a data directory: one that does not exist is named so, and is not created.
    let missing = tmp.path().join("missing");
    for args in [&["topics", "list"][..], &["groups", "delete", "g"], &["verify"]] {
        let o = brooklet(&missing, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert_eq!(
            stderr(&o),
            format!("brooklet: error: {} does not exist\n", missing.display()),
            "{args:?}"
        );
        assert!(!missing.exists());
    }
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = brooklet(&empty, &["topics", "list"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "brooklet: error: {} is not a brooklet data directory (no meta/topics)\n",
            empty.display()
        )
    );
    // --help everywhere, with an example.
    for args in [
        &["--help"][..],
        &["topics", "--help"],
        &["topics", "create", "--help"],
        &["produce", "--help"],
        &["consume", "--help"],
        &["groups", "describe", "--help"],
        &["groups", "reset-offsets", "--help"],
        &["dump-log", "--help"],
        &["verify", "--help"],
    ] {
        let out = ok(&dir, args);
        assert!(out.contains("Example"), "{args:?}: {out}");
    }
}

#[test]
fn a_group_commits_every_assigned_partition_and_never_past_a_record_not_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "orders", "--partitions", "3"]);
    let (k1, k2) = (key_for(1, 3), key_for(2, 3));
    let produce = |lines: &str| {
        let o = brooklet_with_stdin(&dir, &["produce", "orders", "--key-separator", ":"], lines);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    produce(&format!("{k2}:first\n{k2}:second\n"));
    // One record printed of the two the poll read from partition 2: the commit stops at
    // the second; partitions 0 and 1, assigned but empty, are committed too.
    let out = ok(
        &dir,
        &[
            "consume",
            "orders",
            "--group",
            "analytics",
            "--from-beginning",
            "--max-records",
            "1",
            "--print-key",
        ],
    );
    assert_eq!(out, format!("{k2}\tfirst\n"));
    assert_eq!(
        committed(&dir, "analytics", "orders"),
        offsets(&[(0, "0"), (1, "0"), (2, "1")])
    );
    // A record on partition 1 is not skipped: the next run prints it and the rest of
    // partition 2, nothing twice.
    produce(&format!("{k1}:third\n"));
    let out = ok(&dir, &["consume", "orders", "--group", "analytics", "--print-key"]);
    let want = [format!("{k1}\tthird"), format!("{k2}\tsecond")];
    assert_eq!(sorted_lines(&out), want.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        committed(&dir, "analytics", "orders"),
        offsets(&[(0, "0"), (1, "1"), (2, "2")])
    );
    // Caught up: nothing printed, and the hint says why.
    let o = brooklet(&dir, &["consume", "orders", "--group", "analytics"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        "brooklet: no new records for group analytics since its committed offsets (groups reset-offsets moves them)\n"
    );

    // Records on every partition: whichever the one printed record came from, every other
    // partition is committed at its first record, and the next run prints the other five.
    ok(&dir, &["topics", "create", "multi", "--partitions", "3"]);
    for p in 0..3 {
        let lines = format!("p{p}-0\np{p}-1\n");
        let o = brooklet_with_stdin(&dir, &["produce", "multi", "--partition", &p.to_string()], &lines);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let out = ok(
        &dir,
        &[
            "consume",
            "multi",
            "--group",
            "m",
            "--from-beginning",
            "--max-records",
            "1",
        ],
    );
    let printed: u32 = out
        .strip_prefix('p')
        .and_then(|rest| rest.strip_suffix("-0\n"))
        .unwrap_or_else(|| panic!("{out:?}"))
        .parse()
        .unwrap();
    let want: Vec<(u32, &str)> = (0..3).map(|p| (p, if p == printed { "1" } else { "0" })).collect();
    assert_eq!(committed(&dir, "m", "multi"), offsets(&want));
    let rest = ok(&dir, &["consume", "multi", "--group", "m"]);
    let mut want: Vec<String> = (0..3)
        .flat_map(|p| [format!("p{p}-0"), format!("p{p}-1")])
        .filter(|l| *l != format!("p{printed}-0"))
        .collect();
    want.sort_unstable();
    assert_eq!(sorted_lines(&rest), want.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(committed(&dir, "m", "multi"), offsets(&[(0, "2"), (1, "2"), (2, "2")]));
}

#[test]
fn a_new_group_that_finds_nothing_commits_the_ends_and_then_misses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "t", "--partitions", "2"]);
    let o = brooklet_with_stdin(&dir, &["produce", "t", "--partition", "0"], "old-0\nold-1\n");
    assert!(o.status.success());
    let o = brooklet_with_stdin(&dir, &["produce", "t", "--partition", "1"], "old-2\n");
    assert!(o.status.success());
    // A new group starts at the ends (as Kafka's console consumer), prints nothing, says
    // why as without --group, and commits where it starts.
    let o = brooklet(&dir, &["consume", "t", "--group", "newgrp"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "");
    assert_eq!(stderr(&o), NO_NEW_RECORDS);
    assert_eq!(committed(&dir, "newgrp", "t"), offsets(&[(0, "2"), (1, "1")]));
    // So the records produced before its next run are its.
    let o = brooklet_with_stdin(&dir, &["produce", "t", "--partition", "0"], "new-0\n");
    assert!(o.status.success());
    let o = brooklet_with_stdin(&dir, &["produce", "t", "--partition", "1"], "new-1\n");
    assert!(o.status.success());
    let out = ok(&dir, &["consume", "t", "--group", "newgrp"]);
    assert_eq!(sorted_lines(&out), ["new-0", "new-1"]);
    assert_eq!(committed(&dir, "newgrp", "t"), offsets(&[(0, "3"), (1, "2")]));
}

#[test]
fn a_signal_stops_consume_follow_which_commits_and_closes_the_directory_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "t", "--partitions", "3"]);
    let o = brooklet_with_stdin(&dir, &["produce", "t", "--partition", "0"], "a0\na1\na2\n");
    assert!(o.status.success());
    let o = brooklet_with_stdin(&dir, &["produce", "t", "--partition", "1"], "b0\n");
    assert!(o.status.success());
    // SIGINT (Ctrl-C) once it printed everything and waits for more.
    let mut child = spawn(&dir, &["consume", "t", "--group", "g", "--from-beginning", "--follow"]);
    let mut lines = first_lines(&mut child, 4);
    lines.sort_unstable();
    assert_eq!(lines, ["a0", "a1", "a2", "b0"]);
    signal(&child, "INT");
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(130), "{status:?}");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(err, "");
    assert_closed_cleanly(&dir, "t", 3);
    // Partition 2, empty and never printed from, is committed too.
    assert_eq!(committed(&dir, "g", "t"), offsets(&[(0, "3"), (1, "1"), (2, "0")]));
    // The next open needed no recovery: no warning.
    let o = brooklet_with_stdin(&dir, &["produce", "t", "--partition", "2"], "c0\nc1\n");
    assert!(o.status.success());
    assert_eq!(stderr(&o), "");
    // SIGTERM: the group resumes at its commit, prints exactly the new records, and exits
    // with 143.
    let mut child = spawn(&dir, &["consume", "t", "--group", "g", "--follow"]);
    assert_eq!(first_lines(&mut child, 2), ["c0", "c1"]);
    signal(&child, "TERM");
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(143), "{status:?}");
    assert_closed_cleanly(&dir, "t", 3);
    assert_eq!(committed(&dir, "g", "t"), offsets(&[(0, "3"), (1, "1"), (2, "2")]));
    // Without a group (read-only) a signal stops it the same way.
    let mut child = spawn(&dir, &["consume", "t", "--partition", "2", "--offset", "1", "--follow"]);
    assert_eq!(first_lines(&mut child, 1), ["c1"]);
    signal(&child, "INT");
    assert_eq!(wait_exit(&mut child).code(), Some(130));
}

#[test]
fn a_signal_stops_produce_waiting_for_a_line_and_closes_the_directory_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "t", "--partitions", "2"]);
    let mut child = spawn(&dir, &["produce", "t", "--partition", "1"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"one\ntwo\n").unwrap();
    stdin.flush().unwrap();
    // Wait until both are stored (a reader works beside the producer), stdin still open.
    let deadline = Instant::now() + Duration::from_secs(60);
    let reader = Broker::open_read_only(&dir).unwrap();
    while reader.describe_topic("t").unwrap().partitions[1].log_end_offset < 2 {
        assert!(Instant::now() < deadline, "the lines were not produced");
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, "INT");
    let status = wait_exit(&mut child);
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(130), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "produced 2 record(s) to t in 1 partition(s)\n\
         PARTITION  RECORDS  FIRST OFFSET  LAST OFFSET\n        1        2             0            1\n"
    );
    assert_eq!(
        stderr(&o),
        "brooklet: interrupted by SIGINT: stopped after line 2 of stdin; the 2 record(s) up to it were produced\n"
    );
    assert_closed_cleanly(&dir, "t", 2);
    assert_eq!(ok(&dir, &["consume", "t", "--from-beginning"]), "one\ntwo\n");
}

#[test]
fn consume_into_a_closed_pipe_stops_commits_what_it_wrote_and_closes_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "t"]);
    // Far more than a pipe buffers, so that the writes fail once the reader is gone.
    let lines: String = (0..20_000)
        .map(|i| format!("record-{i:05}-{}\n", "x".repeat(100)))
        .collect();
    assert!(brooklet_with_stdin(&dir, &["produce", "t"], &lines).status.success());
    let mut child = spawn(&dir, &["consume", "t", "--group", "g", "--from-beginning"]);
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.starts_with("record-00000-"), "{first}");
    drop(reader);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
    assert_closed_cleanly(&dir, "t", 1);
    // It stopped short of the end (the records of the poll whose write failed are not
    // committed: they may not have reached the reader), and the next run prints exactly
    // the records after the commit: none skipped.
    let at: usize = committed(&dir, "g", "t")[0].1.parse().unwrap();
    assert!(at < 20_000, "committed {at}");
    let rest = ok(&dir, &["consume", "t", "--group", "g"]);
    let want: String = lines.lines().skip(at).map(|l| format!("{l}\n")).collect();
    assert!(rest == want, "the rest after {at} differs");
}

#[test]
fn a_recovery_that_cut_bytes_is_reported_on_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "orders", "--partitions", "2"]);
    let o = brooklet_with_stdin(&dir, &["produce", "orders", "--partition", "1"], "a\nb\n");
    assert!(o.status.success());
    // A writer killed while it holds the directory leaves every partition unclean.
    let mut child = spawn(
        &dir,
        &["consume", "orders", "--group", "g", "--from-beginning", "--follow"],
    );
    assert_eq!(first_lines(&mut child, 2), ["a", "b"]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!dir.join("orders-1").join("clean-shutdown").exists());
    // And a torn tail: bytes of a batch that was never completed.
    let segment = dir.join("orders-1").join("00000000000000000000.log");
    let len = std::fs::metadata(&segment).unwrap().len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap()
        .write_all(b"garbage!")
        .unwrap();
    // A reader runs no recovery: nothing to report, nothing changed.
    let o = brooklet(&dir, &["consume", "orders", "--from-beginning"]);
    assert_eq!((stdout(&o).as_str(), stderr(&o).as_str()), ("a\nb\n", ""));
    // A writer's open cuts the tail and says so on stderr, stdout as always.
    let o = brooklet(&dir, &["produce", "orders"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "produced 0 record(s) to orders in 0 partition(s)\n");
    assert_eq!(
        stderr(&o),
        format!(
            "brooklet: warning: orders-1 was not closed cleanly: recovery cut 8 bytes at byte {len} of {} \
             (torn write: 8 bytes remain, a batch needs 57)\n",
            segment.display()
        )
    );
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), len);
    // Closed cleanly since: no more warning, the records are all there.
    let o = brooklet(&dir, &["consume", "orders", "--group", "h", "--from-beginning"]);
    assert_eq!((stdout(&o).as_str(), stderr(&o).as_str()), ("a\nb\n", ""));
}

/// A reading command on a directory whose partition is damaged (valid batches stop short of
/// where the writer closed it cleanly) says so on stderr, so that a count or listing is not
/// taken for the whole log; stdout is as it would be, and a read that reaches the damage fails.
#[test]
fn reading_commands_warn_of_a_damaged_partition() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "t", "--partitions", "2"]);
    let o = brooklet_with_stdin(&dir, &["produce", "t", "--partition", "0"], "a\nb\nc\n");
    assert!(o.status.success());
    let segment = dir.join("t-0").join("00000000000000000000.log");
    let len = std::fs::metadata(&segment).unwrap().len();
    let mut bytes = std::fs::read(&segment).unwrap();
    // The first batch's CRC (bytes 17..21): every batch from the first one on is lost,
    // however `produce` batched the lines.
    bytes[18] ^= 0xff;
    std::fs::write(&segment, bytes).unwrap();
    let warning = format!(
        "brooklet: warning: t-0: corrupt data in {} at byte 0: the log was closed cleanly at offset 3 with \
         {len} bytes in this segment, but its batches stop being valid at offset 0 (byte 0)\n",
        segment.display()
    );
    let o = brooklet(&dir, &["topics", "list"]);
    assert!(o.status.success());
    assert_eq!(
        stdout(&o),
        "TOPIC  PARTITIONS  RECORDS  SIZE\nt               2        0  0 B\n"
    );
    assert_eq!(stderr(&o), warning);
    // `consume` warns only of the partitions it reads, when its read reaches the damage:
    // the other partition reads as ever; the damaged one's read stops at the damage.
    let o = brooklet(&dir, &["consume", "t", "--partition", "1", "--from-beginning"]);
    assert_eq!(
        (o.status.code(), stdout(&o).as_str(), stderr(&o).as_str()),
        (Some(0), "", "brooklet: no records to read\n")
    );
    let o = brooklet(&dir, &["consume", "t", "--partition", "0", "--from-beginning"]);
    assert_eq!(
        (o.status.code(), stdout(&o).as_str(), stderr(&o)),
        (
            Some(2),
            "",
            format!(
                "{}; its records from offset 0 on are not printed (brooklet verify lists the damage)\n\
                 brooklet: error: 1 damaged partition(s) could not be read to the end: t-0 at offset 0\n",
                warning.trim_end()
            )
        )
    );
}

/// `consume` of a topic with a damaged partition prints every record of the healthy
/// partitions and those of the damaged one before the damage, warns where it stopped in the
/// damaged one, and exits with 2 (as `verify` and `dump-log` do on damage); a group commits
/// the damaged partition's position at the damage, not past it.
#[test]
fn consume_prints_the_healthy_partitions_of_a_damaged_topic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "t", "--partitions", "3"]);
    for (partition, lines) in [("0", "a\nb\nc\n"), ("0", "d\ne\n"), ("1", "x\ny\n"), ("2", "z\n")] {
        let o = brooklet_with_stdin(&dir, &["produce", "t", "--partition", partition], lines);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    // The CRC of the batch holding offset 3 of t-0 (at byte `damaged`).
    let segment = dir.join("t-0").join("00000000000000000000.log");
    let mut bytes = std::fs::read(&segment).unwrap();
    let mut damaged = 0;
    while u64::from_le_bytes(bytes[damaged..damaged + 8].try_into().unwrap()) < 3 {
        damaged += 12 + u32::from_le_bytes(bytes[damaged + 8..damaged + 12].try_into().unwrap()) as usize;
    }
    bytes[damaged + 14] ^= 0xff;
    std::fs::write(&segment, bytes).unwrap();
    let damage = format!(
        "brooklet: warning: t-0: corrupt data in {} at byte {damaged}: the log was closed cleanly at offset 5 \
         with {} bytes in this segment, but its batches stop being valid at offset 3 (byte {damaged}); its \
         records from offset 3 on are not printed (brooklet verify lists the damage)\n",
        segment.display(),
        std::fs::metadata(&segment).unwrap().len()
    );
    let summary = "brooklet: error: 1 damaged partition(s) could not be read to the end: t-0 at offset 3\n";

    let o = brooklet(
        &dir,
        &["consume", "t", "--from-beginning", "--print-key", "--format", "json"],
    );
    assert_eq!((o.status.code(), stderr(&o)), (Some(2), format!("{damage}{summary}")));
    let mut printed: Vec<(u64, u64, String)> = stdout(&o)
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                v["partition"].as_u64().unwrap(),
                v["offset"].as_u64().unwrap(),
                v["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    printed.sort();
    let expected: Vec<(u64, u64, String)> = [
        (0, 0, "a"),
        (0, 1, "b"),
        (0, 2, "c"),
        (1, 0, "x"),
        (1, 1, "y"),
        (2, 0, "z"),
    ]
    .into_iter()
    .map(|(p, o, v)| (p, o, v.to_owned()))
    .collect();
    assert_eq!(printed, expected);

    // A group: the same records, and its commits stop at the damage.
    let o = brooklet(&dir, &["consume", "t", "--group", "g", "--from-beginning"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let out = stdout(&o);
    let mut values: Vec<&str> = out.lines().collect();
    values.sort_unstable();
    assert_eq!(values, ["a", "b", "c", "x", "y", "z"]);
    let broker = Broker::open_read_only(&dir).unwrap();
    let committed: Vec<Option<u64>> = (0..3)
        .map(|p| {
            broker
                .committed_offset("g", &brooklet::TopicPartition::new("t", p))
                .map(|c| c.offset)
        })
        .collect();
    assert_eq!(committed, [Some(3), Some(2), Some(1)]);
    drop(broker);

    // After a crash (no clean-shutdown marker) the damage is found by the open, which
    // fails by default; a group's consume leaves the partition offline and reads the rest.
    std::fs::remove_file(dir.join("t-0").join("clean-shutdown")).unwrap();
    let o = brooklet(&dir, &["consume", "t", "--group", "g2", "--from-beginning"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).ends_with(summary), "{}", stderr(&o));
    let out = stdout(&o);
    let mut values: Vec<&str> = out.lines().collect();
    values.sort_unstable();
    assert_eq!(values, ["a", "b", "c", "x", "y", "z"]);
}

/// `consume` without `--follow` stops at the end each partition had when it started, also
/// while an application keeps writing: it used to stop only after a poll found nothing new,
/// so beside a writer faster than its poll timeout it ran, printing, until the writer
/// stopped.
#[test]
fn consume_without_follow_stops_at_the_starting_end_while_an_application_writes() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let broker = Broker::open(&dir).unwrap();
    broker
        .create_topic("t", brooklet::TopicConfig::with_partitions(2))
        .unwrap();
    let producer = broker.producer(ProducerConfig::default());
    let send = move |i: u32| {
        producer
            .send(ProducerRecord::new("t").partition(i % 2).value(i.to_string()))
            .unwrap();
    };
    for i in 0..100 {
        send(i);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            // Until the test stops it, or (the bug) long after `consume` should have ended.
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut i = 100;
            while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
                send(i);
                i += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            (i, stop.load(Ordering::Acquire))
        })
    };
    let o = brooklet(&dir, &["consume", "t", "--from-beginning", "--format", "json"]);
    stop.store(true, Ordering::Release);
    let (written, stopped_by_test) = writer.join().unwrap();
    assert!(stopped_by_test, "consume ran until the writer gave up");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Each partition's records from its first on, with no gap: i goes to partition i % 2.
    let mut printed: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
    for line in stdout(&o).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let p = v["partition"].as_u64().unwrap() as usize;
        printed[p].push(v["value"].as_str().unwrap().parse().unwrap());
    }
    for (p, values) in printed.iter().enumerate() {
        let expected: Vec<u32> = (0..).map(|k| 2 * k + p as u32).take(values.len()).collect();
        assert_eq!(values, &expected, "partition {p}");
        assert!(values.len() >= 50, "partition {p}: {} records", values.len());
    }
    assert!(printed[0].len() + printed[1].len() <= written as usize);
}

/// Every line the child prints, as they come (its stdout is taken).
fn line_receiver(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// An application writing to topic `t` beside the CLI: record `i` has the value `i`
/// zero-padded to 200 bytes.
struct App {
    broker: Broker,
    producer: brooklet::Producer,
}

impl App {
    fn send(&self, i: u64) {
        self.producer
            .send(ProducerRecord::new("t").value(format!("{i:0>200}")))
            .unwrap();
    }

    fn log_start(&self) -> u64 {
        self.broker.describe_topic("t").unwrap().partitions[0].log_start_offset
    }
}

/// A data directory with topic `t` (4 KiB segments, 8 KiB size retention) and an
/// application holding it to write; a reading command beside it takes no lock.
fn small_retention_topic() -> (tempfile::TempDir, std::path::PathBuf, App) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let config = ["segment.bytes=4096", "retention.bytes=8192"];
    ok(
        &dir,
        &["topics", "create", "t", "--config", config[0], "--config", config[1]],
    );
    let broker = Broker::open(&dir).unwrap();
    let producer = broker.producer(ProducerConfig::default());
    (tmp, dir, App { broker, producer })
}

/// Stops the child with SIGINT (it exits 130) and returns what it printed on stderr.
fn interrupt_and_stderr(child: &mut Child) -> String {
    signal(child, "INT");
    assert_eq!(wait_exit(child).code(), Some(130));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    stderr
}

/// `consume --follow` that fell behind the writer's retention (here: stopped while an
/// application wrote on) goes on from the log start instead of stalling, and says on
/// stderr which offsets it never saw.
#[test]
fn consume_follow_behind_retention_goes_on_from_the_log_start_and_says_what_it_skipped() {
    let (_tmp, dir, app) = small_retention_topic();
    let send = |i: u64| app.send(i);
    let start_offset = || app.log_start();
    for i in 0..5 {
        send(i);
    }
    let mut child = spawn(&dir, &["consume", "t", "--from-beginning", "--follow"]);
    let lines = line_receiver(&mut child);
    let next_line = || lines.recv_timeout(Duration::from_secs(60)).unwrap();
    for i in 0..5 {
        assert_eq!(next_line(), format!("{i:0>200}"));
    }
    signal(&child, "STOP");
    let mut end = 5;
    while start_offset() < 40 {
        send(end);
        end += 1;
    }
    let start = start_offset();
    signal(&child, "CONT");
    for i in start..end {
        assert_eq!(next_line(), format!("{i:0>200}"));
    }
    let stderr = interrupt_and_stderr(&mut child);
    assert_eq!(
        stderr,
        format!(
            "brooklet: warning: t-0: skipped offsets 5 to {}: retention deleted them before they were read\n",
            start - 1
        )
    );
}

/// Without `--from-beginning`, a `consume --follow` that fell behind the writer's
/// retention is reset to the end of the partition (Kafka's `auto.offset.reset=latest`), so it
/// also skips records retention never deleted: the warning must not blame retention for
/// those, and says where the log started.
#[test]
fn consume_follow_reset_to_the_end_does_not_say_retention_deleted_what_it_skipped() {
    let (_tmp, dir, app) = small_retention_topic();
    let send = |i: u64| app.send(i);
    let start_offset = || app.log_start();
    let mut child = spawn(&dir, &["consume", "t", "--follow"]);
    let lines = line_receiver(&mut child);
    let next_line = || lines.recv_timeout(Duration::from_secs(60)).unwrap();
    // Started at the (empty) end: records sent until one is printed.
    let mut end = 0;
    let first = loop {
        send(end);
        end += 1;
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            break line;
        }
    };
    let mut printed = first.parse::<u64>().unwrap() + 1;
    while printed < end {
        assert_eq!(next_line(), format!("{printed:0>200}"));
        printed += 1;
    }
    signal(&child, "STOP");
    while start_offset() < printed + 40 {
        send(end);
        end += 1;
    }
    let start = start_offset();
    assert!(start > printed && start < end);
    signal(&child, "CONT");
    // The reset goes to the end: the next record sent is the next one printed.
    let after = loop {
        send(end);
        end += 1;
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            break line.parse::<u64>().unwrap();
        }
    };
    assert!(after > start, "reset to {after}, the log start is {start}");
    let stderr = interrupt_and_stderr(&mut child);
    let (warning, rest) = stderr.split_once('\n').unwrap();
    assert_eq!(rest, "");
    let prefix = format!("brooklet: warning: t-0: skipped offsets {printed} to {}: ", after - 1);
    assert!(warning.starts_with(&prefix), "{warning}");
    assert!(!warning.contains("retention deleted them"), "{warning}");
    assert!(warning.contains("log start"), "{warning}");
}

#[test]
fn produce_stops_at_a_line_too_large_for_the_topic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(
        &dir,
        &["topics", "create", "small", "--config", "max.message.bytes=2000"],
    );
    // A line within the limit whose record, framed, passes it: the record's size is given.
    let lines = format!("a\nb\n{}\nc\nd\n", "x".repeat(1990));
    let o = brooklet_with_stdin(&dir, &["produce", "small"], &lines);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        "produced 2 record(s) to small in 1 partition(s)\n\
         PARTITION  RECORDS  FIRST OFFSET  LAST OFFSET\n        0        2             0            1\n"
    );
    assert_eq!(
        stderr(&o),
        "brooklet: error: line 3 is one record of 2056 bytes, too large for topic small: its max.message.bytes is \
         2000 bytes; stopped there: the 2 record(s) before it were produced\n"
    );
    // Nothing after it was produced.
    assert_eq!(ok(&dir, &["consume", "small", "--from-beginning"]), "a\nb\n");
    // A line longer than the limit is refused as soon as it passes it.
    let o = brooklet_with_stdin(&dir, &["produce", "small"], &format!("e\n{}\nf\n", "x".repeat(5000)));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "brooklet: error: line 2 is more than 2000 bytes long, too large for topic small: its max.message.bytes is \
         2000 bytes; stopped there: the 1 record(s) before it were produced\n"
    );
    assert_eq!(ok(&dir, &["consume", "small", "--from-beginning"]), "a\nb\ne\n");
    // With a key separator, the line may be longer than the limit by the separator.
    let o = brooklet_with_stdin(
        &dir,
        &["produce", "small", "--key-separator", "::"],
        &format!("k::{}\n", "x".repeat(2000)),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("brooklet: error: line 1 is more than 2002 bytes long, too large for topic small"),
        "{}",
        stderr(&o)
    );
    // The first line of a run, and one whose limit is segment.bytes (max.message.bytes
    // above it).
    ok(
        &dir,
        &[
            "topics",
            "create",
            "tiny",
            "--config",
            "segment.bytes=4096",
            "--config",
            "max.message.bytes=8192",
        ],
    );
    for (line, error) in [
        (
            "y".repeat(4050),
            "line 1 is one record of 4116 bytes, too large for topic tiny: its segment.bytes is 4096 bytes",
        ),
        (
            "y".repeat(5000),
            "line 1 is more than 4096 bytes long, too large for topic tiny: its segment.bytes is 4096 bytes",
        ),
    ] {
        let o = brooklet_with_stdin(&dir, &["produce", "tiny"], &format!("{line}\nz\n"));
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(stdout(&o), "produced 0 record(s) to tiny in 0 partition(s)\n");
        assert_eq!(
            stderr(&o),
            format!("brooklet: error: {error}; stopped there: the 0 record(s) before it were produced\n")
        );
    }
    let o = brooklet(&dir, &["consume", "tiny", "--from-beginning"]);
    assert_eq!(
        (stdout(&o).as_str(), stderr(&o).as_str()),
        ("", "brooklet: no records to read\n")
    );
}

/// Input that never ends its line (a binary file, `/dev/zero`): `produce` reads it no
/// further than the topic's limit and stops there, instead of gathering all of it in memory
/// only to refuse it.
#[test]
fn produce_reads_no_more_of_an_endless_line_than_the_topic_could_take() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(
        &dir,
        &["topics", "create", "small", "--config", "max.message.bytes=2000"],
    );
    let mut child = spawn(&dir, &["produce", "small"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"a\n").unwrap();
    let chunk = vec![b'x'; 64 << 10];
    let mut written = 0usize;
    loop {
        match stdin.write_all(&chunk) {
            Ok(()) => written += chunk.len(),
            // It stopped reading and exited.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => panic!("writing to produce's stdin: {e}"),
        }
        assert!(
            written < 256 << 20,
            "produce read {written} bytes of one line, far past the topic's limit of 2000"
        );
    }
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "brooklet: error: line 2 is more than 2000 bytes long, too large for topic small: its max.message.bytes is \
         2000 bytes; stopped there: the 1 record(s) before it were produced\n"
    );
    assert_eq!(ok(&dir, &["consume", "small", "--from-beginning"]), "a\n");
}

#[test]
fn config_errors_name_the_kafka_setting_and_its_range() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let refused = |setting: &str| {
        let o = brooklet(&dir, &["topics", "create", "x", "--config", setting]);
        assert_eq!(o.status.code(), Some(1), "{setting}");
        assert_eq!(stdout(&o), "");
        stderr(&o)
    };
    assert_eq!(
        refused("cleanup.policy=compact"),
        "brooklet: error: invalid configuration for `cleanup.policy`: \"compact\" is not supported: brooklet has no \
         log compaction yet; cleanup.policy takes only delete\n"
    );
    assert_eq!(
        refused("segment.bytes=10"),
        "brooklet: error: invalid configuration for `segment.bytes`: \"10\" is not allowed: segment.bytes takes a \
         whole number of bytes from 4096 to 4294967295\n"
    );
    assert_eq!(
        refused("max.message.bytes=100"),
        "brooklet: error: invalid configuration for `max.message.bytes`: \"100\" is not allowed: max.message.bytes \
         takes a whole number of bytes from 1024 to 4294967295 (above segment.bytes, segment.bytes is the limit)\n"
    );
    let retention = "retention.ms takes -1 (no limit, the default) or a whole number of milliseconds from 1 to \
                     18446744073709551615\n";
    for value in ["abc", "0", "-2"] {
        assert_eq!(
            refused(&format!("retention.ms={value}")),
            format!(
                "brooklet: error: invalid configuration for `retention.ms`: \"{value}\" is not allowed: {retention}"
            )
        );
    }
    assert!(!dir.join("x-0").exists());
    // -1 is no limit, as in Kafka (and the default): shown as -1.
    ok(
        &dir,
        &[
            "topics",
            "create",
            "x",
            "--config",
            "retention.ms=-1",
            "--config",
            "retention.bytes=-1",
            "--config",
            "cleanup.policy=delete",
        ],
    );
    let describe = ok(&dir, &["topics", "describe", "x"]);
    assert_eq!(row(&describe, &["retention.ms"]), ["retention.ms", "-1"]);
    assert_eq!(row(&describe, &["retention.bytes"]), ["retention.bytes", "-1"]);
    assert_eq!(row(&describe, &["cleanup.policy"]), ["cleanup.policy", "delete"]);
    let help = ok(&dir, &["topics", "create", "--help"]);
    for text in [
        "cleanup.policy (only delete: compact is refused",
        "-1 = no limit",
        "1024",
    ] {
        assert!(help.replace("\n ", " ").contains(text), "{text}: {help}");
    }
}

#[test]
fn text_consume_gives_back_the_bytes_produced_utf8_or_not() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "bin"]);
    let o = brooklet_with_stdin_bytes(
        &dir,
        &["produce", "bin", "--key-separator", ":", "--header", "h=v"],
        b"k\xff:\xff\xfebin\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = brooklet(&dir, &["consume", "bin", "--from-beginning"]);
    assert_eq!(o.stdout, b"\xff\xfebin\n");
    let o = brooklet(
        &dir,
        &["consume", "bin", "--from-beginning", "--print-key", "--print-headers"],
    );
    assert_eq!(o.stdout, b"h=v\tk\xff\t\xff\xfebin\n");
    // JSON strings cannot hold such bytes: they become U+FFFD, as its help says.
    let json = ok(&dir, &["consume", "bin", "--from-beginning", "--format", "json"]);
    let object: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
    assert_eq!(object["value"], "\u{fffd}\u{fffd}bin");
    assert_eq!(object["key"], "k\u{fffd}");
    let help = ok(&dir, &["consume", "--help"]);
    assert!(help.replace("\n ", " ").contains("become U+FFFD"), "{help}");
    // dump-log shows them escaped.
    let dump = ok(&dir, &["dump-log", "bin-0/00000000000000000000.log", "--records"]);
    assert!(dump.contains("key k\\xff value \\xff\\xfebin headers [h=v]"), "{dump}");
}

#[test]
fn produce_drops_the_cr_of_a_crlf_line_ending_and_keeps_any_other_cr() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "crlf"]);
    // A file written on Windows: each line ends in \r\n, and its records are those of the
    // same file with \n endings. A \r anywhere else is one of the line's bytes.
    // The last line may end at the end of the input instead, \r included.
    let o = brooklet_with_stdin_bytes(&dir, &["produce", "crlf"], b"a\r\nb\rc\r\nd\r\r\n\r\ne\r");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = brooklet(&dir, &["consume", "crlf", "--from-beginning"]);
    assert_eq!(o.stdout, b"a\nb\rc\nd\r\n\ne\n");
    // The help says so.
    let help = ok(&dir, &["produce", "--help"]);
    assert!(
        help.replace("\n ", " ").contains("a \\r that ends it is dropped"),
        "{help}"
    );
}

#[test]
fn dump_log_finds_a_relative_segment_under_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "orders"]);
    assert!(
        brooklet_with_stdin(&dir, &["produce", "orders"], "x\n")
            .status
            .success()
    );
    let relative = "orders-0/00000000000000000000.log";
    assert!(!Path::new(relative).exists());
    let dump = ok(&dir, &["dump-log", relative]);
    assert_eq!(
        dump.lines().next().unwrap(),
        format!("{}: 65 bytes, 1 batch(es), base offset 0", dir.join(relative).display())
    );
    assert_eq!(row(&dump, &["0", "0", "0", "1"])[8], "ok");
    let o = brooklet(&dir, &["dump-log", "orders-0/00000000000000000001.log"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "brooklet: error: orders-0/00000000000000000001.log does not exist, nor does {}\n",
            dir.join("orders-0/00000000000000000001.log").display()
        )
    );
}

#[test]
fn consume_and_produce_refuse_bad_arguments_up_front() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "orders"]);
    assert!(
        brooklet_with_stdin(&dir, &["produce", "orders"], "a\nb\nc\n")
            .status
            .success()
    );
    // An offset past the end is refused, naming the end; the end itself is the next record.
    let o = brooklet(&dir, &["consume", "orders", "--partition", "0", "--offset", "9999"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "brooklet: error: offset 9999 is past the end of orders-0: its end offset is 3 (the offset the next record gets)\n"
    );
    let o = brooklet(&dir, &["consume", "orders", "--partition", "0", "--offset", "3"]);
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(0), ""));
    assert_eq!(stderr(&o), "brooklet: no records to read\n");
    assert_eq!(
        ok(&dir, &["consume", "orders", "--partition", "0", "--offset", "2"]),
        "c\n"
    );
    // kafka-console-consumer's named offsets.
    assert_eq!(
        ok(&dir, &["consume", "orders", "--partition", "0", "--offset", "earliest"]),
        "a\nb\nc\n"
    );
    let o = brooklet(&dir, &["consume", "orders", "--partition", "0", "--offset", "latest"]);
    assert_eq!(
        (o.status.code(), stdout(&o).as_str(), stderr(&o).as_str()),
        (Some(0), "", "brooklet: no records to read\n")
    );
    let o = brooklet(&dir, &["consume", "orders", "--partition", "0", "--offset", "newest"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with(
            "error: invalid value 'newest' for '--offset <O>': \"newest\" is not an offset: give a number, earliest or latest\n"
        ),
        "{}",
        stderr(&o)
    );
    // Conflicting and empty arguments: clap's usage errors (exit 2), nothing run.
    let o = brooklet(
        &dir,
        &[
            "consume",
            "orders",
            "--partition",
            "0",
            "--offset",
            "1",
            "--from-beginning",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: the argument '--offset <O>' cannot be used with '--from-beginning'\n"),
        "{}",
        stderr(&o)
    );
    let o = brooklet_with_stdin(&dir, &["produce", "orders", "--key-separator", ""], "a\n");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o)
            .starts_with("error: invalid value '' for '--key-separator <SEP>': the separator must not be empty\n"),
        "{}",
        stderr(&o)
    );
    assert_eq!(ok(&dir, &["consume", "orders", "--from-beginning"]), "a\nb\nc\n");
}

/// `consume --follow` of a whole topic beside an application follows the partitions the
/// application adds while it runs (from their first record), as a Kafka consumer picks up
/// new partitions from refreshed metadata; it stops with an error when the topic is deleted.
#[test]
fn consume_follow_picks_up_partitions_added_while_it_runs() {
    let (_tmp, dir, app) = small_retention_topic();
    app.send(0);
    let mut child = spawn(&dir, &["consume", "t", "--from-beginning", "--follow"]);
    let lines = line_receiver(&mut child);
    let next_line = || lines.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(next_line(), format!("{:0>200}", 0));
    app.broker.add_partitions("t", 3).unwrap();
    for p in [1, 2] {
        app.producer
            .send(ProducerRecord::new("t").partition(p).value(format!("on-{p}")))
            .unwrap();
    }
    let mut got = vec![next_line(), next_line()];
    got.sort();
    assert_eq!(got, ["on-1", "on-2"]);
    app.broker.delete_topic("t").unwrap();
    assert_eq!(wait_exit(&mut child).code(), Some(1));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("topic \"t\" was deleted while it was being consumed"),
        "{stderr}"
    );
}

/// `consume --follow` of a whole topic that the application deletes and creates again with
/// fewer partitions follows the new topic: it says which partitions it no longer follows and
/// prints what the new topic gets. It used to stop with "was deleted while it was being
/// consumed" (the partitions the new topic lacks were reported as a deleted topic).
#[test]
fn consume_follow_goes_on_with_a_topic_created_again_with_fewer_partitions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "t", "--partitions", "3"]);
    let broker = Broker::open(&dir).unwrap();
    let producer = broker.producer(ProducerConfig::default());
    let send = |p: u32, value: &str| {
        producer
            .send(ProducerRecord::new("t").partition(p).value(value.to_owned()))
            .unwrap();
    };
    send(2, "old-2");
    let mut child = spawn(&dir, &["consume", "t", "--from-beginning", "--follow"]);
    let lines = line_receiver(&mut child);
    let next_line = || lines.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(next_line(), "old-2");
    // Stopped meanwhile, so that no refresh of its falls between the delete and the create
    // (it would find no topic, and stop: deleted).
    signal(&child, "STOP");
    broker.delete_topic("t").unwrap();
    broker
        .create_topic("t", brooklet::TopicConfig::with_partitions(1))
        .unwrap();
    send(0, "new-0");
    signal(&child, "CONT");
    assert_eq!(next_line(), "new-0");
    // Partitions added again are followed again, from their first record.
    broker.add_partitions("t", 2).unwrap();
    send(1, "new-1");
    assert_eq!(next_line(), "new-1");
    assert_eq!(
        interrupt_and_stderr(&mut child),
        "brooklet: warning: t was created again with 1 partition(s): no longer following t-1, t-2\n"
    );
}

/// A negative count, partition or offset is refused as out of range (clap's exit 2), not
/// taken for an unknown option ("unexpected argument '-1' … use '-- -1'"); and the command
/// list gives `produce` one line, as every other command.
#[test]
fn negative_numbers_are_out_of_range_and_the_command_list_is_one_line_each() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "orders"]);
    for (args, flag) in [
        (
            &["topics", "create", "x", "--partitions", "-1"][..],
            "--partitions <PARTITIONS>",
        ),
        (&["consume", "orders", "--partition", "-1"], "--partition <P>"),
        (&["consume", "orders", "--max-records", "-5"], "--max-records <N>"),
    ] {
        let o = brooklet(&dir, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&o).starts_with(&format!("error: invalid value '{}' for '{flag}'", args[args.len() - 1])),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    let help = ok(&dir, &["--help"]);
    let produce: Vec<&str> = help.lines().filter(|l| l.starts_with("  produce ")).collect();
    assert_eq!(
        produce,
        ["  produce   Send the lines of stdin as records (the console producer)"]
    );
}

/// `produce` to a partition damaged after a clean shutdown (which a writable open does not
/// scan) refuses, with the exit status of damage and before it reads stdin: it used to store
/// the records after the damage, where every reader stops, and exit 0. A healthy partition
/// of the same topic takes records as ever; a produce that may route to the damaged one
/// (no --partition) refuses too.
#[test]
fn produce_refuses_a_damaged_partition() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "t", "--partitions", "2"]);
    let lines: String = (0..50).map(|i| format!("line-{i}\n")).collect();
    for p in ["0", "1"] {
        let o = brooklet_with_stdin(&dir, &["produce", "t", "--partition", p], &lines);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let segment = dir.join("t-0").join("00000000000000000000.log");
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();
    let damaged = bytes;
    for args in [&["produce", "t", "--partition", "0"][..], &["produce", "t"]] {
        let o = brooklet_with_stdin(&dir, args, "x\n");
        assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(2), ""), "{args:?}");
        let err = stderr(&o);
        assert!(err.starts_with("brooklet: warning: t-0: corrupt data in "), "{err}");
        assert!(
            err.ends_with(
                "brooklet: error: nothing produced: t-0 is damaged, and records produced to it would be stored after \
                 the damage, where readers stop (brooklet verify lists the damage)\n"
            ),
            "{err}"
        );
    }
    // Nothing went to the damaged partition's files.
    assert_eq!(std::fs::read(&segment).unwrap(), damaged);
    let o = brooklet_with_stdin(&dir, &["produce", "t", "--partition", "1"], "x\n");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = brooklet(&dir, &["consume", "t", "--partition", "1", "--offset", "50"]);
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(0), "x\n"));
}

/// `consume` without `--follow` beside an application that truncates the partition below the
/// end it had when the command started stops at the end the cut left, having printed exactly
/// the records up to it: it used to wait, polling, for records up to the old end, which
/// might never come. The command is held in the middle (its stdout pipe full, not read) while
/// the application truncates.
#[test]
fn consume_without_follow_stops_at_an_end_an_application_cut_below_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "t"]);
    let broker = Broker::open(&dir).unwrap();
    let producer = broker.producer(ProducerConfig::default());
    // 4 KiB lines: the 64 KiB pipe holds 16, one poll reads some 250.
    let value = |i: u64| format!("{i:04}{}", "x".repeat(4096));
    let batch: Vec<ProducerRecord> = (0..2000).map(|i| ProducerRecord::new("t").value(value(i))).collect();
    producer.send_batch(&batch).unwrap();
    let mut child = spawn(&dir, &["consume", "t", "--from-beginning"]);
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert_eq!(first, format!("{}\n", value(0)));
    // It started (its end is 2000), and cannot pass some 300 records while unread. The cut
    // falls at the start of the batch holding offset 1000.
    let log = broker.partition_log(&brooklet::TopicPartition::new("t", 0)).unwrap();
    let cut = log.truncate_to(1000).unwrap();
    assert!((500..=1000).contains(&cut), "cut at {cut}");
    let reader = std::thread::spawn(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        rest
    });
    let status = wait_exit(&mut child);
    let rest = reader.join().unwrap();
    assert_eq!(status.code(), Some(0));
    let want: String = (1..cut).map(|i| format!("{}\n", value(i))).collect();
    assert!(rest == want, "{} lines printed after the first", rest.lines().count());
}

/// stderr into a pipe nobody reads any more (`2>&1 | head -1` once `head` is gone): the
/// line is lost, but the command ends as it would have, not in a panic (exit 101).
#[test]
fn a_closed_stderr_pipe_changes_no_exit_status() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "orders"]);
    let run = |args: &[&str]| {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        Command::new(env!("CARGO_BIN_EXE_brooklet"))
            .arg("--dir")
            .arg(&dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(writer)
            .output()
            .unwrap()
    };
    // An error: its line goes nowhere, the status stays 1.
    let o = run(&["topics", "describe", "nope"]);
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(1), ""));
    // A success with a hint on stderr (nothing to consume): still 0.
    let o = run(&["consume", "orders"]);
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(0), ""));
}

/// `verify` of a directory that is not a data directory (a mistyped --dir, a partition's
/// directory) says so, as every other command does, rather than reporting it as damage
/// (exit 2) with advice on recovering synced records; a data directory that lost its topic
/// table still is damage.
#[test]
fn verify_of_a_directory_that_is_not_a_data_directory_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "orders"]);
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for not_data in [empty, dir.join("meta")] {
        let o = brooklet(&not_data, &["verify"]);
        assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(1), ""), "{}", stderr(&o));
        assert_eq!(
            stderr(&o),
            format!(
                "brooklet: error: {} is not a brooklet data directory (no meta/topics)\n",
                not_data.display()
            )
        );
    }
    std::fs::remove_file(dir.join("meta").join("topics")).unwrap();
    let o = brooklet(&dir, &["verify"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("damaged: cannot open the directory read-only"),
        "{}",
        stdout(&o)
    );
    // The summary does not count the topics of a table it could not read as none.
    assert!(
        stdout(&o).starts_with(
            "checked the topic table (it does not load), 2 partition log(s) (offsets log included), 2 segment(s), "
        ),
        "{}",
        stdout(&o)
    );
}

/// A `topics create` refused for its name leaves no trace: the data directory it would
/// have made (with its lock, topic table and offsets log) is not made.
#[test]
fn a_refused_topics_create_makes_no_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let o = brooklet(&dir, &["topics", "create", "bad name!"]);
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(1), ""));
    assert_eq!(
        stderr(&o),
        "brooklet: error: invalid topic name \"bad name!\": character ' ' is not one of [a-zA-Z0-9._-]\n"
    );
    assert!(!dir.exists());
    // A directory holding other files is not made a data directory (a mistyped --dir).
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), b"mine").unwrap();
    let o = brooklet(&other, &["topics", "create", "orders"]);
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(1), ""));
    assert_eq!(
        stderr(&o),
        format!(
            "brooklet: error: {} is not a brooklet data directory (no meta/topics) and not empty: a new one is made \
             only in a new or empty directory\n",
            other.display()
        )
    );
    let names: Vec<_> = std::fs::read_dir(&other)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["notes.txt"]);
    // A --dir that is a file is named so, as for every other command.
    std::fs::write(&dir, b"").unwrap();
    let o = brooklet(&dir, &["topics", "create", "orders"]);
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(1), ""));
    assert_eq!(
        stderr(&o),
        format!("brooklet: error: {} is not a directory\n", dir.display())
    );
}

/// `consume --follow --partition P` beside an application stops with an error when the
/// topic is deleted, as the follower of a whole topic does: it went on waiting on the
/// deleted files (and, once the topic was created again and written, failed calling the
/// new files corrupt data).
#[test]
fn consume_follow_of_one_partition_stops_when_the_topic_is_deleted() {
    let (_tmp, dir, app) = small_retention_topic();
    app.send(0);
    let mut child = spawn(
        &dir,
        &["consume", "t", "--partition", "0", "--from-beginning", "--follow"],
    );
    let lines = line_receiver(&mut child);
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(60)).unwrap(),
        format!("{:0>200}", 0)
    );
    app.broker.delete_topic("t").unwrap();
    assert_eq!(wait_exit(&mut child).code(), Some(1));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(
        stderr,
        "brooklet: error: topic \"t\" was deleted while it was being consumed\n"
    );
}

/// The help names every command that needs the directory free, as they behave: `topics
/// alter` too, and `groups reset-offsets` only with --execute (its dry run reads).
#[test]
fn help_names_the_writing_commands_as_they_behave() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let help = ok(&dir, &["--help"]);
    assert!(
        help.contains(
            "writing commands (topics create/alter/delete/add-partitions, produce, consume --group, groups \
             reset-offsets --execute, groups delete) need it free"
        ),
        "{help}"
    );
    let topics = ok(&dir, &["topics", "--help"]);
    assert!(
        topics.starts_with("List, describe, create, alter, delete topics and add partitions\n"),
        "{topics}"
    );
}

/// `topics alter` given one setting both to set and to delete is refused, as kafka-configs
/// refuses it, rather than resetting it silently and reporting nothing changed.
#[test]
fn topics_alter_refuses_a_setting_both_set_and_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "orders"]);
    let before = ok(&dir, &["topics", "describe", "orders"]);
    let o = brooklet(
        &dir,
        &[
            "topics",
            "alter",
            "orders",
            "--config",
            "retention.ms=5000",
            "--delete-config",
            "retention.ms",
        ],
    );
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(1), ""));
    assert_eq!(
        stderr(&o),
        "brooklet: error: retention.ms is given to both --config and --delete-config\n"
    );
    assert_eq!(ok(&dir, &["topics", "describe", "orders"]), before);
}

/// `consume --max-records 0` reads nothing, as asked, and does not claim there was nothing
/// to read.
#[test]
fn consume_max_records_0_prints_nothing_and_claims_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "orders"]);
    assert!(
        brooklet_with_stdin(&dir, &["produce", "orders"], "a\nb\n")
            .status
            .success()
    );
    let o = brooklet(&dir, &["consume", "orders", "--from-beginning", "--max-records", "0"]);
    assert_eq!(
        (o.status.code(), stdout(&o).as_str(), stderr(&o).as_str()),
        (Some(0), "", "")
    );
}

/// A data directory missing a partition's directory is named for what is wrong, not
/// called "not a brooklet data directory (no meta/topics)" while meta/topics is there.
#[test]
fn a_missing_partition_directory_is_not_called_a_missing_topic_table() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "orders", "--partitions", "2"]);
    std::fs::remove_dir_all(dir.join("orders-1")).unwrap();
    let o = brooklet(&dir, &["topics", "list"]);
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(1), ""));
    assert_eq!(
        stderr(&o),
        format!(
            "brooklet: error: I/O error during list directory on {}: No such file or directory (os error 2)\n",
            dir.join("orders-1").display()
        )
    );
}

/// A segment file that cannot be read (a bad sector's EIO, a permission; here a directory
/// where a segment file belongs) is damage that `verify` reports, going on to check the
/// rest and exiting with 2, rather than an error that stops the whole check with exit 1
/// and hides the damage of every other file.
#[test]
fn verify_reports_an_unreadable_segment_as_damage_and_checks_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(&dir, &["topics", "create", "orders", "--partitions", "2"]);
    // One batch per call: two batches per partition, whatever `produce`'s batching.
    for p in ["0", "1"] {
        for line in ["a\n", "b\n"] {
            let o = brooklet_with_stdin(&dir, &["produce", "orders", "--partition", p], line);
            assert!(o.status.success(), "{}", stderr(&o));
        }
    }
    let unreadable = dir.join("orders-0").join("00000000000000000002.log");
    std::fs::create_dir(&unreadable).unwrap();
    let damaged = dir.join("orders-1").join("00000000000000000000.log");
    let mut bytes = std::fs::read(&damaged).unwrap();
    // The first record's attributes, right after the 61-byte batch header and the record's
    // one-byte length: the first batch's checksum no longer matches.
    bytes[62] ^= 0xff;
    std::fs::write(&damaged, &bytes).unwrap();

    let o = brooklet(&dir, &["verify"]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    let damage: Vec<&str> = out.lines().filter(|l| l.starts_with("damaged: ")).collect();
    assert_eq!(damage.len(), 3, "{out}");
    assert!(
        damage[0].starts_with("damaged: cannot open the directory read-only: "),
        "{out}"
    );
    assert_eq!(
        damage[1],
        format!(
            "damaged: {}: cannot be read: Is a directory (os error 21)",
            unreadable.display()
        )
    );
    assert!(
        damage[2].starts_with(&format!(
            "damaged: {} at byte 0: batch at offset 0: ",
            damaged.display()
        )),
        "{out}"
    );
    assert!(out.lines().last().unwrap().starts_with("3 problem(s) found."), "{out}");
}
