//! Records, headers and the on-disk batch format.
//!
//! A [`Record`] is what an application appends: an optional key, an optional value
//! (`None` is a tombstone), ordered [`Header`]s and an optional timestamp. Once stored it
//! comes back as a [`LogRecord`], which adds its offset and the timestamp it was stored with.
//! Payloads are [`bytes::Bytes`], so a read hands out slices of one buffer without copying.
//!
//! The byte layout of a batch is documented in [`batch`].

pub mod batch;
pub(crate) mod varint;

use bytes::Bytes;

pub use batch::{Compression, HeaderRefs, RecordBatch, RecordRef, RecordRefs, Records, TimestampType};

/// Now, as a record timestamp: milliseconds since the Unix epoch (0 for a clock before it).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What a record's key, value or header value can be given as.
///
/// Owned buffers are taken without a copy: [`Bytes`], `BytesMut`, `Vec<u8>`, `String`,
/// `Box<[u8]>`, `Box<str>`, and a `&Bytes` (a reference-count increment). Borrowed bytes are
/// copied: `&str`, `&[u8]`, `&[u8; N]` (a `b"…"` literal), `&String`, `&Vec<u8>` and
/// `[u8; N]`; a `Cow<str>` or `Cow<[u8]>` is taken or copied as it holds. So `.key(user.id.as_str())` works as written. (String literals are
/// copied too: a few bytes each; to store a large static payload without a copy, pass
/// `Bytes::from_static`.)
///
/// # Examples
/// ```
/// use brooklet::Record;
/// let id = String::from("user-1");
/// let r = Record::new().key(id.as_str()).value(b"{}").header("trace", vec![1, 2]);
/// assert_eq!(r.key_bytes().map(|k| k.as_ref()), Some(&b"user-1"[..]));
/// ```
pub trait IntoPayload {
    /// The bytes, as stored.
    fn into_payload(self) -> Bytes;
}

/// Owned buffers, taken as they are.
macro_rules! owned_payload {
    ($($t:ty),*) => {$(
        impl IntoPayload for $t {
            #[inline]
            fn into_payload(self) -> Bytes {
                Bytes::from(self)
            }
        }
    )*};
}
owned_payload!(Bytes, bytes::BytesMut, Vec<u8>, String, Box<[u8]>);

/// Borrowed bytes, copied.
macro_rules! borrowed_payload {
    ($($t:ty),*) => {$(
        impl IntoPayload for $t {
            #[inline]
            fn into_payload(self) -> Bytes {
                Bytes::copy_from_slice(AsRef::<[u8]>::as_ref(&self))
            }
        }
    )*};
}
borrowed_payload!(&str, &[u8], &String, &Vec<u8>);

/// A `Cow`: its owned buffer taken, its borrowed bytes copied.
macro_rules! cow_payload {
    ($($t:ty),*) => {$(
        impl IntoPayload for std::borrow::Cow<'_, $t> {
            #[inline]
            fn into_payload(self) -> Bytes {
                match self {
                    std::borrow::Cow::Borrowed(b) => b.into_payload(),
                    std::borrow::Cow::Owned(o) => o.into_payload(),
                }
            }
        }
    )*};
}
cow_payload!(str, [u8]);

impl IntoPayload for Box<str> {
    #[inline]
    fn into_payload(self) -> Bytes {
        Bytes::from(self.into_string())
    }
}

impl IntoPayload for &Bytes {
    #[inline]
    fn into_payload(self) -> Bytes {
        self.clone()
    }
}

impl<const N: usize> IntoPayload for &[u8; N] {
    #[inline]
    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl<const N: usize> IntoPayload for [u8; N] {
    #[inline]
    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(&self)
    }
}

/// A record header: a string name and a byte value. Names need not be unique; order is kept.
///
/// Unlike Kafka's, a header value is never null (Kafka's Java client allows a `null` header
/// value; its wire format writes length −1): use an empty value, or a header that is absent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    /// The header's name.
    pub name: String,
    /// The header's value.
    pub value: Bytes,
}

impl Header {
    /// A header from anything convertible into a name and a value.
    ///
    /// # Examples
    /// ```
    /// let h = brooklet::Header::new("source", "api");
    /// assert_eq!(h.value.as_ref(), b"api");
    /// ```
    pub fn new(name: impl Into<String>, value: impl IntoPayload) -> Self {
        Header {
            name: name.into(),
            value: value.into_payload(),
        }
    }
}

/// A record to append.
///
/// # Examples
/// ```
/// use brooklet::Record;
/// let r = Record::new().key("user-1").value(r#"{"amount": 42.5}"#).header("source", "api");
/// assert_eq!(r.key_bytes().map(|k| k.as_ref()), Some(&b"user-1"[..]));
/// assert!(r.timestamp_ms().is_none()); // stamped with the append time
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
    pub(crate) headers: Vec<Header>,
    pub(crate) timestamp: Option<i64>,
}

/// A `Record` is its own record: internal appends take any `&[impl AsRef<Record>]`, so a
/// [`ProducerRecord`](crate::ProducerRecord) batch is encoded where it lies.
impl AsRef<Record> for Record {
    fn as_ref(&self) -> &Record {
        self
    }
}

impl Record {
    /// An empty record: no key, no value (a tombstone until a value is set), no headers.
    #[must_use]
    #[inline]
    pub fn new() -> Self {
        Record::default()
    }

    /// Sets the key. Records with the same key keep their order within a partition.
    #[must_use]
    #[inline]
    pub fn key(mut self, key: impl IntoPayload) -> Self {
        self.key = Some(key.into_payload());
        self
    }

    /// Sets the value. A record without a value is a tombstone.
    #[must_use]
    #[inline]
    pub fn value(mut self, value: impl IntoPayload) -> Self {
        self.value = Some(value.into_payload());
        self
    }

    /// Appends a header; headers keep their order and names may repeat.
    #[must_use]
    #[inline]
    pub fn header(mut self, name: impl Into<String>, value: impl IntoPayload) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    /// Sets the timestamp in milliseconds since the Unix epoch (Kafka's CreateTime).
    /// Without one, the append time is used. A negative timestamp is refused when the record
    /// is sent or appended, with [`Error::InvalidTimestamp`](crate::Error::InvalidTimestamp)
    /// and nothing written, as Kafka's `ProducerRecord` refuses one.
    #[must_use]
    #[inline]
    pub fn timestamp(mut self, ms: i64) -> Self {
        self.timestamp = Some(ms);
        self
    }

    /// The key, if any.
    #[must_use]
    #[inline]
    pub fn key_bytes(&self) -> Option<&Bytes> {
        self.key.as_ref()
    }

    /// The value, if any (`None` for a tombstone).
    #[must_use]
    #[inline]
    pub fn value_bytes(&self) -> Option<&Bytes> {
        self.value.as_ref()
    }

    /// The headers, in order.
    #[must_use]
    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The timestamp set by the caller, if any.
    #[must_use]
    #[inline]
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.timestamp
    }
}

/// A record as stored in a partition log, with its offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// The record's offset in its partition.
    pub offset: u64,
    /// Milliseconds since the Unix epoch: the producer's timestamp or the append time.
    pub timestamp: i64,
    /// The key, if any.
    pub key: Option<Bytes>,
    /// The value; `None` is a tombstone.
    pub value: Option<Bytes>,
    /// The headers, in the order they were appended.
    pub headers: Vec<Header>,
}
