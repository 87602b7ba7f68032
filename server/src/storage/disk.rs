//! The local-disk backend: object bytes as files under the storage dir, named only by UUIDs (an object's
//! id and version, or an upload part's id) — never by a client's key, so nothing a client sends can
//! reach a path outside the dir. A write goes to its own new file, made durable (file and folder entry)
//! before it returns; it never replaces an existing file. Rejects nothing itself: the core decides
//! what may be written.

use std::{
    io,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use std::io::Write;
use uuid::Uuid;

use super::backend::{Backend, BlobKey, ByteStream, WriteError, Written};
use super::dir_sync;

/// Files live under `<dir>/data/<first two hex digits>/`, so no folder grows past a few thousand entries
/// per million objects.
pub struct Disk {
    dir: PathBuf,
}

impl Disk {
    pub fn new(dir: impl Into<PathBuf>) -> Disk {
        Disk { dir: dir.into() }
    }

    /// A blob's file name (also its object name under an S3 backend's `data/<2 hex>/`).
    pub(super) fn file_name(key: &BlobKey) -> String {
        match key {
            BlobKey::Object { id, version } => format!("{id}.{version}"),
            BlobKey::Part { id } => format!("{id}.part"),
        }
    }

    fn shard(&self, key: &BlobKey) -> PathBuf {
        let id = match key {
            BlobKey::Object { id, .. } | BlobKey::Part { id } => id,
        };
        self.dir.join("data").join(&id.simple().to_string()[..2])
    }

    fn path(&self, key: &BlobKey) -> PathBuf {
        self.shard(key).join(Self::file_name(key))
    }

    /// The blob a file name stands for, if it is one of ours.
    pub(super) fn parse_name(name: &str) -> Option<BlobKey> {
        let (a, b) = name.split_once('.')?;
        let id = Uuid::parse_str(a).ok()?;
        if b == "part" {
            return Some(BlobKey::Part { id });
        }
        Some(BlobKey::Object {
            id,
            version: Uuid::parse_str(b).ok()?,
        })
    }
}

/// Bytes handed to the writer thread at a time: big enough that the hand-off costs nothing, small
/// enough that an upload holds a few MiB at most (two batches queued, one being written).
const BATCH: usize = 256 << 10;
/// Bytes read per chunk of a download (one blocking read each, one chunk read ahead).
const READ_CHUNK: usize = 256 << 10;
/// Objects up to this size are read whole in the blocking call that opens them.
const SMALL_READ: usize = 64 << 10;
/// Writeback of what was written is started every this many bytes, so the final fsync waits only
/// for the tail instead of the whole file.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// Makes a new file and its folder entry durable. Both must be on disk before the row that names the
/// file commits; neither needs the other first, so the two run side by side (each waits on the disk,
/// not the CPU). The file needs only its data and size (`fdatasync`); the folder's fsync is shared
/// with concurrent writes into the same folder ([`dir_sync`]).
fn sync_file_and_dir(file: &std::fs::File, dir: &Path) -> io::Result<()> {
    std::thread::scope(|s| {
        let dir_synced = s.spawn(|| dir_sync::sync_dir(dir));
        let file_synced = file.sync_data();
        let dir_synced = dir_synced
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("folder fsync panicked")));
        file_synced.and(dir_synced)
    })
}

/// What the receiving side hands the writer thread.
enum Feed {
    Bytes(Vec<Bytes>),
    /// The body ended well: make the file durable. A channel closed without it means "discard".
    Done,
}

/// Creates the blob's file (and its shard folder the first time, made durable in its parent).
fn create_new(shard: &Path, path: &Path) -> io::Result<std::fs::File> {
    let open = || {
        dir_sync::create_in(shard, || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
        })
    };
    match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(shard)?;
            if let Some(data) = shard.parent() {
                dir_sync::sync_dir(data)?;
            }
            open()
        }
        other => other,
    }
}

/// Starts writeback of `len` bytes at `offset` without waiting for it (Linux; elsewhere the final
/// fsync does all the work).
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain syscall on a file descriptor this function borrows; it touches no memory.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// The writer thread of one blob: hashes and writes what arrives, starts writeback as it goes, and on
/// `Done` fsyncs the file and its folder. Anything else (the body failed, went past its limit, or the
/// request was dropped) removes the file.
fn write_blocking(
    shard: &Path,
    path: &Path,
    mut feed: tokio::sync::mpsc::Receiver<Feed>,
) -> io::Result<[u8; 16]> {
    let mut file = create_new(shard, path)?;
    let result = (|| {
        let mut md5 = Md5::new();
        let (mut written, mut flushed) = (0u64, 0u64);
        loop {
            match feed.blocking_recv() {
                Some(Feed::Bytes(batch)) => {
                    for chunk in batch {
                        md5.update(&chunk);
                        file.write_all(&chunk)?;
                        written += chunk.len() as u64;
                    }
                    if written - flushed >= WRITEBACK_EVERY {
                        start_writeback(&file, flushed, written - flushed);
                        flushed = written;
                    }
                }
                Some(Feed::Done) => break,
                None => return Err(io::Error::other("upload abandoned")),
            }
        }
        sync_file_and_dir(&file, shard)?;
        Ok(md5.finalize().into())
    })();
    if result.is_err() {
        drop(file);
        let _ = std::fs::remove_file(path);
    }
    result
}

/// Fills `buf` from `offset` (blobs never shrink, so a short read is an error).
fn read_into(file: &std::fs::File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

/// Seconds during which new objects get ids of the same shard folder (see `Disk::new_object_id`).
const SHARD_SLOT_SECS: u64 = 1;

/// A random (version 4) UUID whose first byte — the shard folder — is `slot`'s. 114 random bits stay.
fn id_in_slot(slot: u8) -> Uuid {
    let mut b = *Uuid::new_v4().as_bytes();
    b[0] = slot;
    Uuid::from_bytes(b)
}

#[async_trait::async_trait]
impl Backend for Disk {
    /// New objects created in the same second land in the same shard folder, so concurrent writes
    /// share that folder's fsync ([`dir_sync`]) instead of each syncing a folder of its own; the folder
    /// moves on every second, so over a few minutes the shards still fill evenly. Only the shard
    /// byte is taken from the clock: the id stays a random version-4 UUID.
    fn new_object_id(&self) -> Uuid {
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        id_in_slot((secs / SHARD_SLOT_SECS % 256) as u8)
    }

    async fn write(
        &self,
        key: &BlobKey,
        mut body: ByteStream,
        limit: Option<u64>,
    ) -> Result<Written, WriteError> {
        let (shard, path) = (self.shard(key), self.path(key));
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        // One blocking task per write, so hashing and disk writes run beside the network reads
        // instead of taking turns with them on a runtime worker.
        let writer = tokio::task::spawn_blocking(move || write_blocking(&shard, &path, rx));
        let mut size: u64 = 0;
        let fed: Result<(), WriteError> = async {
            let (mut batch, mut batch_len) = (Vec::new(), 0);
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(WriteError::Body)?;
                size += chunk.len() as u64;
                if limit.is_some_and(|l| size > l) {
                    return Err(WriteError::TooLarge);
                }
                batch_len += chunk.len();
                batch.push(chunk);
                if batch_len >= BATCH {
                    batch_len = 0;
                    if tx
                        .send(Feed::Bytes(std::mem::take(&mut batch)))
                        .await
                        .is_err()
                    {
                        // The writer stopped on an I/O error: its result says which.
                        return Ok(());
                    }
                }
            }
            if !batch.is_empty() {
                let _ = tx.send(Feed::Bytes(batch)).await;
            }
            let _ = tx.send(Feed::Done).await;
            Ok(())
        }
        .await;
        drop(tx);
        let written = writer.await.map_err(io::Error::other)?;
        fed?;
        Ok(Written {
            size,
            md5: written?,
        })
    }

    /// One blocking hop: create, write, `fdatasync`, then the folder's (shared) fsync, one after
    /// the other on the same thread — for a few KiB that costs less CPU than handing the pieces to
    /// other threads, and the two syncs are short.
    async fn write_small(&self, key: &BlobKey, bytes: Bytes) -> io::Result<()> {
        let (shard, path) = (self.shard(key), self.path(key));
        blocking(move || {
            let mut file = create_new(&shard, &path)?;
            let written = file
                .write_all(&bytes)
                .and_then(|()| file.sync_data())
                .and_then(|()| dir_sync::sync_dir(&shard));
            if written.is_err() {
                drop(file);
                let _ = std::fs::remove_file(&path);
            }
            written
        })
        .await
    }

    fn renames(&self) -> bool {
        true
    }

    /// A rename (the file's data is already synced), then the new name's folder fsync (shared).
    /// The old name's removal need not be durable: a crash that brings it back leaves an orphan,
    /// which cleanup removes by age.
    async fn rename(&self, from: &BlobKey, to: &BlobKey) -> io::Result<()> {
        let (from, shard, to) = (self.path(from), self.shard(to), self.path(to));
        blocking(move || {
            let moved = dir_sync::create_in(&shard, || std::fs::rename(&from, &to));
            match moved {
                // The row's folder may not exist yet (an id whose blobs were all multipart parts).
                Err(e) if e.kind() == io::ErrorKind::NotFound && !shard.exists() => {
                    std::fs::create_dir_all(&shard)?;
                    if let Some(data) = shard.parent() {
                        dir_sync::sync_dir(data)?;
                    }
                    dir_sync::create_in(&shard, || std::fs::rename(&from, &to))?;
                }
                other => other?,
            }
            dir_sync::sync_dir(&shard)
        })
        .await
    }

    async fn read(&self, key: &BlobKey, range: Option<(u64, u64)>) -> io::Result<ByteStream> {
        let path = self.path(key);
        read_pieces(vec![(path, range)]).await
    }

    async fn read_parts(
        &self,
        parts: &[(BlobKey, u64)],
        range: Option<(u64, u64)>,
    ) -> io::Result<ByteStream> {
        let pieces = super::backend::pieces(parts, range)
            .into_iter()
            .map(|(key, piece)| (self.path(&key), Some(piece)))
            .collect();
        read_pieces(pieces).await
    }

    async fn remove(&self, key: &BlobKey) -> io::Result<()> {
        match tokio::fs::remove_file(self.path(key)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    async fn older_than(&self, age: Duration) -> io::Result<Vec<BlobKey>> {
        let data = self.dir.join("data");
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let now = SystemTime::now();
            let shards = match std::fs::read_dir(&data) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(e),
            };
            for shard in shards {
                let shard = shard?;
                if !shard.file_type()?.is_dir() {
                    continue;
                }
                for entry in std::fs::read_dir(shard.path())? {
                    let entry = entry?;
                    let Some(key) = entry.file_name().to_str().and_then(Disk::parse_name) else {
                        continue;
                    };
                    let modified = entry.metadata()?.modified()?;
                    if now.duration_since(modified).unwrap_or_default() >= age {
                        out.push(key);
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(io::Error::other)?
    }
}

/// Streams pieces of files one after the other (`(path, Some((start, len)))`, or a whole file with
/// `None`). Every file is opened (and measured) in one blocking call before this returns, so a file
/// removed afterwards still reads. A small total is read in that same hop; larger ones by a task that
/// reads one chunk ahead while the previous one is sent. Buffers are allocated and freed on the
/// runtime's threads, never in the blocking pool's (whose idle threads would keep freed memory in
/// their allocator heaps).
async fn read_pieces(pieces: Vec<(PathBuf, Option<(u64, u64)>)>) -> io::Result<ByteStream> {
    let (files, small) = blocking(move || {
        let mut files = Vec::with_capacity(pieces.len());
        for (path, range) in pieces {
            let file = std::fs::File::open(path)?;
            let (start, len) = match range {
                Some(r) => r,
                None => (0, file.metadata()?.len()),
            };
            files.push((file, start, start + len));
        }
        let total: u64 = files.iter().map(|(_, s, e)| e - s).sum();
        let small = if total <= SMALL_READ as u64 {
            let mut buf = bytes::BytesMut::with_capacity(total as usize);
            for (file, start, end) in &files {
                let at = buf.len();
                buf.resize(at + (end - start) as usize, 0);
                read_into(file, &mut buf[at..], *start)?;
            }
            Some(buf.freeze())
        } else {
            None
        };
        Ok((files, small))
    })
    .await?;
    if let Some(bytes) = small {
        return Ok(once(bytes));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(1);
    tokio::spawn(async move {
        for (file, start, end) in files {
            let file = std::sync::Arc::new(file);
            let mut pos = start;
            while pos < end {
                let n = (end - pos).min(READ_CHUNK as u64) as usize;
                let f = file.clone();
                let buf = bytes::BytesMut::zeroed(n);
                let chunk = blocking(move || {
                    let mut buf = buf;
                    read_into(&f, &mut buf, pos)?;
                    Ok(buf)
                })
                .await
                .map(bytes::BytesMut::freeze);
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
                pos += n as u64;
            }
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    Ok(Box::pin(stream.map_err(|e| Box::new(e) as _)))
}

/// A stream of one chunk, for small bodies already in memory.
pub fn once(bytes: Bytes) -> ByteStream {
    Box::pin(futures_util::stream::once(async move { Ok(bytes) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_only_uuids() {
        let id = Uuid::new_v4();
        let version = Uuid::new_v4();
        let k = BlobKey::Object { id, version };
        assert_eq!(Disk::parse_name(&Disk::file_name(&k)), Some(k));
        let p = BlobKey::Part { id };
        assert_eq!(Disk::parse_name(&Disk::file_name(&p)), Some(p));
        assert_eq!(Disk::parse_name("../etc.passwd"), None);
        assert_eq!(Disk::parse_name("x.part"), None);
        let d = Disk::new("/s");
        assert!(d.path(&k).starts_with("/s/data/"));
        // Ids made for new objects stay version-4 UUIDs; ids of the same slot share a shard folder.
        let (a, b) = (id_in_slot(0xab), id_in_slot(0xab));
        assert_ne!(a, b);
        assert_eq!(a.get_version_num(), 4);
        let shard = |id| d.shard(&BlobKey::Object { id, version });
        assert_eq!(shard(a), shard(b));
        assert!(shard(a).ends_with("data/ab"));
        assert_eq!(d.new_object_id().get_version_num(), 4);
    }

    #[tokio::test]
    async fn large_blobs_stream_in_chunks_and_dropped_writes_leave_nothing() {
        let dir = std::env::temp_dir().join(format!("doska-disk-{}", Uuid::new_v4()));
        let d = Disk::new(&dir);
        let k = BlobKey::Object {
            id: Uuid::new_v4(),
            version: Uuid::new_v4(),
        };
        // 3.5 MiB in odd-sized chunks: several batches, several read chunks.
        let data: Vec<u8> = (0..(7u32 << 19)).map(|i| (i % 251) as u8).collect();
        let chunks: Vec<Result<Bytes, crate::http::body::BoxError>> = data
            .chunks(100_003)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let w = d
            .write(&k, Box::pin(futures_util::stream::iter(chunks)), None)
            .await
            .unwrap();
        assert_eq!(w.size, data.len() as u64);
        assert_eq!(w.md5, <[u8; 16]>::from(Md5::digest(&data)));
        let got: Vec<Bytes> = d.read(&k, None).await.unwrap().try_collect().await.unwrap();
        assert!(got.len() > 1);
        assert_eq!(got.concat(), data);
        let got: Vec<Bytes> = d
            .read(&k, Some((1 << 20, (1 << 20) + 7)))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(got.concat(), &data[1 << 20..(2 << 20) + 7]);
        // A body that fails half-way leaves no file.
        let k2 = BlobKey::Part { id: Uuid::new_v4() };
        let failing: Vec<Result<Bytes, crate::http::body::BoxError>> = vec![
            Ok(Bytes::from(vec![1u8; 3 << 20])),
            Err("client went away".into()),
        ];
        assert!(matches!(
            d.write(&k2, Box::pin(futures_util::stream::iter(failing)), None)
                .await,
            Err(WriteError::Body(_))
        ));
        assert!(d.read(&k2, None).await.is_err());
        // So does a write whose future is dropped mid-body (a cancelled request).
        let k3 = BlobKey::Part { id: Uuid::new_v4() };
        let stalled = futures_util::stream::iter([Ok(Bytes::from(vec![2u8; 2 << 20]))])
            .chain(futures_util::stream::pending());
        let _ = tokio::time::timeout(
            Duration::from_millis(200),
            d.write(&k3, Box::pin(stalled), None),
        )
        .await;
        for _ in 0..50 {
            if d.read(&k3, None).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(d.read(&k3, None).await.is_err());
        d.remove(&k).await.unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn write_read_range_limit_remove() {
        let dir = std::env::temp_dir().join(format!("doska-disk-{}", Uuid::new_v4()));
        let d = Disk::new(&dir);
        let k = BlobKey::Object {
            id: Uuid::new_v4(),
            version: Uuid::new_v4(),
        };
        let w = d
            .write(&k, once(Bytes::from_static(b"hello world")), None)
            .await
            .unwrap();
        assert_eq!(w.size, 11);
        assert_eq!(hex::encode(w.md5), "5eb63bbbe01eeed093cb22bb8f5acdc3");
        let got: Vec<Bytes> = d
            .read(&k, Some((6, 5)))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(got.concat(), b"world");
        // A second write to the same blob never replaces it.
        assert!(
            d.write(&k, once(Bytes::from_static(b"x")), None)
                .await
                .is_err()
        );
        let k2 = BlobKey::Part { id: Uuid::new_v4() };
        let e = d
            .write(&k2, once(Bytes::from_static(b"toolong")), Some(3))
            .await;
        assert!(matches!(e, Err(WriteError::TooLarge)));
        assert!(
            d.read(&k2, None).await.is_err(),
            "a refused write leaves no file"
        );
        assert_eq!(d.older_than(Duration::ZERO).await.unwrap(), vec![k]);
        assert!(
            d.older_than(Duration::from_secs(3600))
                .await
                .unwrap()
                .is_empty()
        );
        // Parts read as one, whole or by ranges within and across parts.
        let (p1, p2, p3) = (
            BlobKey::Part { id: Uuid::new_v4() },
            BlobKey::Part { id: Uuid::new_v4() },
            BlobKey::Part { id: Uuid::new_v4() },
        );
        let big: Vec<u8> = (0..(600u32 << 10)).map(|i| (i % 241) as u8).collect();
        for (p, bytes) in [(p1, &b"abc"[..]), (p2, &big[..]), (p3, &b"defg"[..])] {
            d.write(&p, once(Bytes::copy_from_slice(bytes)), None)
                .await
                .unwrap();
        }
        let parts = [(p1, 3), (p2, big.len() as u64), (p3, 4)];
        let whole: Vec<u8> = [&b"abc"[..], &big, b"defg"].concat();
        for range in [
            None,
            Some((1, 2)),
            Some((2, 5)),
            Some((0, whole.len() as u64)),
            Some((whole.len() as u64 - 6, 6)),
            Some((100, 300_000)),
        ] {
            let got: Vec<Bytes> = d
                .read_parts(&parts, range)
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            let (s, l) = range.unwrap_or((0, whole.len() as u64));
            assert_eq!(
                got.concat(),
                &whole[s as usize..(s + l) as usize],
                "{range:?}"
            );
        }
        // A part removed after the read started still reads; one removed before is NotFound.
        let stream = d.read_parts(&parts, None).await.unwrap();
        d.remove(&p2).await.unwrap();
        let got: Vec<Bytes> = stream.try_collect().await.unwrap();
        assert_eq!(got.concat(), whole);
        let gone = d.read_parts(&parts, Some((0, 4))).await;
        assert_eq!(gone.err().map(|e| e.kind()), Some(io::ErrorKind::NotFound));
        for b in [p1, p3] {
            d.remove(&b).await.unwrap();
        }
        d.remove(&k).await.unwrap();
        d.remove(&k).await.unwrap();
        assert!(d.older_than(Duration::ZERO).await.unwrap().is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
