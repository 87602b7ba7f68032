-- doska: a bucket's S3 tags (Put/Get/DeleteBucketTagging), kept on the bucket's own row beside its
-- other S3 settings (0018), so the storage.buckets policies decide who may see and change them and
-- they go with the bucket. A JSON object of key → value as doska writes it (docs/storage.md#s3);
-- null is "never set", which S3 answers with NoSuchTagSet.
alter table storage.buckets add column if not exists s3_tagging jsonb;
