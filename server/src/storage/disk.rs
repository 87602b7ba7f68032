//! The local-disk backend: object bytes as files under the storage dir, named only by UUIDs (an object's
//! id and version, or an upload part's id) — never by a client's key, so nothing a client sends can
//! reach a path outside the dir. A write goes to its own new file and is fsynced (file, then folder)
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
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use uuid::Uuid;

use super::backend::{Backend, BlobKey, ByteStream, WriteError, Written};

/// Files live under `<dir>/data/<first two hex digits>/`, so no folder grows past a few thousand entries
/// per million objects.
pub struct Disk {
    dir: PathBuf,
}

impl Disk {
    pub fn new(dir: impl Into<PathBuf>) -> Disk {
        Disk { dir: dir.into() }
    }

    fn file_name(key: &BlobKey) -> String {
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
    fn parse_name(name: &str) -> Option<BlobKey> {
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

async fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .map_err(io::Error::other)?
}

#[async_trait::async_trait]
impl Backend for Disk {
    async fn write(
        &self,
        key: &BlobKey,
        mut body: ByteStream,
        limit: Option<u64>,
    ) -> Result<Written, WriteError> {
        let shard = self.shard(key);
        let new_shard = !tokio::fs::try_exists(&shard).await.unwrap_or(false);
        tokio::fs::create_dir_all(&shard).await?;
        if new_shard && let Some(data) = shard.parent() {
            sync_dir(data).await?;
        }
        let path = self.path(key);
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        let mut md5 = Md5::new();
        let mut size: u64 = 0;
        let result: Result<(), WriteError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(WriteError::Body)?;
                size += chunk.len() as u64;
                if limit.is_some_and(|l| size > l) {
                    return Err(WriteError::TooLarge);
                }
                md5.update(&chunk);
                file.write_all(&chunk).await?;
            }
            file.flush().await?;
            file.sync_all().await?;
            Ok(())
        }
        .await;
        drop(file);
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(e);
        }
        sync_dir(&shard).await?;
        Ok(Written {
            size,
            md5: md5.finalize().into(),
        })
    }

    async fn read(&self, key: &BlobKey, range: Option<(u64, u64)>) -> io::Result<ByteStream> {
        let mut file = tokio::fs::File::open(self.path(key)).await?;
        let stream = match range {
            Some((start, len)) => {
                file.seek(io::SeekFrom::Start(start)).await?;
                tokio_util::io::ReaderStream::with_capacity(
                    tokio::io::AsyncReadExt::take(file, len),
                    64 * 1024,
                )
                .boxed()
            }
            None => tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024).boxed(),
        };
        Ok(Box::pin(stream.map_err(|e| Box::new(e) as _)))
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
        d.remove(&k).await.unwrap();
        d.remove(&k).await.unwrap();
        assert!(d.older_than(Duration::ZERO).await.unwrap().is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
