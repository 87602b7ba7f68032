//! S3's access control lists, public access blocks and anonymous requests, mapped onto what doska
//! enforces. doska's access is the storage policies (RLS) plus Supabase's per-bucket `public` flag
//! (anyone may read the bucket's objects), so two canned ACLs are real: `private` (not public) and
//! `public-read` (public) — on a bucket they set the flag; on an object they must agree with its
//! bucket's (an object cannot be public alone). Every other ACL or grant would not be enforced, so
//! it is refused with NotImplemented rather than stored. A public access block is kept on the
//! bucket: BlockPublicAcls refuses public ACLs (AccessDenied, as S3), IgnorePublicAcls makes the
//! bucket private to anonymous readers (storage.doska_bucket), BlockPublicPolicy holds trivially
//! (doska takes no bucket policies), RestrictPublicBuckets is kept and has nothing to restrict.
//! Unsigned requests name a public bucket (reading its objects as Supabase's public URLs do; any
//! other operation as `anon`, under the policies) or the bucket list (as `anon`); anything else
//! unsigned (CreateBucket included) is AccessDenied, and a missing bucket NoSuchBucket.

use s3s::access::{S3Access, S3AccessContext};
use serde::{Deserialize, Serialize};

use super::*;
use crate::storage::core::BucketSetting;

/// S3's group of every requester, anonymous ones included.
const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
/// S3's canned ACLs (doska enforces the first two).
const CANNED: [&str; 8] = [
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "log-delivery-write",
];
/// S3's group of every signed requester.
const AUTHENTICATED_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";

/// How an unsigned request may act, as the access check found (kept in the request's extensions
/// for [`S3Door::actor`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Anonymous {
    /// GetObject / HeadObject in a public bucket: read as Supabase's public URLs read.
    PublicRead,
    /// Anything else allowed unsigned: as `anon`, under the storage policies.
    Anon,
}

/// Signed requests pass (s3s has verified the signature); unsigned ones as [`Anonymous`] says.
pub(super) struct SignedOrPublic {
    pub(super) core: Storage,
}

#[async_trait::async_trait]
impl S3Access for SignedOrPublic {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        if cx.credentials().is_some() {
            return Ok(());
        }
        if cx.s3_op().name() == "CreateBucket" {
            return Err(s3_error!(AccessDenied, "Signed requests only"));
        }
        if post_object::unsigned_policy(cx.extensions_mut()) {
            return Err(s3_error!(
                InvalidArgument,
                "A POST form with a policy must carry its signature"
            ));
        }
        let bucket = match cx.s3_path() {
            s3s::path::S3Path::Root => {
                cx.extensions_mut().insert(Anonymous::Anon);
                return Ok(());
            }
            s3s::path::S3Path::Bucket { bucket } | s3s::path::S3Path::Object { bucket, .. } => {
                bucket.to_string()
            }
        };
        match self.core.bucket_public(&bucket).await.map_err(s3_err)? {
            None => Err(s3_error!(NoSuchBucket)),
            Some(false) => Err(s3_error!(AccessDenied, "Signed requests only")),
            Some(true) => {
                let read = matches!(cx.s3_op().name(), "GetObject" | "HeadObject");
                cx.extensions_mut().insert(if read {
                    Anonymous::PublicRead
                } else {
                    Anonymous::Anon
                });
                Ok(())
            }
        }
    }
}

/// What an ACL asks for, in doska's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wanted {
    Private,
    PublicRead,
}

/// An ACL as a request states it: a canned ACL, an AccessControlPolicy body, or grant headers.
pub(super) struct AclAsk<'a> {
    pub canned: Option<&'a str>,
    pub policy: Option<&'a dto::AccessControlPolicy>,
    /// The `x-amz-grant-*` headers, each a list of grantees.
    pub grants: Vec<&'a str>,
}

impl AclAsk<'_> {
    /// Whether it grants anyone beyond the owner (what a public access block's BlockPublicAcls
    /// refuses).
    fn is_public(&self) -> bool {
        let group = |g: &dto::Grant| {
            g.grantee
                .as_ref()
                .and_then(|e| e.uri.as_deref())
                .is_some_and(|u| u == ALL_USERS || u == AUTHENTICATED_USERS)
        };
        self.canned.is_some_and(|c| {
            matches!(
                c,
                "public-read" | "public-read-write" | "authenticated-read"
            )
        }) || self
            .policy
            .is_some_and(|p| p.grants.iter().flatten().any(group))
            || self
                .grants
                .iter()
                .any(|g| g.contains(ALL_USERS) || g.contains(AUTHENTICATED_USERS))
    }

    /// What it asks for: `None` when it states nothing; NotImplemented for what doska could not
    /// enforce.
    pub(super) fn wanted(&self) -> S3Result<Option<Wanted>> {
        let refused = || {
            Err(s3_error!(
                NotImplemented,
                "Only the private and public-read ACLs are supported: access is decided by the \
                 storage policies and the bucket's public flag"
            ))
        };
        if !self.grants.is_empty() {
            return refused();
        }
        if let Some(c) = self.canned
            && !CANNED.contains(&c)
        {
            return Err(s3_error!(InvalidArgument, "Unknown canned ACL: {c}"));
        }
        match (self.canned, self.policy) {
            (None, None) => Ok(None),
            (Some("private"), None) => Ok(Some(Wanted::Private)),
            (Some("public-read"), None) => Ok(Some(Wanted::PublicRead)),
            (None, Some(p)) => {
                let owner = p.owner.as_ref().and_then(|o| o.id.clone());
                let mut public = false;
                for g in p.grants.iter().flatten() {
                    let who = g.grantee.as_ref();
                    let perm = g.permission.as_ref().map(|p| p.as_str());
                    let is_owner = who.is_some_and(|e| e.uri.is_none() && e.id == owner);
                    let all = who.is_some_and(|e| e.uri.as_deref() == Some(ALL_USERS));
                    match (is_owner, all, perm) {
                        (true, _, Some(dto::Permission::FULL_CONTROL)) => {}
                        (_, true, Some(dto::Permission::READ)) => public = true,
                        _ => return refused(),
                    }
                }
                Ok(Some(if public {
                    Wanted::PublicRead
                } else {
                    Wanted::Private
                }))
            }
            _ => refused(),
        }
    }
}

/// The grants doska enforces for what an owner holds: the owner's FULL_CONTROL, and everyone's
/// READ in a public bucket.
fn grants(owner: &dto::Owner, public: bool) -> dto::Grants {
    let mut g = owner_grants(owner);
    if public {
        // Listed first, as Ceph lists them.
        g.insert(
            0,
            dto::Grant {
                grantee: Some(dto::Grantee {
                    display_name: None,
                    email_address: None,
                    id: None,
                    type_: dto::Type::from_static(dto::Type::GROUP),
                    uri: Some(ALL_USERS.into()),
                }),
                permission: Some(dto::Permission::from_static(dto::Permission::READ)),
            },
        );
    }
    g
}

/// A public access block as doska keeps it (`storage.buckets.s3_public_access_block`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Block {
    block_public_acls: bool,
    ignore_public_acls: bool,
    block_public_policy: bool,
    restrict_public_buckets: bool,
}

/// The `x-amz-grant-*` headers a request carries.
macro_rules! grant_headers {
    ($i:expr) => {
        [
            $i.grant_full_control.as_deref(),
            $i.grant_read.as_deref(),
            $i.grant_read_acp.as_deref(),
            $i.grant_write_acp.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<&str>>()
    };
}
pub(super) use grant_headers;

/// The ACL an object write (PutObject, CopyObject, CreateMultipartUpload, POST object) states.
macro_rules! write_acl {
    ($i:expr) => {
        acl::AclAsk {
            canned: $i.acl.as_ref().map(|a| a.as_str()),
            policy: None,
            grants: acl::grant_headers!($i),
        }
    };
}
pub(super) use write_acl;

impl S3Door {
    async fn block(&self, actor: &Actor, bucket: &str) -> S3Result<Block> {
        let v = self
            .core
            .bucket_setting(actor, bucket, BucketSetting::PublicAccessBlock)
            .await
            .map_err(s3_err)?;
        Ok(v.and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default())
    }

    /// An ACL checked against the bucket's public access block: a public one is AccessDenied
    /// when BlockPublicAcls is on (before doska looks at whether it could enforce it, as S3
    /// refuses it before applying it).
    async fn acl_allowed(&self, actor: &Actor, bucket: &str, ask: &AclAsk<'_>) -> S3Result<()> {
        if ask.is_public() && self.block(actor, bucket).await?.block_public_acls {
            return Err(s3_error!(
                AccessDenied,
                "The bucket's public access block refuses public ACLs"
            ));
        }
        Ok(())
    }

    /// An object write's ACL (PutObject, CopyObject, CreateMultipartUpload, POST object): it
    /// must be what the bucket already is (an object is public exactly when its bucket is).
    pub(super) async fn object_acl_allowed(
        &self,
        actor: &Actor,
        bucket: &str,
        ask: &AclAsk<'_>,
    ) -> S3Result<()> {
        if ask.canned.is_none() && ask.policy.is_none() && ask.grants.is_empty() {
            return Ok(());
        }
        self.acl_allowed(actor, bucket, ask).await?;
        let Some(wanted) = ask.wanted()? else {
            return Ok(());
        };
        let public = self
            .core
            .get_bucket(actor, bucket)
            .await
            .map_err(s3_err)?
            .public;
        if public != (wanted == Wanted::PublicRead) {
            return Err(s3_error!(
                NotImplemented,
                "An object's ACL is its bucket's: set the bucket's ACL (private or public-read) \
                 instead"
            ));
        }
        Ok(())
    }

    /// An object write's ACL, checked when it states one (the caller looked up only then).
    pub(super) async fn write_acl_allowed<T>(
        &self,
        req: &S3Request<T>,
        bucket: &str,
        ask: &AclAsk<'_>,
    ) -> S3Result<()> {
        if ask.canned.is_none() && ask.grants.is_empty() {
            return Ok(());
        }
        let actor = self.actor(req).await?;
        self.object_acl_allowed(&actor, bucket, ask).await
    }

    /// A CreateBucket's ACL: whether the new bucket is public (`None`: not stated).
    pub(super) fn create_bucket_public(&self, ask: &AclAsk<'_>) -> S3Result<Option<bool>> {
        Ok(ask.wanted()?.map(|w| w == Wanted::PublicRead))
    }

    pub(super) async fn serve_get_bucket_acl(
        &self,
        req: S3Request<dto::GetBucketAclInput>,
    ) -> S3Result<S3Response<dto::GetBucketAclOutput>> {
        let actor = self.actor(&req).await?;
        let b = self
            .core
            .get_bucket(&actor, &req.input.bucket)
            .await
            .map_err(s3_err)?;
        let o = owner(None);
        Ok(S3Response::new(dto::GetBucketAclOutput {
            grants: Some(grants(&o, b.public)),
            owner: Some(o),
        }))
    }

    pub(super) async fn serve_put_bucket_acl(
        &self,
        req: S3Request<dto::PutBucketAclInput>,
    ) -> S3Result<S3Response<dto::PutBucketAclOutput>> {
        let actor = self.actor(&req).await?;
        let i = &req.input;
        self.require_bucket(&actor, &i.bucket).await?;
        let ask = AclAsk {
            canned: i.acl.as_ref().map(|a| a.as_str()),
            policy: i.access_control_policy.as_ref(),
            grants: grant_headers!(i)
                .into_iter()
                .chain(i.grant_write.as_deref())
                .collect(),
        };
        self.acl_allowed(&actor, &i.bucket, &ask).await?;
        let Some(wanted) = ask.wanted()? else {
            return Err(s3_error!(
                MissingSecurityHeader,
                "Name an ACL: a canned ACL, grant headers or an AccessControlPolicy"
            ));
        };
        let spec = BucketSpec {
            public: Some(wanted == Wanted::PublicRead),
            ..Default::default()
        };
        self.core
            .update_bucket(&actor, &i.bucket, &spec)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(dto::PutBucketAclOutput::default()))
    }

    pub(super) async fn serve_get_object_acl(
        &self,
        req: S3Request<dto::GetObjectAclInput>,
    ) -> S3Result<S3Response<dto::GetObjectAclOutput>> {
        let actor = self.actor(&req).await?;
        let i = &req.input;
        let info = match self.core.head(&actor, &i.bucket, &i.key).await {
            Ok(info) => info,
            Err(e) => return Err(self.read_err(&actor, &i.bucket, e).await),
        };
        let public = self
            .core
            .get_bucket(&actor, &i.bucket)
            .await
            .map_err(s3_err)?
            .public;
        let o = owner(info.owner_id.as_deref());
        Ok(S3Response::new(dto::GetObjectAclOutput {
            grants: Some(grants(&o, public)),
            owner: Some(o),
            ..Default::default()
        }))
    }

    pub(super) async fn serve_put_object_acl(
        &self,
        req: S3Request<dto::PutObjectAclInput>,
    ) -> S3Result<S3Response<dto::PutObjectAclOutput>> {
        let actor = self.actor(&req).await?;
        let i = &req.input;
        if let Err(e) = self.core.head(&actor, &i.bucket, &i.key).await {
            return Err(self.read_err(&actor, &i.bucket, e).await);
        }
        let ask = AclAsk {
            canned: i.acl.as_ref().map(|a| a.as_str()),
            policy: i.access_control_policy.as_ref(),
            grants: grant_headers!(i)
                .into_iter()
                .chain(i.grant_write.as_deref())
                .collect(),
        };
        if ask.canned.is_none() && ask.policy.is_none() && ask.grants.is_empty() {
            return Err(s3_error!(
                MissingSecurityHeader,
                "Name an ACL: a canned ACL, grant headers or an AccessControlPolicy"
            ));
        }
        self.object_acl_allowed(&actor, &i.bucket, &ask).await?;
        Ok(S3Response::new(dto::PutObjectAclOutput::default()))
    }

    pub(super) async fn serve_put_public_access_block(
        &self,
        req: S3Request<dto::PutPublicAccessBlockInput>,
    ) -> S3Result<S3Response<dto::PutPublicAccessBlockOutput>> {
        let actor = self.actor(&req).await?;
        let c = &req.input.public_access_block_configuration;
        let block = Block {
            block_public_acls: c.block_public_acls.unwrap_or(false),
            ignore_public_acls: c.ignore_public_acls.unwrap_or(false),
            block_public_policy: c.block_public_policy.unwrap_or(false),
            restrict_public_buckets: c.restrict_public_buckets.unwrap_or(false),
        };
        let value = serde_json::to_value(block).map_err(|_| s3_error!(InternalError))?;
        self.core
            .set_bucket_setting(
                &actor,
                &req.input.bucket,
                BucketSetting::PublicAccessBlock,
                Some(&value),
            )
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(dto::PutPublicAccessBlockOutput::default()))
    }

    pub(super) async fn serve_get_public_access_block(
        &self,
        req: S3Request<dto::GetPublicAccessBlockInput>,
    ) -> S3Result<S3Response<dto::GetPublicAccessBlockOutput>> {
        let actor = self.actor(&req).await?;
        let stored = self
            .core
            .bucket_setting(&actor, &req.input.bucket, BucketSetting::PublicAccessBlock)
            .await
            .map_err(s3_err)?;
        let Some(block) = stored.and_then(|v| serde_json::from_value::<Block>(v).ok()) else {
            let mut e = S3Error::with_message(
                S3ErrorCode::Custom("NoSuchPublicAccessBlockConfiguration".into()),
                "The public access block configuration was not found",
            );
            e.set_status_code(http::StatusCode::NOT_FOUND);
            return Err(e);
        };
        Ok(S3Response::new(dto::GetPublicAccessBlockOutput {
            public_access_block_configuration: Some(dto::PublicAccessBlockConfiguration {
                block_public_acls: Some(block.block_public_acls),
                ignore_public_acls: Some(block.ignore_public_acls),
                block_public_policy: Some(block.block_public_policy),
                restrict_public_buckets: Some(block.restrict_public_buckets),
            }),
        }))
    }

    pub(super) async fn serve_delete_public_access_block(
        &self,
        req: S3Request<dto::DeletePublicAccessBlockInput>,
    ) -> S3Result<S3Response<dto::DeletePublicAccessBlockOutput>> {
        let actor = self.actor(&req).await?;
        self.core
            .set_bucket_setting(
                &actor,
                &req.input.bucket,
                BucketSetting::PublicAccessBlock,
                None,
            )
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(
            dto::DeletePublicAccessBlockOutput::default(),
        ))
    }
}

/// What doska has no setting for, stated truthfully: a bucket never has a bucket policy (they
/// are refused) nor ownership controls; whether it is public is its (effective) public flag.
impl S3Door {
    pub(super) async fn serve_get_bucket_policy_status(
        &self,
        req: S3Request<dto::GetBucketPolicyStatusInput>,
    ) -> S3Result<S3Response<dto::GetBucketPolicyStatusOutput>> {
        self.require_bucket(&self.actor(&req).await?, &req.input.bucket)
            .await?;
        let public = self
            .core
            .bucket_public(&req.input.bucket)
            .await
            .map_err(s3_err)?
            .unwrap_or(false);
        Ok(S3Response::new(dto::GetBucketPolicyStatusOutput {
            policy_status: Some(dto::PolicyStatus {
                is_public: Some(public),
            }),
        }))
    }

    pub(super) async fn serve_get_bucket_policy(
        &self,
        req: S3Request<dto::GetBucketPolicyInput>,
    ) -> S3Result<S3Response<dto::GetBucketPolicyOutput>> {
        self.require_bucket(&self.actor(&req).await?, &req.input.bucket)
            .await?;
        Err(s3_error!(
            NoSuchBucketPolicy,
            "doska keeps no bucket policies: the storage policies decide"
        ))
    }

    pub(super) async fn serve_get_bucket_ownership_controls(
        &self,
        req: S3Request<dto::GetBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<dto::GetBucketOwnershipControlsOutput>> {
        self.require_bucket(&self.actor(&req).await?, &req.input.bucket)
            .await?;
        Err(s3_error!(
            OwnershipControlsNotFoundError,
            "doska keeps no ownership controls: each object is owned by its writer"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(canned: Option<&str>) -> AclAsk<'_> {
        AclAsk {
            canned,
            policy: None,
            grants: vec![],
        }
    }

    #[test]
    fn only_private_and_public_read_are_enforceable() {
        assert_eq!(ask(None).wanted().unwrap(), None);
        assert_eq!(
            ask(Some("private")).wanted().unwrap(),
            Some(Wanted::Private)
        );
        assert_eq!(
            ask(Some("public-read")).wanted().unwrap(),
            Some(Wanted::PublicRead)
        );
        for refused in [
            "public-read-write",
            "authenticated-read",
            "bucket-owner-read",
        ] {
            assert_eq!(
                *ask(Some(refused)).wanted().unwrap_err().code(),
                S3ErrorCode::NotImplemented
            );
        }
        let granted = AclAsk {
            canned: None,
            policy: None,
            grants: vec!["id=someone"],
        };
        assert_eq!(
            *granted.wanted().unwrap_err().code(),
            S3ErrorCode::NotImplemented
        );
    }

    #[test]
    fn policies_map_when_they_are_owner_and_everyone_read() {
        let o = owner(None);
        let policy = |public: bool| dto::AccessControlPolicy {
            grants: Some(grants(&o, public)),
            owner: Some(o.clone()),
        };
        let p = policy(true);
        let a = AclAsk {
            canned: None,
            policy: Some(&p),
            grants: vec![],
        };
        assert_eq!(a.wanted().unwrap(), Some(Wanted::PublicRead));
        assert!(a.is_public());
        let p = policy(false);
        let a = AclAsk {
            canned: None,
            policy: Some(&p),
            grants: vec![],
        };
        assert_eq!(a.wanted().unwrap(), Some(Wanted::Private));
        assert!(!a.is_public());
        let mut p = policy(true);
        p.grants.as_mut().unwrap()[0].permission =
            Some(dto::Permission::from_static(dto::Permission::WRITE));
        let a = AclAsk {
            canned: None,
            policy: Some(&p),
            grants: vec![],
        };
        assert_eq!(*a.wanted().unwrap_err().code(), S3ErrorCode::NotImplemented);
    }
}
