//! Where object bytes live, as a trait, so the local disk can be replaced by an upstream S3 service
//! (MinIO, Ceph, AWS) without touching the core or the front doors. A backend stores immutable blobs
//! named by UUIDs; it knows nothing of buckets, keys or callers, and rejects nothing but I/O failures
//! and writes past the given size limit.

use std::{io, pin::Pin, time::Duration};

use bytes::Bytes;
use futures_util::Stream;
use uuid::Uuid;

use crate::http::body::BoxError;

/// A body streamed in or out; memory stays flat whatever its length.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>;

/// One immutable blob: an object's bytes at one version, or one uploaded multipart part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKey {
    Object { id: Uuid, version: Uuid },
    Part { id: Uuid },
}

/// What a finished write measured.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub size: u64,
    pub md5: [u8; 16],
}

#[derive(Debug)]
pub enum WriteError {
    /// The body went past the limit (bucket's file size limit); nothing was kept.
    TooLarge,
    /// The client's body failed (disconnect, bad chunk signature); nothing was kept.
    Body(BoxError),
    Io(io::Error),
}

impl From<io::Error> for WriteError {
    fn from(e: io::Error) -> Self {
        WriteError::Io(e)
    }
}

#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// A fresh id for a new object (a random UUID). A backend may pick among random ids one that
    /// stores well beside objects created at the same moment.
    fn new_object_id(&self) -> Uuid {
        Uuid::new_v4()
    }

    /// Stores a new blob from `body`, durably (fsynced) before returning. Never overwrites: writing a
    /// key that exists fails. On any failure nothing of the blob remains.
    async fn write(
        &self,
        key: &BlobKey,
        body: ByteStream,
        limit: Option<u64>,
    ) -> Result<Written, WriteError>;

    /// Stores a new blob made of `parts` one after the other (a completed multipart upload), durably
    /// before returning; fails with `TooLarge` past `limit`. Computes no MD5: a multipart object's
    /// ETag comes from its parts'. Never overwrites; on any failure nothing of the blob remains.
    async fn concat(
        &self,
        key: &BlobKey,
        parts: &[BlobKey],
        limit: Option<u64>,
    ) -> Result<u64, WriteError>;

    /// Streams a blob, or `len` bytes of it from `start` when `range` is `(start, len)`.
    async fn read(&self, key: &BlobKey, range: Option<(u64, u64)>) -> io::Result<ByteStream>;

    /// Removes a blob; removing one that is gone is not an error.
    async fn remove(&self, key: &BlobKey) -> io::Result<()>;

    /// Blobs last written at least `age` ago (candidates for orphan cleanup).
    async fn older_than(&self, age: Duration) -> io::Result<Vec<BlobKey>>;
}
