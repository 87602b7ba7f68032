//! Object Lock is not built: no bucket is made with it (CreateBucket's
//! `x-amz-bucket-object-lock-enabled` is refused with NotImplemented), so every bucket is one
//! without Object Lock, and its lock operations answer as S3 answers for such a bucket — a lock
//! configuration cannot be put (InvalidBucketState) and there is none to get
//! (ObjectLockConfigurationNotFoundError); an object's retention and legal hold cannot be put or
//! read (InvalidRequest). A missing bucket, object or version answers as a read of it would.

use super::*;

/// S3's answer to a retention or legal hold asked of a bucket without Object Lock.
fn no_lock_configuration() -> S3Error {
    s3_error!(
        InvalidRequest,
        "Bucket is missing Object Lock Configuration"
    )
}

impl S3Door {
    /// CreateBucket asking for Object Lock: refused, since nothing would hold the objects.
    pub(super) fn no_object_lock(&self, i: &dto::CreateBucketInput) -> S3Result<()> {
        if i.object_lock_enabled_for_bucket == Some(true) {
            return Err(s3_error!(
                NotImplemented,
                "Object Lock is not supported: a bucket cannot be made with it"
            ));
        }
        Ok(())
    }

    pub(super) async fn serve_put_object_lock_configuration(
        &self,
        req: S3Request<dto::PutObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<dto::PutObjectLockConfigurationOutput>> {
        self.require_bucket(&self.actor(&req).await?, &req.input.bucket)
            .await?;
        Err(s3_error!(
            InvalidBucketState,
            "Object Lock configuration cannot be enabled: the bucket was not made with Object Lock \
             (doska does not support it)"
        ))
    }

    pub(super) async fn serve_get_object_lock_configuration(
        &self,
        req: S3Request<dto::GetObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<dto::GetObjectLockConfigurationOutput>> {
        self.require_bucket(&self.actor(&req).await?, &req.input.bucket)
            .await?;
        Err(s3_error!(
            ObjectLockConfigurationNotFoundError,
            "Object Lock configuration does not exist for this bucket"
        ))
    }

    /// A retention or legal hold asked of an object: the object (or version) must be there, and
    /// then its bucket has no Object Lock.
    async fn lock_of_object(
        &self,
        actor: &Actor,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> S3Error {
        match self.named_version(actor, bucket, key, version_id).await {
            Ok(_) => no_lock_configuration(),
            Err(e) => e,
        }
    }

    pub(super) async fn serve_put_object_retention(
        &self,
        req: S3Request<dto::PutObjectRetentionInput>,
    ) -> S3Result<S3Response<dto::PutObjectRetentionOutput>> {
        let actor = self.actor(&req).await?;
        let i = &req.input;
        Err(self
            .lock_of_object(&actor, &i.bucket, &i.key, i.version_id.as_deref())
            .await)
    }

    pub(super) async fn serve_get_object_retention(
        &self,
        req: S3Request<dto::GetObjectRetentionInput>,
    ) -> S3Result<S3Response<dto::GetObjectRetentionOutput>> {
        let actor = self.actor(&req).await?;
        let i = &req.input;
        Err(self
            .lock_of_object(&actor, &i.bucket, &i.key, i.version_id.as_deref())
            .await)
    }

    pub(super) async fn serve_put_object_legal_hold(
        &self,
        req: S3Request<dto::PutObjectLegalHoldInput>,
    ) -> S3Result<S3Response<dto::PutObjectLegalHoldOutput>> {
        let actor = self.actor(&req).await?;
        let i = &req.input;
        Err(self
            .lock_of_object(&actor, &i.bucket, &i.key, i.version_id.as_deref())
            .await)
    }

    pub(super) async fn serve_get_object_legal_hold(
        &self,
        req: S3Request<dto::GetObjectLegalHoldInput>,
    ) -> S3Result<S3Response<dto::GetObjectLegalHoldOutput>> {
        let actor = self.actor(&req).await?;
        let i = &req.input;
        Err(self
            .lock_of_object(&actor, &i.bucket, &i.key, i.version_id.as_deref())
            .await)
    }
}
