//! The storage core's S3 bucket settings kept on the bucket's row (`storage.buckets.s3_cors`,
//! `s3_public_access_block`, `s3_tagging`): read and written as the caller, so the storage.buckets policies
//! decide who may see and change them, as for the bucket's `public` flag.

use super::*;

/// A bucket setting S3 keeps beside the bucket (its column on `storage.buckets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketSetting {
    Cors,
    PublicAccessBlock,
    Tagging,
}

impl BucketSetting {
    fn read_sql(self) -> &'static str {
        match self {
            BucketSetting::Cors => "select s3_cors as v from storage.buckets where id = $1",
            BucketSetting::PublicAccessBlock => {
                "select s3_public_access_block as v from storage.buckets where id = $1"
            }
            BucketSetting::Tagging => "select s3_tagging as v from storage.buckets where id = $1",
        }
    }

    fn write_sql(self) -> &'static str {
        match self {
            BucketSetting::Cors => {
                "update storage.buckets set s3_cors = $2, updated_at = now() where id = $1 returning id"
            }
            BucketSetting::PublicAccessBlock => {
                "update storage.buckets set s3_public_access_block = $2, updated_at = now() \
                 where id = $1 returning id"
            }
            BucketSetting::Tagging => {
                "update storage.buckets set s3_tagging = $2, updated_at = now() \
                 where id = $1 returning id"
            }
        }
    }
}

impl Storage {
    /// A bucket's setting as the caller sees it: `None` when never set; NoSuchBucket when the
    /// bucket is missing or hidden from the caller.
    pub async fn bucket_setting(
        &self,
        actor: &Actor,
        bucket: &str,
        which: BucketSetting,
    ) -> Result<Option<Value>, StorageError> {
        let rows = self
            .read_once(actor, which.read_sql(), &[(&bucket, Type::TEXT)])
            .await?;
        let row = rows.first().ok_or(StorageError::NoSuchBucket)?;
        Ok(row.get::<_, Option<Value>>("v"))
    }

    /// Sets (or, with `None`, removes) a bucket's setting as the caller: an UPDATE of the bucket's
    /// row, which the storage.buckets policies decide. NoSuchBucket when no row was changed.
    pub async fn set_bucket_setting(
        &self,
        actor: &Actor,
        bucket: &str,
        which: BucketSetting,
        value: Option<&Value>,
    ) -> Result<(), StorageError> {
        let rows = self
            .pipelined(
                actor,
                &[(
                    which.write_sql(),
                    &[(&bucket, Type::TEXT), (&value, Type::JSONB)],
                )],
                true,
            )
            .await?
            .into_iter()
            .next()
            .expect("one result per statement")?;
        if rows.is_empty() {
            return Err(StorageError::NoSuchBucket);
        }
        Ok(())
    }

    /// Whether a bucket is public to anonymous readers (its `public` flag, unless its public
    /// access block ignores it): `None` when there is no such bucket. Not the caller's to decide:
    /// read as `storage.doska_bucket` reads it, for requests that have no caller yet.
    pub async fn bucket_public(&self, bucket: &str) -> Result<Option<bool>, StorageError> {
        let actor = Actor::service("GET", bucket);
        let rows = self
            .read_once(
                &actor,
                "select public from storage.doska_bucket($1)",
                &[(&bucket, Type::TEXT)],
            )
            .await?;
        Ok(rows.first().map(|r| r.get::<_, bool>(0)))
    }
}
