//! Tags on the S3 listener: an object's (Put/Get/DeleteObjectTagging, kept in the object's
//! metadata `tags`, replaced in place: its version and bytes stay) and a bucket's
//! (Put/Get/DeleteBucketTagging, kept on the bucket's row). Both are checked by S3's limits
//! ([`tags_value`]); a bucket never tagged, or whose tags were deleted, answers NoSuchTagSet.

use super::*;
use crate::storage::core::BucketSetting;

/// A request's tag set as (key, value) pairs.
fn pairs(tagging: dto::Tagging) -> Vec<(String, String)> {
    tagging
        .tag_set
        .into_iter()
        .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
        .collect()
}

impl S3Door {
    /// Replaces an object's tags in place (its version and bytes stay).
    async fn set_tags(
        &self,
        actor: &Actor,
        bucket: &str,
        key: &str,
        tags: serde_json::Value,
    ) -> S3Result<()> {
        match self
            .core
            .patch_metadata(actor, bucket, key, &serde_json::json!({ "tags": tags }))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => Err(self.read_err(actor, bucket, e).await),
        }
    }

    pub(super) async fn serve_get_object_tagging(
        &self,
        req: S3Request<dto::GetObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::GetObjectTaggingOutput>> {
        let actor = self.actor(&req).await?;
        let i = &req.input;
        let info = match self.core.head(&actor, &i.bucket, &i.key).await {
            Ok(info) => info,
            Err(e) => return Err(self.read_err(&actor, &i.bucket, e).await),
        };
        Ok(S3Response::new(dto::GetObjectTaggingOutput {
            tag_set: tag_set(&info),
            version_id: None,
        }))
    }

    pub(super) async fn serve_put_object_tagging(
        &self,
        req: S3Request<dto::PutObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::PutObjectTaggingOutput>> {
        let actor = self.actor(&req).await?;
        let i = req.input;
        let tags = tags_value(Tagged::Object, pairs(i.tagging))?;
        self.set_tags(&actor, &i.bucket, &i.key, tags).await?;
        Ok(S3Response::new(dto::PutObjectTaggingOutput::default()))
    }

    pub(super) async fn serve_delete_object_tagging(
        &self,
        req: S3Request<dto::DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectTaggingOutput>> {
        let actor = self.actor(&req).await?;
        let i = &req.input;
        self.set_tags(&actor, &i.bucket, &i.key, serde_json::json!({}))
            .await?;
        Ok(S3Response::new(dto::DeleteObjectTaggingOutput::default()))
    }

    pub(super) async fn serve_put_bucket_tagging(
        &self,
        req: S3Request<dto::PutBucketTaggingInput>,
    ) -> S3Result<S3Response<dto::PutBucketTaggingOutput>> {
        let actor = self.actor(&req).await?;
        let i = req.input;
        let tags = tags_value(Tagged::Bucket, pairs(i.tagging))?;
        self.core
            .set_bucket_setting(&actor, &i.bucket, BucketSetting::Tagging, Some(&tags))
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(dto::PutBucketTaggingOutput::default()))
    }

    pub(super) async fn serve_get_bucket_tagging(
        &self,
        req: S3Request<dto::GetBucketTaggingInput>,
    ) -> S3Result<S3Response<dto::GetBucketTaggingOutput>> {
        let actor = self.actor(&req).await?;
        let stored = self
            .core
            .bucket_setting(&actor, &req.input.bucket, BucketSetting::Tagging)
            .await
            .map_err(s3_err)?;
        match stored {
            None => Err(s3_error!(NoSuchTagSet)),
            Some(tags) => Ok(S3Response::new(dto::GetBucketTaggingOutput {
                tag_set: tag_set_of(Some(&tags)),
            })),
        }
    }

    pub(super) async fn serve_delete_bucket_tagging(
        &self,
        req: S3Request<dto::DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketTaggingOutput>> {
        let actor = self.actor(&req).await?;
        self.core
            .set_bucket_setting(&actor, &req.input.bucket, BucketSetting::Tagging, None)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(dto::DeleteBucketTaggingOutput::default()))
    }
}
