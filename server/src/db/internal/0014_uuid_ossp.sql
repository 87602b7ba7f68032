-- uuid-ossp in `extensions`, as Supabase installs it, so migrations written for Supabase that call
-- uuid_generate_v4() unqualified (found through the migration search_path) run unchanged.
create extension if not exists "uuid-ossp" with schema extensions;
