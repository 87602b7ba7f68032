//! The S3 door's single-object reads and writes: PutObject (with integrity checks and conditions),
//! GetObject, HeadObject and CopyObject, over the storage core as the caller.

use super::*;

impl S3Door {
    pub(super) async fn serve_put_object(
        &self,
        req: S3Request<dto::PutObjectInput>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        let actor = self.actor(&req).await?;
        let trailer = req.trailing_headers.clone();
        let sdk_algorithm = req
            .headers
            .get("x-amz-sdk-checksum-algorithm")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let input = req.input;
        no_sse(&input.server_side_encryption, &input.sse_customer_algorithm)?;
        let declared = integrity::Declared::new(
            input.content_md5.clone(),
            dto::Checksum {
                checksum_crc32: input.checksum_crc32.clone(),
                checksum_crc32c: input.checksum_crc32c.clone(),
                checksum_crc64nvme: input.checksum_crc64nvme.clone(),
                checksum_sha1: input.checksum_sha1.clone(),
                checksum_sha256: input.checksum_sha256.clone(),
                ..Default::default()
            },
            input
                .checksum_algorithm
                .as_ref()
                .map(|a| a.as_str())
                .or(sdk_algorithm.as_deref()),
            trailer,
        )?;
        // If-Match / If-None-Match: <etag> are answered against the current version just before
        // the write (`If-None-Match: *` is the storage core's create-only write).
        if input.if_match.is_some()
            || matches!(input.if_none_match, Some(dto::ETagCondition::ETag(_)))
        {
            self.write_preconditions(
                &actor,
                &input.bucket,
                &input.key,
                &input.if_match,
                &input.if_none_match,
            )
            .await?;
        }
        let mut extra = integrity::declared_metadata(&declared);
        if let Some(t) = &input.tagging {
            extra.insert("tags".into(), tags_of_header(t)?);
        }
        Kept {
            encoding: input.content_encoding,
            disposition: input.content_disposition,
            language: input.content_language,
            expires: input.expires,
        }
        .to_metadata(&mut extra);
        let spec = PutSpec {
            bucket: input.bucket,
            key: input.key,
            // `If-None-Match: *` asks for a create that fails when the key exists.
            upsert: !matches!(input.if_none_match, Some(dto::ETagCondition::Any)),
            content_type: content_type_or_default(input.content_type),
            cache_control: input.cache_control,
            user_metadata: user_metadata(input.metadata),
            declared_len: input.content_length.map(|l| l as u64),
            extra: (!extra.is_empty()).then_some(serde_json::Value::Object(extra)),
        };
        let (body, verdict) = integrity::checked(body_stream(input.body), declared);
        let info = self
            .core
            .put(&actor, &spec, body)
            .await
            .map_err(|e| verdict.error(e))?;
        let sums = verdict.verified();
        Ok(S3Response::new(dto::PutObjectOutput {
            e_tag: Some(etag(&info.etag)),
            expiration: self.put_expiration(&info).await,
            version_id: versioning::version_header(&info),
            size: Some(info.size as i64),
            checksum_crc32: sums.checksum_crc32,
            checksum_crc32c: sums.checksum_crc32c,
            checksum_crc64nvme: sums.checksum_crc64nvme,
            checksum_sha1: sums.checksum_sha1,
            checksum_sha256: sums.checksum_sha256,
            ..Default::default()
        }))
    }

    pub(super) async fn serve_get_object(
        &self,
        req: S3Request<dto::GetObjectInput>,
    ) -> S3Result<S3Response<dto::GetObjectOutput>> {
        let actor = self.actor(&req).await?;
        let i = &req.input;
        no_sse(&None, &i.sse_customer_algorithm)?;
        let mut range = range_of(&i.range);
        let mut parts_count = None;
        if let Some(n) = i.part_number {
            let info = self
                .named_version(&actor, &i.bucket, &i.key, i.version_id.as_deref())
                .await?;
            let (r, count) = part_range(&info, n)?;
            range = r;
            parts_count = info.parts.is_some().then_some(count);
        }
        let (info, stream, span) = self
            .read_named(&actor, &i.bucket, &i.key, i.version_id.as_deref(), range)
            .await?;
        preconditions(
            &info,
            &i.if_match,
            &i.if_none_match,
            &i.if_modified_since,
            &i.if_unmodified_since,
        )?;
        let (content_length, content_range) = match span {
            Some((start, len)) => (
                len,
                Some(format!("bytes {start}-{}/{}", start + len - 1, info.size)),
            ),
            None => (info.size, None),
        };
        let kept = Kept::of(&info);
        // The kept checksums are the whole object's: a range or a part has none to show.
        let sums = match span {
            None => checksums_if(&info, &i.checksum_mode),
            Some(_) => dto::Checksum::default(),
        };
        Ok(S3Response::new(dto::GetObjectOutput {
            body: Some(StreamingBlob::new(Outgoing {
                inner: sync_wrapper::SyncStream::new(stream),
                remaining: content_length,
            })),
            accept_ranges: Some("bytes".into()),
            content_length: Some(content_length as i64),
            content_range,
            // `response-*` query parameters override what is stored, as in S3.
            content_type: i
                .response_content_type
                .clone()
                .or_else(|| info.content_type.parse().ok()),
            cache_control: i
                .response_cache_control
                .clone()
                .or_else(|| info.cache_control.clone()),
            content_encoding: i.response_content_encoding.clone().or(kept.encoding),
            content_disposition: i.response_content_disposition.clone().or(kept.disposition),
            content_language: i.response_content_language.clone().or(kept.language),
            expires: i.response_expires.clone().or(kept.expires),
            e_tag: Some(etag(&info.etag)),
            last_modified: Some(ts(info.updated_at)),
            metadata: metadata_of(&info),
            version_id: versioning::version_header(&info),
            parts_count,
            tag_count: Some(tag_set(&info).len() as i32).filter(|n| *n > 0),
            checksum_crc32: sums.checksum_crc32,
            checksum_crc32c: sums.checksum_crc32c,
            checksum_crc64nvme: sums.checksum_crc64nvme,
            checksum_sha1: sums.checksum_sha1,
            checksum_sha256: sums.checksum_sha256,
            ..Default::default()
        }))
    }

    pub(super) async fn serve_head_object(
        &self,
        req: S3Request<dto::HeadObjectInput>,
    ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        let actor = self.actor(&req).await?;
        let i = &req.input;
        no_sse(&None, &i.sse_customer_algorithm)?;
        let info = self
            .named_version(&actor, &i.bucket, &i.key, i.version_id.as_deref())
            .await?;
        preconditions(
            &info,
            &i.if_match,
            &i.if_none_match,
            &i.if_modified_since,
            &i.if_unmodified_since,
        )?;
        let (content_length, parts_count) = match i.part_number {
            Some(n) => {
                let (range, count) = part_range(&info, n)?;
                let len = match range {
                    Some(ByteRange::From {
                        first,
                        last: Some(last),
                    }) => last - first + 1,
                    _ => 0,
                };
                (len, info.parts.is_some().then_some(count))
            }
            None => (info.size, None),
        };
        let kept = Kept::of(&info);
        let sums = match i.part_number {
            None => checksums_if(&info, &i.checksum_mode),
            Some(_) => dto::Checksum::default(),
        };
        let tags = tag_set(&info).len();
        let mut res = S3Response::new(dto::HeadObjectOutput {
            accept_ranges: Some("bytes".into()),
            content_length: Some(content_length as i64),
            content_type: info.content_type.parse().ok(),
            cache_control: info.cache_control.clone(),
            content_encoding: kept.encoding,
            content_disposition: kept.disposition,
            content_language: kept.language,
            expires: kept.expires,
            e_tag: Some(etag(&info.etag)),
            last_modified: Some(ts(info.updated_at)),
            metadata: metadata_of(&info),
            version_id: versioning::version_header(&info),
            parts_count,
            checksum_crc32: sums.checksum_crc32,
            checksum_crc32c: sums.checksum_crc32c,
            checksum_crc64nvme: sums.checksum_crc64nvme,
            checksum_sha1: sums.checksum_sha1,
            checksum_sha256: sums.checksum_sha256,
            ..Default::default()
        });
        if let Some(e) = self.expiration_header(&actor, &info).await {
            res.headers.insert("x-amz-expiration", e);
        }
        // HeadObject's output has no field for it; S3 sends it as GetObject does.
        if tags > 0 {
            res.headers
                .insert("x-amz-tagging-count", http::HeaderValue::from(tags));
        }
        Ok(res)
    }

    pub(super) async fn serve_copy_object(
        &self,
        req: S3Request<dto::CopyObjectInput>,
    ) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        let actor = self.actor(&req).await?;
        let input = req.input;
        let (src_bucket, src_key) = copy_source(&input.copy_source)?;
        let src_version = match &input.copy_source {
            dto::CopySource::Bucket { version_id, .. } => version_id.as_deref().map(str::to_string),
            _ => None,
        };
        let src = self
            .named_version(&actor, &src_bucket, &src_key, src_version.as_deref())
            .await?;
        no_sse(&input.server_side_encryption, &input.sse_customer_algorithm)?;
        no_sse(&None, &input.copy_source_sse_customer_algorithm)?;
        // The source's conditions: any that fails is PreconditionFailed (no 304 for a copy).
        preconditions(
            &src,
            &input.copy_source_if_match,
            &input.copy_source_if_none_match,
            &input.copy_source_if_modified_since,
            &input.copy_source_if_unmodified_since,
        )
        .map_err(|e| match e.code() {
            S3ErrorCode::NotModified => s3_error!(PreconditionFailed),
            _ => e,
        })?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == dto::MetadataDirective::REPLACE);
        if !replace && src_bucket == input.bucket && src_key == input.key && src_version.is_none() {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself \
                 without changing the object's metadata"
            ));
        }
        // The same bytes: their checksums go along; the content headers are the source's, or the
        // request's with REPLACE.
        let mut extra = serde_json::Map::new();
        integrity::to_metadata(&integrity::from_metadata(&src.metadata), &mut extra);
        let replace_tags = input
            .tagging_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == dto::TaggingDirective::REPLACE);
        match (replace_tags, &input.tagging, src.metadata.get("tags")) {
            (true, Some(t), _) => {
                extra.insert("tags".into(), tags_of_header(t)?);
            }
            (false, _, Some(t)) => {
                extra.insert("tags".into(), t.clone());
            }
            _ => {}
        }
        if replace {
            Kept {
                encoding: input.content_encoding,
                disposition: input.content_disposition,
                language: input.content_language,
                expires: input.expires,
            }
        } else {
            Kept::of(&src)
        }
        .to_metadata(&mut extra);
        let spec = PutSpec {
            bucket: input.bucket,
            key: input.key,
            upsert: true,
            content_type: match (&input.content_type, replace) {
                (Some(c), true) => c.to_string(),
                _ => src.content_type.clone(),
            },
            cache_control: if replace {
                input.cache_control
            } else {
                src.cache_control.clone()
            },
            user_metadata: if replace {
                user_metadata(input.metadata)
            } else {
                src.user_metadata.clone()
            },
            declared_len: Some(src.size),
            extra: (!extra.is_empty()).then_some(serde_json::Value::Object(extra)),
        };
        let info = self
            .core
            .copy_version(&actor, &src_bucket, &src_key, src_version.as_deref(), &spec)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(dto::CopyObjectOutput {
            version_id: versioning::version_header(&info),
            copy_source_version_id: src_version
                .clone()
                .or_else(|| versioning::version_header(&src)),
            copy_object_result: Some(dto::CopyObjectResult {
                e_tag: Some(etag(&info.etag)),
                last_modified: Some(ts(info.updated_at)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}
