//! # brooklet
//!
//! An embedded, in-process, Kafka-style event log. What SQLite is to a database server,
//! brooklet is to Kafka: the same concepts — partitions of records with dense offsets,
//! segment files with offset and time indexes, retention — in a synchronous library.
//!
//! This release provides the storage engine: [`PartitionLog`], one partition's crash-safe
//! log. Topics, producers and consumer groups are built on it.
//!
//! ```
//! use brooklet::{Durability, LogConfig, PartitionLog, Record};
//!
//! let dir = tempfile::tempdir()?;
//! let log = PartitionLog::open(dir.path(), LogConfig::default())?;
//! let records: Vec<Record> = (0..3).map(|i| Record::new().key("user-1").value(format!("event {i}"))).collect();
//! let info = log.append(&records, Durability::Synced)?;
//! assert_eq!((info.base_offset, info.last_offset), (0, 2));
//!
//! let mut values = Vec::new();
//! for batch in log.read(1, 1 << 20)? {
//!     for record in batch.records() {
//!         let record = record?;
//!         if record.offset >= 1 {
//!             values.push(record.value.unwrap_or_default());
//!         }
//!     }
//! }
//! assert_eq!(values, ["event 1", "event 2"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Durability
//! Every append names a [`Durability`]: `Buffered` (≈ Kafka `acks=0`), `Written` (in the OS
//! page cache: survives a crash of this process; ≈ `acks=1`) or `Synced` (`fdatasync`'d:
//! survives power loss; ≈ `acks=all`). Concurrent `Synced` appends share fsyncs.
//!
//! ## Crash recovery
//! A log closed cleanly reopens without scanning anything. After a crash, open validates
//! every batch written since the last recovery point (length, CRC-32, records, offsets),
//! truncates at the first invalid byte, rebuilds the indexes, and says what it did in a
//! [`RecoveryReport`]. A failed fsync poisons the log until it is reopened
//! ([`Error::Poisoned`]).
//!
//! ## Exclusive access
//! A log directory is locked while open; a second open fails at once with [`Error::Locked`].
//!
//! ## Formats
//! The batch format is documented byte by byte in [`record::batch`]; the index and
//! checkpoint formats in the storage sources (see `ARCHITECTURE.md`).

#![forbid(unsafe_code)]
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
mod codec;
mod config;
mod error;
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

pub use broker::{Broker, BrokerBuilder, PartitionDescription, TopicDescription};
pub use codec::{Bincode, Codec, Json, TypedProducer};
pub use config::{Durability, LogConfig};
pub use error::{Error, Result};
pub use partitioner::{
    DefaultPartitioner, FnPartitioner, Partitioner, RoundRobinPartitioner, murmur2, partition_for_key,
};
pub use producer::{Delivery, Producer, ProducerConfig, ProducerMetrics, ProducerRecord, RecordMetadata};
pub use record::{Compression, Header, LogRecord, Record, RecordBatch, RecordRef, TimestampType};
pub use storage::log::{
    AppendInfo, AppendOptions, PartitionLog, RecoveryReport, RetentionReport, SyncStats, Truncation,
};
pub use topic::{CleanupPolicy, MAX_PARTITIONS, MAX_TOPIC_NAME_LEN, TopicConfig, TopicPartition, validate_topic_name};
