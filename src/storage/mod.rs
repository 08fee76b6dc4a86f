//! The storage engine: a partition is a directory of segments.
//!
//! - `log` — [`PartitionLog`](crate::PartitionLog): append, read, recovery, retention.
//! - `segment` — one `.log` file with its indexes; the recovery scan.
//! - `index` — the sparse offset index and the time index.
//! - `mapped` — writes through a shared memory map (opt-in), the crate's only `unsafe`.
//! - `notify` — wake-ups for consumers blocked in `poll`, raised by appends.
//! - `checkpoint` — small atomic, checksummed files (recovery point, log start, clean shutdown).
//! - `retention` — the broker's thread that applies retention to idle partitions.
//! - [`io`](crate::io) — the I/O seam, with the fault-injecting [`FaultFs`](crate::io::FaultFs).

pub(crate) mod checkpoint;
pub(crate) mod fault;
pub(crate) mod index;
pub(crate) mod io;
pub(crate) mod log;
pub(crate) mod mapped;
pub(crate) mod notify;
pub(crate) mod retention;
pub(crate) mod segment;
