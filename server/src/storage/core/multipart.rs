//! Uploads in pieces, for S3's multipart family and for TUS resumable uploads: the final object is
//! checked as the caller (policies on `storage.objects`) when the upload starts and again when it is
//! committed; the bookkeeping rows in `storage.s3_multipart_uploads(_parts)` are written by doska
//! itself (those tables are not the API roles'), and an upload belongs to whoever started it. Each
//! part is its own durable blob; completing keeps them: the object's version is its listed parts, read
//! in order (`storage.doska_object_parts`), so no byte is written twice. Rejects parts of
//! unknown or foreign uploads, part numbers outside 1..=10000, and completions naming parts that were
//! not uploaded.

use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    Actor, BlobKey, ByteStream, ObjectInfo, Part, PutSpec, Storage, StorageError, Upload,
    multipart_etag, object_metadata, write_error,
};
use crate::db::caller::RequestTx;

/// Where a TUS upload stands.
#[derive(Debug, Clone)]
pub struct TusState {
    pub bucket: String,
    pub key: String,
    pub length: u64,
    pub offset: u64,
    /// (part number, ETag) of the pieces so far, in order.
    pub parts: Vec<(i32, String)>,
}

/// The upload's row: the spec of its final object and who started it.
struct UploadRow {
    spec: PutSpec,
    meta: Value,
}

impl Storage {
    /// doska's own bookkeeping connection role: the multipart tables are not exposed to API roles.
    fn keeper(actor: &Actor) -> Actor {
        Actor::service(&actor.method, &actor.path)
    }

    /// The upload row, if it exists and `actor` started it (service_role may touch any).
    async fn upload_row(
        &self,
        tx: &RequestTx,
        actor: &Actor,
        upload_id: &str,
        place: Option<(&str, &str)>,
    ) -> Result<UploadRow, StorageError> {
        let row = tx
            .client()
            .query_opt(
                "select bucket_id, key, metadata, user_metadata, owner_id
                 from storage.s3_multipart_uploads where id = $1",
                &[&upload_id],
            )
            .await?
            .ok_or(StorageError::NoSuchUpload)?;
        let (bucket, key): (String, String) = (row.get(0), row.get(1));
        if place.is_some_and(|(b, k)| b != bucket || k != key) {
            return Err(StorageError::NoSuchUpload);
        }
        let owner: Option<String> = row.get(4);
        if actor.caller.role != "service_role" && owner != actor.sub() {
            return Err(StorageError::NoSuchUpload);
        }
        let meta: Option<Value> = row.get(2);
        let meta = meta.unwrap_or_default();
        Ok(UploadRow {
            spec: PutSpec {
                bucket,
                key,
                upsert: meta["upsert"].as_bool().unwrap_or(true),
                content_type: meta["mimetype"]
                    .as_str()
                    .unwrap_or("application/octet-stream")
                    .into(),
                cache_control: meta["cacheControl"].as_str().map(str::to_string),
                user_metadata: row.get(3),
                declared_len: meta["tusLength"].as_u64(),
                extra: meta.get("extra").cloned(),
            },
            meta,
        })
    }

    /// Starts an upload after checking the final write would be allowed. `length` is a TUS upload's
    /// announced size.
    pub async fn create_upload(
        &self,
        actor: &Actor,
        spec: &PutSpec,
        length: Option<u64>,
    ) -> Result<String, StorageError> {
        self.check_write(actor, spec).await?;
        let upload_id = Uuid::new_v4().to_string();
        let tx = self.tx(&Self::keeper(actor), false).await?;
        let mut meta = json!({"mimetype": spec.content_type, "cacheControl": spec.cache_control,
                              "upsert": spec.upsert});
        if let Some(l) = length {
            meta["tusLength"] = json!(l);
        }
        if let Some(extra) = &spec.extra {
            meta["extra"] = extra.clone();
        }
        tx.client()
            .execute(
                "insert into storage.s3_multipart_uploads
                   (id, bucket_id, key, version, upload_signature, owner_id, user_metadata, metadata)
                 values ($1, $2, $3, $4, '', $5, $6, $7)",
                &[
                    &upload_id,
                    &spec.bucket,
                    &spec.key,
                    &Uuid::new_v4().to_string(),
                    &actor.sub(),
                    &spec.user_metadata,
                    &meta,
                ],
            )
            .await?;
        tx.commit().await?;
        Ok(upload_id)
    }

    /// Stores one part; a part number uploaded again replaces the earlier part. Returns its ETag and
    /// size. `limit` caps the part's size (a TUS upload's remaining length).
    #[allow(clippy::too_many_arguments)]
    pub async fn upload_part(
        &self,
        actor: &Actor,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        body: ByteStream,
        limit: Option<u64>,
    ) -> Result<(String, u64), StorageError> {
        if !(1..=10_000).contains(&number) {
            return Err(StorageError::InvalidPart(number.to_string()));
        }
        let keeper = Self::keeper(actor);
        let tx = self.tx(&keeper, true).await?;
        let row = self
            .upload_row(&tx, actor, upload_id, Some((bucket, key)))
            .await;
        tx.commit().await?;
        row?;
        let part_id = Uuid::new_v4();
        let blob = BlobKey::Part { id: part_id };
        let written = self
            .backend
            .write(&blob, body, limit)
            .await
            .map_err(|e| write_error(e, limit))?;
        let etag = format!("\"{}\"", hex::encode(written.md5));
        let result = async {
            let tx = self.tx(&keeper, false).await?;
            let row = tx
                .client()
                .query_opt(
                    "with up as (select id from storage.s3_multipart_uploads
                                 where id = $2 and bucket_id = $3 and key = $4 for update),
                          old as (delete from storage.s3_multipart_uploads_parts
                                  where upload_id = (select id from up) and part_number = $5 returning id),
                          ins as (insert into storage.s3_multipart_uploads_parts
                                    (id, upload_id, size, part_number, bucket_id, key, etag, owner_id, version)
                                  select $1, id, $6, $5, $3, $4, $7, $8, '' from up returning id)
                     select (select array_agg(id) from old), (select count(*) from ins)",
                    &[
                        &part_id,
                        &upload_id,
                        &bucket,
                        &key,
                        &number,
                        &(written.size as i64),
                        &etag,
                        &actor.sub(),
                    ],
                )
                .await?;
            tx.commit().await?;
            let old: Option<Vec<Uuid>> = row.as_ref().and_then(|r| r.get(0));
            let inserted: i64 = row.as_ref().map(|r| r.get(1)).unwrap_or(0);
            if inserted == 0 {
                return Err(StorageError::NoSuchUpload);
            }
            Ok(old.unwrap_or_default())
        }
        .await;
        match result {
            Ok(old) => {
                self.remove_blobs(old.into_iter().map(|id| BlobKey::Part { id }))
                    .await;
                Ok((etag, written.size))
            }
            Err(e) => {
                self.remove_blobs([blob]).await;
                Err(e)
            }
        }
    }

    /// In a transaction as `actor`'s keeper: checks `actor` may use the upload (`bucket`, `key`,
    /// upload id), then runs `sql` with the upload id as `$1`; rolled back when either fails.
    async fn upload_query(
        &self,
        actor: &Actor,
        (bucket, key, upload_id): (&str, &str, &str),
        read_only: bool,
        sql: &str,
    ) -> Result<Vec<tokio_postgres::Row>, StorageError> {
        let tx = self.tx(&Self::keeper(actor), read_only).await?;
        let result = async {
            self.upload_row(&tx, actor, upload_id, Some((bucket, key)))
                .await?;
            Ok::<_, StorageError>(tx.client().query(sql, &[&upload_id]).await?)
        }
        .await;
        match result {
            Ok(rows) => {
                tx.commit().await?;
                Ok(rows)
            }
            Err(e) => {
                tx.rollback().await.ok();
                Err(e)
            }
        }
    }

    pub async fn list_parts(
        &self,
        actor: &Actor,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<Part>, StorageError> {
        let rows = self
            .upload_query(
                actor,
                (bucket, key, upload_id),
                true,
                "select part_number, size, etag, created_at from storage.s3_multipart_uploads_parts
                 where upload_id = $1 order by part_number",
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Part {
                number: r.get(0),
                size: r.get::<_, i64>(1) as u64,
                etag: r.get(2),
                created_at: r.get(3),
            })
            .collect())
    }

    /// The uploads in progress under `prefix` that `actor` may see (its own; all for service_role).
    pub async fn list_uploads(
        &self,
        actor: &Actor,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<Upload>, StorageError> {
        let tx = self.tx(&Self::keeper(actor), true).await?;
        let all = actor.caller.role == "service_role";
        let rows = tx
            .client()
            .query(
                "select id, bucket_id, key, created_at from storage.s3_multipart_uploads
                 where bucket_id = $1 and starts_with(key, $2) and ($3 or owner_id = $4)
                 order by key, created_at limit 1000",
                &[&bucket, &prefix, &all, &actor.sub()],
            )
            .await?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(|r| Upload {
                id: r.get(0),
                bucket_id: r.get(1),
                key: r.get(2),
                created_at: r.get(3),
            })
            .collect())
    }

    pub async fn abort_upload(
        &self,
        actor: &Actor,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), StorageError> {
        let rows = self
            .upload_query(
                actor,
                (bucket, key, upload_id),
                false,
                "with up as (delete from storage.s3_multipart_uploads where id = $1 returning id)
                 select p.id from storage.s3_multipart_uploads_parts p join up on p.upload_id = up.id",
            )
            .await?;
        let parts: Vec<BlobKey> = rows
            .iter()
            .map(|r| BlobKey::Part { id: r.get(0) })
            .collect();
        self.remove_blobs(parts).await;
        Ok(())
    }

    /// Makes the listed parts (ascending, each with its ETag) the object's bytes, and forgets the
    /// upload in the same transaction. The size limit is checked against the parts' total.
    pub async fn complete_upload(
        &self,
        actor: &Actor,
        bucket: &str,
        key: &str,
        upload_id: &str,
        listed: &[(i32, String)],
    ) -> Result<ObjectInfo, StorageError> {
        if listed.is_empty() {
            return Err(StorageError::InvalidPart("no parts listed".into()));
        }
        if listed.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(StorageError::InvalidPartOrder);
        }
        let keeper = Self::keeper(actor);
        let tx = self.tx(&keeper, true).await?;
        let result = async {
            let up = self
                .upload_row(&tx, actor, upload_id, Some((bucket, key)))
                .await?;
            let rows = tx
                .client()
                .query(
                    "select part_number, id, etag, size from storage.s3_multipart_uploads_parts
                     where upload_id = $1",
                    &[&upload_id],
                )
                .await?;
            Ok::<_, StorageError>((up, rows))
        }
        .await;
        tx.commit().await?;
        let (up, rows) = result?;
        let mut blobs = Vec::with_capacity(listed.len());
        let mut etags = Vec::with_capacity(listed.len());
        let mut sizes = Vec::with_capacity(listed.len());
        let mut size = 0u64;
        for (number, etag) in listed {
            let row = rows
                .iter()
                .find(|r| r.get::<_, i32>(0) == *number)
                .ok_or_else(|| StorageError::InvalidPart(number.to_string()))?;
            let stored: String = row.get(2);
            if stored.trim_matches('"') != etag.trim_matches('"') {
                return Err(StorageError::InvalidPart(number.to_string()));
            }
            blobs.push(row.get::<_, Uuid>(1));
            sizes.push(row.get::<_, i64>(3) as u64);
            size += sizes[sizes.len() - 1];
            etags.push(stored);
        }
        let spec = PutSpec {
            declared_len: Some(size),
            ..up.spec
        };
        let (id, _) = self.check_write(actor, &spec).await?;
        let version = Uuid::new_v4();
        let etag = multipart_etag(&etags);
        let metadata = object_metadata(size, &etag, &spec);
        // One transaction makes the object visible and forgets the upload; the parts not listed
        // are removed after it. If it fails (the upload was aborted meanwhile) nothing is removed
        // here: the parts still belong to the upload, or the abort removed them.
        let (mut info, rest) = self
            .commit_row(
                actor,
                &spec,
                (id, version),
                metadata,
                Some((upload_id, &blobs)),
            )
            .await?;
        self.remove_blobs(rest.into_iter().map(|id| BlobKey::Part { id }))
            .await;
        info.parts = Some(blobs.into_iter().zip(sizes).collect());
        Ok(info)
    }

    /// A TUS upload's place, announced length, and the pieces received so far.
    pub async fn tus_state(
        &self,
        actor: &Actor,
        upload_id: &str,
    ) -> Result<TusState, StorageError> {
        let tx = self.tx(&Self::keeper(actor), true).await?;
        let result = async {
            let up = self.upload_row(&tx, actor, upload_id, None).await?;
            let length = up.meta["tusLength"]
                .as_u64()
                .ok_or(StorageError::NoSuchUpload)?;
            let rows = tx
                .client()
                .query(
                    "select part_number, size, etag from storage.s3_multipart_uploads_parts
                     where upload_id = $1 order by part_number",
                    &[&upload_id],
                )
                .await?;
            Ok::<_, StorageError>(TusState {
                bucket: up.spec.bucket,
                key: up.spec.key,
                length,
                offset: rows.iter().map(|r| r.get::<_, i64>(1) as u64).sum(),
                parts: rows.iter().map(|r| (r.get(0), r.get(2))).collect(),
            })
        }
        .await;
        tx.commit().await?;
        result
    }
}
