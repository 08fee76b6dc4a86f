//! The reliability suite's in-process parts (the crash loop with real processes is
//! `tests/crash.rs`): whole-broker power loss at random points, corruption of a closed data
//! directory, and hostile input. Every randomized test prints its seed on failure;
//! `BROOKLET_SEED=<seed>` replays it and `BROOKLET_TRIALS=<n>` runs more trials.

mod common;
#[path = "common/largest_alloc.rs"]
mod largest_alloc;

use common::Rng;
use largest_alloc::largest_allocation;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use brooklet::io::{FaultFs, PowerLoss};
use brooklet::{
    Broker, ConsumerConfig, Delivery, Durability, Error, LogRecord, OffsetAndMetadata, ProducerConfig, ProducerRecord,
    RecordMetadata, TopicConfig, TopicPartition,
};

fn seed() -> u64 {
    std::env::var("BROOKLET_SEED").map_or_else(
        |_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        },
        |v| v.parse().unwrap(),
    )
}

fn trials(default: u64) -> u64 {
    std::env::var("BROOKLET_TRIALS").map_or(default, |v| v.parse().unwrap())
}

/// Runs `f` with the seed printed if it panics.
fn seeded(name: &str, f: impl FnOnce(u64)) {
    let seed = seed();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(seed)));
    if let Err(e) = result {
        eprintln!("{name} failed; replay with BROOKLET_SEED={seed}");
        std::panic::resume_unwind(e);
    }
}

fn tp(topic: &str, p: u32) -> TopicPartition {
    TopicPartition::new(topic, p)
}

fn all_records(broker: &Broker, topic: &str, p: u32) -> brooklet::Result<Vec<LogRecord>> {
    let log = broker.partition_log(&tp(topic, p))?;
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    loop {
        let batches = log.read(next, 64 << 10)?;
        let Some(last) = batches.last() else { break };
        let after = last.last_offset() + 1;
        for b in &batches {
            for r in b.records() {
                let r = r?;
                if r.offset >= next {
                    out.push(r);
                }
            }
        }
        next = after;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// 2. Whole-broker power loss
// ---------------------------------------------------------------------------------------

/// One run: a random mix of Synced and Written sends (blocking, async, batches) to two
/// topics, Synced and Written offset commits, a topic created mid-way; then a power loss
/// (dropping or tearing the unsynced writes) and a reopen with the real file system.
fn power_loss_run(seed: u64) {
    let mut rng = Rng(seed);
    let dir = common::temp_dir();
    let fs = FaultFs::new();
    let offsets_synced = rng.below(2) == 0;
    let broker = Broker::builder()
        .vfs(Arc::new(fs.clone()))
        .offsets_durability(if offsets_synced {
            Durability::Synced
        } else {
            Durability::Written
        })
        .offsets_compact_bytes(64 << 10)
        .open(dir.path())
        .unwrap();
    broker
        .create_topic("a", TopicConfig::with_partitions(3).segment_bytes(16 << 10))
        .unwrap();
    let synced = broker.producer(
        ProducerConfig::default()
            .durability(Durability::Synced)
            .linger(Duration::from_millis(1)),
    );
    let written = broker.producer(ProducerConfig::default());
    let mut consumer = broker
        .consumer(ConsumerConfig::group("g").enable_auto_commit(false))
        .unwrap();
    consumer.assign(&[tp("a", 0), tp("a", 1), tp("a", 2)]).unwrap();
    // (topic, partition, offset) -> value, for Synced acknowledgements.
    let mut durable: HashMap<(String, u32, u64), String> = HashMap::new();
    let mut all_acked: HashMap<(String, u32, u64), String> = HashMap::new();
    // partition -> every offset committed, in order.
    let mut commits: HashMap<u32, Vec<u64>> = HashMap::new();
    let mut topics = vec!["a".to_owned()];
    let steps = 50 + rng.below(400);
    for step in 0..steps {
        let topic = topics[rng.below(topics.len() as u64) as usize].clone();
        let value = format!("s{seed}-{step}");
        match rng.below(10) {
            0..=3 => {
                let m = synced
                    .send(
                        ProducerRecord::new(&*topic)
                            .key(format!("k{}", rng.below(7)))
                            .value(value.clone()),
                    )
                    .unwrap();
                durable.insert((topic.clone(), m.partition, m.offset), value.clone());
                all_acked.insert((topic, m.partition, m.offset), value);
            }
            4..=6 => {
                let m = written
                    .send(
                        ProducerRecord::new(&*topic)
                            .key(format!("k{}", rng.below(7)))
                            .value(value.clone()),
                    )
                    .unwrap();
                all_acked.insert((topic, m.partition, m.offset), value);
            }
            7 => {
                let n = 1 + rng.below(20);
                let records = (0..n)
                    .map(|i| ProducerRecord::new(&*topic).value(format!("{value}-{i}")))
                    .collect::<Vec<_>>();
                // One batch, or one record per `send_async` (the linger thread fsyncs
                // their batches), each acknowledged once its delivery completes.
                let metas: Vec<RecordMetadata> = if rng.below(2) == 0 {
                    synced.send_batch(&records).unwrap().to_vec()
                } else {
                    let deliveries: Vec<Delivery> = records.into_iter().map(|r| synced.send_async(r)).collect();
                    deliveries.into_iter().map(|d| d.wait().unwrap()).collect()
                };
                for (i, m) in metas.into_iter().enumerate() {
                    durable.insert((topic.clone(), m.partition, m.offset), format!("{value}-{i}"));
                    all_acked.insert((topic.clone(), m.partition, m.offset), format!("{value}-{i}"));
                }
            }
            8 => {
                let p = rng.below(3) as u32;
                let o = rng.below(1_000);
                consumer
                    .commit_offsets(&BTreeMap::from([(tp("a", p), OffsetAndMetadata::new(o))]))
                    .unwrap();
                commits.entry(p).or_default().push(o);
            }
            _ => {
                if topics.len() < 3 && rng.below(4) == 0 {
                    let name = format!("t{}", topics.len());
                    broker.create_topic(&name, TopicConfig::with_partitions(2)).unwrap();
                    topics.push(name);
                }
            }
        }
    }
    let mode = if rng.below(2) == 0 {
        PowerLoss::DropUnsynced
    } else {
        PowerLoss::Torn { seed: rng.next() }
    };
    fs.power_loss(mode);
    drop(consumer);
    drop((synced, written));
    drop(broker);

    let broker = Broker::open(dir.path()).unwrap_or_else(|e| panic!("{mode:?}: reopen failed: {e}"));
    // Topics created before the last Synced acknowledgement are durable (creation syncs the table).
    for t in &topics {
        assert!(broker.list_topics().contains(t), "{mode:?}: topic {t} lost");
    }
    let mut stored: HashMap<(String, u32, u64), String> = HashMap::new();
    for t in broker.list_topics() {
        let n = broker.describe_topic(&t).unwrap().partitions.len() as u32;
        for p in 0..n {
            let records = all_records(&broker, &t, p).unwrap_or_else(|e| panic!("{mode:?}: {t}-{p} unreadable: {e}"));
            let log = broker.partition_log(&tp(&t, p)).unwrap();
            let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
            assert_eq!(
                offsets,
                (log.log_start_offset()..log.log_end_offset()).collect::<Vec<_>>(),
                "{mode:?}: {t}-{p}"
            );
            for r in records {
                let v = String::from_utf8(r.value.unwrap_or_default().to_vec()).unwrap();
                stored.insert((t.clone(), p, r.offset), v);
            }
        }
    }
    for (at, v) in &durable {
        assert_eq!(stored.get(at), Some(v), "{mode:?}: Synced record at {at:?} lost");
    }
    for (at, v) in &stored {
        assert_eq!(
            all_acked.get(at),
            Some(v),
            "{mode:?}: {at:?} holds {v}, which was never acknowledged there"
        );
    }
    for (p, values) in &commits {
        let got = broker.committed_offset("g", &tp("a", *p)).map(|c| c.offset);
        // A commit past the end of a log that was not closed cleanly is lowered to that end.
        let log = broker.partition_log(&tp("a", *p)).unwrap();
        let (clean, end) = (log.recovery_report().clean_shutdown, log.log_end_offset());
        let lowered = |v: u64| if clean { v } else { v.min(end) };
        if offsets_synced {
            assert_eq!(
                got,
                values.last().copied().map(lowered),
                "{mode:?}: Synced commit of a-{p} lost"
            );
        } else if let Some(got) = got {
            // Whatever survived is a value that was committed, never garbage.
            assert!(
                values.iter().any(|v| lowered(*v) == got),
                "{mode:?}: a-{p} committed {got}, never committed"
            );
        }
    }
}

#[test]
fn whole_broker_power_loss_at_random_points() {
    seeded("whole_broker_power_loss_at_random_points", |seed| {
        let mut rng = Rng(seed);
        for _ in 0..trials(20) {
            power_loss_run(rng.next());
        }
    });
}

// ---------------------------------------------------------------------------------------
// 3. Corruption of a closed data directory
// ---------------------------------------------------------------------------------------

/// A cleanly closed broker directory: a 3-partition topic with several small segments,
/// records with keys, values and headers, and a group whose offsets were committed often
/// enough to have a snapshot. Returns the directory, every stored record, and every value
/// committed per partition.
type Stored = HashMap<(u32, u64), LogRecord>;

fn template() -> (tempfile::TempDir, Stored, HashMap<u32, Vec<u64>>) {
    let dir = common::temp_dir();
    let mut commits: HashMap<u32, Vec<u64>> = HashMap::new();
    {
        let broker = Broker::builder()
            .offsets_compact_bytes(64 << 10)
            .open(dir.path())
            .unwrap();
        broker
            .create_topic("c", TopicConfig::with_partitions(3).segment_bytes(8 << 10))
            .unwrap();
        let producer = broker.producer(ProducerConfig::default());
        for i in 0..1_500u32 {
            producer
                .send(
                    ProducerRecord::new("c")
                        .key(format!("key-{}", i % 17))
                        .value(format!("value-{i}-{}", "x".repeat((i % 50) as usize)))
                        .header("i", i.to_string()),
                )
                .unwrap();
        }
        let mut c = broker
            .consumer(ConsumerConfig::group("g").enable_auto_commit(false))
            .unwrap();
        c.assign(&[tp("c", 0), tp("c", 1), tp("c", 2)]).unwrap();
        for i in 0..2_000u64 {
            let p = (i % 3) as u32;
            c.commit_offsets(&BTreeMap::from([(tp("c", p), OffsetAndMetadata::new(i % 500))]))
                .unwrap();
            commits.entry(p).or_default().push(i % 500);
        }
    }
    assert!(dir.path().join("offsets").join("snapshot").exists());
    let broker = Broker::open(dir.path()).unwrap();
    let mut stored = HashMap::new();
    for p in 0..3 {
        for r in all_records(&broker, "c", p).unwrap() {
            stored.insert((p, r.offset), r);
        }
    }
    assert_eq!(stored.len(), 1_500);
    (dir, stored, commits)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let path = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(files(&path));
        } else if path.file_name().is_some_and(|n| n != "LOCK") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Applies one random kind of damage to one random file; returns what it did.
fn damage(rng: &mut Rng, dir: &Path) -> String {
    let all = files(dir);
    let file = all[rng.below(all.len() as u64) as usize].clone();
    let mut bytes = std::fs::read(&file).unwrap();
    let name = file.strip_prefix(dir).unwrap().display().to_string();
    match rng.below(6) {
        0 | 1 if !bytes.is_empty() => {
            let at = rng.below(bytes.len() as u64) as usize;
            bytes[at] ^= 1 << rng.below(8);
            std::fs::write(&file, &bytes).unwrap();
            format!("flipped a bit of {name} at {at}")
        }
        2 => {
            let len = rng.below(bytes.len() as u64 + 1) as usize;
            bytes.truncate(len);
            std::fs::write(&file, &bytes).unwrap();
            format!("truncated {name} to {len}")
        }
        3 => {
            let len = rng.below(200) as usize;
            let garbage: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            std::fs::write(&file, garbage).unwrap();
            format!("replaced {name} with {len} bytes of garbage")
        }
        4 => {
            // Index files, checkpoints and snapshots are the interesting deletions.
            let victims: Vec<&PathBuf> = all
                .iter()
                .filter(|p| p.extension().is_none_or(|e| e != "log"))
                .collect();
            let victim = victims[rng.below(victims.len() as u64) as usize];
            std::fs::remove_file(victim).unwrap();
            format!("deleted {}", victim.strip_prefix(dir).unwrap().display())
        }
        _ => {
            std::fs::remove_file(&file).unwrap();
            format!("deleted {name}")
        }
    }
}

/// Opens the damaged directory and reads everything, in a thread (a panic or a hang is
/// a failure). Returns the outcome as text for the failure message.
fn open_damaged(dir: &Path, stored: &Stored, commits: &HashMap<u32, Vec<u64>>, what: &str) -> Result<usize, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (dir_owned, stored, commits) = (dir.to_path_buf(), stored.clone(), commits.clone());
    let what_owned = what.to_owned();
    std::thread::spawn(move || {
        let outcome = std::panic::catch_unwind(|| check_damaged(&dir_owned, &stored, &commits, &what_owned));
        let _ = tx.send(outcome.map_err(|_| "PANIC".to_owned()));
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => panic!("{what}: open or read panicked: {panic}"),
        Err(_) => panic!("{what}: open or read hung for 60 s"),
    }
}

/// `Ok(records read)` if the directory opened; `Err(message)` for a typed error that names
/// a file of the directory. Panics on anything else.
fn check_damaged(dir: &Path, stored: &Stored, commits: &HashMap<u32, Vec<u64>>, what: &str) -> Result<usize, String> {
    let names_a_file = |e: &Error| {
        let text = e.to_string();
        assert!(
            text.contains(&*dir.to_string_lossy()),
            "{what}: the error does not name the file: {text}"
        );
        assert!(
            matches!(
                e,
                Error::Corrupt { .. } | Error::UnsupportedVersion { .. } | Error::Io { .. } | Error::Poisoned { .. }
            ),
            "{what}: unexpected error kind {e:?}"
        );
        text
    };
    let broker = match Broker::open(dir) {
        Ok(b) => b,
        Err(e) => return Err(names_a_file(&e)),
    };
    let mut read = 0;
    for p in 0..broker.describe_topic("c").map_or(0, |d| d.partitions.len() as u32) {
        match all_records(&broker, "c", p) {
            Ok(records) => {
                for r in records {
                    // Never a record that was not stored exactly so.
                    assert_eq!(
                        stored.get(&(p, r.offset)),
                        Some(&r),
                        "{what}: c-{p}@{} differs",
                        r.offset
                    );
                    read += 1;
                }
            }
            Err(e) => {
                names_a_file(&e);
            }
        }
        if let Some(c) = broker.committed_offset("g", &tp("c", p)) {
            // Or lowered to the end of a log that lost records (its clean-shutdown marker
            // went too, or the open would have refused the damage).
            let end = broker.partition_log(&tp("c", p)).ok().map(|l| l.log_end_offset());
            let lowered = |v: &Vec<u64>| Some(c.offset) == end && v.iter().any(|o| Some(*o) > end);
            assert!(
                commits.get(&p).is_some_and(|v| v.contains(&c.offset) || lowered(v)),
                "{what}: committed offset {} of c-{p} was never committed",
                c.offset
            );
        }
    }
    Ok(read)
}

#[test]
fn corrupted_directories_recover_or_fail_with_a_typed_error_never_garbage() {
    let (template, stored, commits) = template();
    seeded(
        "corrupted_directories_recover_or_fail_with_a_typed_error_never_garbage",
        |seed| {
            let mut rng = Rng(seed);
            let (mut opened, mut refused, mut records) = (0, 0, 0);
            for trial in 0..trials(200) {
                let dir = common::temp_dir();
                let trial_dir = dir.path().join("data");
                copy_dir(template.path(), &trial_dir);
                let what: Vec<String> = (0..1 + rng.below(3)).map(|_| damage(&mut rng, &trial_dir)).collect();
                let what = format!("trial {trial}: {}", what.join("; "));
                match open_damaged(&trial_dir, &stored, &commits, &what) {
                    Ok(n) => {
                        opened += 1;
                        records += n;
                    }
                    Err(_) => refused += 1,
                }
            }
            eprintln!(
                "corruption: {} trials, {opened} opened ({records} records read, all intact), {refused} refused with a typed error",
                opened + refused
            );
        },
    );
}

// ---------------------------------------------------------------------------------------
// 4. Hostile input
// ---------------------------------------------------------------------------------------

/// `magic`, version 1, reserved 0, length, CRC-32, `payload`: a valid metadata file frame.
fn framed(magic: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = magic.to_vec();
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Protects open from allocating what a metadata file merely claims. A topic table or an
/// offsets snapshot whose checksum holds but whose first string claims a length far past
/// the file's end (a hand-made or foreign file) had bincode allocate that length — up to
/// the decoder's limit, 64 MiB for the table and 1 GiB for the snapshot — before finding
/// the bytes missing. A string is now checked against the bytes present first: the open
/// fails with `Corrupt` naming the file, having allocated little.
#[test]
fn metadata_files_claiming_long_strings_allocate_only_what_they_hold() {
    // bincode (standard): varint 252 = a u32 follows. A string of 1 GiB − 1 KiB.
    let claim = [252u8].into_iter().chain(((1u32 << 30) - 1024).to_le_bytes());
    // The topic table: a list of one topic whose name claims it (under its 64 MiB limit).
    let table: Vec<u8> = [1u8, 252].into_iter().chain((60u32 << 20).to_le_bytes()).collect();
    // The offsets snapshot: covered offset 0, one entry whose group claims it.
    let snapshot: Vec<u8> = [0u8, 1].into_iter().chain(claim).collect();
    for (file, bytes) in [
        ("meta/topics", framed(b"BRKM", &table)),
        ("offsets/snapshot", framed(b"BRKO", &snapshot)),
    ] {
        let dir = common::temp_dir();
        drop(Broker::open(dir.path()).unwrap());
        let path = dir.path().join(file);
        std::fs::write(&path, &bytes).unwrap();
        let (opened, largest) = largest_allocation(|| Broker::open(dir.path()));
        match opened {
            Err(Error::Corrupt { path: p, .. }) => assert_eq!(p, path, "{file}"),
            other => panic!("{file}: {other:?}"),
        }
        assert!(largest < 16 << 20, "{file}: opening allocated {largest} bytes at once");
    }
}

/// Protects the offset table from a snapshot entry no writer writes. A snapshot whose
/// checksum holds (a hand-made or foreign file) could carry commit metadata longer than the
/// 4,096 bytes a commit takes, or a group id or topic name longer than an offsets-log key
/// holds. Open took it; the first lowering of that commit (a truncation, or an unclean
/// partition at the next open) wrote the entry into the offsets log, where the next open
/// refused the record as undecodable, and the broker no longer opened — or, for a long name,
/// open failed with an `InvalidArgument` naming no file. It is refused at once, as the log's
/// decoder refuses such a value: `Corrupt` naming the snapshot.
#[test]
fn an_offsets_snapshot_entry_no_commit_writes_fails_open() {
    // bincode (standard): a length below 251 is one byte; 252 says a u32 follows.
    fn string(len: usize, fill: u8) -> Vec<u8> {
        let mut out = match u8::try_from(len) {
            Ok(short) if short < 251 => vec![short],
            _ => [252u8].into_iter().chain((len as u32).to_le_bytes()).collect(),
        };
        out.extend(std::iter::repeat_n(fill, len));
        out
    }
    // A snapshot covering offset 0 with one entry: group, topic "t", partition 0, offset 8,
    // commit time 1 (zigzag 2), metadata.
    let snapshot = |group_len: usize, metadata_len: usize| {
        let mut payload = vec![0u8, 1];
        payload.extend(string(group_len, b'g'));
        payload.extend(string(1, b't'));
        payload.extend([0u8, 8, 2]);
        payload.extend(string(metadata_len, b'm'));
        framed(b"BRKO", &payload)
    };
    let open_with = |bytes: Vec<u8>| {
        let dir = common::temp_dir();
        {
            let broker = Broker::open(dir.path()).unwrap();
            broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
        }
        let path = dir.path().join("offsets/snapshot");
        std::fs::write(&path, bytes).unwrap();
        (
            Broker::open(dir.path()).map(|b| b.committed_offset("g", &tp("t", 0))),
            path,
            dir,
        )
    };
    // Control: the longest metadata a commit writes is taken.
    let (opened, _, _dir) = open_with(snapshot(1, 4096));
    assert_eq!(opened.unwrap().map(|o| (o.offset, o.metadata.len())), Some((8, 4096)));
    for (what, bytes) in [
        ("metadata over 4,096 bytes", snapshot(1, 4097)),
        ("a group id over 65,535 bytes", snapshot(usize::from(u16::MAX) + 1, 0)),
    ] {
        match open_with(bytes) {
            (Err(Error::Corrupt { path, .. }), want, _dir) => assert_eq!(path, want, "{what}"),
            (other, _, _dir) => panic!("{what}: {:?}", other.map(|o| o.map(|o| o.metadata.len()))),
        }
    }
}

/// Every hostile input gets a typed error, and what was stored before is untouched.
#[test]
fn hostile_input_gets_typed_errors_and_harms_nothing() {
    let dir = common::temp_dir();
    let data = dir.path().join("data");
    let broker = Broker::open(&data).unwrap();
    broker.create_topic("safe", TopicConfig::with_partitions(2)).unwrap();
    let producer = broker.producer(ProducerConfig::default().durability(Durability::Synced));
    for i in 0..10 {
        producer
            .send(ProducerRecord::new("safe").partition(i % 2).value(format!("v{i}")))
            .unwrap();
    }
    let before: Vec<Vec<LogRecord>> = (0..2).map(|p| all_records(&broker, "safe", p).unwrap()).collect();
    let mut tried = 0;

    // Topic names that try to leave the directory or break Kafka's rule.
    let long = "x".repeat(250);
    for name in [
        "",
        ".",
        "..",
        "../escape",
        "/abs",
        "a/b",
        "a\\b",
        "a\0b",
        "é",
        "a b",
        long.as_str(),
    ] {
        assert!(
            matches!(
                broker.create_topic(name, TopicConfig::default()),
                Err(Error::InvalidTopicName { .. })
            ),
            "create {name:?}"
        );
        assert!(
            matches!(
                producer.send(ProducerRecord::new(name).value("x")),
                Err(Error::InvalidTopicName { .. })
            ),
            "send to {name:?}"
        );
        let mut c = broker.consumer(ConsumerConfig::group("h")).unwrap();
        assert!(
            matches!(c.subscribe(&[name]), Err(Error::InvalidTopicName { .. })),
            "subscribe {name:?}"
        );
        tried += 3;
    }
    assert!(!dir.path().join("escape-0").exists() && !dir.path().join("escape").exists());

    // Absurd configurations.
    let bad_topics = [
        TopicConfig::with_partitions(0),
        TopicConfig::with_partitions(1_000_000),
        TopicConfig::default().segment_bytes(0),
        TopicConfig::default().segment_ms(Some(Duration::ZERO)),
        TopicConfig::default().retention_ms(Some(Duration::ZERO)),
        TopicConfig::default().max_message_bytes(0),
    ];
    for config in bad_topics {
        let r = broker.create_topic("absurd", config.clone());
        assert!(matches!(r, Err(Error::InvalidConfig { .. })), "{config:?}: {r:?}");
        tried += 1;
    }
    let bad_consumers = [
        ConsumerConfig::default().max_poll_records(0),
        ConsumerConfig::default().max_poll_interval(Duration::ZERO),
        ConsumerConfig::default().auto_commit_interval(Duration::ZERO),
        ConsumerConfig::group(""),
        ConsumerConfig::group("a\nb"),
    ];
    for config in bad_consumers {
        assert!(matches!(broker.consumer(config), Err(Error::InvalidConfig { .. })));
        tried += 1;
    }
    assert!(matches!(
        Broker::builder()
            .offsets_compact_bytes(0)
            .open(dir.path().join("other")),
        Err(Error::InvalidConfig { .. })
    ));

    // Records at and past the size limit.
    broker
        .create_topic("tiny", TopicConfig::with_partitions(1).max_message_bytes(2048))
        .unwrap();
    let fits = producer.send(ProducerRecord::new("tiny").value(vec![b'x'; 1_900]));
    assert!(fits.is_ok(), "{fits:?}");
    for size in [2_048, 4_096, 1 << 20] {
        let r = producer.send(ProducerRecord::new("tiny").value(vec![b'x'; size]));
        assert!(
            matches!(r, Err(Error::RecordTooLarge { max: 2048, .. })),
            "{size}: {r:?}"
        );
        tried += 1;
    }
    assert_eq!(broker.describe_topic("tiny").unwrap().partitions[0].log_end_offset, 1);

    // Offsets out of range, and seeking to u64::MAX.
    let log = broker.partition_log(&tp("safe", 0)).unwrap();
    for offset in [6, 1_000, u64::MAX] {
        assert!(matches!(log.read(offset, 1 << 20), Err(Error::OffsetOutOfRange { .. })));
        tried += 1;
    }
    let mut c = broker
        .consumer(ConsumerConfig::default().auto_offset_reset(brooklet::OffsetReset::None))
        .unwrap();
    c.assign(&[tp("safe", 0)]).unwrap();
    c.seek(&tp("safe", 0), u64::MAX).unwrap();
    assert!(matches!(
        c.poll(Duration::from_millis(10)),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        broker.partition_log(&tp("safe", 2)),
        Err(Error::InvalidPartition { .. })
    ));
    assert!(matches!(
        producer.send(ProducerRecord::new("safe").partition(7).value("x")),
        Err(Error::InvalidPartition { partition: 7, .. })
    ));
    tried += 3;
    drop(c);
    drop(producer);
    drop(broker);

    // A data directory that is a file; one from a newer format version.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    match Broker::open(&file) {
        Err(e @ Error::Io { .. }) => assert!(e.to_string().contains("a-file"), "{e}"),
        other => panic!("{other:?}"),
    }
    let newer = dir.path().join("newer");
    copy_dir(&data, &newer);
    let table = newer.join("meta").join("topics");
    let mut bytes = std::fs::read(&table).unwrap();
    bytes[4] = 9; // the version field
    std::fs::write(&table, bytes).unwrap();
    match Broker::open(&newer) {
        Err(Error::UnsupportedVersion { path, found: 9, .. }) => assert_eq!(path, table),
        other => panic!("{other:?}"),
    }
    tried += 2;

    // Nothing stored before was harmed.
    let broker = Broker::open(&data).unwrap();
    let after: Vec<Vec<LogRecord>> = (0..2).map(|p| all_records(&broker, "safe", p).unwrap()).collect();
    assert_eq!(after, before);
    assert_eq!(broker.list_topics(), ["safe", "tiny"]);
    eprintln!("hostile input: {tried} attempts, each refused with a typed error; stored data unchanged");
}

// ---------------------------------------------------------------------------------------
// 6. Concurrency stress
// ---------------------------------------------------------------------------------------

/// What the members of all groups processed.
#[derive(Default)]
struct Processed {
    /// group -> (partition, offset) -> times processed.
    seen: HashMap<String, HashMap<(u32, u64), u32>>,
    order_violations: Vec<String>,
}

/// What the chaos controller asks of a member.
const RUN: u8 = 0;
const LEAVE: u8 = 1;
const PANIC: u8 = 2;
const STALL: u8 = 3;

/// Clears a member's per-key order state for partitions it is (re)assigned: it may start
/// again from a committed offset below what it saw before.
struct OrderReset(Arc<std::sync::Mutex<HashMap<String, (u32, u64)>>>);

impl brooklet::RebalanceListener for OrderReset {
    fn on_partitions_revoked(&mut self, consumer: &mut brooklet::Consumer, _: &[TopicPartition]) {
        // The place to commit: whatever was processed stays processed.
        let _ = consumer.commit();
    }
    fn on_partitions_assigned(&mut self, _: &mut brooklet::Consumer, partitions: &[TopicPartition]) {
        let parts: Vec<u32> = partitions.iter().map(|tp| tp.partition).collect();
        self.0.lock().unwrap().retain(|_, (p, _)| !parts.contains(p));
    }
}

fn stress_member(
    broker: Broker,
    group: String,
    command: Arc<std::sync::atomic::AtomicU8>,
    shared: Arc<std::sync::Mutex<Processed>>,
) {
    use std::sync::atomic::Ordering;
    let last_seq: Arc<std::sync::Mutex<HashMap<String, (u32, u64)>>> = Arc::default();
    let config = ConsumerConfig::group(group.clone())
        .auto_offset_reset(brooklet::OffsetReset::Earliest)
        .enable_auto_commit(false)
        .max_poll_interval(Duration::from_millis(300))
        .max_poll_records(100);
    let mut c = broker.consumer(config).unwrap();
    c.subscribe_with_listener(&["stress"], OrderReset(Arc::clone(&last_seq)))
        .unwrap();
    loop {
        match command.load(Ordering::SeqCst) {
            LEAVE => {
                c.close().unwrap();
                return;
            }
            STALL => {
                std::thread::sleep(Duration::from_millis(500));
                // Back to work, unless told something else meanwhile (e.g. to leave).
                let _ = command.compare_exchange(STALL, RUN, Ordering::SeqCst, Ordering::SeqCst);
            }
            _ => {}
        }
        let records = c.poll(Duration::from_millis(20)).unwrap();
        {
            let mut order = last_seq.lock().unwrap();
            let mut shared = shared.lock().unwrap();
            for r in &records {
                let key = String::from_utf8(r.key().unwrap().to_vec()).unwrap();
                let value = std::str::from_utf8(r.value().unwrap()).unwrap();
                let seq: u64 = value.rsplit(':').next().unwrap().parse().unwrap();
                if let Some((_, prev)) = order.get(&key)
                    && seq <= *prev
                {
                    shared
                        .order_violations
                        .push(format!("{group}: key {key} seq {seq} after {prev}"));
                }
                order.insert(key, (r.partition(), seq));
                *shared
                    .seen
                    .entry(group.clone())
                    .or_default()
                    .entry((r.partition(), r.offset()))
                    .or_insert(0) += 1;
            }
        }
        // "Processing" takes a moment, so that the run lasts long enough for the chaos.
        std::thread::sleep(Duration::from_millis(2));
        if command.load(Ordering::SeqCst) == PANIC {
            // Processed, not committed: the group will see these records again.
            panic!("injected crash of a {group} member");
        }
        // An evicted member's commit is refused (CommitFailed): at-least-once, as in Kafka.
        let _ = c.commit();
    }
}

/// 8 producer threads, 8 members in 3 groups over a 12-partition topic; with `chaos`,
/// members leave, join, panic and stall past `max_poll_interval` at random. Returns the
/// duplicates per group.
fn stress(seed: u64, per_producer: u64, chaos: bool) -> HashMap<String, u64> {
    use std::sync::atomic::{AtomicU8, Ordering};
    let mut rng = Rng(seed);
    let broker = Broker::temporary().unwrap();
    broker.create_topic("stress", TopicConfig::with_partitions(12)).unwrap();
    let shared: Arc<std::sync::Mutex<Processed>> = Arc::default();
    let groups = ["g0", "g0", "g0", "g1", "g1", "g1", "g2", "g2"];
    let mut members: Vec<(String, Arc<AtomicU8>, std::thread::JoinHandle<()>)> = groups
        .iter()
        .map(|g| {
            let command = Arc::new(AtomicU8::new(RUN));
            let (b, c, s, g2) = (
                broker.clone(),
                Arc::clone(&command),
                Arc::clone(&shared),
                (*g).to_owned(),
            );
            (
                (*g).to_owned(),
                command,
                std::thread::spawn(move || stress_member(b, g2, c, s)),
            )
        })
        .collect();
    let producers: Vec<_> = (0..8u64)
        .map(|t| {
            let p = broker.producer(ProducerConfig::default());
            std::thread::spawn(move || {
                let mut i = 0;
                while i < per_producer {
                    let n = 100.min(per_producer - i);
                    let batch = (i..i + n)
                        .map(|j| {
                            ProducerRecord::new("stress")
                                .key(format!("p{t}-k{}", j % 20))
                                .value(format!("p{t}:{j}"))
                        })
                        .collect::<Vec<_>>();
                    p.send_batch(&batch).unwrap();
                    i += n;
                }
            })
        })
        .collect();
    let total = (8 * per_producer) as usize;
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let mut producers = Some(producers);
    let mut events = 0;
    loop {
        std::thread::sleep(Duration::from_millis(30));
        if let Some(ps) = producers.take_if(|ps| ps.iter().all(std::thread::JoinHandle::is_finished)) {
            for p in ps {
                p.join().unwrap();
            }
        }
        let done = {
            let s = shared.lock().unwrap();
            ["g0", "g1", "g2"]
                .iter()
                .all(|g| s.seen.get(*g).map_or(0, HashMap::len) == total)
        };
        if done && producers.is_none() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let s = shared.lock().unwrap();
            let progress: Vec<String> = ["g0", "g1", "g2"]
                .iter()
                .map(|g| format!("{g}: {}/{total}", s.seen.get(*g).map_or(0, HashMap::len)))
                .collect();
            let states: Vec<String> = members
                .iter()
                .map(|(g, c, h)| format!("{g} command={} finished={}", c.load(Ordering::SeqCst), h.is_finished()))
                .collect();
            panic!(
                "watchdog: no completion after 180 s (deadlock?): {progress:?}; members {states:?}; group g0 {:?}",
                broker.describe_group("g0")
            );
        }
        // Replace members whose thread ended (left or panicked).
        for m in members.iter_mut() {
            if m.2.is_finished() {
                let command = Arc::new(AtomicU8::new(RUN));
                let (b, c, s, g) = (broker.clone(), Arc::clone(&command), Arc::clone(&shared), m.0.clone());
                let old = std::mem::replace(&mut m.2, std::thread::spawn(move || stress_member(b, g, c, s)));
                let _ = old.join();
                m.1 = command;
            }
        }
        if chaos && events < 40 && rng.below(3) == 0 {
            let i = rng.below(members.len() as u64) as usize;
            let action = [LEAVE, PANIC, STALL][rng.below(3) as usize];
            members[i].1.store(action, Ordering::SeqCst);
            events += 1;
        } else if !chaos && events < 10 && rng.below(5) == 0 {
            let i = rng.below(members.len() as u64) as usize;
            members[i].1.store(LEAVE, Ordering::SeqCst);
            events += 1;
        }
    }
    for m in &members {
        m.1.store(LEAVE, Ordering::SeqCst);
    }
    for (_, _, h) in members {
        let _ = h.join();
    }
    let s = shared.lock().unwrap();
    assert!(
        s.order_violations.is_empty(),
        "per-key order broken: {:?}",
        &s.order_violations[..s.order_violations.len().min(5)]
    );
    s.seen
        .iter()
        .map(|(g, m)| (g.clone(), m.values().map(|&n| u64::from(n - 1)).sum()))
        .collect()
}

#[test]
fn concurrency_stress_with_graceful_churn_processes_every_record_exactly_once() {
    seeded("concurrency_stress_with_graceful_churn", |seed| {
        let per_producer = std::env::var("BROOKLET_STRESS_RECORDS").map_or(12_500, |v| v.parse::<u64>().unwrap() / 8);
        let duplicates = stress(seed, per_producer, false);
        assert_eq!(duplicates.values().sum::<u64>(), 0, "{duplicates:?}");
    });
}

#[test]
fn concurrency_stress_with_panics_and_evictions_processes_every_record_at_least_once() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        if !info.to_string().contains("injected crash") {
            eprintln!("{info}");
        }
    }));
    seeded("concurrency_stress_with_panics_and_evictions", |seed| {
        let per_producer = std::env::var("BROOKLET_STRESS_RECORDS").map_or(12_500, |v| v.parse::<u64>().unwrap() / 8);
        let duplicates = stress(seed, per_producer, true);
        eprintln!(
            "stress with chaos: every record seen by every group; duplicates per group (at-least-once) {duplicates:?}"
        );
    });
    std::panic::set_hook(previous);
}

// ---------------------------------------------------------------------------------------
// 5. Faults during operation, at every N
// ---------------------------------------------------------------------------------------

/// Synced sends to two partitions and Synced commits, interleaved; returns what was
/// acknowledged: (partition, offset, value) and the last acknowledged commit.
fn faulty_workload(broker: &Broker, acked: &mut Vec<(u32, u64, String)>, commit: &mut Option<u64>, errors: &mut u32) {
    let producer = broker.producer(ProducerConfig::default().durability(Durability::Synced));
    let Ok(mut c) = broker.consumer(ConsumerConfig::group("f").enable_auto_commit(false)) else {
        return;
    };
    let _ = c.assign(&[tp("f", 0)]);
    for i in 0..24u64 {
        let value = format!("v{i}");
        match producer.send(ProducerRecord::new("f").partition((i % 2) as u32).value(value.clone())) {
            Ok(m) => acked.push((m.partition, m.offset, value)),
            Err(e) => {
                assert!(
                    matches!(e, Error::Io { .. } | Error::Poisoned { .. }),
                    "a send failed with an unexpected error: {e:?}"
                );
                *errors += 1;
            }
        }
        if i % 4 == 3 {
            match c.commit_offsets(&BTreeMap::from([(tp("f", 0), OffsetAndMetadata::new(i))])) {
                Ok(()) => *commit = Some(i),
                Err(e) => {
                    assert!(matches!(e, Error::Io { .. } | Error::Poisoned { .. }), "commit: {e:?}");
                    *errors += 1;
                }
            }
        }
    }
}

#[test]
fn faults_at_every_nth_operation_while_producing_and_committing() {
    use brooklet::io::{EIO, ENOSPC, Fault, FaultOp};
    let open = |dir: &Path, fs: &FaultFs| {
        Broker::builder()
            .vfs(Arc::new(fs.clone()))
            .offsets_durability(Durability::Synced)
            .open(dir)
    };
    // Dry run: how many operations of each class the workload does after open.
    let (dry, fs) = (common::temp_dir(), FaultFs::new());
    let broker = open(dry.path(), &fs).unwrap();
    broker.create_topic("f", TopicConfig::with_partitions(2)).unwrap();
    let ops = [FaultOp::Write, FaultOp::Sync, FaultOp::Rename];
    let before = ops.map(|op| fs.count(op));
    faulty_workload(&broker, &mut Vec::new(), &mut None, &mut 0);
    let counts: Vec<u64> = ops.iter().zip(before).map(|(op, b)| fs.count(*op) - b).collect();
    drop(broker);

    let (mut runs, mut failed_calls) = (0u32, 0u32);
    for (o, op) in ops.into_iter().enumerate() {
        for nth in 1..=counts[o] {
            for forever in [false, true] {
                let ctx = format!("{op:?} #{nth} fails{}", if forever { " forever" } else { " once" });
                let (dir, fs) = (common::temp_dir(), FaultFs::new());
                let broker = open(dir.path(), &fs).unwrap();
                broker.create_topic("f", TopicConfig::with_partitions(2)).unwrap();
                fs.inject(Fault {
                    op,
                    nth,
                    errno: if nth % 2 == 0 { ENOSPC } else { EIO },
                    forever,
                });
                let (mut acked, mut commit, mut errors) = (Vec::new(), None, 0);
                faulty_workload(&broker, &mut acked, &mut commit, &mut errors);
                assert!(errors > 0, "{ctx}: no call reported the fault");
                failed_calls += errors;
                if !forever && op == FaultOp::Write {
                    // Space is free again: a partition whose write failed keeps working.
                    fs.clear_faults();
                    let p = broker.producer(ProducerConfig::default().durability(Durability::Synced));
                    for part in 0..2 {
                        let m = p
                            .send(ProducerRecord::new("f").partition(part).value("after"))
                            .unwrap_or_else(|e| panic!("{ctx}: partition {part} did not recover: {e}"));
                        acked.push((m.partition, m.offset, "after".into()));
                    }
                }
                fs.power_loss(PowerLoss::DropUnsynced);
                drop(broker);
                let broker = Broker::open(dir.path()).unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
                for part in 0..2 {
                    let records = all_records(&broker, "f", part).unwrap();
                    let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
                    assert_eq!(offsets, (0..records.len() as u64).collect::<Vec<_>>(), "{ctx}: holes");
                    for (p, o, v) in acked.iter().filter(|a| a.0 == part) {
                        let got = records.get(*o as usize).and_then(|r| r.value.clone());
                        assert_eq!(got.as_deref(), Some(v.as_bytes()), "{ctx}: acknowledged {p}@{o} lost");
                    }
                }
                if let Some(c) = commit {
                    // Lowered to the end of the log if the power loss left it below (the
                    // commits are of offsets the workload's sends may not have reached).
                    let end = broker.partition_log(&tp("f", 0)).unwrap().log_end_offset();
                    let got = broker.committed_offset("f", &tp("f", 0)).map(|o| o.offset);
                    assert!(
                        got >= Some(c.min(end)),
                        "{ctx}: committed {got:?} < acknowledged {c} (end {end})"
                    );
                }
                runs += 1;
            }
        }
    }
    eprintln!(
        "faults: {runs} runs ({counts:?} writes/syncs/renames per workload), {failed_calls} failed calls, nothing acknowledged lost"
    );
}
