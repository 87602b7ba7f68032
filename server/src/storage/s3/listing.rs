//! The S3 door's listings: ListObjects (v1, v2) (ListObjectVersions is `versioning`'s), over the storage core's
//! listing as the caller.

use super::*;

impl S3Door {
    pub(super) async fn serve_list_objects(
        &self,
        req: S3Request<dto::ListObjectsInput>,
    ) -> S3Result<S3Response<dto::ListObjectsOutput>> {
        let actor = self.actor(&req).await?;
        let i = req.input;
        self.require_bucket(&actor, &i.bucket).await?;
        let max = max_keys(i.max_keys);
        let prefix = i.prefix.clone().unwrap_or_default();
        let page = self
            .core
            .list(
                &actor,
                &i.bucket,
                &prefix,
                i.delimiter.as_deref(),
                i.marker.as_deref(),
                max,
            )
            .await
            .map_err(s3_err)?;
        let (contents, common_prefixes) = listed(&page, &i.encoding_type, true);
        Ok(S3Response::new(dto::ListObjectsOutput {
            name: Some(i.bucket),
            // v1 answers its Prefix as sent even with `encoding-type=url`, as AWS does (boto3,
            // which asks for URL encoding on every listing, decodes v1's Delimiter, Marker,
            // NextMarker and keys, not its Prefix).
            prefix: Some(prefix),
            // S3 always names the marker, empty when none was given.
            marker: Some(encode_key(&i.encoding_type, i.marker.unwrap_or_default())),
            max_keys: Some(max as i32),
            is_truncated: Some(page.truncated),
            next_marker: page
                .truncated
                .then(|| page.last.clone())
                .flatten()
                .map(|m| encode_key(&i.encoding_type, m)),
            contents,
            common_prefixes,
            delimiter: i
                .delimiter
                .filter(|d| !d.is_empty())
                .map(|d| encode_key(&i.encoding_type, d)),
            encoding_type: i.encoding_type.clone(),
            ..Default::default()
        }))
    }

    pub(super) async fn serve_list_objects_v2(
        &self,
        req: S3Request<dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        let actor = self.actor(&req).await?;
        let i = req.input;
        self.require_bucket(&actor, &i.bucket).await?;
        let max = max_keys(i.max_keys);
        let prefix = i.prefix.clone().unwrap_or_default();
        // Continuation tokens are opaque to clients: the last key, base64 (keys may hold anything).
        let token = match &i.continuation_token {
            Some(t) => Some(
                base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, t)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| s3_error!(InvalidArgument, "Invalid continuation token"))?,
            ),
            None => None,
        };
        let after = token.as_deref().or(i.start_after.as_deref());
        let page = self
            .core
            .list(
                &actor,
                &i.bucket,
                &prefix,
                i.delimiter.as_deref(),
                after,
                max,
            )
            .await
            .map_err(s3_err)?;
        let (contents, common_prefixes) =
            listed(&page, &i.encoding_type, i.fetch_owner.unwrap_or(false));
        Ok(S3Response::new(dto::ListObjectsV2Output {
            name: Some(i.bucket),
            prefix: Some(encode_key(&i.encoding_type, prefix)),
            max_keys: Some(max as i32),
            key_count: Some((page.objects.len() + page.prefixes.len()) as i32),
            continuation_token: i.continuation_token,
            is_truncated: Some(page.truncated),
            next_continuation_token: page
                .truncated
                .then(|| page.last.clone())
                .flatten()
                .map(|l| {
                    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, l)
                }),
            contents,
            common_prefixes,
            delimiter: i
                .delimiter
                .filter(|d| !d.is_empty())
                .map(|d| encode_key(&i.encoding_type, d)),
            encoding_type: i.encoding_type.clone(),
            start_after: i.start_after.map(|a| encode_key(&i.encoding_type, a)),
            ..Default::default()
        }))
    }
}
