//! The S3 door's multipart uploads: create, upload a part (or copy one), list parts and uploads,
//! abort and complete — over the storage core's multipart uploads as the caller.

use super::*;

impl S3Door {
    pub(super) async fn serve_create_multipart_upload(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        let actor = self.actor(&req).await?;
        let i = req.input;
        no_sse(&i.server_side_encryption, &i.sse_customer_algorithm)?;
        let mut extra = serde_json::Map::new();
        if let Some(t) = &i.tagging {
            extra.insert("tags".into(), tags_of_header(t)?);
        }
        Kept {
            encoding: i.content_encoding,
            disposition: i.content_disposition,
            language: i.content_language,
            expires: i.expires,
        }
        .to_metadata(&mut extra);
        let spec = PutSpec {
            bucket: i.bucket.clone(),
            key: i.key.clone(),
            upsert: true,
            content_type: content_type_or_default(i.content_type),
            cache_control: i.cache_control,
            user_metadata: user_metadata(i.metadata),
            declared_len: None,
            extra: (!extra.is_empty()).then_some(serde_json::Value::Object(extra)),
        };
        let id = self
            .core
            .create_upload(&actor, &spec, None)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(dto::CreateMultipartUploadOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(id),
            ..Default::default()
        }))
    }

    pub(super) async fn serve_upload_part(
        &self,
        req: S3Request<dto::UploadPartInput>,
    ) -> S3Result<S3Response<dto::UploadPartOutput>> {
        let actor = self.actor(&req).await?;
        let trailer = req.trailing_headers.clone();
        let i = req.input;
        no_sse(&None, &i.sse_customer_algorithm)?;
        let declared = integrity::Declared::new(
            i.content_md5.clone(),
            dto::Checksum {
                checksum_crc32: i.checksum_crc32.clone(),
                checksum_crc32c: i.checksum_crc32c.clone(),
                checksum_crc64nvme: i.checksum_crc64nvme.clone(),
                checksum_sha1: i.checksum_sha1.clone(),
                checksum_sha256: i.checksum_sha256.clone(),
                ..Default::default()
            },
            i.checksum_algorithm.as_ref().map(|a| a.as_str()),
            trailer,
        )?;
        let (body, verdict) = integrity::checked(body_stream(i.body), declared);
        let (e, _) = self
            .core
            .upload_part(
                &actor,
                &i.bucket,
                &i.key,
                &i.upload_id,
                i.part_number,
                body,
                None,
            )
            .await
            .map_err(|e| verdict.error(e))?;
        let sums = verdict.verified();
        Ok(S3Response::new(dto::UploadPartOutput {
            e_tag: Some(etag(&e)),
            checksum_crc32: sums.checksum_crc32,
            checksum_crc32c: sums.checksum_crc32c,
            checksum_crc64nvme: sums.checksum_crc64nvme,
            checksum_sha1: sums.checksum_sha1,
            checksum_sha256: sums.checksum_sha256,
            ..Default::default()
        }))
    }

    pub(super) async fn serve_upload_part_copy(
        &self,
        req: S3Request<dto::UploadPartCopyInput>,
    ) -> S3Result<S3Response<dto::UploadPartCopyOutput>> {
        let actor = self.actor(&req).await?;
        let i = req.input;
        let (src_bucket, src_key) = copy_source(&i.copy_source)?;
        // A copy range is `bytes=first-last`, both given, within the source.
        let range = match &i.copy_source_range {
            Some(r) => match ByteRange::parse(r) {
                Some(ByteRange::From {
                    first,
                    last: Some(last),
                }) => Some((first, last)),
                _ => {
                    return Err(s3_error!(
                        InvalidArgument,
                        "Invalid x-amz-copy-source-range"
                    ));
                }
            },
            None => None,
        };
        let src_version = match &i.copy_source {
            dto::CopySource::Bucket { version_id, .. } => version_id.as_deref(),
            _ => None,
        };
        let (src, stream, _) = self
            .read_named(
                &actor,
                &src_bucket,
                &src_key,
                src_version,
                range.map(|(first, last)| ByteRange::From {
                    first,
                    last: Some(last),
                }),
            )
            .await?;
        if range.is_some_and(|(_, last)| last >= src.size) {
            return Err(s3_error!(
                InvalidRange,
                "The copy range goes past the end of the source object"
            ));
        }
        let (e, _) = self
            .core
            .upload_part(
                &actor,
                &i.bucket,
                &i.key,
                &i.upload_id,
                i.part_number,
                stream,
                None,
            )
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(dto::UploadPartCopyOutput {
            copy_part_result: Some(dto::CopyPartResult {
                e_tag: Some(etag(&e)),
                last_modified: Some(ts(chrono::Utc::now())),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    pub(super) async fn serve_list_parts(
        &self,
        req: S3Request<dto::ListPartsInput>,
    ) -> S3Result<S3Response<dto::ListPartsOutput>> {
        let actor = self.actor(&req).await?;
        let i = req.input;
        let marker = i.part_number_marker.unwrap_or(0);
        let max = i.max_parts.unwrap_or(1000).clamp(1, 1000) as usize;
        let parts = self
            .core
            .list_parts(&actor, &i.bucket, &i.key, &i.upload_id)
            .await
            .map_err(s3_err)?;
        let mut rest: Vec<_> = parts.into_iter().filter(|p| p.number > marker).collect();
        let truncated = rest.len() > max;
        rest.truncate(max);
        Ok(S3Response::new(dto::ListPartsOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(i.upload_id),
            is_truncated: Some(truncated),
            max_parts: Some(max as i32),
            part_number_marker: i.part_number_marker,
            next_part_number_marker: rest.last().map(|p| p.number),
            parts: Some(
                rest.iter()
                    .map(|p| dto::Part {
                        e_tag: Some(etag(&p.etag)),
                        last_modified: Some(ts(p.created_at)),
                        part_number: Some(p.number),
                        size: Some(p.size as i64),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    pub(super) async fn serve_list_multipart_uploads(
        &self,
        req: S3Request<dto::ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<dto::ListMultipartUploadsOutput>> {
        let actor = self.actor(&req).await?;
        let i = req.input;
        self.require_bucket(&actor, &i.bucket).await?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let uploads = self
            .core
            .list_uploads(&actor, &i.bucket, &prefix)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(dto::ListMultipartUploadsOutput {
            bucket: Some(i.bucket),
            prefix: Some(prefix),
            is_truncated: Some(false),
            uploads: Some(
                uploads
                    .into_iter()
                    .map(|u| dto::MultipartUpload {
                        initiated: Some(ts(u.created_at)),
                        key: Some(u.key),
                        upload_id: Some(u.id),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    pub(super) async fn serve_abort_multipart_upload(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        let actor = self.actor(&req).await?;
        let i = &req.input;
        self.core
            .abort_upload(&actor, &i.bucket, &i.key, &i.upload_id)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(dto::AbortMultipartUploadOutput::default()))
    }

    pub(super) async fn serve_complete_multipart_upload(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        let actor = self.actor(&req).await?;
        let i = req.input;
        let listed: Vec<(i32, String)> = i
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                (
                    p.part_number.unwrap_or(0),
                    p.e_tag.map(|e| e.value().to_string()).unwrap_or_default(),
                )
            })
            .collect();
        let listed = last_of_repeats(listed);
        if i.if_match.is_some() || i.if_none_match.is_some() {
            self.write_preconditions(&actor, &i.bucket, &i.key, &i.if_match, &i.if_none_match)
                .await?;
        }
        // Every part but the last must be at least 5 MiB, as in S3.
        let parts = self
            .core
            .list_parts(&actor, &i.bucket, &i.key, &i.upload_id)
            .await;
        let info = match parts {
            Ok(parts) => {
                let small = listed.iter().rev().skip(1).any(|(n, _)| {
                    parts
                        .iter()
                        .any(|p| p.number == *n && p.size < MIN_PART_SIZE)
                });
                if small {
                    return Err(s3_error!(
                        EntityTooSmall,
                        "Each part but the last must be at least 5 MiB"
                    ));
                }
                self.core
                    .complete_upload(&actor, &i.bucket, &i.key, &i.upload_id, &listed)
                    .await
                    .map_err(s3_err)?
            }
            // A completion repeated after it succeeded answers as the first one did: the object
            // is there with the ETag the listed parts make.
            Err(StorageError::NoSuchUpload) => {
                let done = self.core.head(&actor, &i.bucket, &i.key).await.ok();
                let etags: Vec<String> = listed.iter().map(|(_, e)| e.clone()).collect();
                match done {
                    Some(o) if o.etag == crate::storage::core::multipart_etag(&etags) => o,
                    _ => return Err(s3_err(StorageError::NoSuchUpload)),
                }
            }
            Err(e) => return Err(s3_err(e)),
        };
        Ok(S3Response::new(dto::CompleteMultipartUploadOutput {
            bucket: Some(i.bucket.clone()),
            key: Some(i.key.clone()),
            e_tag: Some(etag(&info.etag)),
            location: Some(format!("/{}/{}", i.bucket, i.key)),
            version_id: versioning::version_header(&info),
            ..Default::default()
        }))
    }
}

/// A part number listed twice in a row (a part uploaded again while its first upload was still in
/// flight, the client noting both answers) counts once, with its last entry's ETag, as Ceph does:
/// the part kept is the upload that finished last. Part numbers out of order are left for the
/// storage core to refuse (InvalidPartOrder).
fn last_of_repeats(mut listed: Vec<(i32, String)>) -> Vec<(i32, String)> {
    listed.reverse();
    listed.dedup_by_key(|(n, _)| *n);
    listed.reverse();
    listed
}
