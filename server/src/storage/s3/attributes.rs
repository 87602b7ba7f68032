//! The S3 door's GetObjectAttributes: an object version's ETag, kept checksums, size, storage class
//! and — for an object made by a multipart upload — its parts (number and size, paged by
//! `max-parts` / `part-number-marker`), as the caller. Refuses SSE-C headers (NotImplemented, as
//! every SSE request), a negative `max-parts` or part marker (InvalidArgument), and answers a delete
//! marker as GetObject does.

use super::*;

impl S3Door {
    pub(super) async fn serve_get_object_attributes(
        &self,
        req: S3Request<dto::GetObjectAttributesInput>,
    ) -> S3Result<S3Response<dto::GetObjectAttributesOutput>> {
        let actor = self.actor(&req).await?;
        let i = &req.input;
        no_sse(&None, &i.sse_customer_algorithm)?;
        if i.max_parts.is_some_and(|m| m < 0) || i.part_number_marker.is_some_and(|m| m < 0) {
            return Err(s3_error!(
                InvalidArgument,
                "max-parts and part-number-marker are not negative"
            ));
        }
        let info = self
            .named_version(&actor, &i.bucket, &i.key, i.version_id.as_deref())
            .await?;
        // The header is one comma-separated list (s3s may hand it over as one element).
        let wants = |a: &str| {
            i.object_attributes
                .iter()
                .flat_map(|x| x.as_str().split(','))
                .any(|x| x.trim() == a)
        };
        let sums = integrity::from_metadata(&info.metadata);
        let has_sums = sums.checksum_crc32.is_some()
            || sums.checksum_crc32c.is_some()
            || sums.checksum_crc64nvme.is_some()
            || sums.checksum_sha1.is_some()
            || sums.checksum_sha256.is_some();
        let parts = info
            .parts
            .as_ref()
            .filter(|_| wants(dto::ObjectAttributes::OBJECT_PARTS));
        let object_parts = parts.map(|parts| {
            let max = i.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
            let after = i.part_number_marker.unwrap_or(0).max(0) as usize;
            let page: Vec<dto::ObjectPart> = parts
                .iter()
                .enumerate()
                .skip(after)
                .take(max)
                .map(|(n, (_, size))| dto::ObjectPart {
                    part_number: Some(n as i32 + 1),
                    size: Some(*size as i64),
                    ..Default::default()
                })
                .collect();
            let last = page.last().and_then(|p| p.part_number);
            let truncated = after + page.len() < parts.len();
            dto::GetObjectAttributesParts {
                is_truncated: Some(truncated),
                max_parts: Some(max as i32),
                next_part_number_marker: truncated.then_some(last).flatten(),
                part_number_marker: Some(after as i32),
                parts: Some(page),
                total_parts_count: Some(parts.len() as i32),
            }
        });
        Ok(S3Response::new(dto::GetObjectAttributesOutput {
            checksum: (wants(dto::ObjectAttributes::CHECKSUM) && has_sums).then_some(sums),
            e_tag: wants(dto::ObjectAttributes::ETAG).then(|| etag(&info.etag)),
            last_modified: Some(ts(info.updated_at)),
            object_parts,
            object_size: wants(dto::ObjectAttributes::OBJECT_SIZE).then_some(info.size as i64),
            storage_class: wants(dto::ObjectAttributes::STORAGE_CLASS)
                .then(|| dto::StorageClass::from_static(dto::StorageClass::STANDARD)),
            version_id: versioning::version_header(&info),
            ..Default::default()
        }))
    }
}

/// GetObjectAttributes answers the ETag unquoted (unlike every other S3 answer, and as AWS SDKs
/// expect), while s3s quotes every ETag it writes: this takes the quotes off in the answer's XML.
pub(super) fn unquote_attributes_etag(xml: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(xml).ok()?;
    let start = text.find("<ETag>\"")? + "<ETag>".len();
    let end = start + text[start..].find("</ETag>")?;
    let inner = text[start..end].trim_matches('"');
    Some(format!("{}{inner}{}", &text[..start], &text[end..]).into_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn etag_loses_its_quotes() {
        let xml = b"<GetObjectAttributesOutput><ETag>\"abc-2\"</ETag><ObjectSize>3</ObjectSize></GetObjectAttributesOutput>";
        assert_eq!(
            super::unquote_attributes_etag(xml).unwrap(),
            b"<GetObjectAttributesOutput><ETag>abc-2</ETag><ObjectSize>3</ObjectSize></GetObjectAttributesOutput>"
        );
        assert_eq!(super::unquote_attributes_etag(b"<X/>"), None);
    }
}
