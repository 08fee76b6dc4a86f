//! Topics: names, per-topic configuration, and partition addresses.

use std::fmt;
use std::time::Duration;

use crate::config::{LogConfig, MAX_SEGMENT_BYTES, MIN_BATCH_BYTES, MIN_SEGMENT_BYTES};
use crate::error::{Error, Result};
use crate::record::TimestampType;

/// Longest topic name, as Kafka's `TopicNameValidation` (249, so that
/// `<topic>-<partition>` fits a 255-byte file name).
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Checks a topic name against Kafka's rule: 1 to 249 characters of `[a-zA-Z0-9._-]`, and not
/// `.` or `..`. A valid name can never escape the data directory.
///
/// # Errors
/// [`Error::InvalidTopicName`] quoting the name and saying what is wrong.
///
/// # Examples
/// ```
/// use brooklet::validate_topic_name;
/// assert!(validate_topic_name("orders.v2_eu-west").is_ok());
/// assert!(validate_topic_name("../etc").is_err());
/// ```
pub fn validate_topic_name(name: &str) -> Result<()> {
    let invalid = |reason: &str| {
        Err(Error::InvalidTopicName {
            name: name.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return invalid("it is longer than 249 characters");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are not allowed");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(Error::InvalidTopicName {
            name: name.to_owned(),
            reason: format!("character {c:?} is not one of [a-zA-Z0-9._-]"),
        });
    }
    Ok(())
}

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic's name.
    pub topic: String,
    /// The partition number, from 0.
    pub partition: u32,
}

impl TopicPartition {
    /// A topic-partition pair.
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// The identity of one creation of a topic (Kafka's topic ID, KIP-516): a topic deleted and
/// created again under the same name gets a new one, so a reader that knew the old topic —
/// a read-only broker beside the writer, a tool — can tell the two apart instead of taking
/// the new files for the old ones. Assigned by [`Broker::create_topic`](crate::Broker::create_topic),
/// kept in the topic table, unchanged by reopening, altering or growing the topic. Shown as
/// 32 hex digits.
///
/// # Examples
/// ```
/// use brooklet::{Broker, TopicConfig};
/// let broker = Broker::temporary()?;
/// broker.create_topic("orders", TopicConfig::default())?;
/// let first = broker.describe_topic("orders")?.id;
/// broker.delete_topic("orders")?;
/// broker.create_topic("orders", TopicConfig::default())?;
/// assert_ne!(broker.describe_topic("orders")?.id, first);
/// assert_eq!(first.to_string().len(), 32);
/// # Ok::<(), brooklet::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicId(pub(crate) u128);

impl TopicId {
    /// The id of a topic listed by a topic table written before topics had ids (version 1):
    /// unknown, it matches any. A writable open gives such topics ids.
    pub const UNKNOWN: TopicId = TopicId(0);

    /// A new id, never [`UNKNOWN`](Self::UNKNOWN): the time in nanoseconds, the process id
    /// and a per-process counter (only one process at a time writes a data directory).
    pub(crate) fn generate() -> TopicId {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let low = (u64::from(std::process::id()) << 32) | u64::from(COUNTER.fetch_add(1, Ordering::Relaxed));
        TopicId(((u128::from(nanos) << 64) | u128::from(low)).max(1))
    }

    /// Whether `self` and `other` may be the same creation: equal, or either unknown.
    pub(crate) fn may_be(self, other: TopicId) -> bool {
        self == other || self == TopicId::UNKNOWN || other == TopicId::UNKNOWN
    }

    /// The id as a number.
    #[must_use]
    pub fn as_u128(self) -> u128 {
        self.0
    }
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// What happens to old data of a topic (Kafka's `cleanup.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum CleanupPolicy {
    /// Delete whole old segments by size and age (retention).
    #[default]
    Delete,
    /// Keep the latest record per key. Reserved: not built yet, refused by validation.
    Compact,
}

/// Configuration of a topic, applied to each of its partitions.
///
/// # Examples
/// ```
/// use brooklet::TopicConfig;
/// use std::time::Duration;
/// let config = TopicConfig::with_partitions(3).retention_ms(Some(Duration::from_secs(86_400)));
/// assert_eq!(config.partitions(), 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub(crate) partitions: u32,
    pub(crate) segment_bytes: u64,
    pub(crate) segment_ms: Option<Duration>,
    pub(crate) retention_bytes: Option<u64>,
    pub(crate) retention_ms: Option<Duration>,
    pub(crate) max_message_bytes: u32,
    pub(crate) timestamp_type: TimestampType,
    pub(crate) cleanup_policy: CleanupPolicy,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig::with_partitions(1)
    }
}

/// Default of `max_message_bytes`, Kafka's `max.message.bytes` (1 MiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: u32 = 1024 * 1024;

impl TopicConfig {
    /// A topic of `partitions` partitions with these defaults otherwise: 128 MiB segments
    /// (Kafka's are 1 GiB), no retention limits (unlike Kafka, whose `retention.ms` is 7
    /// days: an embedded log keeps what it was given until told otherwise), no time-based
    /// roll (Kafka's `segment.ms` is 7 days), 1 MiB max message, CreateTime, delete cleanup.
    #[must_use]
    pub fn with_partitions(partitions: u32) -> Self {
        TopicConfig {
            partitions,
            segment_bytes: 128 * 1024 * 1024,
            segment_ms: None,
            retention_bytes: None,
            retention_ms: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            timestamp_type: TimestampType::CreateTime,
            cleanup_policy: CleanupPolicy::Delete,
        }
    }

    /// Number of partitions. Default = 1.
    #[must_use]
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Sets the number of partitions (at creation; grow later with
    /// [`Broker::add_partitions`](crate::Broker::add_partitions)).
    #[must_use]
    pub fn partition_count(mut self, partitions: u32) -> Self {
        self.partitions = partitions;
        self
    }

    /// Segment size of each partition. Default = 128 MiB.
    #[must_use]
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }

    /// Roll segments older than this. Default = `None`. Stored in whole milliseconds (as
    /// Kafka's `segment.ms`): [`validate`](Self::validate) refuses a fraction of one.
    #[must_use]
    pub fn segment_ms(mut self, age: Option<Duration>) -> Self {
        self.segment_ms = age;
        self
    }

    /// Size retention per partition (Kafka's `retention.bytes`). Default = `None`.
    #[must_use]
    pub fn retention_bytes(mut self, bytes: Option<u64>) -> Self {
        self.retention_bytes = bytes;
        self
    }

    /// Time retention (Kafka's `retention.ms`). Default = `None`. Stored in whole
    /// milliseconds: [`validate`](Self::validate) refuses a fraction of one.
    #[must_use]
    pub fn retention_ms(mut self, age: Option<Duration>) -> Self {
        self.retention_ms = age;
        self
    }

    /// Largest record batch accepted, encoded (Kafka's `max.message.bytes`). A record
    /// larger than this is refused with [`Error::RecordTooLarge`]. Default = 1 MiB. A batch
    /// must fit in one segment, so the limit in force is at most `segment_bytes`.
    ///
    /// Unlike Kafka's, the limit holds for a compressed batch both as stored and
    /// uncompressed, so that no batch written here takes a reader more memory than the
    /// limit: a 2 MiB value that zstd shrinks to a few KiB is still refused under the
    /// default.
    #[must_use]
    pub fn max_message_bytes(mut self, bytes: u32) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// Whose clock stamps records (Kafka's `message.timestamp.type`). Default = CreateTime.
    #[must_use]
    pub fn timestamp_type(mut self, timestamp_type: TimestampType) -> Self {
        self.timestamp_type = timestamp_type;
        self
    }

    /// Cleanup policy. Default = Delete; Compact is reserved and refused for now.
    #[must_use]
    pub fn cleanup_policy(mut self, policy: CleanupPolicy) -> Self {
        self.cleanup_policy = policy;
        self
    }

    /// The partition log configuration these settings give.
    pub(crate) fn log_config(&self) -> LogConfig {
        LogConfig::default()
            .segment_bytes(self.segment_bytes)
            .segment_ms(self.segment_ms)
            .retention_bytes(self.retention_bytes)
            .retention_ms(self.retention_ms)
            // A batch must fit in a segment: with small segments the limit is the segment size.
            .max_batch_bytes(
                self.max_message_bytes
                    .min(u32::try_from(self.segment_bytes).unwrap_or(u32::MAX)),
            )
            .timestamp_type(self.timestamp_type)
    }

    /// Sets one setting by its Kafka property name (as `kafka-topics --config` takes them),
    /// checking the value's range at once, so that an error names the setting as it was
    /// given (`segment.bytes`, not the field `segment_bytes` that [`validate`](Self::validate)
    /// names):
    ///
    /// | name | values |
    /// | --- | --- |
    /// | `segment.bytes` | 4096 to 4294967295 |
    /// | `segment.ms` | `-1` (no time-based roll, the default) or 1 to `u64::MAX` |
    /// | `retention.bytes` | `-1` (no limit, the default) or 0 to `u64::MAX` |
    /// | `retention.ms` | `-1` (no limit, the default) or 1 to `u64::MAX` |
    /// | `max.message.bytes` | 1024 to 4294967295; above `segment.bytes`, that is the limit |
    /// | `message.timestamp.type` | `CreateTime` or `LogAppendTime` |
    /// | `cleanup.policy` | `delete` (`compact` is refused: compaction is not built yet) |
    ///
    /// As in Kafka, `-1` means no limit; no other negative number is taken.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`], with the Kafka name as its `field`, for an unknown name or a
    /// value that does not parse or is out of its range.
    ///
    /// # Examples
    /// ```
    /// use brooklet::{Error, TopicConfig};
    /// let config = TopicConfig::with_partitions(3).set("retention.ms", "86400000")?;
    /// assert!(config.properties().contains(&("retention.ms", "86400000".to_owned())));
    /// let unlimited = config.set("retention.ms", "-1")?; // no limit, as in Kafka
    /// assert!(unlimited.properties().contains(&("retention.ms", "-1".to_owned())));
    /// let refused = TopicConfig::default().set("segment.bytes", "10");
    /// assert!(matches!(refused, Err(Error::InvalidConfig { field: "segment.bytes", .. })));
    /// # Ok::<(), brooklet::Error>(())
    /// ```
    pub fn set(self, name: &str, value: &str) -> Result<Self> {
        const ANY_MS: &str = "a whole number of milliseconds from 1 to 18446744073709551615";
        let refused = |key: &'static str, allowed: &str| {
            Error::config(key, format!("{value:?} is not allowed: {key} takes {allowed}"))
        };
        let trimmed = value.trim();
        // A whole number within `range`.
        let number = |key: &'static str, range: std::ops::RangeInclusive<u64>, allowed: &str| {
            trimmed
                .parse::<u64>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| refused(key, allowed))
        };
        // `-1` (no limit, `None`) or a whole number within `range`.
        let limit = |key: &'static str, range: std::ops::RangeInclusive<u64>, allowed: &str| {
            if trimmed == "-1" {
                Ok(None)
            } else {
                number(key, range, allowed).map(Some)
            }
        };
        Ok(match name {
            "segment.bytes" => self.segment_bytes(number(
                "segment.bytes",
                MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES,
                &format!("a whole number of bytes from {MIN_SEGMENT_BYTES} to {MAX_SEGMENT_BYTES}"),
            )?),
            "segment.ms" => self.segment_ms(
                limit(
                    "segment.ms",
                    1..=u64::MAX,
                    &format!("-1 (no time-based roll, the default) or {ANY_MS}"),
                )?
                .map(Duration::from_millis),
            ),
            "retention.bytes" => self.retention_bytes(limit(
                "retention.bytes",
                0..=u64::MAX,
                "-1 (no limit, the default) or a whole number of bytes from 0 to 18446744073709551615",
            )?),
            "retention.ms" => self.retention_ms(
                limit(
                    "retention.ms",
                    1..=u64::MAX,
                    &format!("-1 (no limit, the default) or {ANY_MS}"),
                )?
                .map(Duration::from_millis),
            ),
            "max.message.bytes" => {
                let allowed = format!(
                    "a whole number of bytes from {MIN_BATCH_BYTES} to {} (above segment.bytes, segment.bytes is the limit)",
                    u32::MAX
                );
                let bytes = number(
                    "max.message.bytes",
                    u64::from(MIN_BATCH_BYTES)..=u64::from(u32::MAX),
                    &allowed,
                )?;
                self.max_message_bytes(u32::try_from(bytes).map_err(|_| refused("max.message.bytes", &allowed))?)
            }
            "message.timestamp.type" => match trimmed {
                "CreateTime" => self.timestamp_type(TimestampType::CreateTime),
                "LogAppendTime" => self.timestamp_type(TimestampType::LogAppendTime),
                _ => return Err(refused("message.timestamp.type", "CreateTime or LogAppendTime")),
            },
            "cleanup.policy" => match trimmed {
                "delete" => self.cleanup_policy(CleanupPolicy::Delete),
                "compact" => {
                    return Err(Error::config(
                        "cleanup.policy",
                        "\"compact\" is not supported: brooklet has no log compaction yet; cleanup.policy takes only delete",
                    ));
                }
                _ => return Err(refused("cleanup.policy", "only delete (compact is not supported yet)")),
            },
            // Listed by `properties`, but not a setting (as in Kafka, whose topic configs
            // leave it out): a count is raised with its own call, and never lowered.
            "partitions" => {
                return Err(Error::config(
                    "partitions",
                    "the partition count is not a setting: raise it with Broker::add_partitions \
                     (brooklet topics add-partitions); it cannot be lowered",
                ));
            }
            _ => {
                return Err(Error::config(
                    "config",
                    format!(
                        "unknown setting {name:?}; known: segment.bytes, segment.ms, retention.bytes, retention.ms, max.message.bytes, message.timestamp.type, cleanup.policy"
                    ),
                ));
            }
        })
    }

    /// The partition count (`partitions`), then every setting as a Kafka property name and
    /// value (`-1` for no limit), in the names [`set`](Self::set) takes. The count is not
    /// one of them: [`Broker::add_partitions`](crate::Broker::add_partitions) raises it.
    #[must_use]
    pub fn properties(&self) -> Vec<(&'static str, String)> {
        let ms = |d: Option<Duration>| d.map_or_else(|| "-1".to_owned(), |d| d.as_millis().to_string());
        vec![
            ("partitions", self.partitions.to_string()),
            ("segment.bytes", self.segment_bytes.to_string()),
            ("segment.ms", ms(self.segment_ms)),
            (
                "retention.bytes",
                self.retention_bytes.map_or_else(|| "-1".to_owned(), |b| b.to_string()),
            ),
            ("retention.ms", ms(self.retention_ms)),
            ("max.message.bytes", self.max_message_bytes.to_string()),
            (
                "message.timestamp.type",
                match self.timestamp_type {
                    TimestampType::CreateTime => "CreateTime",
                    TimestampType::LogAppendTime => "LogAppendTime",
                }
                .to_owned(),
            ),
            (
                "cleanup.policy",
                match self.cleanup_policy {
                    CleanupPolicy::Delete => "delete",
                    CleanupPolicy::Compact => "compact",
                }
                .to_owned(),
            ),
        ]
    }

    /// Checks every value.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        if self.partitions == 0 {
            return Err(Error::config("partitions", "a topic needs at least one partition"));
        }
        if self.partitions > MAX_PARTITIONS {
            return Err(Error::config(
                "partitions",
                format!("{} is more than the maximum of {MAX_PARTITIONS}", self.partitions),
            ));
        }
        if self.cleanup_policy == CleanupPolicy::Compact {
            return Err(Error::config("cleanup_policy", "compaction is not supported yet"));
        }
        // The topic table stores these in whole milliseconds: anything else would come back
        // different after a reopen (a value below 1 ms as 0, which no open accepts).
        for (field, age) in [("segment_ms", self.segment_ms), ("retention_ms", self.retention_ms)] {
            if let Some(age) = age
                && !whole_millis(age)
            {
                return Err(Error::config(
                    field,
                    format!("{age:?} is not a whole number of milliseconds from 1 to u64::MAX"),
                ));
            }
        }
        self.log_config().validate()
    }
}

/// Whether `age` is a whole number of milliseconds, at least one, that fits a `u64`.
fn whole_millis(age: Duration) -> bool {
    age.subsec_nanos().is_multiple_of(1_000_000) && u64::try_from(age.as_millis()).is_ok_and(|ms| ms >= 1)
}

/// Most partitions a topic may have: each is a directory with open files.
pub const MAX_PARTITIONS: u32 = 10_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafkas_rule() {
        for ok in ["a", "orders", "orders.v2", "A_b-C.9", &"x".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "a\\b",
            "a b",
            "é",
            "a\0b",
            &"x".repeat(250),
        ] {
            match validate_topic_name(bad) {
                Err(Error::InvalidTopicName { name, .. }) => assert_eq!(name, bad),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn config_validation_names_the_field() {
        let field = |c: TopicConfig| match c.validate() {
            Err(Error::InvalidConfig { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(TopicConfig::with_partitions(0)), "partitions");
        assert_eq!(
            field(TopicConfig::with_partitions(1).cleanup_policy(CleanupPolicy::Compact)),
            "cleanup_policy"
        );
        assert_eq!(
            field(TopicConfig::with_partitions(1).segment_bytes(10)),
            "segment_bytes"
        );
        assert_eq!(
            field(TopicConfig::with_partitions(1).max_message_bytes(10)),
            "max_batch_bytes"
        );
        assert!(TopicConfig::with_partitions(3).validate().is_ok());
    }

    #[test]
    fn set_names_the_kafka_key_and_the_allowed_values() {
        let refused = |name: &str, value: &str| match TopicConfig::default().set(name, value) {
            Err(e @ Error::InvalidConfig { .. }) => e.to_string(),
            other => panic!("{name}={value}: {other:?}"),
        };
        assert_eq!(
            refused("segment.bytes", "10"),
            "invalid configuration for `segment.bytes`: \"10\" is not allowed: segment.bytes takes a whole number of bytes from 4096 to 4294967295"
        );
        assert_eq!(
            refused("max.message.bytes", "100"),
            "invalid configuration for `max.message.bytes`: \"100\" is not allowed: max.message.bytes takes a whole number of bytes from 1024 to 4294967295 (above segment.bytes, segment.bytes is the limit)"
        );
        assert_eq!(
            refused("max.message.bytes", "4294967296"),
            refused("max.message.bytes", "100").replace("\"100\"", "\"4294967296\"")
        );
        assert_eq!(
            refused("retention.ms", "abc"),
            "invalid configuration for `retention.ms`: \"abc\" is not allowed: retention.ms takes -1 (no limit, the default) or a whole number of milliseconds from 1 to 18446744073709551615"
        );
        assert_eq!(
            refused("retention.ms", "0"),
            refused("retention.ms", "abc").replace("\"abc\"", "\"0\"")
        );
        assert_eq!(
            refused("retention.ms", "-2"),
            refused("retention.ms", "abc").replace("\"abc\"", "\"-2\"")
        );
        assert_eq!(
            refused("retention.bytes", "-5"),
            "invalid configuration for `retention.bytes`: \"-5\" is not allowed: retention.bytes takes -1 (no limit, the default) or a whole number of bytes from 0 to 18446744073709551615"
        );
        assert_eq!(
            refused("segment.ms", "0"),
            "invalid configuration for `segment.ms`: \"0\" is not allowed: segment.ms takes -1 (no time-based roll, the default) or a whole number of milliseconds from 1 to 18446744073709551615"
        );
        assert_eq!(
            refused("cleanup.policy", "compact"),
            "invalid configuration for `cleanup.policy`: \"compact\" is not supported: brooklet has no log compaction yet; cleanup.policy takes only delete"
        );
        assert_eq!(
            refused("message.timestamp.type", "Now"),
            "invalid configuration for `message.timestamp.type`: \"Now\" is not allowed: message.timestamp.type takes CreateTime or LogAppendTime"
        );
        // -1 is "no limit", as in Kafka: the same as never setting it.
        let config = TopicConfig::default()
            .set("retention.ms", "5")
            .and_then(|c| c.set("retention.ms", "-1"))
            .and_then(|c| c.set("retention.bytes", "-1"))
            .and_then(|c| c.set("segment.ms", "-1"))
            .unwrap();
        assert_eq!(config, TopicConfig::default());
        // Every value set takes passes validate(), at both ends of its range.
        for (name, value) in [
            ("segment.bytes", "4096"),
            ("segment.bytes", "4294967295"),
            ("max.message.bytes", "1024"),
            ("max.message.bytes", "4294967295"),
            ("retention.ms", "1"),
            ("retention.ms", "18446744073709551615"),
            ("segment.ms", "1"),
            ("retention.bytes", "0"),
            ("cleanup.policy", "delete"),
        ] {
            let config = TopicConfig::default().set(name, value).unwrap();
            assert!(config.validate().is_ok(), "{name}={value}");
        }
    }
}
