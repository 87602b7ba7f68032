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

/// The backend cannot serve now — unreachable, refusing doska's credentials, its bucket missing, full
/// — though the request itself was fine: the front doors answer 503 with this message, and a later
/// request may succeed. Travels inside an [`io::Error`] (see [`unavailable`]).
#[derive(Debug)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

/// An [`io::Error`] saying the backend is unavailable, with why.
pub fn unavailable(why: impl Into<String>) -> io::Error {
    io::Error::other(Unavailable(why.into()))
}

/// Why the backend is unavailable, when `e` says so.
pub fn unavailable_reason(e: &io::Error) -> Option<&str> {
    e.get_ref()?
        .downcast_ref::<Unavailable>()
        .map(|u| u.0.as_str())
}

/// The pieces of `parts` (each blob with its size, in order) that the range `(start, len)` of their
/// concatenation touches (all of them without a range): each blob with `(offset in it, length)`.
pub fn pieces(parts: &[(BlobKey, u64)], range: Option<(u64, u64)>) -> Vec<(BlobKey, (u64, u64))> {
    let total: u64 = parts.iter().map(|(_, size)| size).sum();
    let (start, len) = range.unwrap_or((0, total));
    let end = start.saturating_add(len).min(total);
    let mut pieces = Vec::new();
    let mut offset = 0u64;
    for (key, size) in parts {
        let (from, to) = (offset.max(start), (offset + size).min(end));
        if from < to {
            pieces.push((*key, (from - offset, to - from)));
        }
        offset += size;
    }
    pieces
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

/// The bytes of a multipart object are never joined: each part is written once, as its own blob
/// ([`BlobKey::Part`]), and the object's row lists its parts, which [`Backend::read_parts`] reads as
/// one. The core never asks a backend to join blobs.
///
/// A backend over an upstream S3 service (MinIO, Ceph, AWS) fits this without copying bytes: `write`
/// of a part becomes an upstream object (or an upstream UploadPart), `read_parts` ranged GETs over
/// them. To complete multipart natively, so that the upstream holds one object, it would get one
/// more method, called by the core after the check and before the commit: upstream
/// CompleteMultipartUpload over the parts' upstream part ETags (the service joins them in place),
/// returning one [`BlobKey::Object`] blob; the core would then commit the object as that one blob
/// (no layout) and remove the part blobs after the commit, exactly as it does for a single PUT. The
/// local disk has no such in-place join, which is why it keeps the parts.
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

    /// [`Backend::write`] of a body whose length the client declared (`len`), so that a backend may
    /// pass it on in one streamed request instead of buffered pieces. A body that turns out longer
    /// or shorter than declared fails like a broken one, and nothing is kept.
    async fn write_sized(
        &self,
        key: &BlobKey,
        body: ByteStream,
        limit: Option<u64>,
        len: Option<u64>,
    ) -> Result<Written, WriteError> {
        let _ = len;
        self.write(key, body, limit).await
    }

    /// Stores a new blob whose bytes are all in hand (a small body), durably before returning, with
    /// the same promises as [`Backend::write`]. A backend may do it in fewer steps than a stream
    /// needs.
    async fn write_small(&self, key: &BlobKey, bytes: Bytes) -> io::Result<()> {
        let body: ByteStream = Box::pin(futures_util::stream::once(async move { Ok(bytes) }));
        match self.write(key, body, None).await {
            Ok(_) => Ok(()),
            Err(WriteError::Io(e)) => Err(e),
            Err(WriteError::TooLarge) => Err(io::Error::other("no limit was given")),
            Err(WriteError::Body(e)) => Err(io::Error::other(e)),
        }
    }

    /// Whether [`Backend::rename`] is cheap (a local rename), so the core may write a small body
    /// ahead of its row under a guessed name and rename it when the guess was wrong.
    fn renames(&self) -> bool {
        false
    }

    /// Gives blob `from` the name `to`, durably (the new name's folder entry synced) before
    /// returning. Called only when [`Backend::renames`] says so.
    async fn rename(&self, from: &BlobKey, to: &BlobKey) -> io::Result<()> {
        let _ = (from, to);
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Streams a blob, or `len` bytes of it from `start` when `range` is `(start, len)`.
    async fn read(&self, key: &BlobKey, range: Option<(u64, u64)>) -> io::Result<ByteStream>;

    /// Streams the concatenation of `parts` (each blob with its size, in order) — a completed multipart
    /// upload, which stays as its part blobs — or `len` bytes of it from `start` when `range` is
    /// `(start, len)`; a range may span parts. Every blob the range touches is opened before this
    /// returns (a `NotFound` here means the object changed: read its row again), so a read that has
    /// started keeps its bytes when an overwrite removes them meanwhile.
    async fn read_parts(
        &self,
        parts: &[(BlobKey, u64)],
        range: Option<(u64, u64)>,
    ) -> io::Result<ByteStream>;

    /// Removes a blob; removing one that is gone is not an error.
    async fn remove(&self, key: &BlobKey) -> io::Result<()>;

    /// Blobs last written at least `age` ago (candidates for orphan cleanup).
    async fn older_than(&self, age: Duration) -> io::Result<Vec<BlobKey>>;

    /// Removes writes left incomplete (by a crash) that the backend keeps apart from blobs, untouched
    /// for at least `age` — an S3 service's multipart uploads never completed nor aborted; returns
    /// how many. The local disk has none: a file being written is removed by its writer or, after a
    /// crash, is an orphan blob like any other.
    async fn sweep_incomplete(&self, _age: Duration) -> io::Result<usize> {
        Ok(0)
    }
}
