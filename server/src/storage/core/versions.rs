//! The storage core's object versions (see internal migration 0017): a bucket's versioning state,
//! reading a version by its S3 id, listing a bucket's versions and delete markers, deleting the
//! current version (leaving a delete marker where the bucket is versioned) or one version for good
//! (its bytes removed after the commit), and copying a version (S3's `versionId` copy source, the
//! storage API's restore). Every statement runs as the caller: storage.objects' policies decide, and
//! storage.doska_object_versions carries the same policies. Rejects unknown version ids
//! (NoSuchVersion) and reads of a delete marker (IsDeleteMarker).

use super::*;

/// A version's S3 id as its row tells it: `metadata.versionId`, or `null` (a version written while
/// the bucket was unversioned or suspended).
pub fn version_id_of(info: &ObjectInfo) -> String {
    info.metadata
        .get("versionId")
        .and_then(Value::as_str)
        .unwrap_or("null")
        .to_string()
}

/// The `x-amz-version-id` a write or read answers with: the version's id where the bucket was
/// versioned when it was written (`null` included, for a version restored as current), nothing
/// for an object of a bucket never versioned.
pub fn answered_version_id(info: &ObjectInfo) -> Option<String> {
    info.metadata
        .get("versionId")
        .map(|v| v.as_str().unwrap_or("null").to_string())
}

/// One entry of a key's history.
#[derive(Debug, Clone)]
pub struct VersionInfo {
    pub object: ObjectInfo,
    pub version_id: String,
    pub delete_marker: bool,
    pub is_latest: bool,
}

/// One page of [`Storage::list_versions`].
#[derive(Debug, Default)]
pub struct VersionPage {
    pub versions: Vec<VersionInfo>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    /// Where the next page starts: the last key (or common prefix) and, for a key, its version id.
    pub next: Option<(String, Option<String>)>,
}

/// What [`Storage::list_versions`] lists.
#[derive(Debug, Clone, Copy, Default)]
pub struct VersionQuery<'a> {
    pub prefix: &'a str,
    pub delimiter: Option<&'a str>,
    pub key_marker: Option<&'a str>,
    pub version_marker: Option<&'a str>,
    pub max: usize,
}

/// What deleting the current version of a key did.
#[derive(Debug, Clone)]
pub struct Deleted {
    pub key: String,
    /// The delete marker left in a versioned bucket (its version id).
    pub marker: Option<String>,
}

/// What deleting one version for good removed.
#[derive(Debug, Clone)]
pub struct DeletedVersion {
    pub version_id: String,
    pub delete_marker: bool,
}

/// A row of storage.doska_object_versions, aliased `objects` so the column macros read it.
macro_rules! version_select {
    () => {
        concat!(
            "select ",
            object_columns!(),
            ", ",
            layout_column!(),
            " as parts, delete_marker, version_id from storage.doska_object_versions objects"
        )
    };
}

const VERSION_SQL: &str = concat!(
    version_select!(),
    " where bucket_id = $1 and name = $2 and version_id = $3"
);

/// Current rows and noncurrent versions of keys under `$2`, after (`$3` key, `$4` order) and in
/// S3's order: key, then newest first. A current row sorts first in its key's history.
const LIST_VERSIONS_SQL: &str = concat!(
    "select * from (
  select ",
    object_columns!(),
    ", false as delete_marker, coalesce(metadata ->> 'versionId', 'null') as version_id,
      true as is_latest, 9223372036854775807::bigint as seq
    from storage.objects where bucket_id = $1 and starts_with(name, $2) and name >= $3
  union all
  select ",
    object_columns!(),
    ", delete_marker, version_id,
      not exists (select 1 from storage.objects o where o.bucket_id = v.bucket_id and o.name = v.name)
      and v.seq = (select max(w.seq) from storage.doska_object_versions w
                    where w.bucket_id = v.bucket_id and w.name = v.name) as is_latest, seq
    from storage.doska_object_versions v where bucket_id = $1 and starts_with(name, $2) and name >= $3
) x where name > $3 or seq < $4 order by name, seq desc limit $5"
);

/// Deletes the current rows of keys `$2` (the triggers keep them as versions where the bucket says
/// so); returns them with whether each was kept.
const DELETE_CURRENT_SQL: &str = concat!(
    "delete from storage.objects where bucket_id = $1 and name = any($2) returning ",
    object_columns!(),
    ", ",
    layout_column!(),
    " as parts"
);

/// In a suspended bucket a delete replaces the key's `null` version (a marker or not).
const DROP_NULL_SQL: &str = concat!(
    "delete from storage.doska_object_versions objects
     where bucket_id = $1 and name = any($2) and version_id = 'null'
       and storage.doska_versioning($1) = 'Suspended'
     returning ",
    object_columns!(),
    ", ",
    layout_column!(),
    " as parts, delete_marker"
);

/// Delete markers for keys `$2` left without a current version, where the bucket is versioned.
const MARK_SQL: &str = "insert into storage.doska_object_versions as v
    (id, bucket_id, name, owner, owner_id, version, version_id, delete_marker, metadata)
  select gen_random_uuid(), $1::text, n, $3::uuid, $4::text, m.version::text,
         case when storage.doska_versioning($1) = 'Enabled' then m.version::text else 'null' end,
         true, '{}'::jsonb
    from unnest($2::text[]) as n cross join lateral (select gen_random_uuid() as version) m
   where storage.doska_versioning($1::text) is not null
     and not exists (select 1 from storage.objects o where o.bucket_id = $1::text and o.name = n)
  returning name, version_id";

/// Of the current rows a statement just deleted, those not kept as noncurrent versions (asked in
/// the same transaction): their bytes go once it commits.
pub(super) async fn not_kept(
    client: &tokio_postgres::Client,
    gone: &[ObjectInfo],
) -> Result<Vec<ObjectInfo>, StorageError> {
    let ids: Vec<Uuid> = gone.iter().map(|o| o.id).collect();
    let versions: Vec<String> = gone.iter().map(|o| o.version.to_string()).collect();
    let kept = client.query(KEPT_SQL, &[&ids, &versions]).await?;
    Ok(gone
        .iter()
        .filter(|o| {
            !kept.iter().any(|r| {
                r.get::<_, Uuid>(0) == o.id && r.get::<_, String>(1) == o.version.to_string()
            })
        })
        .cloned()
        .collect())
}

/// Which of the versions `($1[i], $2[i])` (object id, version) are kept as noncurrent versions.
/// Serializes deletes of the same keys (`$1` bucket, `$2` keys) until the transaction ends, in one
/// order so two deletes never wait on each other: a delete that makes an older version current
/// again must be seen by the next delete of that key, or a version deleted meanwhile comes back.
const LOCK_KEYS_SQL: &str = "select pg_advisory_xact_lock(h) from (
    select distinct hashtextextended($1::text || '/' || k, 0) as h from unnest($2::text[]) as k
  ) l order by h";

const KEPT_SQL: &str =
    "select c.id, c.version from unnest($1::uuid[], $2::text[]) as c(id, version)
  where storage.doska_version_kept(c.id, c.version)";

impl Storage {
    /// A bucket's versioning state (`Enabled`, `Suspended`; `None`: never enabled).
    pub async fn versioning(
        &self,
        actor: &Actor,
        bucket: &str,
    ) -> Result<Option<String>, StorageError> {
        let rows = self
            .read_once(
                actor,
                "select storage.doska_versioning(b.id) from storage.doska_bucket($1) b",
                &[(&bucket, Type::TEXT)],
            )
            .await?;
        let row = rows.first().ok_or(StorageError::NoSuchBucket)?;
        Ok(row.get(0))
    }

    /// Sets a bucket's versioning state (`Enabled` or `Suspended`); the operator's (service_role's)
    /// to change, as a bucket's settings are.
    pub async fn set_versioning(
        &self,
        actor: &Actor,
        bucket: &str,
        state: &str,
    ) -> Result<(), StorageError> {
        self.set_setting(actor, bucket, "versioning", &state.to_string())
            .await
    }

    /// Writes one column of a bucket's settings row.
    pub(super) async fn set_setting<T: ToSql + Sync>(
        &self,
        actor: &Actor,
        bucket: &str,
        column: &'static str,
        value: &T,
    ) -> Result<(), StorageError> {
        let sql = match column {
            "versioning" => {
                "insert into storage.doska_bucket_settings (bucket_id, versioning) values ($1, $2)
                 on conflict (bucket_id) do update set versioning = excluded.versioning,
                   updated_at = now()"
            }
            "lifecycle" => {
                "insert into storage.doska_bucket_settings (bucket_id, lifecycle) values ($1, $2)
                 on conflict (bucket_id) do update set lifecycle = excluded.lifecycle,
                   updated_at = now()"
            }
            _ => unreachable!("a settings column of this module"),
        };
        if !self.bucket_exists(actor, bucket).await? {
            return Err(StorageError::NoSuchBucket);
        }
        let tx = self.tx(actor, false).await?;
        tx.client()
            .execute(sql, &[&bucket as &(dyn ToSql + Sync), value])
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A version of a key by its S3 id (the current one too), with whether it is the latest.
    pub async fn head_version(
        &self,
        actor: &Actor,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> Result<VersionInfo, StorageError> {
        match self.head(actor, bucket, key).await {
            Ok(info) if version_id_of(&info) == version_id => {
                return Ok(VersionInfo {
                    version_id: version_id.to_string(),
                    object: info,
                    delete_marker: false,
                    is_latest: true,
                });
            }
            Ok(_) | Err(StorageError::NoSuchKey) => {}
            Err(e) => return Err(e),
        }
        let rows = self
            .read_once(
                actor,
                VERSION_SQL,
                &[
                    (&bucket, Type::TEXT),
                    (&key, Type::TEXT),
                    (&version_id, Type::TEXT),
                ],
            )
            .await?;
        let row = rows.first().ok_or(StorageError::NoSuchVersion)?;
        let object = ObjectInfo::from_row(row).ok_or(StorageError::NoSuchVersion)?;
        Ok(VersionInfo {
            object,
            version_id: row.get("version_id"),
            delete_marker: row.get("delete_marker"),
            is_latest: false,
        })
    }

    /// The version id of the delete marker that is a key's latest version, if it is one.
    pub async fn latest_marker(
        &self,
        actor: &Actor,
        bucket: &str,
        key: &str,
    ) -> Result<Option<String>, StorageError> {
        let rows = self
            .read_once(
                actor,
                "select version_id, delete_marker from storage.doska_object_versions
                  where bucket_id = $1 and name = $2
                    and not exists (select 1 from storage.objects o
                                     where o.bucket_id = $1 and o.name = $2)
                  order by seq desc limit 1",
                &[(&bucket, Type::TEXT), (&key, Type::TEXT)],
            )
            .await?;
        Ok(rows
            .first()
            .filter(|r| r.get::<_, bool>(1))
            .map(|r| r.get(0)))
    }

    /// A version's row and a stream of its bytes; a delete marker has none (IsDeleteMarker).
    pub async fn get_version(
        &self,
        actor: &Actor,
        bucket: &str,
        key: &str,
        version_id: &str,
        range: Option<ByteRange>,
    ) -> Result<(VersionInfo, ByteStream, Option<(u64, u64)>), StorageError> {
        let v = self.head_version(actor, bucket, key, version_id).await?;
        if v.delete_marker {
            return Err(StorageError::IsDeleteMarker);
        }
        let span = range.map(|r| r.resolve(v.object.size)).transpose()?;
        let stream = match &v.object.parts {
            Some(parts) => {
                let parts: Vec<(BlobKey, u64)> = parts
                    .iter()
                    .map(|(id, size)| (BlobKey::Part { id: *id }, *size))
                    .collect();
                self.backend.read_parts(&parts, span).await?
            }
            None => self.backend.read(&v.object.blob(), span).await?,
        };
        Ok((v, stream, span))
    }

    /// Lists versions and delete markers under `q.prefix`, after `q.key_marker` (and, within that
    /// key, after `q.version_marker`), grouping keys by `q.delimiter`; at most `q.max` entries.
    pub async fn list_versions(
        &self,
        actor: &Actor,
        bucket: &str,
        q: &VersionQuery<'_>,
    ) -> Result<VersionPage, StorageError> {
        let VersionQuery {
            prefix,
            delimiter,
            key_marker,
            version_marker,
            max,
        } = *q;
        let mut page = VersionPage::default();
        if max == 0 {
            return Ok(page);
        }
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let mut after = key_marker.unwrap_or("").to_string();
        let tx = self.tx(actor, true).await?;
        // Within the marker key: after the marker version (none: past the whole key).
        let mut after_seq = i64::MIN;
        if let Some(v) = version_marker.filter(|v| !v.is_empty())
            && !after.is_empty()
        {
            let current = tx
                .client()
                .query_opt(
                    "select 1 from storage.objects where bucket_id = $1 and name = $2
                       and coalesce(metadata ->> 'versionId', 'null') = $3",
                    &[&bucket, &after, &v],
                )
                .await?;
            after_seq = if current.is_some() {
                i64::MAX
            } else {
                tx.client()
                    .query_opt(
                        "select seq from storage.doska_object_versions
                          where bucket_id = $1 and name = $2 and version_id = $3",
                        &[&bucket, &after, &v],
                    )
                    .await?
                    .map_or(i64::MIN, |r| r.get(0))
            };
        }
        if let Some(d) = delimiter
            && after.ends_with(d)
            && after.starts_with(prefix)
            && after_seq == i64::MIN
        {
            after.push(char::MAX);
        }
        let batch: i64 = (max as i64 + 1).clamp(2, 1000);
        'outer: loop {
            let rows = tx
                .client()
                .query_typed(
                    LIST_VERSIONS_SQL,
                    &[
                        (&bucket, Type::TEXT),
                        (&prefix, Type::TEXT),
                        (&after, Type::TEXT),
                        (&after_seq, Type::INT8),
                        (&batch, Type::INT8),
                    ],
                )
                .await?;
            let done = (rows.len() as i64) < batch;
            for row in &rows {
                let name: String = row.get("name");
                if page.versions.len() + page.prefixes.len() >= max {
                    page.truncated = true;
                    break 'outer;
                }
                if let Some(d) = delimiter
                    && let Some(pos) = name[prefix.len()..].find(d)
                {
                    let cp = name[..prefix.len() + pos + d.len()].to_string();
                    after = format!("{cp}{}", char::MAX);
                    after_seq = i64::MIN;
                    page.next = Some((cp.clone(), None));
                    page.prefixes.push(cp);
                    continue 'outer;
                }
                after = name.clone();
                after_seq = row.get("seq");
                let version_id: String = row.get("version_id");
                page.next = Some((name, Some(version_id.clone())));
                let delete_marker: bool = row.get("delete_marker");
                let object = match ObjectInfo::from_row(row) {
                    Some(o) => o,
                    None => continue,
                };
                page.versions.push(VersionInfo {
                    object,
                    version_id,
                    delete_marker,
                    is_latest: row.get("is_latest"),
                });
            }
            if done {
                break;
            }
        }
        tx.commit().await?;
        if !page.truncated {
            page.next = None;
        }
        Ok(page)
    }

    /// Deletes the current versions of `keys` the caller may delete. In a versioned bucket the
    /// deleted versions stay as noncurrent versions and each key gets a delete marker (a suspended
    /// bucket's replaces the key's `null` version); bytes of versions not kept are removed after
    /// the commit. Returns the deleted current rows and what happened to each key.
    pub async fn delete_current(
        &self,
        actor: &Actor,
        bucket: &str,
        keys: &[String],
    ) -> Result<(Vec<ObjectInfo>, Vec<Deleted>), StorageError> {
        let tx = self.tx(actor, false).await?;
        let c = tx.client();
        c.query(LOCK_KEYS_SQL, &[&bucket, &keys]).await?;
        let rows = c.query(DELETE_CURRENT_SQL, &[&bucket, &keys]).await?;
        let dropped = c.query(DROP_NULL_SQL, &[&bucket, &keys]).await?;
        let marks = c
            .query(MARK_SQL, &[&bucket, &keys, &actor.owner(), &actor.sub()])
            .await?;
        let gone: Vec<ObjectInfo> = rows.iter().filter_map(ObjectInfo::from_row).collect();
        let doomed = not_kept(c, &gone).await?;
        tx.commit().await?;
        let replaced = dropped
            .iter()
            .filter(|r| !r.get::<_, bool>("delete_marker"))
            .filter_map(ObjectInfo::from_row);
        self.remove_versions(doomed.into_iter().chain(replaced))
            .await;
        let deleted = keys
            .iter()
            .map(|k| Deleted {
                key: k.clone(),
                marker: marks
                    .iter()
                    .find(|r| r.get::<_, String>(0) == *k)
                    .map(|r| r.get(1)),
            })
            .collect();
        Ok((gone, deleted))
    }

    /// Deletes one version of a key for good (the current one, a noncurrent one or a delete
    /// marker), as the caller; its bytes are removed after the commit. When it was the current
    /// version or the delete marker in front, the newest version left, unless it is a delete marker,
    /// becomes current.
    /// Deleting a version that does not exist succeeds with nothing done, as in S3.
    pub async fn delete_version(
        &self,
        actor: &Actor,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> Result<Option<DeletedVersion>, StorageError> {
        let tx = self.tx(actor, false).await?;
        let c = tx.client();
        c.query(LOCK_KEYS_SQL, &[&bucket, &vec![key]]).await?;
        let current = c
            .query(
                concat!(
                    "delete from storage.objects where bucket_id = $1 and name = $2
                       and coalesce(metadata ->> 'versionId', 'null') = $3 returning ",
                    object_columns!(),
                    ", ",
                    layout_column!(),
                    " as parts"
                ),
                &[&bucket, &key, &version_id],
            )
            .await?;
        // The delete trigger may have kept the current row as a version: that goes too.
        let noncurrent = c
            .query(
                concat!(
                    "delete from storage.doska_object_versions objects
                      where bucket_id = $1 and name = $2 and version_id = $3 returning ",
                    object_columns!(),
                    ", ",
                    layout_column!(),
                    " as parts, delete_marker"
                ),
                &[&bucket, &key, &version_id],
            )
            .await?;
        // The current version or the delete marker in front gone: the newest version left (if it
        // is no marker) becomes current.
        if !current.is_empty() || !noncurrent.is_empty() {
            c.execute("select storage.doska_promote($1, $2)", &[&bucket, &key])
                .await?;
        }
        tx.commit().await?;
        let delete_marker = noncurrent.iter().any(|r| r.get::<_, bool>("delete_marker"));
        self.remove_versions(
            current
                .iter()
                .chain(
                    noncurrent
                        .iter()
                        .filter(|r| !r.get::<_, bool>("delete_marker")),
                )
                .filter_map(ObjectInfo::from_row),
        )
        .await;
        Ok(
            (!current.is_empty() || !noncurrent.is_empty()).then(|| DeletedVersion {
                version_id: version_id.to_string(),
                delete_marker,
            }),
        )
    }

    /// Copies a version of an object (the current one without `version_id`) to `spec`'s place as
    /// a new version: S3's CopyObject, and the storage API's restore of an old version.
    pub async fn copy_version(
        &self,
        actor: &Actor,
        src_bucket: &str,
        src_key: &str,
        version_id: Option<&str>,
        spec: &PutSpec,
    ) -> Result<ObjectInfo, StorageError> {
        let (src, stream) = match version_id {
            Some(v) => {
                let (v, stream, _) = self
                    .get_version(actor, src_bucket, src_key, v, None)
                    .await?;
                (v.object, stream)
            }
            None => {
                let (src, stream, _) = self.get(actor, src_bucket, src_key, None).await?;
                (src, stream)
            }
        };
        let spec = PutSpec {
            declared_len: Some(src.size),
            ..spec.clone()
        };
        let (id, limit) = self.check_write(actor, &spec).await?;
        let version = Uuid::new_v4();
        let written = self
            .backend
            .write_sized(
                &BlobKey::Object { id, version },
                stream,
                limit,
                Some(src.size),
            )
            .await
            .map_err(|e| write_error(e, limit))?;
        let metadata = object_metadata(written.size, &src.etag, &spec);
        self.commit_write(actor, &spec, (id, version), metadata)
            .await
    }
}
