//! The crate's one error type.
//!
//! Every fallible call returns [`Result<T>`]. Variants carry the values a user needs to act
//! on the failure (the path, the offset, the limits), and `Display` prints them as a sentence.
//! I/O errors keep their [`std::io::Error`] as [`source`](std::error::Error::source).

use std::fmt;
use std::io;
use std::path::PathBuf;

/// `std::result::Result` with brooklet's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in brooklet.
///
/// The enum is `#[non_exhaustive]`: later versions add variants (for topics, groups and
/// transactions), so match with a wildcard arm.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed.
    Io {
        /// What brooklet was doing, e.g. `"append to segment"`.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The error the operating system returned.
        source: io::Error,
    },
    /// The directory is already open, by this process or another one.
    Locked {
        /// The directory whose lock file is held.
        path: PathBuf,
    },
    /// A read or seek asked for an offset outside `[start, end]`.
    OffsetOutOfRange {
        /// The offset that was asked for.
        requested: u64,
        /// The log start offset: the first offset still stored.
        start: u64,
        /// The log end offset: the offset the next record will get.
        end: u64,
        /// The partition, when a consumer reports it (Kafka's `OffsetOutOfRangeException`
        /// names its partitions); `None` from a [`PartitionLog`](crate::PartitionLog),
        /// which does not know its topic.
        partition: Option<crate::TopicPartition>,
    },
    /// Stored bytes failed validation (checksum, framing, or an impossible value).
    Corrupt {
        /// The file holding the bad bytes.
        path: PathBuf,
        /// Byte position in that file where the bad data starts.
        position: u64,
        /// What was wrong.
        reason: String,
    },
    /// A record inside a batch does not parse (only possible for a batch whose checksum was
    /// not verified, or one written by a faulty writer).
    InvalidBatch {
        /// Base offset of the batch.
        base_offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// A record, or a batch of records, is too large to store. As with Kafka's
    /// `RecordTooLargeException`, sizes count the batch as stored, header included. A
    /// [`Producer`](crate::Producer) checks each record alone against the topic's
    /// [`max_message_bytes`](crate::TopicConfig::max_message_bytes) (`size` is then that of
    /// a batch holding only the record); [`PartitionLog::append`](crate::PartitionLog::append)
    /// checks its batch against [`LogConfig::max_batch_bytes`](crate::LogConfig::max_batch_bytes).
    RecordTooLarge {
        /// Encoded size of the batch, header included, in bytes.
        size: usize,
        /// The limit it exceeds.
        max: usize,
    },
    /// A record's timestamp is negative. As in Kafka (whose `ProducerRecord` refuses one), a
    /// timestamp is milliseconds since the Unix epoch, 0 or later; a negative one would sort
    /// before every stored record and make time-based retention delete it at once.
    InvalidTimestamp {
        /// The timestamp given.
        timestamp: i64,
    },
    /// A configuration value is out of its allowed range.
    InvalidConfig {
        /// The setting, e.g. `"segment_bytes"`.
        field: &'static str,
        /// Why the value was refused, including the value.
        reason: String,
    },
    /// An argument to a call is not acceptable (e.g. an empty batch).
    InvalidArgument {
        /// What was wrong.
        reason: String,
    },
    /// An earlier fsync failed, or a truncation failed after it began deleting or cutting
    /// files, so what is on disk is unknown. The partition refuses writes until it is
    /// reopened and has recovered from what is really on disk.
    Poisoned {
        /// The partition directory.
        path: PathBuf,
    },
    /// A file was written by a newer (or unknown) format version.
    UnsupportedVersion {
        /// The file carrying the version.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The highest version this build reads.
        supported: u32,
    },
    /// A topic name breaks Kafka's rule (1–249 characters of `[a-zA-Z0-9._-]`, not `.`/`..`).
    InvalidTopicName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The topic does not exist (or was deleted).
    UnknownTopic {
        /// The topic's name.
        topic: String,
    },
    /// A topic of that name already exists.
    TopicExists {
        /// The topic's name.
        topic: String,
    },
    /// A partition number is not below the topic's partition count.
    InvalidPartition {
        /// The topic's name.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many partitions the topic has.
        partitions: u32,
    },
    /// A typed value could not be encoded by its [`Encoder`](crate::Encoder) or decoded by
    /// its [`Decoder`](crate::Decoder).
    Serialization {
        /// What the codec said.
        reason: String,
    },
    /// The producer or broker was closed.
    Closed {
        /// What was closed.
        what: &'static str,
    },
    /// [`Broker::close`](crate::Broker::close) was called while other handles of the broker
    /// (clones, producers, consumers) were alive: it flushed, but the directory stays open
    /// until the last of them is dropped.
    InUse {
        /// The directory.
        path: PathBuf,
        /// How many other handles hold it.
        handles: usize,
    },
    /// A batch uses a compression codec this build does not support.
    UnsupportedCompression {
        /// The codec number from the batch attributes.
        codec: u8,
    },
    /// A consumer has no committed offset for a partition and its
    /// [`OffsetReset`](crate::OffsetReset) is `None` (Kafka's `NoOffsetForPartitionException`).
    NoCommittedOffset {
        /// The consumer's group, if it has one.
        group: Option<String>,
        /// The partition.
        partition: crate::TopicPartition,
    },
    /// A commit was refused: the member was evicted or no longer owns the partition
    /// (Kafka's `CommitFailedException`). A zombie cannot move a group's position.
    CommitFailed {
        /// The group.
        group: String,
        /// Why it was refused.
        reason: String,
    },
    /// A consumer was asked about a partition it is not assigned (Kafka's
    /// `IllegalStateException` for `seek`/`position` of an unassigned partition).
    NotAssigned {
        /// The partition.
        partition: crate::TopicPartition,
    },
    /// `poll` was called on a consumer with neither a subscription nor an assignment
    /// (Kafka's `IllegalStateException`: "Consumer is not subscribed to any topics or
    /// assigned any partitions"). Call `subscribe` or `assign` first.
    NotSubscribed {
        /// The consumer's group, if it has one.
        group: Option<String>,
    },
    /// A consumer's `poll` was interrupted by [`WakeupHandle::wakeup`](crate::WakeupHandle::wakeup)
    /// (Kafka's `WakeupException`): the way another thread stops a consumer blocked in a long
    /// poll, e.g. at shutdown. Nothing was consumed by the interrupted call; the consumer is
    /// still usable (close it, or poll again).
    Wakeup,
    /// An admin operation needs a group without active members.
    GroupNotEmpty {
        /// The group.
        group: String,
        /// How many members it has.
        members: usize,
    },
    /// The group has neither members nor committed offsets.
    UnknownGroup {
        /// The group.
        group: String,
    },
    /// A [`PartitionLog::truncate_to`](crate::PartitionLog::truncate_to) removed records of
    /// an append before it was acknowledged durable: the offsets it got may now hold other
    /// records, so the append is reported as failed, not synced.
    Truncated {
        /// The partition directory.
        dir: PathBuf,
        /// The lowest log end a truncation left since the append: every offset at or after
        /// it was removed.
        offset: u64,
    },
    /// The log of a consumer's partition was truncated
    /// ([`PartitionLog::truncate_to`](crate::PartitionLog::truncate_to)) below its
    /// position, and its `auto_offset_reset` is [`OffsetReset::None`](crate::OffsetReset::None)
    /// (Kafka's `LogTruncationException`). The offsets from `end` on belong to other
    /// records now (or will): the position stays where it was, and polls report this, until
    /// the application seeks (usually to `end`, the first offset that changed).
    LogTruncated {
        /// The partition.
        partition: crate::TopicPartition,
        /// The consumer's position.
        position: u64,
        /// The log end the truncation left (every offset at or after it was cut), or the
        /// log start if that is higher (a cut that restarted the log empty at its start):
        /// the first offset to read from.
        end: u64,
    },
    /// A write was asked of a broker or log opened read-only
    /// ([`Broker::open_read_only`](crate::Broker::open_read_only),
    /// [`PartitionLog::open_read_only`](crate::PartitionLog::open_read_only)).
    ReadOnly {
        /// What was refused, e.g. `create topic "orders"`.
        what: String,
    },
    /// An append would take offsets past `u64::MAX`.
    OffsetOverflow {
        /// The partition directory.
        dir: PathBuf,
        /// The offset the append would have started at.
        next_offset: u64,
        /// How many records it held.
        records: u64,
    },
}

impl Error {
    /// The underlying I/O error, if this error came from the operating system.
    ///
    /// # Examples
    /// ```
    /// use brooklet::Error;
    /// let err = Error::Locked { path: "data".into() };
    /// assert!(err.io_error().is_none());
    /// ```
    #[must_use]
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }

    /// A copy of this error, for handing one failure to many waiters (every record of a
    /// failed batch). An I/O error keeps its kind, its OS error code and its message.
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Io { op, path, source } => Error::Io {
                op,
                path: path.clone(),
                source: source.raw_os_error().map_or_else(
                    || io::Error::new(source.kind(), source.to_string()),
                    io::Error::from_raw_os_error,
                ),
            },
            Error::Locked { path } => Error::Locked { path: path.clone() },
            Error::OffsetOutOfRange {
                requested,
                start,
                end,
                partition,
            } => Error::OffsetOutOfRange {
                requested: *requested,
                start: *start,
                end: *end,
                partition: partition.clone(),
            },
            Error::Corrupt { path, position, reason } => Error::Corrupt {
                path: path.clone(),
                position: *position,
                reason: reason.clone(),
            },
            Error::InvalidBatch { base_offset, reason } => Error::InvalidBatch {
                base_offset: *base_offset,
                reason: reason.clone(),
            },
            Error::RecordTooLarge { size, max } => Error::RecordTooLarge { size: *size, max: *max },
            Error::InvalidTimestamp { timestamp } => Error::InvalidTimestamp { timestamp: *timestamp },
            Error::InvalidConfig { field, reason } => Error::InvalidConfig {
                field,
                reason: reason.clone(),
            },
            Error::InvalidArgument { reason } => Error::InvalidArgument { reason: reason.clone() },
            Error::Poisoned { path } => Error::Poisoned { path: path.clone() },
            Error::UnsupportedVersion { path, found, supported } => Error::UnsupportedVersion {
                path: path.clone(),
                found: *found,
                supported: *supported,
            },
            Error::InvalidTopicName { name, reason } => Error::InvalidTopicName {
                name: name.clone(),
                reason: reason.clone(),
            },
            Error::UnknownTopic { topic } => Error::UnknownTopic { topic: topic.clone() },
            Error::TopicExists { topic } => Error::TopicExists { topic: topic.clone() },
            Error::InvalidPartition {
                topic,
                partition,
                partitions,
            } => Error::InvalidPartition {
                topic: topic.clone(),
                partition: *partition,
                partitions: *partitions,
            },
            Error::Serialization { reason } => Error::Serialization { reason: reason.clone() },
            Error::Closed { what } => Error::Closed { what },
            Error::InUse { path, handles } => Error::InUse {
                path: path.clone(),
                handles: *handles,
            },
            Error::UnsupportedCompression { codec } => Error::UnsupportedCompression { codec: *codec },
            Error::NoCommittedOffset { group, partition } => Error::NoCommittedOffset {
                group: group.clone(),
                partition: partition.clone(),
            },
            Error::CommitFailed { group, reason } => Error::CommitFailed {
                group: group.clone(),
                reason: reason.clone(),
            },
            Error::NotAssigned { partition } => Error::NotAssigned {
                partition: partition.clone(),
            },
            Error::NotSubscribed { group } => Error::NotSubscribed { group: group.clone() },
            Error::Wakeup => Error::Wakeup,
            Error::GroupNotEmpty { group, members } => Error::GroupNotEmpty {
                group: group.clone(),
                members: *members,
            },
            Error::UnknownGroup { group } => Error::UnknownGroup { group: group.clone() },
            Error::Truncated { dir, offset } => Error::Truncated {
                dir: dir.clone(),
                offset: *offset,
            },
            Error::LogTruncated {
                partition,
                position,
                end,
            } => Error::LogTruncated {
                partition: partition.clone(),
                position: *position,
                end: *end,
            },
            Error::ReadOnly { what } => Error::ReadOnly { what: what.clone() },
            Error::OffsetOverflow {
                dir,
                next_offset,
                records,
            } => Error::OffsetOverflow {
                dir: dir.clone(),
                next_offset: *next_offset,
                records: *records,
            },
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, position: u64, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            position,
            reason: reason.into(),
        }
    }

    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => {
                write!(f, "I/O error during {op} on {}: {source}", path.display())
            }
            Error::Locked { path } => write!(
                f,
                "directory {} is locked: it is already open in this or another process",
                path.display()
            ),
            Error::OffsetOutOfRange {
                requested,
                start,
                end,
                partition,
            } => {
                write!(f, "offset {requested} is out of range")?;
                if let Some(partition) = partition {
                    write!(f, " in {partition}")?;
                }
                write!(f, ": the log holds offsets {start} to {end} (exclusive end)")
            }
            Error::Corrupt { path, position, reason } => {
                write!(f, "corrupt data in {} at byte {position}: {reason}", path.display())
            }
            Error::InvalidBatch { base_offset, reason } => {
                write!(f, "invalid record in the batch at offset {base_offset}: {reason}")
            }
            Error::RecordTooLarge { size, max } => {
                write!(
                    f,
                    "record too large: {size} bytes as a stored batch (header included), over the limit of {max} bytes \
                     (a topic's max_message_bytes, a log's max_batch_bytes)"
                )
            }
            Error::InvalidTimestamp { timestamp } => write!(
                f,
                "invalid timestamp {timestamp}: a record's timestamp is milliseconds since the Unix epoch, 0 or later"
            ),
            Error::InvalidConfig { field, reason } => {
                write!(f, "invalid configuration for `{field}`: {reason}")
            }
            Error::InvalidArgument { reason } => write!(f, "invalid argument: {reason}"),
            Error::Poisoned { path } => write!(
                f,
                "partition {} refuses writes after a failed fsync; reopen it to recover from what is on disk",
                path.display()
            ),
            Error::UnsupportedVersion { path, found, supported } => write!(
                f,
                "{} has format version {found}, but this build reads versions up to {supported}",
                path.display()
            ),
            Error::InvalidTopicName { name, reason } => write!(f, "invalid topic name {name:?}: {reason}"),
            Error::UnknownTopic { topic } => write!(f, "topic {topic:?} does not exist"),
            Error::TopicExists { topic } => write!(f, "topic {topic:?} already exists"),
            Error::InvalidPartition {
                topic,
                partition,
                partitions,
            } => write!(
                f,
                "partition {partition} of topic {topic:?} does not exist: the topic has {partitions} partition{}",
                if *partitions == 1 { "" } else { "s" }
            ),
            // Encoding or decoding: the reason says which ("JSON decode: …"), and for a typed
            // record whether of its key or its value ("value: JSON decode: …").
            Error::Serialization { reason } => write!(f, "(de)serialization failed: {reason}"),
            Error::Closed { what } => write!(f, "the {what} is closed"),
            Error::InUse { path, handles } => write!(
                f,
                "broker {} was flushed but not closed: {handles} other handle(s) of it (clones, producers, \
                 consumers) are alive, and it closes when the last one is dropped",
                path.display()
            ),
            Error::UnsupportedCompression { codec } => {
                write!(f, "compression codec {codec} is not supported by this build")
            }
            Error::NoCommittedOffset { group, partition } => match group {
                Some(g) => write!(
                    f,
                    "group {g:?} has no committed offset for {partition} and auto_offset_reset is None"
                ),
                None => write!(f, "no position for {partition} and auto_offset_reset is None"),
            },
            Error::CommitFailed { group, reason } => write!(f, "commit to group {group:?} failed: {reason}"),
            Error::NotAssigned { partition } => write!(f, "partition {partition} is not assigned to this consumer"),
            Error::NotSubscribed { group } => match group {
                Some(g) => write!(
                    f,
                    "the consumer of group {g:?} is not subscribed to any topic nor assigned any partition"
                ),
                None => write!(f, "the consumer is not assigned any partition"),
            },
            Error::Wakeup => write!(f, "the consumer's poll was interrupted by WakeupHandle::wakeup"),
            Error::GroupNotEmpty { group, members } => {
                write!(f, "group {group:?} has {members} active member(s); stop them first")
            }
            Error::UnknownGroup { group } => write!(f, "group {group:?} does not exist"),
            Error::Truncated { dir, offset } => write!(
                f,
                "partition {} was truncated to offset {offset} before the append was synced; its records at or after that offset are gone",
                dir.display()
            ),
            Error::LogTruncated {
                partition,
                position,
                end,
            } => write!(
                f,
                "partition {partition} was truncated to offset {end}, below the consumer's position {position}; seek to resume"
            ),
            Error::ReadOnly { what } => write!(f, "cannot {what}: the data directory is open read-only"),
            Error::OffsetOverflow {
                dir,
                next_offset,
                records,
            } => write!(
                f,
                "partition {}: {records} records starting at offset {next_offset} would pass the largest offset",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
