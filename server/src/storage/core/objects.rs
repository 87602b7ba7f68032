//! The storage core's objects: head, read, check and commit writes (streamed; small ones are
//! `small`'s), copy, rename and delete — each row change as the caller, the bytes in the backend,
//! visible when the row commits.

use super::*;

impl Storage {
    /// An object's row as the caller may see it.
    pub async fn head(
        &self,
        actor: &Actor,
        bucket: &str,
        key: &str,
    ) -> Result<ObjectInfo, StorageError> {
        let rows = self
            .read_once(
                actor,
                HEAD_SQL,
                &[(&bucket, Type::TEXT), (&key, Type::TEXT)],
            )
            .await?;
        rows.first()
            .and_then(ObjectInfo::from_row)
            .ok_or(StorageError::NoSuchKey)
    }

    /// Sets keys of an object's `metadata` in place, keeping its version and bytes (S3's object
    /// tags), as the caller: an UPDATE of the row, which the policies decide.
    pub async fn patch_metadata(
        &self,
        actor: &Actor,
        bucket: &str,
        key: &str,
        patch: &Value,
    ) -> Result<ObjectInfo, StorageError> {
        let rows = self
            .pipelined(
                actor,
                &[(
                    PATCH_METADATA_SQL,
                    &[
                        (&bucket, Type::TEXT),
                        (&key, Type::TEXT),
                        (patch, Type::JSONB),
                    ],
                )],
                true,
            )
            .await?
            .into_iter()
            .next()
            .expect("one result per statement")?;
        rows.first()
            .and_then(ObjectInfo::from_row)
            .ok_or(StorageError::NoSuchKey)
    }

    /// The object's row and a stream of its bytes (all, or `(start, len)`). The row is read in a short
    /// read-only transaction; the bytes stream afterwards with no connection held. An overwrite that
    /// removes the version between the two is answered by reading the row again.
    pub async fn get(
        &self,
        actor: &Actor,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<(ObjectInfo, ByteStream, Option<(u64, u64)>), StorageError> {
        for _ in 0..3 {
            let info = self.head(actor, bucket, key).await?;
            let span = range.map(|r| r.resolve(info.size)).transpose()?;
            let read = match &info.parts {
                Some(parts) => {
                    let parts: Vec<(BlobKey, u64)> = parts
                        .iter()
                        .map(|(id, size)| (BlobKey::Part { id: *id }, *size))
                        .collect();
                    self.backend.read_parts(&parts, span).await
                }
                None => self.backend.read(&info.blob(), span).await,
            };
            match read {
                Ok(stream) => return Ok((info, stream, span)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StorageError::NoSuchKey)
    }

    /// Checks a write before any byte of it is read: bucket, declared size, MIME type, and the policies
    /// (the row statement runs and is rolled back), all in one round trip. Returns the object id the
    /// write will carry and the size limit to enforce while streaming.
    pub async fn check_write(
        &self,
        actor: &Actor,
        spec: &PutSpec,
    ) -> Result<(Uuid, Option<u64>), StorageError> {
        check_key(&spec.key)?;
        // A new object gets this id; an overwrite keeps its row's (the probe returns whichever).
        let fresh = self.backend.new_object_id();
        let row = RowValues::new(actor, spec, fresh, Uuid::new_v4(), json!({}));
        let sql = if spec.upsert { UPSERT_SQL } else { INSERT_SQL };
        // Always rolled back: the probe only asks whether the row statement would pass.
        let mut results = self
            .pipelined(
                actor,
                &[
                    (LIMITS_SQL, &[(&spec.bucket, Type::TEXT)]),
                    (sql, &row.params()),
                ],
                false,
            )
            .await?
            .into_iter();
        let (limits, probe) = match (results.next(), results.next()) {
            (Some(l), Some(p)) => (l?, p),
            _ => unreachable!("two statements, two results"),
        };
        let limit = bucket_limits(&limits, spec, spec.declared_len)?;
        let probe = probe?;
        let id = probe
            .first()
            .map(|r| r.get("id"))
            .ok_or(StorageError::Conflict)?;
        Ok((id, limit))
    }

    /// Commits a written blob's row in one round trip; on refusal removes the blob. Removes the
    /// replaced version's blobs after the commit.
    pub(super) async fn commit_write(
        &self,
        actor: &Actor,
        spec: &PutSpec,
        blob: (Uuid, Uuid),
        metadata: Value,
    ) -> Result<ObjectInfo, StorageError> {
        let (id, version) = blob;
        match self
            .commit_row(actor, spec, (id, version), metadata, None)
            .await
        {
            Err(e) => {
                self.remove_blobs([BlobKey::Object { id, version }]).await;
                Err(e)
            }
            Ok((info, _)) => Ok(info),
        }
    }

    /// Commits an object version's row in one round trip, then removes the version it replaced.
    /// With `adopt` = (upload id, listed part ids), the version is the upload's listed parts: the
    /// same transaction records them as the version's layout and forgets the upload, and returns the
    /// parts not listed (for the caller to remove). On failure nothing is committed or removed.
    pub(super) async fn commit_row(
        &self,
        actor: &Actor,
        spec: &PutSpec,
        (id, version): (Uuid, Uuid),
        metadata: Value,
        adopt: Option<(&str, &[Uuid])>,
    ) -> Result<(ObjectInfo, Vec<Uuid>), StorageError> {
        let row = RowValues::new(actor, spec, id, version, metadata);
        let sql = if spec.upsert {
            UPSERT_COMMIT_SQL
        } else {
            INSERT_SQL
        };
        let version_text = version.to_string();
        let adopt_params: Option<[Param; 4]> = adopt.as_ref().map(|(upload_id, parts)| {
            [
                (upload_id as &(dyn ToSql + Sync), Type::TEXT),
                (&row.id as &(dyn ToSql + Sync), Type::UUID),
                (&version_text as &(dyn ToSql + Sync), Type::TEXT),
                (parts as &(dyn ToSql + Sync), Type::UUID_ARRAY),
            ]
        });
        let params = row.params();
        let key_params = row.key_params();
        let mut statements: Vec<(&str, &[Param])> = Vec::with_capacity(3);
        if spec.upsert {
            statements.push((LOCK_ROW_SQL, &key_params));
        }
        statements.push((sql, &params));
        if let Some(p) = &adopt_params {
            statements.push(("select storage.doska_adopt_upload($1, $2, $3, $4)", p));
        }
        let mut results = self.pipelined(actor, &statements, true).await?.into_iter();
        if spec.upsert {
            results.next().expect("one result per statement")?;
        }
        // No row: the key now belongs to another object (deleted and recreated by someone else
        // while the bytes flowed); the guarded statement wrote nothing.
        let rows = results.next().expect("one result per statement")?;
        let row = rows.into_iter().next().ok_or(StorageError::Conflict)?;
        let rest: Vec<Uuid> = match results.next() {
            Some(adopted) => adopted?
                .first()
                .and_then(|r| r.get::<_, Option<Vec<Uuid>>>(0))
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let old: Option<String> = row.get("old_version");
        let old_parts = parse_layout(row.get("old_parts"));
        let kept: Option<bool> = row.get("old_kept");
        let info = ObjectInfo::from_row(&row).ok_or(StorageError::Conflict)?;
        let old = old.and_then(|o| Uuid::parse_str(&o).ok());
        self.remove_replaced(&info, old, old_parts, kept.unwrap_or(false))
            .await;
        Ok((info, rest))
    }

    /// Stores an object: checked, streamed to a new durable blob, committed, old version removed.
    /// A body declared at most [`SMALL_PUT`] bytes long is read whole first and stored by
    /// [`Storage::put_small`] in one transaction.
    pub async fn put(
        &self,
        actor: &Actor,
        spec: &PutSpec,
        body: ByteStream,
    ) -> Result<ObjectInfo, StorageError> {
        let body = match spec.declared_len {
            Some(len) if len <= SMALL_PUT => match gather(body, SMALL_PUT as usize).await? {
                Gathered::Whole(bytes) => return self.put_small(actor, spec, bytes).await,
                Gathered::Longer(body) => body,
            },
            _ => body,
        };
        let (id, limit) = self.check_write(actor, spec).await?;
        let version = Uuid::new_v4();
        let written = self
            .backend
            .write_sized(
                &BlobKey::Object { id, version },
                body,
                limit,
                spec.declared_len,
            )
            .await
            .map_err(|e| write_error(e, limit))?;
        let etag = format!("\"{}\"", hex::encode(written.md5));
        let metadata = object_metadata(written.size, &etag, spec);
        self.commit_write(actor, spec, (id, version), metadata)
            .await
    }

    /// Copies an object (its bytes into a new blob) to `spec`'s place.
    pub async fn copy(
        &self,
        actor: &Actor,
        src_bucket: &str,
        src_key: &str,
        spec: &PutSpec,
    ) -> Result<ObjectInfo, StorageError> {
        self.copy_version(actor, src_bucket, src_key, None, spec)
            .await
    }

    /// Renames an object (the bytes stay where they are: they are named by id, not key).
    pub async fn rename(
        &self,
        actor: &Actor,
        bucket: &str,
        from: &str,
        to_bucket: &str,
        to: &str,
    ) -> Result<(), StorageError> {
        check_key(to)?;
        let tx = self.tx(actor, false).await?;
        let n = tx
            .client()
            .execute(
                "update storage.objects set bucket_id = $3, name = $4, updated_at = now()
                 where bucket_id = $1 and name = $2",
                &[&bucket, &from, &to_bucket, &to],
            )
            .await?;
        if n == 0 {
            tx.rollback().await.ok();
            return Err(StorageError::NoSuchKey);
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes the named objects the caller may delete; returns those deleted. In a versioned
    /// bucket they stay as noncurrent versions behind a delete marker
    /// ([`Storage::delete_current`]).
    pub async fn delete(
        &self,
        actor: &Actor,
        bucket: &str,
        keys: &[String],
    ) -> Result<Vec<ObjectInfo>, StorageError> {
        Ok(self.delete_current(actor, bucket, keys).await?.0)
    }
}
