-- doska: a bucket's S3 settings that Supabase's storage.buckets has no column for — its CORS rules
-- (answered to browsers' preflight requests on the S3 listener, and on their actual requests) and
-- its public access block. Kept on the bucket's own row, so the storage.buckets policies decide who
-- may change them (as for `public`), and they go with the bucket. Both are JSON as doska writes it
-- (docs/storage.md#s3): null is "never set", which S3 answers with NoSuchCORSConfiguration and
-- NoSuchPublicAccessBlockConfiguration.
alter table storage.buckets add column if not exists s3_cors jsonb;
alter table storage.buckets add column if not exists s3_public_access_block jsonb;

-- A bucket is public to anonymous readers (Supabase's public URLs, unsigned S3 reads) when its
-- `public` flag is set and its public access block does not say to ignore public ACLs (doska's
-- `public` is what S3 calls a public-read ACL). Same signature and language as 0010's; only
-- `public` changes meaning.
create or replace function storage.doska_bucket(p_id text)
returns table (id text, public boolean, file_size_limit bigint, allowed_mime_types text[])
language plpgsql stable security definer set search_path = '' as $$
begin
  return query
    select b.id,
           b.public
             and not coalesce((b.s3_public_access_block ->> 'IgnorePublicAcls')::boolean, false),
           b.file_size_limit, b.allowed_mime_types
    from storage.buckets b where b.id = p_id;
end
$$;
