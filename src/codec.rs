//! Typed keys and values: an [`Encoder`] turns an application's values into record bytes
//! and a [`Decoder`] turns bytes back into values, as Kafka's `Serializer` and
//! `Deserializer` do; a [`Codec`] is both. [`Json`] (serde_json), [`Bincode`] (bincode 2,
//! serde) and [`Utf8`] are provided; [`TypedProducer`] sends typed records (it needs only
//! encoders, so a type that is only `Serialize` can be sent) and [`TypedConsumer`] receives
//! them (only decoders: a type that is only `Deserialize` can be consumed), reporting a
//! record that does not decode as that record's error ([`PoisonRecord`]).

use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::consumer::{Consumer, ConsumerRecord};
use crate::error::{Error, Result};
use crate::producer::{BatchMetadata, Delivery, Producer, ProducerRecord, RecordMetadata};

/// Converts values of `T` to record bytes (Kafka's `Serializer`). [`TypedProducer`] uses
/// one for keys and one for values.
pub trait Encoder<T>: Send + Sync {
    /// Encodes a value.
    ///
    /// # Errors
    /// [`Error::Serialization`] when the value cannot be encoded.
    fn encode(&self, value: &T) -> Result<Bytes>;
}

/// Converts record bytes to values of `T` (Kafka's `Deserializer`). [`TypedConsumer`] uses
/// one for keys and one for values.
pub trait Decoder<T>: Send + Sync {
    /// Decodes a value; a consumer reports failures per record (a poison message).
    ///
    /// # Errors
    /// [`Error::Serialization`] when the bytes are not a valid `T`.
    fn decode(&self, bytes: &[u8]) -> Result<T>;
}

/// Both directions for `T` (Kafka's `Serde`): implemented for every type that is an
/// [`Encoder<T>`] and a [`Decoder<T>`], for code that takes one value to write and read.
///
/// # Examples
/// ```
/// use brooklet::{Bincode, Codec, Decoder, Encoder, Json};
/// fn round_trip<C: Codec<Vec<u32>>>(codec: &C) -> brooklet::Result<Vec<u32>> {
///     codec.decode(&codec.encode(&vec![1, 2, 3])?)
/// }
/// assert_eq!(round_trip(&Json)?, vec![1, 2, 3]);
/// assert_eq!(round_trip(&Bincode)?, vec![1, 2, 3]);
/// # Ok::<(), brooklet::Error>(())
/// ```
pub trait Codec<T>: Encoder<T> + Decoder<T> {}

impl<T, C: Encoder<T> + Decoder<T>> Codec<T> for C {}

/// JSON via serde_json: what the Kafka tutorials send. Encodes any `Serialize` type and
/// decodes any `DeserializeOwned` one.
///
/// JSON has no NaN or infinity: serde_json encodes a non-finite `f32`/`f64` as `null`
/// without an error, so such a record is sent, and its consumer, expecting a number, gets
/// a [`PoisonRecord`] (an `Option<f64>` field reads back as `None`). Check floats before
/// sending, or use [`Bincode`], which keeps them.
///
/// ```
/// use brooklet::{Decoder, Encoder, Json};
/// assert_eq!(&Json.encode(&f64::NAN)?[..], b"null");
/// assert!(Decoder::<f64>::decode(&Json, b"null").is_err());
/// # Ok::<(), brooklet::Error>(())
/// ```
///
/// # Examples
/// ```
/// use brooklet::{Decoder, Encoder, Json};
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Order { id: u32, amount: f64 }
/// let bytes = Json.encode(&Order { id: 1, amount: 42.5 })?;
/// assert_eq!(&bytes[..], br#"{"id":1,"amount":42.5}"#);
/// let back: Order = Json.decode(&bytes)?;
/// assert_eq!(back, Order { id: 1, amount: 42.5 });
/// # Ok::<(), brooklet::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl<T: Serialize> Encoder<T> for Json {
    fn encode(&self, value: &T) -> Result<Bytes> {
        serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(|e| Error::Serialization {
                reason: format!("JSON encode: {e}"),
            })
    }
}

impl<T: DeserializeOwned> Decoder<T> for Json {
    fn decode(&self, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| Error::Serialization {
            reason: format!("JSON decode: {e}"),
        })
    }
}

/// UTF-8 text as-is, as Kafka's `StringSerializer`: the codec for string keys, so that a
/// key lands on the partition Kafka would choose for it (JSON would add quotes).
///
/// # Examples
/// ```
/// use brooklet::{Decoder, Encoder, Utf8};
/// assert_eq!(&Utf8.encode(&"alice".to_string())?[..], b"alice");
/// assert!(Decoder::<String>::decode(&Utf8, &[0xff]).is_err());
/// # Ok::<(), brooklet::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8;

impl Encoder<String> for Utf8 {
    fn encode(&self, value: &String) -> Result<Bytes> {
        Ok(Bytes::copy_from_slice(value.as_bytes()))
    }
}

impl Decoder<String> for Utf8 {
    fn decode(&self, bytes: &[u8]) -> Result<String> {
        String::from_utf8(bytes.to_vec()).map_err(|e| Error::Serialization {
            reason: format!("UTF-8 decode: {e}"),
        })
    }
}

/// Compact binary via bincode 2 (standard configuration), for values only Rust reads.
/// Decoding is limited to 16 MiB, so hostile bytes cannot make it allocate without bound.
/// The limit counts the decoded value's size in memory (a `u64` is 8 bytes however few it
/// took on the wire), and encoding has none: a value of more than 16 MiB in memory (a
/// `Vec<u64>` of 2.5 million small numbers encodes to 2.5 MB) is sent but fails to decode
/// (its consumer gets a [`PoisonRecord`](crate::PoisonRecord)); the default 1 MiB
/// `max_message_bytes` keeps every record below it. But bincode sizes a string or byte buffer from its length prefix before reading it, so
/// a few hostile bytes can make one decode allocate up to that limit (briefly: the decode
/// then fails). bincode has no nesting limit: a recursive type (one holding a `Box` or
/// `Vec` of itself) decoded from hostile bytes nests as deep as the bytes say, and a deep
/// enough nesting overflows the thread's stack; decode such types from untrusted sources
/// with [`Json`], which refuses more than 128 levels. Nor does the limit bound the time of a
/// sequence of a type that takes no bytes on the wire (`()`, a unit struct, `PhantomData`):
/// a `Vec<()>` decodes as many elements as its length prefix says (ten hostile bytes can ask
/// for 2^64, a loop that does not end), allocating nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bincode;

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ 16 << 20 }>()
}

impl<T: Serialize> Encoder<T> for Bincode {
    fn encode(&self, value: &T) -> Result<Bytes> {
        bincode::serde::encode_to_vec(value, bincode_config())
            .map(Bytes::from)
            .map_err(|e| Error::Serialization {
                reason: format!("bincode encode: {e}"),
            })
    }
}

impl<T: DeserializeOwned> Decoder<T> for Bincode {
    fn decode(&self, bytes: &[u8]) -> Result<T> {
        let (value, used) =
            bincode::serde::decode_from_slice(bytes, bincode_config()).map_err(|e| Error::Serialization {
                reason: format!("bincode decode: {e}"),
            })?;
        if used != bytes.len() {
            return Err(Error::Serialization {
                reason: format!("bincode decode: {} trailing bytes", bytes.len() - used),
            });
        }
        Ok(value)
    }
}

/// `error` with the part of the record it concerns (`"key"` or `"value"`) before a codec's
/// reason: a codec serving both cannot say which it was given.
fn in_part(part: &str, error: Error) -> Error {
    match error {
        Error::Serialization { reason } => Error::Serialization {
            reason: format!("{part}: {reason}"),
        },
        other => other,
    }
}

/// A producer of typed records: keys of `K` encoded with `KC`, values of `V` with `VC`
/// (any [`Encoder`]s: sending needs no way back from bytes).
///
/// # Examples
/// ```
/// use brooklet::{Broker, Json, ProducerConfig, TopicConfig, TypedProducer};
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Order { id: u32, amount: f64 }
///
/// let broker = Broker::temporary()?;
/// broker.create_topic("orders", TopicConfig::with_partitions(3))?;
/// let orders: TypedProducer<String, Order> = TypedProducer::new(broker.producer(ProducerConfig::default()), Json, Json);
/// let meta = orders.send("orders", Some(&"user-1".to_string()), &Order { id: 1, amount: 42.5 })?;
/// assert_eq!(meta.offset, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TypedProducer<K, V, KC = Json, VC = Json> {
    producer: Producer,
    key_codec: KC,
    value_codec: VC,
    _types: PhantomData<fn(&K, &V)>,
}

impl<K, V, KC: Encoder<K>, VC: Encoder<V>> TypedProducer<K, V, KC, VC> {
    /// Wraps `producer` with the codecs for keys and values.
    pub fn new(producer: Producer, key_codec: KC, value_codec: VC) -> Self {
        TypedProducer {
            producer,
            key_codec,
            value_codec,
            _types: PhantomData,
        }
    }

    /// The untyped producer underneath (for `flush`, `metrics`, raw sends).
    #[must_use]
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Encodes `key` and `value` into a [`ProducerRecord`] for `topic` without sending it:
    /// add what the typed sends do not take (a partition, headers, a timestamp) and send it
    /// through [`producer()`](Self::producer). A `value` of `None` makes a tombstone: the key
    /// with no value, which Kafka's compacted topics and their readers take as "this key is
    /// deleted".
    ///
    /// # Errors
    /// [`Error::Serialization`] if the key or the value does not encode (its reason starts
    /// with `key: ` or `value: `).
    ///
    /// # Examples
    /// ```
    /// use brooklet::{Broker, Json, ProducerConfig, TopicConfig, TypedProducer, Utf8};
    /// #[derive(serde::Serialize)]
    /// struct Order { id: u32, amount: f64 }
    ///
    /// let broker = Broker::temporary()?;
    /// broker.create_topic("orders", TopicConfig::with_partitions(3))?;
    /// let orders: TypedProducer<String, Order, Utf8, Json> =
    ///     TypedProducer::new(broker.producer(ProducerConfig::default()), Utf8, Json);
    /// let user = "user-1".to_string();
    /// let record = orders
    ///     .encode("orders", Some(&user), Some(&Order { id: 1, amount: 42.5 }))?
    ///     .partition(2)
    ///     .header("trace-id", "4bf92f35")
    ///     .timestamp(1_700_000_000_000);
    /// let meta = orders.producer().send(record)?;
    /// assert_eq!((meta.partition, meta.offset, meta.timestamp), (2, 0, 1_700_000_000_000));
    /// # Ok::<(), brooklet::Error>(())
    /// ```
    pub fn encode(&self, topic: impl Into<Arc<str>>, key: Option<&K>, value: Option<&V>) -> Result<ProducerRecord> {
        let mut record = ProducerRecord::new(topic);
        if let Some(key) = key {
            record = record.key(self.key_codec.encode(key).map_err(|e| in_part("key", e))?);
        }
        if let Some(value) = value {
            record = record.value(self.value_codec.encode(value).map_err(|e| in_part("value", e))?);
        }
        Ok(record)
    }

    /// Encodes and sends, blocking as [`Producer::send`].
    ///
    /// # Errors
    /// [`Error::Serialization`] (nothing is sent), or as [`Producer::send`].
    pub fn send(&self, topic: &str, key: Option<&K>, value: &V) -> Result<RecordMetadata> {
        self.producer.send(self.encode(topic, key, Some(value))?)
    }

    /// Sends a tombstone for `key` (the key with no value: "this key is deleted"), blocking
    /// as [`Producer::send`]. It goes to the key's partition, as the key's other records do.
    ///
    /// # Errors
    /// [`Error::Serialization`] (nothing is sent), or as [`Producer::send`].
    pub fn send_tombstone(&self, topic: &str, key: &K) -> Result<RecordMetadata> {
        self.producer.send(self.encode(topic, Some(key), None)?)
    }

    /// Encodes and queues, as [`Producer::send_async`].
    ///
    /// # Errors
    /// [`Error::Serialization`] at once; delivery errors through the [`Delivery`].
    pub fn send_async(&self, topic: &str, key: Option<&K>, value: &V) -> Result<Delivery> {
        Ok(self.producer.send_async(self.encode(topic, key, Some(value))?))
    }

    /// Encodes and queues, as [`Producer::send_with_callback`]: `callback` runs with the
    /// delivery's outcome.
    ///
    /// # Errors
    /// [`Error::Serialization`] at once, and then nothing is queued and `callback` is not
    /// run (as Kafka's `send` throws a `SerializationException` instead of calling back).
    pub fn send_with_callback(
        &self,
        topic: &str,
        key: Option<&K>,
        value: &V,
        callback: impl FnOnce(Result<RecordMetadata>) + Send + 'static,
    ) -> Result<()> {
        self.producer
            .send_with_callback(self.encode(topic, key, Some(value))?, callback);
        Ok(())
    }

    /// Encodes every `(key, value)` and sends them to `topic` with one
    /// [`Producer::send_batch`]: one write per partition, offsets in the order given.
    ///
    /// # Errors
    /// [`Error::Serialization`] if any key or value does not encode: then nothing of the
    /// call is sent. Otherwise as [`Producer::send_batch`].
    ///
    /// # Examples
    /// ```
    /// use brooklet::{Broker, Json, ProducerConfig, TopicConfig, TypedProducer};
    ///
    /// let broker = Broker::temporary()?;
    /// broker.create_topic("scores", TopicConfig::with_partitions(2))?;
    /// let scores: TypedProducer<String, u32> = TypedProducer::new(broker.producer(ProducerConfig::default()), Json, Json);
    /// let (ann, bob) = ("ann".to_string(), "bob".to_string());
    /// let metas = scores.send_batch("scores", [(Some(&ann), &3), (Some(&bob), &5), (Some(&ann), &8)])?;
    /// assert_eq!(metas.len(), 3);
    /// # Ok::<(), brooklet::Error>(())
    /// ```
    pub fn send_batch<'a, I>(&self, topic: &str, items: I) -> Result<BatchMetadata>
    where
        I: IntoIterator<Item = (Option<&'a K>, &'a V)>,
        K: 'a,
        V: 'a,
    {
        let topic: Arc<str> = Arc::from(topic);
        let records = items
            .into_iter()
            .map(|(key, value)| self.encode(Arc::clone(&topic), key, Some(value)))
            .collect::<Result<Vec<_>>>()?;
        self.producer.send_batch(&records)
    }
}

impl<K, V, KC, VC> std::fmt::Debug for TypedProducer<K, V, KC, VC> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedProducer")
            .field("producer", &self.producer)
            .finish_non_exhaustive()
    }
}

/// A consumed record with its key and value decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedRecord<K, V> {
    /// The decoded key (`None` if the record had none).
    pub key: Option<K>,
    /// The decoded value (`None` for a tombstone).
    pub value: Option<V>,
    /// The record as stored: topic, partition, offset, timestamp, headers, raw bytes.
    pub raw: ConsumerRecord,
}

/// A consumed record whose key or value did not decode: a poison message. It carries the
/// raw record, so the application can forward it to a dead-letter topic and go on.
#[derive(Debug)]
pub struct PoisonRecord {
    /// The record as stored.
    pub raw: ConsumerRecord,
    /// Why it did not decode ([`Error::Serialization`], whose reason starts with `key: ` or
    /// `value: `, the part that did not decode).
    pub error: Error,
}

impl std::fmt::Display for PoisonRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "record {}-{}@{} does not decode: {}",
            self.raw.topic(),
            self.raw.partition(),
            self.raw.offset(),
            self.error
        )
    }
}

impl std::error::Error for PoisonRecord {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// A consumer of typed records: keys decoded with `KC`, values with `VC` (any [`Decoder`]s:
/// the types need only be `Deserialize` for [`Json`] and [`Bincode`]). A record that
/// fails to decode comes back as a [`PoisonRecord`] in its place; the rest of the poll is
/// unaffected, and the position moves past it like any other record.
///
/// # Examples
/// ```
/// use brooklet::{Broker, ConsumerConfig, Json, OffsetReset, ProducerConfig, ProducerRecord, TopicConfig, TypedConsumer};
/// use std::time::Duration;
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Order { id: u32, amount: f64 }
///
/// let broker = Broker::temporary()?;
/// broker.create_topic("orders", TopicConfig::with_partitions(1))?;
/// let producer = broker.producer(ProducerConfig::default());
/// producer.send(ProducerRecord::new("orders").value(r#"{"id":1,"amount":42.5}"#))?;
/// producer.send(ProducerRecord::new("orders").value("not json"))?;
///
/// let consumer = broker.consumer(ConsumerConfig::group("billing").auto_offset_reset(OffsetReset::Earliest))?;
/// let mut orders: TypedConsumer<String, Order> = TypedConsumer::new(consumer, Json, Json);
/// orders.consumer_mut().subscribe(&["orders"])?;
/// let polled = orders.poll(Duration::from_secs(5))?;
/// assert_eq!(polled.len(), 2);
/// assert_eq!(polled[0].as_ref().map(|r| r.value.as_ref()).ok(), Some(Some(&Order { id: 1, amount: 42.5 })));
/// let poison = polled[1].as_ref().err().map(|p| p.raw.offset());
/// assert_eq!(poison, Some(1)); // send it to a dead-letter topic
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TypedConsumer<K, V, KC = Json, VC = Json> {
    consumer: Consumer,
    key_codec: KC,
    value_codec: VC,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V, KC: Decoder<K>, VC: Decoder<V>> TypedConsumer<K, V, KC, VC> {
    /// Wraps `consumer` with the codecs for keys and values.
    pub fn new(consumer: Consumer, key_codec: KC, value_codec: VC) -> Self {
        TypedConsumer {
            consumer,
            key_codec,
            value_codec,
            _types: PhantomData,
        }
    }

    /// The untyped consumer (for `seek`, `pause`, `commit_offsets`, …).
    pub fn consumer_mut(&mut self) -> &mut Consumer {
        &mut self.consumer
    }

    /// As [`Consumer::wakeup_handle`]: a handle another thread uses to interrupt `poll`.
    #[must_use]
    pub fn wakeup_handle(&self) -> crate::WakeupHandle {
        self.consumer.wakeup_handle()
    }

    /// As [`Consumer::subscribe`].
    ///
    /// # Errors
    /// As [`Consumer::subscribe`].
    pub fn subscribe<S: AsRef<str>>(&mut self, topics: &[S]) -> Result<()> {
        self.consumer.subscribe(topics)
    }

    /// As [`Consumer::commit`].
    ///
    /// # Errors
    /// As [`Consumer::commit`].
    pub fn commit(&mut self) -> Result<()> {
        self.consumer.commit()
    }

    /// Unwraps the untyped consumer.
    pub fn into_inner(self) -> Consumer {
        self.consumer
    }

    /// Decodes one record.
    ///
    /// # Errors
    /// A [`PoisonRecord`] (boxed: it holds the whole record) if its key or value does not decode.
    pub fn decode(&self, raw: ConsumerRecord) -> Result<TypedRecord<K, V>, Box<PoisonRecord>> {
        let key = match raw.key().map(|k| self.key_codec.decode(k)).transpose() {
            Ok(k) => k,
            Err(error) => {
                return Err(Box::new(PoisonRecord {
                    raw,
                    error: in_part("key", error),
                }));
            }
        };
        let value = match raw.value().map(|v| self.value_codec.decode(v)).transpose() {
            Ok(v) => v,
            Err(error) => {
                return Err(Box::new(PoisonRecord {
                    raw,
                    error: in_part("value", error),
                }));
            }
        };
        Ok(TypedRecord { key, value, raw })
    }

    /// Polls as [`Consumer::poll`] and decodes each record.
    ///
    /// # Errors
    /// As [`Consumer::poll`]; decoding failures are per record, not errors of the poll.
    #[allow(clippy::type_complexity)]
    pub fn poll(&mut self, timeout: std::time::Duration) -> Result<Vec<Result<TypedRecord<K, V>, Box<PoisonRecord>>>> {
        let records = self.consumer.poll(timeout)?;
        Ok(records.into_iter().map(|r| self.decode(r)).collect())
    }
}

impl<K, V, KC, VC> std::fmt::Debug for TypedConsumer<K, V, KC, VC> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedConsumer")
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Order {
        id: u32,
        user: String,
        amount: f64,
    }

    #[test]
    fn both_codecs_round_trip_and_reject_garbage() {
        let order = Order {
            id: 7,
            user: "ana".into(),
            amount: 12.5,
        };
        for codec in [&Json as &dyn Codec<Order>, &Bincode as &dyn Codec<Order>] {
            let bytes = codec.encode(&order).unwrap();
            assert_eq!(codec.decode(&bytes).unwrap(), order);
            assert!(matches!(
                codec.decode(b"\xff\xff not an order"),
                Err(Error::Serialization { .. })
            ));
        }
    }
}
