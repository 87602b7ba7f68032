//! The storage core's buckets: list, get, create, update, delete and empty them, and whether one
//! exists — each as the caller, so `storage.buckets` policies decide.

use super::*;

impl Storage {
    pub async fn list_buckets(&self, actor: &Actor) -> Result<Vec<Bucket>, StorageError> {
        let tx = self.tx(actor, true).await?;
        let rows = tx
            .client()
            .query(
                &format!(
                    "select {} from storage.buckets order by name",
                    Bucket::COLUMNS
                ),
                &[],
            )
            .await?;
        tx.commit().await?;
        Ok(rows.iter().map(Bucket::from_row).collect())
    }

    pub async fn get_bucket(&self, actor: &Actor, id: &str) -> Result<Bucket, StorageError> {
        let tx = self.tx(actor, true).await?;
        let row = tx
            .client()
            .query_opt(
                &format!(
                    "select {} from storage.buckets where id = $1",
                    Bucket::COLUMNS
                ),
                &[&id],
            )
            .await?;
        tx.commit().await?;
        row.as_ref()
            .map(Bucket::from_row)
            .ok_or(StorageError::NoSuchBucket)
    }

    pub async fn create_bucket(
        &self,
        actor: &Actor,
        id: &str,
        name: &str,
        spec: &BucketSpec,
    ) -> Result<Bucket, StorageError> {
        check_bucket_name(id)?;
        let tx = self.tx(actor, false).await?;
        let row = tx
            .client()
            .query_one(
                &format!(
                    "insert into storage.buckets (id, name, owner, owner_id, public, file_size_limit, allowed_mime_types)
                     values ($1, $2, $3, $4, coalesce($5, false), $6, $7) returning {}",
                    Bucket::COLUMNS
                ),
                &[
                    &id,
                    &name,
                    &actor.owner(),
                    &actor.sub(),
                    &spec.public,
                    &spec.file_size_limit.flatten(),
                    &spec.allowed_mime_types.clone().flatten(),
                ],
            )
            .await
            .map_err(|e| match from_db(&e) {
                Some(StorageError::KeyExists) => StorageError::BucketExists,
                _ => e.into(),
            })?;
        tx.commit().await?;
        Ok(Bucket::from_row(&row))
    }

    pub async fn update_bucket(
        &self,
        actor: &Actor,
        id: &str,
        spec: &BucketSpec,
    ) -> Result<Bucket, StorageError> {
        let tx = self.tx(actor, false).await?;
        let row = tx
            .client()
            .query_opt(
                &format!(
                    "update storage.buckets set public = coalesce($2, public),
                       file_size_limit = case when $3 then $4 else file_size_limit end,
                       allowed_mime_types = case when $5 then $6 else allowed_mime_types end,
                       updated_at = now()
                     where id = $1 returning {}",
                    Bucket::COLUMNS
                ),
                &[
                    &id,
                    &spec.public,
                    &spec.file_size_limit.is_some(),
                    &spec.file_size_limit.flatten(),
                    &spec.allowed_mime_types.is_some(),
                    &spec.allowed_mime_types.clone().flatten(),
                ],
            )
            .await?;
        tx.commit().await?;
        row.as_ref()
            .map(Bucket::from_row)
            .ok_or(StorageError::NoSuchBucket)
    }

    /// Deletes a bucket; fails with `BucketNotEmpty` while objects remain.
    pub async fn delete_bucket(&self, actor: &Actor, id: &str) -> Result<(), StorageError> {
        let tx = self.tx(actor, false).await?;
        let n = tx
            .client()
            .execute("delete from storage.buckets where id = $1", &[&id])
            .await
            .map_err(|e| match from_db(&e) {
                Some(StorageError::NoSuchBucket) => StorageError::BucketNotEmpty,
                _ => e.into(),
            })?;
        tx.commit().await?;
        if n == 0 {
            return Err(StorageError::NoSuchBucket);
        }
        Ok(())
    }

    /// Deletes every object of a bucket the caller may delete; returns how many.
    pub async fn empty_bucket(&self, actor: &Actor, id: &str) -> Result<u64, StorageError> {
        let tx = self.tx(actor, false).await?;
        let exists = tx
            .client()
            .query_opt("select 1 from storage.buckets where id = $1", &[&id])
            .await?
            .is_some();
        if !exists {
            tx.rollback().await.ok();
            return Err(StorageError::NoSuchBucket);
        }
        let rows = tx
            .client()
            .query(
                &format!(
                    "delete from storage.objects where bucket_id = $1 returning {GONE_COLUMNS}"
                ),
                &[&id],
            )
            .await?;
        // Emptying removes every version for good (those just kept by the delete too).
        let old_versions = tx
            .client()
            .query(
                &format!(
                    "delete from storage.doska_object_versions objects where bucket_id = $1
                       and not delete_marker returning {GONE_COLUMNS}"
                ),
                &[&id],
            )
            .await?;
        tx.client()
            .execute(
                "delete from storage.doska_object_versions where bucket_id = $1",
                &[&id],
            )
            .await?;
        // A version the policies did not let the caller delete stays, with its bytes.
        let current: Vec<ObjectInfo> = rows.iter().filter_map(ObjectInfo::from_row).collect();
        let doomed = versions::not_kept(tx.client(), &current).await?;
        tx.commit().await?;
        self.remove_versions(
            doomed
                .into_iter()
                .chain(old_versions.iter().filter_map(ObjectInfo::from_row)),
        )
        .await;
        Ok(rows.len() as u64)
    }

    /// Whether a bucket exists (for S3's NoSuchBucket; the S3 door runs as the operator).
    pub async fn bucket_exists(&self, actor: &Actor, bucket: &str) -> Result<bool, StorageError> {
        let rows = self
            .read_once(
                actor,
                "select 1 from storage.doska_bucket($1)",
                &[(&bucket, Type::TEXT)],
            )
            .await?;
        Ok(!rows.is_empty())
    }
}
