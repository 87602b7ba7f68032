//! Small writes: a body read whole is stored in ONE transaction as the caller — its row statement
//! (RLS decides), then, once its bytes and folder entry are durable, COMMIT — either alone or, on a
//! backend that renames cheaply (the disk), sharing a group transaction with concurrent small writes
//! (`db::group`: each in a savepoint of its own, as its own caller). A write refused or failed before
//! its commit keeps nothing (its blob is removed); the version it replaces is removed only after the
//! commit.

use tokio::sync::oneshot;

use super::*;
use crate::db::group::{Job, Outcome, OwnedParam, Results};

/// A small write's row as its statement returned it, and the version it replaced: id, parts,
/// whether kept as a noncurrent version.
type Stored = (ObjectInfo, Option<Uuid>, Option<Vec<(Uuid, u64)>>, bool);

/// Why a small write's results refuse it: the statement at this index failed, or the storage core
/// says no.
enum Refusal {
    Statement(usize),
    Storage(StorageError),
}

/// Reads a small write's results: [`LIMITS_SQL`], [`LOCK_ROW_SQL`] (an overwrite), the row statement.
fn small_row(
    results: &[Result<Vec<Row>, tokio_postgres::Error>],
    spec: &PutSpec,
    size: u64,
) -> Result<Stored, Refusal> {
    let ok = |j: usize| match results.get(j) {
        Some(Ok(rows)) => Ok(rows),
        _ => Err(Refusal::Statement(j)),
    };
    // The bucket and its limits answer first, as in `check_write`: a missing bucket is NoSuchBucket
    // even where the policies would also refuse the row; a failed lock only aborts the rest.
    let limits = ok(0)?;
    let written = if spec.upsert {
        ok(1)?;
        2
    } else {
        1
    };
    bucket_limits(limits, spec, Some(size)).map_err(Refusal::Storage)?;
    let conflict = || Refusal::Storage(StorageError::Conflict);
    let row = ok(written)?.first().ok_or_else(conflict)?;
    let info = ObjectInfo::from_row(row).ok_or_else(conflict)?;
    let old: Option<String> = row.get("old_version");
    let kept: Option<bool> = row.get("old_kept");
    Ok((
        info,
        old.and_then(|o| Uuid::parse_str(&o).ok()),
        parse_layout(row.get("old_parts")),
        kept.unwrap_or(false),
    ))
}

/// The storage error a refusal stands for.
fn refused(results: Results, why: Refusal) -> StorageError {
    match why {
        Refusal::Storage(e) => e,
        Refusal::Statement(j) => match results.into_iter().nth(j) {
            Some(Err(e)) => e.into(),
            _ => StorageError::Conflict,
        },
    }
}

/// A refusal worth one more try alone: the group's transaction lost a deadlock or a serialization
/// conflict that a write of one row does not meet.
fn retry_alone(e: &StorageError) -> bool {
    matches!(e, StorageError::Db(TxError::Db(e))
        if e.code().is_some_and(|c| c.code().starts_with("40")))
}

impl Storage {
    /// Stores an object whose bytes are all in hand, in one transaction as the caller. Holding the
    /// transaction during a small write costs a pooled connection for one `fdatasync`; it saves the
    /// second transaction (the probe and its rollback) that a streamed write needs, because a
    /// streamed write must not hold a connection while bytes flow from the network and here none do.
    ///
    /// The blob is named after the row's id, which for an overwrite is the existing row's and is
    /// known only once the row statement has run. Where the backend renames cheaply (the disk), the
    /// bytes are written and synced *while* the row statement runs, under the id a new object gets;
    /// in a group, a write whose row keeps another id (an overwrite) leaves the group and runs
    /// alone, which renames the blob (and syncs its folder) before its COMMIT. Elsewhere the bytes
    /// are written after the row statement.
    pub(super) async fn put_small(
        &self,
        actor: &Actor,
        spec: &PutSpec,
        bytes: Bytes,
    ) -> Result<ObjectInfo, StorageError> {
        check_key(&spec.key)?;
        let size = bytes.len() as u64;
        let etag = format!("\"{}\"", hex::encode(Md5::digest(&bytes)));
        let metadata = object_metadata(size, &etag, spec);
        let (fresh, version) = (self.backend.new_object_id(), Uuid::new_v4());
        let row = RowValues::new(actor, spec, fresh, version, metadata);
        let ahead = BlobKey::Object { id: fresh, version };
        match &self.group {
            Some(group) if self.backend.renames() => {
                self.put_grouped(group, actor, spec, bytes, row, ahead)
                    .await
            }
            _ => self.put_alone(actor, spec, bytes, &row, ahead, None).await,
        }
    }

    /// A small write in a group transaction: its bytes go to `ahead` while the group runs its
    /// statements; the group commits once they are durable.
    async fn put_grouped(
        &self,
        group: &Arc<Group>,
        actor: &Actor,
        spec: &PutSpec,
        bytes: Bytes,
        row: RowValues,
        ahead: BlobKey,
    ) -> Result<ObjectInfo, StorageError> {
        let size = bytes.len() as u64;
        let (ready_tx, ready) = oneshot::channel();
        let write = async {
            let written = self.backend.write_small(&ahead, bytes.clone()).await;
            let _ = ready_tx.send(written.is_ok());
            written
        };
        let bucket: OwnedParam = (Box::new(spec.bucket.clone()), Type::TEXT);
        let mut statements = vec![(LIMITS_SQL, vec![bucket])];
        if spec.upsert {
            // As in `commit_row`: the row statement must see a concurrent overwrite's commit.
            statements.push((LOCK_ROW_SQL, row.owned_key_params()));
        }
        let sql = if spec.upsert { UPSERT_SQL } else { INSERT_SQL };
        statements.push((sql, row.owned_params()));
        let keep = {
            let spec = spec.clone();
            Box::new(
                move |r: &Results| matches!(small_row(r, &spec, size), Ok(s) if s.0.blob() == ahead),
            )
        };
        let job = Job {
            caller: actor.caller.clone(),
            method: actor.method.clone(),
            path: actor.path.clone(),
            headers: actor.headers.clone(),
            statement_timeout_ms: self.statement_timeout_ms,
            statements,
            order: format!("{}\0{}", spec.bucket, spec.key),
            keep,
            ready,
        };
        // The bytes are written by this task, beside the group's statements.
        let (wrote, outcome) = tokio::join!(write, group.submit(job));
        match outcome {
            Outcome::Committed(results) => {
                let (info, old, old_parts, kept) =
                    small_row(&results, spec, size).map_err(|why| refused(results, why))?;
                self.remove_replaced(&info, old, old_parts, kept).await;
                Ok(info)
            }
            Outcome::Refused(results) => {
                let why = match results {
                    Err(e) => Err(StorageError::from(e)),
                    Ok(results) => match small_row(&results, spec, size) {
                        // The row kept another id (an overwrite): stored alone, under that id.
                        Ok(_) => Ok(()),
                        Err(why) => Err(refused(results, why)),
                    },
                };
                match why {
                    Err(e) if !retry_alone(&e) => {
                        if wrote.is_ok() {
                            self.backend.remove(&ahead).await.ok();
                        }
                        Err(e)
                    }
                    _ => {
                        self.put_alone(actor, spec, bytes, &row, ahead, Some(wrote))
                            .await
                    }
                }
            }
            Outcome::NotReady => Err(wrote.err().map_or_else(
                || StorageError::Io(std::io::Error::other("the bytes were not stored")),
                StorageError::from,
            )),
            Outcome::Alone => {
                self.put_alone(actor, spec, bytes, &row, ahead, Some(wrote))
                    .await
            }
            // Whether the row committed is unknown: the blob stays (orphan cleanup removes it
            // later if no row names it), and the client may retry.
            Outcome::Unknown(why) => Err(StorageError::Unavailable(format!(
                "the database commit failed: {why}"
            ))),
        }
    }

    /// A small write in a transaction of its own: its first round trip runs the bucket's limits and
    /// the row statement (RLS decides, as in the check of a streamed write, but the row is the real
    /// one, with its ETag and size); then COMMIT once the bytes are durable. `wrote_ahead`: the
    /// bytes were already written to `ahead` (and how that went); `None` writes them here.
    async fn put_alone(
        &self,
        actor: &Actor,
        spec: &PutSpec,
        bytes: Bytes,
        row: &RowValues,
        ahead: BlobKey,
        wrote_ahead: Option<std::io::Result<()>>,
    ) -> Result<ObjectInfo, StorageError> {
        let size = bytes.len() as u64;
        let sql = if spec.upsert { UPSERT_SQL } else { INSERT_SQL };
        let (params, key_params) = (row.params(), row.key_params());
        let bucket_params: [Param; 1] = [(&spec.bucket, Type::TEXT)];
        let mut statements: Vec<(&str, &[Param])> = vec![(LIMITS_SQL, &bucket_params)];
        if spec.upsert {
            // As in `commit_row`: the row statement must see a concurrent overwrite's commit.
            statements.push((LOCK_ROW_SQL, &key_params));
        }
        statements.push((sql, &params));
        let request_info = Self::info(actor);
        let opened = RequestTx::pipelined_open(
            &self.pool,
            &actor.caller,
            &request_info,
            self.statement_timeout_ms,
            &statements,
        );
        let (opened, wrote_ahead) = match wrote_ahead {
            Some(written) => (opened.await, Some(written)),
            None if self.backend.renames() => {
                let write = self.backend.write_small(&ahead, bytes.clone());
                let (opened, written) = tokio::join!(opened, write);
                (opened, Some(written))
            }
            None => (opened.await, None),
        };
        // From here every refusal removes what was written ahead (if it was).
        let ahead_made = matches!(wrote_ahead, Some(Ok(())));
        let discard = async |e: StorageError| {
            if ahead_made {
                self.backend.remove(&ahead).await.ok();
            }
            Err::<ObjectInfo, _>(e)
        };
        let (tx, results) = match opened {
            Ok(o) => o,
            Err(e) => return discard(e.into()).await,
        };
        let checked = match small_row(&results, spec, size) {
            Ok(c) => Ok(c),
            Err(why) => Err(refused(results, why)),
        };
        let stored = match (checked, wrote_ahead) {
            (Err(e), _) => Err(e),
            (Ok(_), Some(Err(e))) => Err(e.into()),
            (Ok(c), Some(Ok(()))) if c.0.blob() == ahead => Ok(c),
            (Ok(c), Some(Ok(()))) => match self.backend.rename(&ahead, &c.0.blob()).await {
                Ok(()) => Ok(c),
                Err(e) => Err(e.into()),
            },
            (Ok(c), None) => match self.backend.write_small(&c.0.blob(), bytes).await {
                Ok(()) => Ok(c),
                Err(e) => Err(e.into()),
            },
        };
        let (info, old, old_parts, kept) = match stored {
            Ok(c) => c,
            Err(e) => {
                tx.rollback().await.ok();
                return discard(e).await;
            }
        };
        // A failed COMMIT leaves the blob: whether the row committed is unknown, and orphan cleanup
        // removes it later if no row names it.
        tx.commit().await?;
        self.remove_replaced(&info, old, old_parts, kept).await;
        Ok(info)
    }
}

/// The values of a write's row statement (`$1`–`$8` of the statements above).
pub(super) struct RowValues {
    pub(super) id: Uuid,
    pub(super) bucket: String,
    pub(super) key: String,
    pub(super) owner: Option<Uuid>,
    pub(super) owner_id: Option<String>,
    pub(super) version: String,
    pub(super) metadata: Value,
    pub(super) user_metadata: Option<Value>,
}

impl RowValues {
    pub(super) fn new(
        actor: &Actor,
        spec: &PutSpec,
        id: Uuid,
        version: Uuid,
        metadata: Value,
    ) -> RowValues {
        RowValues {
            id,
            bucket: spec.bucket.clone(),
            key: spec.key.clone(),
            owner: actor.owner(),
            owner_id: actor.sub(),
            version: version.to_string(),
            metadata,
            user_metadata: spec.user_metadata.clone(),
        }
    }

    /// `$1` bucket, `$2` key: the parameters of [`LOCK_ROW_SQL`].
    pub(super) fn key_params(&self) -> [(&(dyn ToSql + Sync), Type); 2] {
        [(&self.bucket, Type::TEXT), (&self.key, Type::TEXT)]
    }

    pub(super) fn params(&self) -> [(&(dyn ToSql + Sync), Type); 8] {
        [
            (&self.id, Type::UUID),
            (&self.bucket, Type::TEXT),
            (&self.key, Type::TEXT),
            (&self.owner, Type::UUID),
            (&self.owner_id, Type::TEXT),
            (&self.version, Type::TEXT),
            (&self.metadata, Type::JSONB),
            (&self.user_metadata, Type::JSONB),
        ]
    }

    /// [`RowValues::key_params`] owned, for a group job.
    fn owned_key_params(&self) -> Vec<OwnedParam> {
        vec![
            (Box::new(self.bucket.clone()), Type::TEXT),
            (Box::new(self.key.clone()), Type::TEXT),
        ]
    }

    /// [`RowValues::params`] owned, for a group job.
    fn owned_params(&self) -> Vec<OwnedParam> {
        vec![
            (Box::new(self.id), Type::UUID),
            (Box::new(self.bucket.clone()), Type::TEXT),
            (Box::new(self.key.clone()), Type::TEXT),
            (Box::new(self.owner), Type::UUID),
            (Box::new(self.owner_id.clone()), Type::TEXT),
            (Box::new(self.version.clone()), Type::TEXT),
            (Box::new(self.metadata.clone()), Type::JSONB),
            (Box::new(self.user_metadata.clone()), Type::JSONB),
        ]
    }
}

/// A body read up to a bound: whole, or (longer than the bound) the bytes read so far put back in
/// front of the rest.
pub(super) enum Gathered {
    Whole(Bytes),
    Longer(ByteStream),
}

/// Reads `body` whole when it ends within `bound` bytes.
pub(super) async fn gather(mut body: ByteStream, bound: usize) -> Result<Gathered, StorageError> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| StorageError::Body(e.to_string()))?;
        len += chunk.len();
        chunks.push(chunk);
        if len > bound {
            let read = futures_util::stream::iter(chunks.into_iter().map(Ok));
            return Ok(Gathered::Longer(Box::pin(read.chain(body))));
        }
    }
    Ok(Gathered::Whole(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().expect("one chunk"),
        _ => {
            let mut all = bytes::BytesMut::with_capacity(len);
            for c in &chunks {
                all.extend_from_slice(c);
            }
            all.freeze()
        }
    }))
}
