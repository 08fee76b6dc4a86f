//! Consumer groups: the in-process coordinator (membership, generations, eviction,
//! ownership hand-over) and the assignors that decide who reads which partition.
//!
//! - `coordinator` — one per broker; the rebalance protocol is described there.
//! - `admin` — the broker's group administration: list, describe (with lag), reset, delete.
//! - `assignor` — [`Assignor`] and Kafka's [`RangeAssignor`], [`RoundRobinAssignor`] and
//!   [`StickyAssignor`].

pub(crate) mod admin;
pub(crate) mod assignor;
pub(crate) mod coordinator;

pub use assignor::{Assignor, MemberSubscription, RangeAssignor, RoundRobinAssignor, StickyAssignor};
pub use coordinator::MemberDescription;
