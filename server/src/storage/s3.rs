//! The S3 front door: the S3 protocol (via s3s) on its own listener, over the storage core. Requests
//! are signed (SigV4 headers, presigned URLs, POST policies; v2 too) with the operator's key pair
//! (acting as `service_role`), a key from `doska s3-keys`, or — Supabase's session-token access —
//! the fixed S3 session key with a user's JWT as the session token, acting as that JWT's role and
//! claims (auth.rs). Wrongly signed requests are refused by s3s before any operation runs; an
//! invalid or expired session token is refused with AccessDenied. Unsigned requests may read a
//! public bucket and act as `anon` on it, or list buckets as `anon`; anything else unsigned is
//! refused (acl.rs). Browsers' CORS preflights are answered from the bucket's rules before s3s,
//! and actual requests' answers get the rules' headers (cors.rs).
//! Operations not listed in `impl S3 for S3Door` answer NotImplemented (s3s's default). Errors carry
//! S3's codes. SigV4 (the canonical request, built from the raw query and headers) is s3s's; the
//! session token is read through `http::query`, with the same form rules s3s reads that query by.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use s3s::{
    S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result,
    dto::{self, ETag, StreamingBlob, Timestamp},
    s3_error,
    service::S3ServiceBuilder,
};
use tokio::{net::TcpListener, sync::watch};
use tokio_rustls::TlsAcceptor;

use super::{
    backend::ByteStream,
    core::{Actor, BucketSpec, ByteRange, ListPage, ObjectInfo, PutSpec, Storage, StorageError},
};
use crate::{config::S3Keys, state::SharedState};

mod acl;
mod attributes;
mod auth;
mod convert;
mod cors;
mod integrity;
mod lifecycle;
mod listing;
mod multipart;
mod object_lock;
mod objects;
mod post_object;
mod respond;
mod tagging;
mod versioning;
use auth::{KeyAuth, SESSION_TOKEN, session_token};
use respond::{close_after_refusal, panicked, presign_expiry_refused, with_request_id};

use convert::*;

struct S3Door {
    core: Storage,
    auth: KeyAuth,
    /// For the JWT verifier of session tokens.
    state: SharedState,
    /// Buckets' lifecycle rules for PutObject's `x-amz-expiration`.
    lifecycle_rules: lifecycle::RulesCache,
}

impl S3Door {
    async fn require_bucket(&self, actor: &Actor, bucket: &str) -> S3Result<()> {
        match self
            .core
            .bucket_exists(actor, bucket)
            .await
            .map_err(s3_err)?
        {
            true => Ok(()),
            false => Err(s3_error!(NoSuchBucket)),
        }
    }

    /// A read's error: NoSuchKey becomes NoSuchBucket when the bucket is missing too (asked only
    /// then, so a found object costs nothing more).
    async fn read_err(&self, actor: &Actor, bucket: &str, e: StorageError) -> S3Error {
        if matches!(e, StorageError::NoSuchKey)
            && matches!(self.core.bucket_exists(actor, bucket).await, Ok(false))
        {
            return s3_error!(NoSuchBucket);
        }
        s3_err(e)
    }

    /// A write's `If-Match` / `If-None-Match` against the key's current version: If-Match needs
    /// the key to exist (NoSuchKey) with a matching ETag (PreconditionFailed); If-None-Match fails
    /// when it matches. Checked just before the write, so a write racing this one in between is
    /// not seen (docs/storage.md).
    async fn write_preconditions(
        &self,
        actor: &Actor,
        bucket: &str,
        key: &str,
        if_match: &Option<dto::ETagCondition>,
        if_none_match: &Option<dto::ETagCondition>,
    ) -> S3Result<()> {
        let current = match self.core.head(actor, bucket, key).await {
            Ok(info) => Some(etag(&info.etag)),
            Err(StorageError::NoSuchKey) => None,
            Err(e) => return Err(s3_err(e)),
        };
        let is = |c: &dto::ETagCondition, e: &ETag| match c {
            dto::ETagCondition::Any => true,
            dto::ETagCondition::ETag(x) => x.value() == e.value(),
        };
        if let Some(c) = if_match {
            match &current {
                None => {
                    return Err(self.read_err(actor, bucket, StorageError::NoSuchKey).await);
                }
                Some(e) if !is(c, e) => return Err(s3_error!(PreconditionFailed)),
                Some(_) => {}
            }
        }
        if let (Some(c), Some(e)) = (if_none_match, &current)
            && is(c, e)
        {
            return Err(s3_error!(PreconditionFailed));
        }
        Ok(())
    }

    fn s3_object(o: &ObjectInfo, enc: &Option<dto::EncodingType>, with_owner: bool) -> dto::Object {
        dto::Object {
            owner: with_owner.then(|| owner(o.owner_id.as_deref())),
            e_tag: Some(etag(&o.etag)),
            key: Some(encode_key(enc, o.name.clone())),
            last_modified: Some(ts(o.updated_at)),
            size: Some(o.size as i64),
            storage_class: Some(dto::ObjectStorageClass::from_static(
                dto::ObjectStorageClass::STANDARD,
            )),
            ..Default::default()
        }
    }
}

#[async_trait::async_trait]
impl S3 for S3Door {
    async fn list_buckets(
        &self,
        req: S3Request<dto::ListBucketsInput>,
    ) -> S3Result<S3Response<dto::ListBucketsOutput>> {
        let mut buckets = self
            .core
            .list_buckets(&self.actor(&req).await?)
            .await
            .map_err(s3_err)?;
        let i = &req.input;
        // Pages by name: the continuation token is the last name returned.
        buckets.sort_by(|a, b| a.id.cmp(&b.id));
        buckets.retain(|b| {
            i.prefix.as_deref().is_none_or(|p| b.id.starts_with(p))
                && i.continuation_token
                    .as_deref()
                    .is_none_or(|t| b.id.as_str() > t)
        });
        let max = i.max_buckets.unwrap_or(10_000).clamp(1, 10_000) as usize;
        let continuation_token = (buckets.len() > max).then(|| buckets[max - 1].id.clone());
        buckets.truncate(max);
        Ok(S3Response::new(dto::ListBucketsOutput {
            continuation_token,
            prefix: i.prefix.clone(),
            owner: Some(owner(None)),
            buckets: Some(
                buckets
                    .into_iter()
                    .map(|b| dto::Bucket {
                        creation_date: Some(ts(b.created_at)),
                        name: Some(b.id),
                        ..Default::default()
                    })
                    .collect(),
            ),
        }))
    }

    async fn create_bucket(
        &self,
        req: S3Request<dto::CreateBucketInput>,
    ) -> S3Result<S3Response<dto::CreateBucketOutput>> {
        let b = &req.input.bucket;
        // s3s checks the rest of S3's naming rules before the operation runs.
        if b.contains(".-") || b.contains("-.") {
            return Err(s3_error!(
                InvalidBucketName,
                "A bucket name may not hold a dot next to a hyphen"
            ));
        }
        let i = &req.input;
        self.no_object_lock(i)?;
        if i.object_ownership.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "Object ownership controls are not supported: each object is owned by its writer"
            ));
        }
        let public = self.create_bucket_public(&acl::AclAsk {
            canned: i.acl.as_ref().map(|a| a.as_str()),
            policy: None,
            grants: acl::grant_headers!(i)
                .into_iter()
                .chain(i.grant_write.as_deref())
                .collect(),
        })?;
        let actor = self.actor(&req).await?;
        let spec = BucketSpec {
            public,
            ..Default::default()
        };
        match self.core.create_bucket(&actor, b, b, &spec).await {
            // us-east-1 (doska's region) answers 200 to the operator re-creating a bucket, as AWS
            // does to a bucket's owner there; the bucket and its objects stay as they were.
            Err(StorageError::BucketExists) if actor.caller.role == "service_role" => {}
            r => {
                r.map_err(s3_err)?;
            }
        }
        Ok(S3Response::new(dto::CreateBucketOutput {
            location: Some(format!("/{b}")),
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<dto::HeadBucketInput>,
    ) -> S3Result<S3Response<dto::HeadBucketOutput>> {
        self.require_bucket(&self.actor(&req).await?, &req.input.bucket)
            .await?;
        Ok(S3Response::new(dto::HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<dto::GetBucketLocationInput>,
    ) -> S3Result<S3Response<dto::GetBucketLocationOutput>> {
        self.require_bucket(&self.actor(&req).await?, &req.input.bucket)
            .await?;
        Ok(S3Response::new(dto::GetBucketLocationOutput::default()))
    }

    async fn get_bucket_acl(
        &self,
        req: S3Request<dto::GetBucketAclInput>,
    ) -> S3Result<S3Response<dto::GetBucketAclOutput>> {
        self.serve_get_bucket_acl(req).await
    }

    async fn put_bucket_acl(
        &self,
        req: S3Request<dto::PutBucketAclInput>,
    ) -> S3Result<S3Response<dto::PutBucketAclOutput>> {
        self.serve_put_bucket_acl(req).await
    }

    async fn get_object_acl(
        &self,
        req: S3Request<dto::GetObjectAclInput>,
    ) -> S3Result<S3Response<dto::GetObjectAclOutput>> {
        self.serve_get_object_acl(req).await
    }

    async fn put_object_acl(
        &self,
        req: S3Request<dto::PutObjectAclInput>,
    ) -> S3Result<S3Response<dto::PutObjectAclOutput>> {
        self.serve_put_object_acl(req).await
    }

    async fn put_public_access_block(
        &self,
        req: S3Request<dto::PutPublicAccessBlockInput>,
    ) -> S3Result<S3Response<dto::PutPublicAccessBlockOutput>> {
        self.serve_put_public_access_block(req).await
    }

    async fn get_public_access_block(
        &self,
        req: S3Request<dto::GetPublicAccessBlockInput>,
    ) -> S3Result<S3Response<dto::GetPublicAccessBlockOutput>> {
        self.serve_get_public_access_block(req).await
    }

    async fn delete_public_access_block(
        &self,
        req: S3Request<dto::DeletePublicAccessBlockInput>,
    ) -> S3Result<S3Response<dto::DeletePublicAccessBlockOutput>> {
        self.serve_delete_public_access_block(req).await
    }

    async fn get_bucket_policy_status(
        &self,
        req: S3Request<dto::GetBucketPolicyStatusInput>,
    ) -> S3Result<S3Response<dto::GetBucketPolicyStatusOutput>> {
        self.serve_get_bucket_policy_status(req).await
    }

    async fn get_bucket_policy(
        &self,
        req: S3Request<dto::GetBucketPolicyInput>,
    ) -> S3Result<S3Response<dto::GetBucketPolicyOutput>> {
        self.serve_get_bucket_policy(req).await
    }

    async fn get_bucket_ownership_controls(
        &self,
        req: S3Request<dto::GetBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<dto::GetBucketOwnershipControlsOutput>> {
        self.serve_get_bucket_ownership_controls(req).await
    }

    async fn put_bucket_cors(
        &self,
        req: S3Request<dto::PutBucketCorsInput>,
    ) -> S3Result<S3Response<dto::PutBucketCorsOutput>> {
        self.serve_put_bucket_cors(req).await
    }

    async fn get_bucket_cors(
        &self,
        req: S3Request<dto::GetBucketCorsInput>,
    ) -> S3Result<S3Response<dto::GetBucketCorsOutput>> {
        self.serve_get_bucket_cors(req).await
    }

    async fn delete_bucket_cors(
        &self,
        req: S3Request<dto::DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketCorsOutput>> {
        self.serve_delete_bucket_cors(req).await
    }

    async fn post_object(
        &self,
        req: S3Request<dto::PostObjectInput>,
    ) -> S3Result<S3Response<dto::PostObjectOutput>> {
        self.serve_post_object(req).await
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<dto::GetBucketVersioningInput>,
    ) -> S3Result<S3Response<dto::GetBucketVersioningOutput>> {
        self.serve_get_bucket_versioning(req).await
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<dto::PutBucketVersioningInput>,
    ) -> S3Result<S3Response<dto::PutBucketVersioningOutput>> {
        self.serve_put_bucket_versioning(req).await
    }

    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<dto::PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<dto::PutBucketLifecycleConfigurationOutput>> {
        self.serve_put_bucket_lifecycle(req).await
    }

    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<dto::GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<dto::GetBucketLifecycleConfigurationOutput>> {
        self.serve_get_bucket_lifecycle(req).await
    }

    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<dto::DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketLifecycleOutput>> {
        self.serve_delete_bucket_lifecycle(req).await
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<dto::GetObjectAttributesInput>,
    ) -> S3Result<S3Response<dto::GetObjectAttributesOutput>> {
        self.serve_get_object_attributes(req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<dto::DeleteBucketInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketOutput>> {
        let actor = self.actor(&req).await?;
        let bucket = &req.input.bucket;
        // As AWS does, pending multipart uploads do not keep a bucket alive: once no object is
        // left, they are aborted and the bucket goes.
        let page = self
            .core
            .list(&actor, bucket, "", None, None, 1)
            .await
            .map_err(s3_err)?;
        if !page.objects.is_empty() {
            return Err(s3_err(StorageError::BucketNotEmpty));
        }
        // So do noncurrent versions and delete markers, as in S3.
        let versions = self
            .core
            .list_versions(
                &actor,
                bucket,
                &crate::storage::core::VersionQuery {
                    max: 1,
                    ..Default::default()
                },
            )
            .await
            .map_err(s3_err)?;
        if !versions.versions.is_empty() {
            return Err(s3_err(StorageError::BucketNotEmpty));
        }
        loop {
            let uploads = self
                .core
                .list_uploads(&actor, bucket, "")
                .await
                .map_err(s3_err)?;
            // A listing holds at most 1,000 uploads: a full one may have more behind it.
            let full = uploads.len() >= 1000;
            for u in uploads {
                match self.core.abort_upload(&actor, bucket, &u.key, &u.id).await {
                    Ok(()) | Err(StorageError::NoSuchUpload) => {}
                    Err(e) => return Err(s3_err(e)),
                }
            }
            if !full {
                break;
            }
        }
        self.core
            .delete_bucket(&actor, bucket)
            .await
            .map_err(s3_err)?;
        self.lifecycle_rules.forget(bucket);
        Ok(S3Response::new(dto::DeleteBucketOutput {}))
    }

    async fn put_object(
        &self,
        req: S3Request<dto::PutObjectInput>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        self.write_acl_allowed(&req, &req.input.bucket, &acl::write_acl!(req.input))
            .await?;
        self.serve_put_object(req).await
    }

    async fn get_object(
        &self,
        req: S3Request<dto::GetObjectInput>,
    ) -> S3Result<S3Response<dto::GetObjectOutput>> {
        self.serve_get_object(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<dto::HeadObjectInput>,
    ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        self.serve_head_object(req).await
    }

    /// doska makes no torrents (BitTorrent is not built): for an object the caller can see, the
    /// answer is that its torrent does not exist (NoSuchKey, as Ceph answers for an object it
    /// keeps no torrent for); a missing object or bucket answers as a read of it would.
    async fn get_object_torrent(
        &self,
        req: S3Request<dto::GetObjectTorrentInput>,
    ) -> S3Result<S3Response<dto::GetObjectTorrentOutput>> {
        let actor = self.actor(&req).await?;
        let i = &req.input;
        if let Err(e) = self.core.head(&actor, &i.bucket, &i.key).await {
            return Err(self.read_err(&actor, &i.bucket, e).await);
        }
        Err(s3_error!(
            NoSuchKey,
            "doska keeps no torrent for this object: torrents are not built"
        ))
    }

    async fn put_object_lock_configuration(
        &self,
        req: S3Request<dto::PutObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<dto::PutObjectLockConfigurationOutput>> {
        self.serve_put_object_lock_configuration(req).await
    }

    async fn get_object_lock_configuration(
        &self,
        req: S3Request<dto::GetObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<dto::GetObjectLockConfigurationOutput>> {
        self.serve_get_object_lock_configuration(req).await
    }

    async fn put_object_retention(
        &self,
        req: S3Request<dto::PutObjectRetentionInput>,
    ) -> S3Result<S3Response<dto::PutObjectRetentionOutput>> {
        self.serve_put_object_retention(req).await
    }

    async fn get_object_retention(
        &self,
        req: S3Request<dto::GetObjectRetentionInput>,
    ) -> S3Result<S3Response<dto::GetObjectRetentionOutput>> {
        self.serve_get_object_retention(req).await
    }

    async fn put_object_legal_hold(
        &self,
        req: S3Request<dto::PutObjectLegalHoldInput>,
    ) -> S3Result<S3Response<dto::PutObjectLegalHoldOutput>> {
        self.serve_put_object_legal_hold(req).await
    }

    async fn get_object_legal_hold(
        &self,
        req: S3Request<dto::GetObjectLegalHoldInput>,
    ) -> S3Result<S3Response<dto::GetObjectLegalHoldOutput>> {
        self.serve_get_object_legal_hold(req).await
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<dto::GetObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::GetObjectTaggingOutput>> {
        self.serve_get_object_tagging(req).await
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<dto::PutObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::PutObjectTaggingOutput>> {
        self.serve_put_object_tagging(req).await
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<dto::DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectTaggingOutput>> {
        self.serve_delete_object_tagging(req).await
    }

    async fn put_bucket_tagging(
        &self,
        req: S3Request<dto::PutBucketTaggingInput>,
    ) -> S3Result<S3Response<dto::PutBucketTaggingOutput>> {
        self.serve_put_bucket_tagging(req).await
    }

    async fn get_bucket_tagging(
        &self,
        req: S3Request<dto::GetBucketTaggingInput>,
    ) -> S3Result<S3Response<dto::GetBucketTaggingOutput>> {
        self.serve_get_bucket_tagging(req).await
    }

    async fn delete_bucket_tagging(
        &self,
        req: S3Request<dto::DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketTaggingOutput>> {
        self.serve_delete_bucket_tagging(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        self.serve_delete_object(req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        self.serve_delete_objects(req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<dto::CopyObjectInput>,
    ) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        self.write_acl_allowed(&req, &req.input.bucket, &acl::write_acl!(req.input))
            .await?;
        self.serve_copy_object(req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<dto::ListObjectsInput>,
    ) -> S3Result<S3Response<dto::ListObjectsOutput>> {
        self.serve_list_objects(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        self.serve_list_objects_v2(req).await
    }

    async fn list_object_versions(
        &self,
        req: S3Request<dto::ListObjectVersionsInput>,
    ) -> S3Result<S3Response<dto::ListObjectVersionsOutput>> {
        self.serve_list_object_versions(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        self.write_acl_allowed(&req, &req.input.bucket, &acl::write_acl!(req.input))
            .await?;
        self.serve_create_multipart_upload(req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<dto::UploadPartInput>,
    ) -> S3Result<S3Response<dto::UploadPartOutput>> {
        self.serve_upload_part(req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<dto::UploadPartCopyInput>,
    ) -> S3Result<S3Response<dto::UploadPartCopyOutput>> {
        self.serve_upload_part_copy(req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<dto::ListPartsInput>,
    ) -> S3Result<S3Response<dto::ListPartsOutput>> {
        self.serve_list_parts(req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<dto::ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<dto::ListMultipartUploadsOutput>> {
        self.serve_list_multipart_uploads(req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        self.serve_abort_multipart_upload(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        self.serve_complete_multipart_upload(req).await
    }
}

/// Whether a request is GetObjectAttributes (`GET /bucket/key?attributes`).
fn is_get_object_attributes<B>(req: &http::Request<B>) -> bool {
    req.method() == http::Method::GET
        && req.uri().query().is_some_and(|q| {
            q.split('&')
                .any(|p| p == "attributes" || p.starts_with("attributes="))
        })
}

/// A GetObjectAttributes answer with its ETag unquoted (see `attributes`).
async fn unquoted_attributes(res: http::Response<s3s::Body>) -> http::Response<s3s::Body> {
    use http_body_util::BodyExt;
    let (mut parts, body) = res.into_parts();
    let bytes = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            tracing::error!(error = %e, "reading GetObjectAttributes' answer");
            return with_request_id(panicked(&"GetObjectAttributes' answer could not be read"));
        }
    };
    let fixed = attributes::unquote_attributes_etag(&bytes)
        .map(bytes::Bytes::from)
        .unwrap_or(bytes);
    parts.headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(fixed.len()),
    );
    http::Response::from_parts(parts, s3s::Body::from(fixed))
}

/// S3's smallest part (all but the last of an upload).
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// Serves S3 on `listener` (TLS when given) until `shutdown` turns true, then drains for `drain`.
pub async fn run(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: SharedState,
    keys: S3Keys,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let auth = KeyAuth {
        operator: keys,
        admin: state.admin.clone(),
        jwt_secret: state.jwt_secret.clone(),
        session_key: crate::jwt::s3_session_key(&state.jwt_secret).into(),
    };
    let core = super::core_of(&state);
    let mut builder = S3ServiceBuilder::new(S3Door {
        core: core.clone(),
        auth: auth.clone(),
        state: state.clone(),
        lifecycle_rules: Default::default(),
    });
    builder.set_auth(auth);
    builder.set_access(acl::SignedOrPublic { core: core.clone() });
    let s3 = builder.build();
    let cors = cors::Cors { core };
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let (s3, cors) = (s3.clone(), cors.clone());
        async move {
            use futures_util::FutureExt;
            // Browsers' preflights carry no credentials: answered from the bucket's CORS rules.
            if req.method() == http::Method::OPTIONS {
                return Ok(with_request_id(cors.preflight(&req).await));
            }
            if let Some(refused) = presign_expiry_refused(req.uri()) {
                return Ok(with_request_id(refused));
            }
            let ask = cors::CorsAsk::of(&req);
            let expected_continue = req
                .headers()
                .get(http::header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
            let token = session_token(req.headers(), req.uri());
            let attributes = is_get_object_attributes(&req);
            // A POST form's body passes a tap that notes the fields s3s does not hand on.
            let call = SESSION_TOKEN.scope(token, s3.call(post_object::FormTap::of(req)));
            // A panic in an operation is answered in S3's dialect (and logged), like the router
            // does for the doors behind it, instead of dropping the connection.
            let answer = match std::panic::AssertUnwindSafe(call).catch_unwind().await {
                Ok(answer) => post_object::condition_refusal(answer?),
                Err(panic) => panicked(panic.as_ref()),
            };
            let answer = if attributes && answer.status() == http::StatusCode::OK {
                unquoted_attributes(answer).await
            } else {
                answer
            };
            let answer = match ask {
                Some(ask) => cors.decorate(ask, answer).await,
                None => answer,
            };
            let answer = close_after_refusal(expected_continue, answer);
            Ok::<_, s3s::HttpError>(with_request_id(answer))
        }
    });
    crate::http::server::accept(
        listener,
        tls,
        move |_| service.clone(),
        shutdown,
        drain,
        "s3",
    )
    .await;
}

/// The S3 listener as `startup::serve` runs it: logs its URL, serves until shutdown.
pub fn spawn(
    bound: Option<(TcpListener, S3Keys)>,
    tls: Option<TlsAcceptor>,
    state: SharedState,
) -> Option<tokio::task::JoinHandle<()>> {
    let (listener, keys) = bound?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(s3_url = %format!("{scheme}://{addr}"), "S3 listening");
    }
    let drain = Duration::from_secs(state.config.shutdown_timeout_secs);
    let shutdown = state.shutdown.clone();
    Some(tokio::spawn(run(
        listener,
        tls,
        state.clone(),
        keys,
        shutdown,
        drain,
    )))
}

#[cfg(test)]
mod tests;
