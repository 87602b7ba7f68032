//! `doska storage migrate --to s3|disk`: copies the bytes of every blob a row refers to (objects'
//! blobs, multipart objects' parts, parts of uploads in progress) from one backend to the other,
//! each one read back from the target and compared by size and MD5 with what the source gave,
//! while doska keeps serving from the source. A blob already in the target with the same size and
//! MD5 is left as it is, so the command may run again; passes repeat until one finds nothing left to
//! copy (writes served meanwhile land in the source). Rejects nothing itself: a blob whose copy does
//! not verify stops the migration with its name, and a blob whose row went away meanwhile is skipped.

use std::io;

use futures_util::StreamExt;
use md5::{Digest, Md5};
use tokio_postgres::Client;
use uuid::Uuid;

use super::backend::{Backend, BlobKey};

/// What a migration did, over all its passes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// Blobs copied and verified.
    pub copied: u64,
    /// Blobs the target already held, verified equal.
    pub already_there: u64,
    /// Blobs named by a row that the source no longer had (deleted or replaced meanwhile).
    pub gone: u64,
    /// Bytes copied.
    pub bytes: u64,
    pub passes: u32,
}

/// Passes over the rows at most; each one copies what was written during the one before.
const MAX_PASSES: u32 = 10;

/// Every blob a row refers to now.
async fn live_blobs(admin: &Client) -> Result<Vec<BlobKey>, tokio_postgres::Error> {
    let rows = admin
        .query(
            "with versions as (
               select id, version from storage.objects where version is not null
               union all
               select id, version from storage.doska_object_versions where not delete_marker)
             select o.id, o.version from versions o
             where storage.doska_layout(o.id, o.version) is null
             union all
             select l.part_id, null from storage.doska_object_parts l
               join versions o on o.id = l.object_id and o.version = l.object_version
             union all
             select p.id, null from storage.s3_multipart_uploads_parts p",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let id: Uuid = r.get(0);
            match r.get::<_, Option<String>>(1) {
                None => Some(BlobKey::Part { id }),
                Some(v) => Uuid::parse_str(&v)
                    .ok()
                    .map(|version| BlobKey::Object { id, version }),
            }
        })
        .collect())
}

/// A blob's size and MD5 as `backend` streams it; `None` when it has no such blob.
async fn digest(backend: &dyn Backend, key: &BlobKey) -> io::Result<Option<(u64, [u8; 16])>> {
    let mut stream = match backend.read(key, None).await {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let (mut md5, mut size) = (Md5::new(), 0u64);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(io::Error::other)?;
        size += chunk.len() as u64;
        md5.update(&chunk);
    }
    Ok(Some((size, md5.finalize().into())))
}

/// One pass: copies what the target lacks. Returns what it did.
async fn pass(admin: &Client, from: &dyn Backend, to: &dyn Backend) -> Result<Report, String> {
    let mut report = Report::default();
    let blobs = live_blobs(admin)
        .await
        .map_err(|e| crate::db::migrate::describe(&e))?;
    for key in blobs {
        let fail = |e: io::Error| format!("{key:?}: {e}");
        let Some(source) = digest(from, &key).await.map_err(fail)? else {
            report.gone += 1;
            continue;
        };
        match digest(to, &key).await.map_err(fail)? {
            Some(there) if there == source => {
                report.already_there += 1;
                continue;
            }
            Some(_) => {
                return Err(format!(
                    "{key:?}: the target holds other bytes under this name; remove them and run again"
                ));
            }
            None => {}
        }
        let body = match from.read(&key, None).await {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                report.gone += 1;
                continue;
            }
            Err(e) => return Err(fail(e)),
        };
        let written = to
            .write(&key, body, None)
            .await
            .map_err(|e| format!("{key:?}: copying failed: {e:?}"))?;
        let copied = digest(to, &key).await.map_err(fail)?;
        if (written.size, written.md5) != source || copied != Some(source) {
            return Err(format!(
                "{key:?}: the copy does not verify (source {} bytes, md5 {}; target {copied:?})",
                source.0,
                hex::encode(source.1)
            ));
        }
        report.copied += 1;
        report.bytes += source.0;
    }
    Ok(report)
}

/// Copies every live blob from `from` to `to`, verified, pass after pass until one copies nothing.
pub async fn migrate(
    admin: &Client,
    from: &dyn Backend,
    to: &dyn Backend,
) -> Result<Report, String> {
    let mut total = Report::default();
    while total.passes < MAX_PASSES {
        let r = pass(admin, from, to).await?;
        total.passes += 1;
        total.copied += r.copied;
        total.bytes += r.bytes;
        total.gone = r.gone;
        if total.passes == 1 {
            total.already_there = r.already_there;
        }
        tracing::info!(
            pass = total.passes,
            copied = r.copied,
            bytes = r.bytes,
            "storage migration pass"
        );
        if r.copied == 0 {
            break;
        }
    }
    Ok(total)
}
