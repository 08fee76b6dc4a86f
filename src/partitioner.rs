//! Choosing a record's partition, as Kafka's Java client does.
//!
//! 1. A record with an explicit partition goes there (the producer checks the range).
//! 2. A keyed record goes to `(murmur2(key) & 0x7fffffff) % partitions`, with exactly the
//!    murmur2 of Kafka's Java client (seed `0x9747b28c`), so a key lands on the same
//!    partition number in brooklet and in Kafka.
//! 3. A keyless record follows the partitioner: [`DefaultPartitioner`] is sticky (one
//!    partition until a batch completes, then another), [`RoundRobinPartitioner`] rotates
//!    record by record. Any `Fn` works through [`FnPartitioner`], or implement
//!    [`Partitioner`].

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), as 32 bits.
///
/// # Examples
/// ```
/// assert_eq!(brooklet::murmur2(b"21") as i32, -973932308);
/// ```
#[must_use]
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ (data.len() as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = chunk.iter().rev().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if !tail.is_empty() {
        // Java's switch falls through from case 3 to case 1.
        for (i, &b) in tail.iter().enumerate().rev() {
            h ^= u32::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition Kafka's default partitioner gives a keyed record:
/// `(murmur2(key) & 0x7fffffff) % partitions`. Returns 0 when `partitions` is 0 (the
/// caller validates the count; this never panics).
#[must_use]
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    if partitions <= 1 {
        // Every hash maps to partition 0 of 1: skip hashing.
        return 0;
    }
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// Chooses partitions. Implementations are pure decisions with no I/O, and must be cheap:
/// they run on every send.
pub trait Partitioner: Send + Sync + std::fmt::Debug {
    /// The partition for a record of `topic` (which has `partitions` partitions). Must
    /// return a value below `partitions`; the producer refuses the record otherwise
    /// ([`Error::InvalidPartition`](crate::Error::InvalidPartition)). Called outside the
    /// producer's locks, so it may itself send through the producer.
    fn partition(&self, topic: &str, key: Option<&[u8]>, value: Option<&[u8]>, partitions: u32) -> u32;

    /// Told by the producer when a batch for `previous` was completed, so a sticky
    /// partitioner can move on. Called outside the producer's locks too. Default: nothing.
    fn on_new_batch(&self, _topic: &str, _partitions: u32, _previous: u32) {}
}

/// The partitioners' state per topic, looked up for every keyless record.
type TopicMap = HashMap<String, u32, BuildHasherDefault<Fnv1a>>;

/// FNV-1a, the hash of [`TopicMap`]. Topic names are short and chosen by the application,
/// not by whoever sends the records, so SipHash's defence against chosen keys buys nothing
/// here, and it cost 158 of the 247 instructions a keyless record's `partition` took on a
/// topic of four partitions (callgrind).
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A small deterministic generator (splitmix64) for choosing sticky partitions.
#[derive(Debug)]
struct Rng(AtomicU64);

impl Rng {
    fn next_below(&self, n: u32) -> u32 {
        let mut z = self
            .0
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z % u64::from(n.max(1))) as u32
    }
}

/// Kafka's default: keyed records by [`partition_for_key`]; keyless records stick to one
/// partition per topic until [`on_new_batch`](Partitioner::on_new_batch), then move to a
/// different random one (Kafka's sticky partitioner, KIP-480). Every record of a topic with
/// one partition goes to 0 at once: no hash, no sticky choice (and no draw from the seed).
#[derive(Debug)]
pub struct DefaultPartitioner {
    sticky: Mutex<TopicMap>,
    rng: Rng,
}

impl Default for DefaultPartitioner {
    fn default() -> Self {
        DefaultPartitioner::new()
    }
}

impl DefaultPartitioner {
    /// A partitioner seeded from the clock.
    #[must_use]
    pub fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        DefaultPartitioner::with_seed(seed)
    }

    /// A partitioner whose keyless choices follow `seed` (for reproducible tests).
    #[must_use]
    pub fn with_seed(seed: u64) -> Self {
        DefaultPartitioner {
            sticky: Mutex::new(TopicMap::default()),
            rng: Rng(AtomicU64::new(seed)),
        }
    }
}

impl Partitioner for DefaultPartitioner {
    fn partition(&self, topic: &str, key: Option<&[u8]>, _value: Option<&[u8]>, partitions: u32) -> u32 {
        // One partition: what the hash or the sticky choice would give, without hashing
        // the key or taking the sticky lock for every record.
        if partitions <= 1 {
            return 0;
        }
        if let Some(key) = key {
            return partition_for_key(key, partitions);
        }
        let mut sticky = self.sticky.lock();
        match sticky.get(topic) {
            Some(&p) if p < partitions => p,
            _ => {
                let p = self.rng.next_below(partitions);
                sticky.insert(topic.to_owned(), p);
                p
            }
        }
    }

    fn on_new_batch(&self, topic: &str, partitions: u32, previous: u32) {
        let mut sticky = self.sticky.lock();
        if sticky.get(topic).is_some_and(|&p| p != previous) {
            return; // another batch already moved it on
        }
        let next = if partitions > 1 {
            // A different partition, uniformly among the others.
            (previous + 1 + self.rng.next_below(partitions - 1)) % partitions
        } else {
            0
        };
        sticky.insert(topic.to_owned(), next);
    }
}

/// Every record, keyed or not, to the next partition in turn, per topic (Kafka's
/// `RoundRobinPartitioner`).
#[derive(Debug, Default)]
pub struct RoundRobinPartitioner {
    next: Mutex<TopicMap>,
}

impl RoundRobinPartitioner {
    /// A round-robin partitioner starting at partition 0.
    #[must_use]
    pub fn new() -> Self {
        RoundRobinPartitioner::default()
    }
}

impl Partitioner for RoundRobinPartitioner {
    fn partition(&self, topic: &str, _key: Option<&[u8]>, _value: Option<&[u8]>, partitions: u32) -> u32 {
        let mut next = self.next.lock();
        let slot = next.entry(topic.to_owned()).or_insert(0);
        let p = slot.checked_rem(partitions).unwrap_or(0);
        *slot = p.wrapping_add(1);
        p
    }
}

/// A partitioner from a closure `(topic, key, value, partitions) -> partition`.
///
/// # Examples
/// ```
/// use brooklet::{FnPartitioner, Partitioner};
/// // Everything from "vip-" customers to partition 0, the rest by key length.
/// let p = FnPartitioner::new(|_topic: &str, key: Option<&[u8]>, _value: Option<&[u8]>, n: u32| match key {
///     Some(k) if k.starts_with(b"vip-") => 0,
///     Some(k) => k.len() as u32 % n,
///     None => 0,
/// });
/// assert_eq!(p.partition("orders", Some(b"vip-7"), None, 4), 0);
/// assert_eq!(p.partition("orders", Some(b"abc"), None, 4), 3);
/// ```
pub struct FnPartitioner<F> {
    f: F,
}

impl<F> FnPartitioner<F>
where
    F: Fn(&str, Option<&[u8]>, Option<&[u8]>, u32) -> u32 + Send + Sync,
{
    /// Wraps `f`.
    pub fn new(f: F) -> Self {
        FnPartitioner { f }
    }
}

impl<F> std::fmt::Debug for FnPartitioner<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnPartitioner")
    }
}

impl<F> Partitioner for FnPartitioner<F>
where
    F: Fn(&str, Option<&[u8]>, Option<&[u8]>, u32) -> u32 + Send + Sync,
{
    fn partition(&self, topic: &str, key: Option<&[u8]>, value: Option<&[u8]>, partitions: u32) -> u32 {
        (self.f)(topic, key, value, partitions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The vectors of Kafka's `UtilsTest.testMurmur2`.
    const VECTORS: [(&str, i32); 6] = [
        ("21", -973_932_308),
        ("foobar", -790_332_482),
        ("a-little-bit-long-string", -985_981_536),
        ("a-little-bit-longer-string", -1_486_304_829),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
        ("abc", 479_470_107),
    ];

    #[test]
    fn murmur2_matches_kafkas_java_client() {
        for (input, expected) in VECTORS {
            assert_eq!(murmur2(input.as_bytes()) as i32, expected, "{input}");
        }
    }

    #[test]
    fn keyed_partition_is_to_positive_mod_n() {
        for (input, hash) in VECTORS {
            for n in [1u32, 3, 6, 12, 100] {
                let expected = ((hash & 0x7fff_ffff) as u32) % n;
                assert_eq!(partition_for_key(input.as_bytes(), n), expected, "{input} % {n}");
            }
        }
        assert_eq!(partition_for_key(b"x", 0), 0);
    }

    #[test]
    fn sticky_holds_until_a_batch_completes_then_moves_and_covers_all() {
        let p = DefaultPartitioner::with_seed(7);
        let first = p.partition("t", None, None, 6);
        for _ in 0..100 {
            assert_eq!(p.partition("t", None, None, 6), first);
        }
        p.on_new_batch("t", 6, first);
        let second = p.partition("t", None, None, 6);
        assert_ne!(second, first);
        // A stale notification for the old partition does not move it again.
        p.on_new_batch("t", 6, first);
        assert_eq!(p.partition("t", None, None, 6), second);
        let mut seen = [0u32; 6];
        for _ in 0..60 {
            let cur = p.partition("t", None, None, 6);
            for _ in 0..100 {
                seen[p.partition("t", None, None, 6) as usize] += 1;
            }
            p.on_new_batch("t", 6, cur);
        }
        assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
        // Keys ignore stickiness.
        assert_eq!(
            p.partition("t", Some(b"foobar"), None, 6),
            partition_for_key(b"foobar", 6)
        );
    }

    /// A one-partition topic short-cuts to 0, and leaves no sticky choice behind: once
    /// the topic grows, its keyless records stick to a partition chosen then, and keyed
    /// records hash as ever.
    #[test]
    fn one_partition_goes_to_0_and_a_grown_topic_partitions_as_ever() {
        let p = DefaultPartitioner::with_seed(3);
        for key in [None, Some(&b"foobar"[..]), Some(&b""[..])] {
            assert_eq!(p.partition("t", key, None, 1), 0);
        }
        p.on_new_batch("t", 1, 0);
        assert_eq!(p.partition("t", None, None, 1), 0);
        let sticky = p.partition("t", None, None, 6);
        for _ in 0..10 {
            assert_eq!(p.partition("t", None, None, 6), sticky);
        }
        for (input, _) in VECTORS {
            let key = input.as_bytes();
            assert_eq!(
                p.partition("t", Some(key), None, 6),
                partition_for_key(key, 6),
                "{input}"
            );
        }
    }

    #[test]
    fn round_robin_cycles_per_topic() {
        let p = RoundRobinPartitioner::new();
        let a: Vec<u32> = (0..6).map(|_| p.partition("a", Some(b"k"), None, 3)).collect();
        let b: Vec<u32> = (0..4).map(|_| p.partition("b", None, None, 2)).collect();
        assert_eq!(a, [0, 1, 2, 0, 1, 2]);
        assert_eq!(b, [0, 1, 0, 1]);
    }

    /// The topic maps' hash is FNV-1a (64-bit; the published test vectors), and many
    /// topics keep apart in them.
    #[test]
    fn topic_maps_hash_with_fnv1a_and_keep_topics_apart() {
        let hash = |bytes: &[u8]| {
            let mut h = Fnv1a::default();
            h.write(bytes);
            h.finish()
        };
        assert_eq!(hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash(b"foobar"), 0x8594_4171_f739_67e8);
        let p = RoundRobinPartitioner::new();
        let topics: Vec<String> = (0..200).map(|i| format!("topic-{i}")).collect();
        for round in 0..3 {
            for t in &topics {
                assert_eq!(p.partition(t, None, None, 5), round);
            }
        }
    }

    #[test]
    fn partitioners_are_object_safe() {
        let all: Vec<Arc<dyn Partitioner>> = vec![
            Arc::new(DefaultPartitioner::new()),
            Arc::new(RoundRobinPartitioner::new()),
            Arc::new(FnPartitioner::new(
                |_: &str, _: Option<&[u8]>, _: Option<&[u8]>, n: u32| n - 1,
            )),
        ];
        for p in all {
            assert!(p.partition("t", Some(b"k"), None, 5) < 5);
        }
    }
}
