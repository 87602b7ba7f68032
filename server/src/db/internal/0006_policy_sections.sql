-- The policy files' storage and realtime sections: the ledger also lists the buckets the files made
-- or took over ('bucket'; fingerprint 'created' or 'adopted': only a created one is ever removed)
-- and the tables they added to the publication supabase_realtime ('publication'), so removing a
-- line from the files undoes only what the files did.
alter table doska.policy_objects drop constraint policy_objects_kind_check;
alter table doska.policy_objects add constraint policy_objects_kind_check
  check (kind in ('role', 'grant', 'policy', 'bucket', 'publication'));
