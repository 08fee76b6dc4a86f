//! Configuration of a partition log, and the [`Durability`] levels.
//!
//! Setters are consuming and never panic; [`LogConfig::validate`] (called by
//! [`PartitionLog::open`](crate::PartitionLog::open)) refuses values out of range with
//! [`Error::InvalidConfig`](crate::Error::InvalidConfig) naming the field.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::record::TimestampType;

/// How far an append must get before the call returns.
///
/// | level | returns once the batch is… | survives | Kafka analogue |
/// |---|---|---|---|
/// | `Buffered` | copied into the partition's in-memory write buffer | nothing until it is written out (below) | `acks=0` |
/// | `Written` | handed to the OS with `write(2)` | a crash of this process (the page cache outlives it) | `acks=1` |
/// | `Synced` | written and `fdatasync`'d | power loss and kernel crashes | `acks=all` |
///
/// `Buffered` data becomes visible to readers when it reaches the OS: at the next
/// [`flush`](crate::PartitionLog::flush), at the next non-`Buffered` append, or when the
/// buffer fills (see [`LogConfig::write_buffer_bytes`]); also whenever the log writes it
/// out for its own work — a segment roll, a `truncate_to` that cuts, a
/// `delete_records_before` past it, a retention check that seals the active segment, a
/// close. Until then reads stop before it. A [`Producer`](crate::Producer) sending
/// `Buffered` also writes its records out a [`linger`](crate::ProducerConfig::linger)
/// after it left the first of them in the buffer. Concurrent `Synced` appends share fsyncs
/// (group commit): a thread whose data was already covered by another thread's fsync
/// returns without one of its own.
///
/// Kafka relies on replication for `acks=all`; brooklet has no replicas, so `Synced`
/// really waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Durability {
    /// Kept in memory until written out (a flush; with a producer, a linger later): fastest,
    /// may lose recent records on any crash.
    Buffered,
    /// Handed to the OS before returning: survives a process crash. The default.
    #[default]
    Written,
    /// `fdatasync`'d before returning: survives power loss.
    Synced,
}

/// Configuration of one partition log.
///
/// # Examples
/// ```
/// use brooklet::LogConfig;
/// use std::time::Duration;
/// let config = LogConfig::default()
///     .segment_bytes(64 * 1024 * 1024)
///     .retention_ms(Some(Duration::from_secs(7 * 24 * 3600)));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub(crate) segment_bytes: u64,
    pub(crate) segment_ms: Option<Duration>,
    pub(crate) index_interval_bytes: u32,
    pub(crate) index_max_bytes: u32,
    pub(crate) max_batch_bytes: Option<u32>,
    pub(crate) retention_bytes: Option<u64>,
    pub(crate) retention_ms: Option<Duration>,
    pub(crate) write_buffer_bytes: usize,
    pub(crate) verify_checksums: bool,
    pub(crate) timestamp_type: TimestampType,
    pub(crate) preallocate_bytes: u64,
    pub(crate) mapped_writes: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 128 * 1024 * 1024,
            segment_ms: None,
            index_interval_bytes: 4096,
            index_max_bytes: 10 * 1024 * 1024,
            max_batch_bytes: None,
            retention_bytes: None,
            retention_ms: None,
            write_buffer_bytes: 64 * 1024,
            verify_checksums: true,
            timestamp_type: TimestampType::CreateTime,
            preallocate_bytes: 8 * 1024 * 1024,
            mapped_writes: false,
        }
    }
}

/// The largest segment: positions inside a segment are stored as `u32` in the offset index.
pub(crate) const MAX_SEGMENT_BYTES: u64 = u32::MAX as u64;
/// The smallest segment.
pub(crate) const MIN_SEGMENT_BYTES: u64 = 4096;
/// Default of `max_batch_bytes`, as Kafka's `message.max.bytes`.
const DEFAULT_MAX_BATCH_BYTES: u32 = 1024 * 1024;
/// Every batch has a fixed header; a maximum below it could never admit a batch.
pub(crate) const MIN_BATCH_BYTES: u32 = 1024;

impl LogConfig {
    /// Size at which the active segment is closed and a new one started.
    /// Default = 128 MiB. Range: 4 KiB ..= 4 GiB − 1. Smaller segments make retention
    /// finer-grained and cost more files.
    #[must_use]
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }

    /// Age at which the active segment is rolled even if not full, measured from its first
    /// append in this process: a reopen restarts the clock. (Kafka's `segment.ms` differs: it
    /// measures from the timestamp of the segment's first batch, so its clock survives a
    /// restart.) Default = `None` (roll by size only).
    #[must_use]
    pub fn segment_ms(mut self, age: Option<Duration>) -> Self {
        self.segment_ms = age;
        self
    }

    /// Bytes of log between two entries of the sparse offset index. Default = 4096.
    /// A read scans at most this many bytes of batch headers after the index lookup.
    #[must_use]
    pub fn index_interval_bytes(mut self, bytes: u32) -> Self {
        self.index_interval_bytes = bytes;
        self
    }

    /// Maximum size of one segment's offset index; a full index rolls the segment.
    /// Default = 10 MiB (1.3 million entries).
    #[must_use]
    pub fn index_max_bytes(mut self, bytes: u32) -> Self {
        self.index_max_bytes = bytes;
        self
    }

    /// Largest encoded batch accepted by an append (as stored and, when compressed,
    /// uncompressed). Default = 1 MiB (Kafka's `message.max.bytes`), or `segment_bytes` if
    /// that is smaller. An explicit value above `segment_bytes` is refused by
    /// [`validate`](Self::validate).
    ///
    /// This limits what is *written*, nothing else. Stored batches are framed and
    /// decompressed by the format's limit
    /// ([`MAX_BATCH_BYTES`](crate::record::batch::MAX_BATCH_BYTES)), not by this value, so
    /// lowering it (directly, or by lowering `segment_bytes`) keeps every batch already
    /// stored: recovery never cuts a batch whose checksum holds for exceeding it, and
    /// readers read it, compressed or not. A reader's memory for one batch is bounded by
    /// what the batch's records decompress to, at most the format's limit.
    #[must_use]
    pub fn max_batch_bytes(mut self, bytes: u32) -> Self {
        self.max_batch_bytes = Some(bytes);
        self
    }

    /// The effective maximum batch size (see [`max_batch_bytes`](Self::max_batch_bytes)).
    #[must_use]
    pub fn effective_max_batch_bytes(&self) -> u32 {
        self.max_batch_bytes
            .unwrap_or_else(|| DEFAULT_MAX_BATCH_BYTES.min(u32::try_from(self.segment_bytes).unwrap_or(u32::MAX)))
    }

    /// Delete the oldest segments while the partition is larger than this. Default = `None`
    /// (no size limit). The active segment is never deleted.
    #[must_use]
    pub fn retention_bytes(mut self, bytes: Option<u64>) -> Self {
        self.retention_bytes = bytes;
        self
    }

    /// Delete segments whose newest record is older than this. Default = `None` (keep forever).
    /// The active segment too, but only by [`PartitionLog::enforce_retention`](crate::PartitionLog::enforce_retention)
    /// (a broker's retention thread), not at a roll.
    #[must_use]
    pub fn retention_ms(mut self, age: Option<Duration>) -> Self {
        self.retention_ms = age;
        self
    }

    /// Capacity of the in-memory buffer that holds `Buffered` appends. Default = 64 KiB.
    /// A `Buffered` append that fills it (the buffer reaches this many bytes with the
    /// append's batch) hands the whole buffer, that batch included, to the OS.
    #[must_use]
    pub fn write_buffer_bytes(mut self, bytes: usize) -> Self {
        self.write_buffer_bytes = bytes;
        self
    }

    /// Verify each batch's CRC when it is read. Default = `true` (as Kafka's `check.crcs`).
    /// Recovery always verifies, whatever this says.
    #[must_use]
    pub fn verify_checksums(mut self, verify: bool) -> Self {
        self.verify_checksums = verify;
        self
    }

    /// Whose clock stamps the records, as Kafka's `message.timestamp.type`. Default =
    /// [`TimestampType::CreateTime`]: a record keeps the timestamp its producer set (or the
    /// append time, if it set none). With [`TimestampType::LogAppendTime`] the log stamps
    /// every appended record with the append time, whatever the producer set; reads,
    /// [`offset_for_timestamp`](crate::PartitionLog::offset_for_timestamp) and time retention
    /// then see append times.
    #[must_use]
    pub fn timestamp_type(mut self, timestamp_type: TimestampType) -> Self {
        self.timestamp_type = timestamp_type;
        self
    }

    /// Most disk space the active segment reserves ahead of its writes. Default = 8 MiB;
    /// `0` turns reservation off.
    ///
    /// Once the active segment holds 1 MiB, a write that passes the reserved end reserves
    /// blocks ahead of it (`fallocate(2)` with `FALLOC_FL_KEEP_SIZE`, Linux only): as much
    /// again as the segment holds (at least 1 MiB) up to this, never past `segment_bytes`.
    /// Writes into reserved blocks skip the file system's block allocation, which makes
    /// large appends (batches) markedly cheaper in the kernel; single small records gain
    /// little. The file's length, and so everything the log reads and recovers, is
    /// unchanged. A segment gives back what it did not use when it is sealed or the log is
    /// closed; after a crash the active segment may hold up to this much reserved space
    /// until it is sealed, the reopened log closed, or the segment deleted. Small partitions (under 1 MiB) never reserve.
    /// Kafka's `log.preallocate` is the same idea for whole segments, off by default; this
    /// reserves little at a time and is on by default.
    #[must_use]
    pub fn preallocate_bytes(mut self, bytes: u64) -> Self {
        self.preallocate_bytes = bytes;
        self
    }

    /// Writes the active segment through a shared memory map instead of `write(2)`.
    /// Default = `false`. Linux only (elsewhere the setting is ignored).
    ///
    /// A store into the map lands in the page cache as a `write(2)` would, so
    /// [`Durability::Written`] keeps its promise (the record outlives a crash of the
    /// process) and `Synced` still `fdatasync`s it; what goes is the system call per append,
    /// which dominates appends of one small record at a time (on the reference machine one
    /// `write(2)` of a 190-byte record costs about 1 µs; see `BENCHMARKS.md`). Batched
    /// appends gain little. The files are the same: a reader, another process's
    /// read-only log, or a log opened later without this setting reads them as ever.
    ///
    /// How: the file is extended with its blocks allocated (`fallocate(2)` mode 0) a step
    /// ahead of the writes — as much again as the segment holds, at least 64 KiB and at
    /// most [`preallocate_bytes`](Self::preallocate_bytes) (64 KiB if that is smaller, `0`
    /// included; unlike that setting's reservation, from the first write, not from 1 MiB)
    /// — and the zeros past the last batch are cut off when the segment is sealed or the
    /// log closed. After a crash the active segment ends in those zeros until the next
    /// open's recovery scan cuts them: a [`Truncation`](crate::Truncation) with
    /// `zeros_only` set (no batch was cut), logged at info level. Read-only readers stop at
    /// them as at a batch still being written; `brooklet verify` and `dump-log` name them
    /// and do not count them as damage. Where a file cannot be extended that way (a file
    /// system without `fallocate`, a full disk) or through a [`Vfs`](crate::io::Vfs) other
    /// than [`OsFs`](crate::io::OsFs), the log writes with `write(2)` as without this
    /// setting, so a full disk is still an error, not a signal.
    ///
    /// Why it is off by default (as LMDB's `MDB_WRITEMAP` and RocksDB's `allow_mmap_writes`
    /// are): a writable map turns some failures into `SIGBUS`, which kills the process,
    /// instead of an error. brooklet never stores past the file's end nor into unallocated
    /// blocks, but another process that shrinks a segment file while the log is open, or
    /// a disk error while the kernel reads back a page of the segment's tail that it had
    /// evicted, ends the process. So does a full disk on a copy-on-write file system
    /// (btrfs, ZFS, XFS with shared extents), where blocks allocated by `fallocate` do not
    /// guarantee that a page written twice needs no new block: use it on ext4 or plain
    /// XFS. The one `unsafe` block of the crate maps the file
    /// (`src/storage/mapped.rs`). Each active segment maps `segment_bytes` of address space
    /// and is one mapping of the process (Linux allows about 65,000, `vm.max_map_count`);
    /// where a segment cannot be mapped, it is written with `write(2)` and a warning is
    /// logged.
    ///
    /// # Examples
    /// ```
    /// use brooklet::{Durability, LogConfig, PartitionLog, Record};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let log = PartitionLog::open(dir.path(), LogConfig::default().mapped_writes(true))?;
    /// for i in 0..1000u32 {
    ///     log.append(&[Record::new().value(i.to_string())], Durability::Written)?;
    /// }
    /// log.close()?;
    /// // Closed: the files hold the batches and nothing past them, for any reader.
    /// let log = PartitionLog::open(dir.path(), LogConfig::default())?;
    /// assert!(log.recovery_report().clean_shutdown);
    /// assert_eq!(log.log_end_offset(), 1000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn mapped_writes(mut self, mapped: bool) -> Self {
        self.mapped_writes = mapped;
        self
    }

    /// Checks every value against its allowed range.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first field out of range.
    pub fn validate(&self) -> Result<()> {
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return Err(Error::config(
                "segment_bytes",
                format!(
                    "{} is outside {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}",
                    self.segment_bytes
                ),
            ));
        }
        if self.segment_ms == Some(Duration::ZERO) {
            return Err(Error::config("segment_ms", "must be positive when set"));
        }
        if self.retention_ms == Some(Duration::ZERO) {
            return Err(Error::config("retention_ms", "must be positive when set"));
        }
        if self.index_interval_bytes == 0 {
            return Err(Error::config("index_interval_bytes", "must be positive"));
        }
        if self.index_max_bytes < 64 {
            return Err(Error::config(
                "index_max_bytes",
                format!("{} is below the minimum of 64", self.index_max_bytes),
            ));
        }
        let max_batch = self.effective_max_batch_bytes();
        if max_batch < MIN_BATCH_BYTES || u64::from(max_batch) > self.segment_bytes {
            return Err(Error::config(
                "max_batch_bytes",
                format!(
                    "{max_batch} must be at least {MIN_BATCH_BYTES} and at most segment_bytes ({})",
                    self.segment_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// The limits a segment needs to read and index itself, derived from a [`LogConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Bytes between index entries.
    pub index_interval: u32,
    /// Largest index file read whole; a larger one is invalid and rebuilt.
    pub index_max_bytes: u64,
}

impl LogConfig {
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            index_interval: self.index_interval_bytes,
            index_max_bytes: u64::from(self.index_max_bytes),
        }
    }
}
