//! # brooklet
//!
//! An embedded, in-process, Kafka-style event log. What SQLite is to a database server,
//! brooklet is to Kafka: the same concepts — partitions of records with dense offsets,
//! segment files with offset and time indexes, retention — in a synchronous library.
//!
//! | type | what it is |
//! |---|---|
//! | [`Broker`] | one data directory of topics; `Clone + Send + Sync`; [`Broker::temporary`] for tests |
//! | [`TopicConfig`] | partitions, segment size, retention, max message size, timestamp type |
//! | [`Producer`] | `send` (blocking), `send_async` (batched, with linger), `send_batch`, `flush` |
//! | [`Partitioner`] | explicit partition > Kafka's murmur2 of the key > sticky for keyless |
//! | [`TypedProducer`] | sends your serde types through an [`Encoder`] ([`Json`], [`Bincode`], [`Utf8`] for string keys; a [`Codec`] is an encoder and a [`Decoder`]) |
//! | [`Consumer`] | `subscribe` (groups) or `assign`, blocking `poll` woken by appends, `commit`, `seek`, `pause` |
//! | [`TypedConsumer`] | decodes serde types through a [`Decoder`]; a record that does not decode is a [`PoisonRecord`] |
//! | [`Assignor`] | Kafka's [`RangeAssignor`], [`RoundRobinAssignor`], [`StickyAssignor`], or yours |
//! | [`PartitionLog`] | one partition's crash-safe log: the storage engine underneath |
//!
//! ```
//! use brooklet::{Broker, ConsumerConfig, Durability, OffsetReset, ProducerConfig, ProducerRecord, TopicConfig};
//! use std::time::Duration;
//!
//! let broker = Broker::temporary()?; // a real broker in a temp dir, deleted on drop
//! broker.create_topic("orders", TopicConfig::with_partitions(3))?;
//!
//! let producer = broker.producer(ProducerConfig::default().durability(Durability::Synced));
//! let meta = producer.send(ProducerRecord::new("orders").key("user-1").value(r#"{"amount": 42.5}"#))?;
//! assert_eq!(meta.partition, brooklet::partition_for_key(b"user-1", 3)); // as Kafka would
//!
//! let mut consumer = broker.consumer(ConsumerConfig::group("analytics").auto_offset_reset(OffsetReset::Earliest))?;
//! consumer.subscribe(&["orders"])?;
//! let records = consumer.poll(Duration::from_secs(5))?; // blocks until an append wakes it
//! for record in &records {
//!     assert_eq!((record.partition(), record.offset()), (meta.partition, meta.offset));
//!     assert_eq!(record.value(), Some(&br#"{"amount": 42.5}"#[..]));
//! }
//! consumer.commit()?; // the group resumes after offset 0 from now on, across restarts
//! assert_eq!(broker.describe_group("analytics")?.total_lag(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Durability
//! Every append names a [`Durability`]: `Buffered` (≈ Kafka `acks=0`), `Written` (in the OS
//! page cache: survives a crash of this process; ≈ `acks=1`) or `Synced` (`fdatasync`'d:
//! survives power loss; the place of `acks=all`, which Kafka gets from replicas rather than
//! fsync: brooklet has one copy, so it syncs it). Concurrent `Synced` appends share fsyncs.
//!
//! ## Crash recovery
//! A log closed cleanly reopens without a recovery scan (only if the active segment's index
//! files are missing, invalid or describe another extent of it is that one segment read to
//! rebuild them). After a crash, open validates
//! every batch written since the last recovery point (length, CRC-32, records, offsets),
//! truncates at the first invalid byte, rebuilds the indexes, and says what it did in a
//! [`RecoveryReport`]. A failed fsync poisons the log until it is reopened
//! ([`Error::Poisoned`]).
//!
//! ## Exclusive access
//! A data directory (and a standalone log directory) is locked while open; a second open, in
//! this process or another, fails at once with [`Error::Locked`]. [`Broker::open_read_only`]
//! takes no lock: it reads, and follows, a directory another process is writing, and
//! refuses every write with [`Error::ReadOnly`].
//!
//! ## Close
//! Dropping the last clone of a [`Broker`] closes every partition cleanly (the next open
//! runs no recovery scan); [`Broker::close`] does the same and returns what failed, where a
//! drop can only log it. Dropping the last clone of a [`Producer`] writes its pending records
//! first. A producer keeps its broker open. A consumer blocked in `poll` on another thread
//! is stopped with its [`WakeupHandle`] (Kafka's `wakeup()`), then closed (or dropped),
//! which commits (with auto-commit) and leaves its group.
//!
//! ## Formats
//! The batch format is documented byte by byte in [`record::batch`]; the index, checkpoint
//! and topic-table formats in the storage and broker sources (see `ARCHITECTURE.md`).

// One `unsafe` block in the crate, with its safety argument: mapping a segment file for
// LogConfig::mapped_writes (src/storage/mapped.rs).
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::todo,
    clippy::unimplemented,
    clippy::host_endian_bytes
)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]

mod broker;
mod bytes_le;
mod codec;
mod config;
mod consumer;
mod error;
// The decoders, for the cargo-fuzz targets in fuzz/ only: not a public API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod group;
pub mod inspect;
mod offsets;
mod partitioner;
mod producer;
pub mod record;
mod storage;
mod topic;

/// The I/O seam: the [`Vfs`](io::Vfs) trait every file operation goes through, the real
/// [`OsFs`](io::OsFs), and [`FaultFs`](io::FaultFs), which injects errors and simulates
/// power loss for tests.
pub mod io {
    pub use crate::storage::fault::{EIO, ENOSPC, Fault, FaultFs, FaultOp, PowerLoss};
    pub use crate::storage::io::{OpenMode, OsFs, Vfs, VfsFile};
}

pub use broker::{Broker, BrokerBuilder, DamagePolicy, PartitionDescription, TopicDescription};
pub use codec::{
    Bincode, Codec, Decoder, Encoder, Json, PoisonRecord, TypedConsumer, TypedProducer, TypedRecord, Utf8,
};
pub use config::{Durability, LogConfig};
pub use consumer::{
    Consumer, ConsumerConfig, ConsumerRecord, ConsumerRecordRef, ConsumerRecords, IsolationLevel, Iter, OffsetReset,
    RebalanceListener, RecordsIter, WakeupHandle,
};
pub use error::{Error, Result};
pub use group::admin::{GroupDescription, GroupPartition, GroupState, OffsetSpec};
pub use group::{Assignor, MemberDescription, MemberSubscription, RangeAssignor, RoundRobinAssignor, StickyAssignor};
pub use offsets::{MAX_METADATA_BYTES, OffsetAndMetadata};
pub use partitioner::{
    DefaultPartitioner, FnPartitioner, Partitioner, RoundRobinPartitioner, murmur2, partition_for_key,
};
pub use producer::{
    BatchMetadata, BatchMetadataIter, Delivery, Producer, ProducerConfig, ProducerMetrics, ProducerRecord,
    RecordMetadata,
};
pub use record::{Compression, Header, IntoPayload, LogRecord, Record, RecordBatch, RecordRef, TimestampType};
pub use storage::log::{
    AppendInfo, AppendOptions, PartitionLog, RecoveryReport, RetentionReport, SyncStats, Truncation,
};
pub use topic::{
    CleanupPolicy, MAX_PARTITIONS, MAX_TOPIC_NAME_LEN, TopicConfig, TopicId, TopicPartition, validate_topic_name,
};
