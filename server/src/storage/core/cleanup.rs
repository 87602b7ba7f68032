//! The storage core's housekeeping: removing the bytes a committed write replaced or a delete left,
//! and the orphan cleanup (blobs no row refers to, older than an age).

use super::*;

impl Storage {
    /// After a write committed: removes the bytes of the version it replaced (`old`, with its
    /// part layout and whether the bucket kept it as a noncurrent version — the row statement's
    /// `old_kept`), if there was one, it was not kept, and it is not the version just written.
    pub(super) async fn remove_replaced(
        &self,
        info: &ObjectInfo,
        old: Option<Uuid>,
        old_parts: Option<Vec<(Uuid, u64)>>,
        kept: bool,
    ) {
        if let Some(old) = old
            && old != info.version
            && !kept
        {
            let replaced = ObjectInfo {
                version: old,
                parts: old_parts,
                ..info.clone()
            };
            self.remove_blobs(replaced.blobs()).await;
        }
    }

    /// Removes the bytes of versions deleted for good (each blob once, whatever lists it twice).
    pub(super) async fn remove_versions(&self, gone: impl IntoIterator<Item = ObjectInfo>) {
        let mut blobs: Vec<BlobKey> = Vec::new();
        for b in gone.into_iter().flat_map(|o| o.blobs()) {
            if !blobs.contains(&b) {
                blobs.push(b);
            }
        }
        self.remove_blobs(blobs).await;
    }

    pub(super) async fn remove_blobs(&self, blobs: impl IntoIterator<Item = BlobKey>) {
        for b in blobs {
            if let Err(e) = self.backend.remove(&b).await {
                tracing::warn!(error = %e, blob = ?b, "removing stored bytes failed; orphan cleanup will retry");
            }
        }
    }
}

/// Removes blobs older than `age` that no row refers to. Runs on the admin pool (it must see every
/// row, whatever the policies); several doska processes may share a storage dir, which is why only
/// age, never "not mine", makes a blob an orphan.
pub async fn cleanup_orphans(
    backend: &dyn Backend,
    admin: &Pool,
    age: std::time::Duration,
) -> Result<usize, StorageError> {
    let client = admin
        .get()
        .await
        .map_err(|e| StorageError::Db(TxError::Pool(e)))?;
    // Layouts of versions that are gone (deleted or overwritten): their parts become orphans. A
    // layout commits with its object's row, so one without a row is never about to be used.
    client
        .execute(
            "delete from storage.doska_object_parts l where not exists
               (select 1 from storage.objects o
                where o.id = l.object_id and o.version = l.object_version)
             and not exists (select 1 from storage.doska_object_versions v
                where v.id = l.object_id and v.version = l.object_version)",
            &[],
        )
        .await?;
    // Writes a crash left incomplete inside the backend (an S3 service's multipart uploads). A
    // service that cannot list them (s3s-fs has no ListMultipartUploads) or fails to still gets its
    // orphan blobs removed below.
    let mut removed = match backend.sweep_incomplete(age).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "incomplete uploads in the storage backend not swept");
            0
        }
    };
    let candidates = backend.older_than(age).await?;
    for chunk in candidates.chunks(500) {
        let mut objects: Vec<Uuid> = Vec::new();
        let mut versions: Vec<String> = Vec::new();
        let mut parts: Vec<Uuid> = Vec::new();
        for b in chunk {
            match b {
                BlobKey::Object { id, version } => {
                    objects.push(*id);
                    versions.push(version.to_string());
                }
                BlobKey::Part { id } => parts.push(*id),
            }
        }
        let live = client
            .query(
                "select o.id, o.version from storage.objects o
                   join unnest($1::uuid[], $2::text[]) as c(id, version)
                     on o.id = c.id and o.version = c.version
                 union all
                 select v.id, v.version from storage.doska_object_versions v
                   join unnest($1::uuid[], $2::text[]) as c(id, version)
                     on v.id = c.id and v.version = c.version
                 union all
                 select p.id, null from storage.s3_multipart_uploads_parts p where p.id = any($3)
                 union all
                 select l.part_id, null from storage.doska_object_parts l
                 where l.part_id = any($3) and (
                   exists (select 1 from storage.objects o
                            where o.id = l.object_id and o.version = l.object_version)
                   or exists (select 1 from storage.doska_object_versions v
                            where v.id = l.object_id and v.version = l.object_version))",
                &[&objects, &versions, &parts],
            )
            .await?;
        for b in chunk {
            let referenced = live.iter().any(|r| {
                let id: Uuid = r.get(0);
                let version: Option<String> = r.get(1);
                match b {
                    BlobKey::Object { id: i, version: v } => {
                        id == *i && version.as_deref() == Some(v.to_string().as_str())
                    }
                    BlobKey::Part { id: i } => id == *i && version.is_none(),
                }
            });
            if !referenced {
                backend.remove(b).await?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}
