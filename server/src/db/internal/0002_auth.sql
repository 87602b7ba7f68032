-- GoTrue's auth tables (columns as in supabase/auth's migrations, so Supabase migrations and
-- triggers that reference auth.users keep working), plus doska's mail outbox.
-- Only doska's admin connection touches these; request roles get no grants here.

create type auth.aal_level as enum ('aal1', 'aal2', 'aal3');

create table auth.users (
    instance_id uuid null,
    id uuid not null primary key,
    aud varchar(255) null,
    role varchar(255) null,
    email varchar(255) null,
    encrypted_password varchar(255) null,
    email_confirmed_at timestamptz null,
    invited_at timestamptz null,
    confirmation_token varchar(255) null,
    confirmation_sent_at timestamptz null,
    recovery_token varchar(255) null,
    recovery_sent_at timestamptz null,
    email_change_token_new varchar(255) null,
    email_change varchar(255) null,
    email_change_sent_at timestamptz null,
    last_sign_in_at timestamptz null,
    raw_app_meta_data jsonb null,
    raw_user_meta_data jsonb null,
    is_super_admin bool null,
    created_at timestamptz null,
    updated_at timestamptz null,
    phone text null default null unique,
    phone_confirmed_at timestamptz null,
    phone_change text null default '',
    phone_change_token varchar(255) null default '',
    phone_change_sent_at timestamptz null,
    confirmed_at timestamptz generated always as (least(email_confirmed_at, phone_confirmed_at)) stored,
    email_change_token_current varchar(255) null default '',
    email_change_confirm_status smallint null default 0
        check (email_change_confirm_status >= 0 and email_change_confirm_status <= 2),
    banned_until timestamptz null,
    reauthentication_token varchar(255) null default '',
    reauthentication_sent_at timestamptz null,
    is_sso_user boolean not null default false,
    deleted_at timestamptz null,
    is_anonymous boolean not null default false
);
comment on table auth.users is 'Auth: Stores user login data within a secure schema.';
create unique index users_email_partial_key on auth.users (email) where (is_sso_user = false);
create index users_instance_id_email_idx on auth.users (instance_id, lower(email));
create index users_instance_id_idx on auth.users (instance_id);
create index users_is_anonymous_idx on auth.users (is_anonymous);

create table auth.identities (
    provider_id text not null,
    user_id uuid not null references auth.users (id) on delete cascade,
    identity_data jsonb not null,
    provider text not null,
    last_sign_in_at timestamptz null,
    created_at timestamptz null,
    updated_at timestamptz null,
    email text generated always as (lower(identity_data ->> 'email')) stored,
    id uuid not null default gen_random_uuid() primary key,
    constraint identities_provider_id_provider_unique unique (provider_id, provider)
);
comment on table auth.identities is 'Auth: Stores identities associated to a user.';
create index identities_user_id_idx on auth.identities (user_id);
create index identities_email_idx on auth.identities (email text_pattern_ops);

create table auth.sessions (
    id uuid not null primary key,
    user_id uuid not null references auth.users (id) on delete cascade,
    created_at timestamptz null,
    updated_at timestamptz null,
    factor_id uuid null,
    aal auth.aal_level null,
    not_after timestamptz null,
    refreshed_at timestamp without time zone null,
    user_agent text null,
    ip inet null,
    tag text null
);
comment on table auth.sessions is 'Auth: Stores session data associated to a user.';
create index sessions_user_id_idx on auth.sessions (user_id);
create index user_id_created_at_idx on auth.sessions (user_id, created_at);
create index sessions_not_after_idx on auth.sessions (not_after desc);

-- doska stores sha256(token) in "token", never the token itself; "parent" is the parent's hash.
create table auth.refresh_tokens (
    instance_id uuid null,
    id bigserial not null primary key,
    token varchar(255) null unique,
    user_id varchar(255) null,
    revoked bool null,
    created_at timestamptz null,
    updated_at timestamptz null,
    parent varchar(255) null,
    session_id uuid null references auth.sessions (id) on delete cascade
);
comment on table auth.refresh_tokens is 'Auth: Store of tokens used to refresh JWT tokens once they expire.';
create index refresh_tokens_instance_id_idx on auth.refresh_tokens (instance_id);
create index refresh_tokens_instance_id_user_id_idx on auth.refresh_tokens (instance_id, user_id);
create index refresh_tokens_parent_idx on auth.refresh_tokens (parent);
create index refresh_tokens_session_id_revoked_idx on auth.refresh_tokens (session_id, revoked);
create index refresh_tokens_updated_at_idx on auth.refresh_tokens (updated_at desc);

create table auth.audit_log_entries (
    instance_id uuid null,
    id uuid not null primary key,
    payload json null,
    created_at timestamptz null,
    ip_address varchar(64) not null default ''
);
comment on table auth.audit_log_entries is 'Auth: Audit trail for user actions.';

create table auth.instances (
    id uuid not null primary key,
    uuid uuid null,
    raw_base_config text null,
    created_at timestamptz null,
    updated_at timestamptz null
);

create table auth.schema_migrations (
    version varchar(255) not null primary key
);

-- Mail that doska would send, when no SMTP server is configured (and a record of what was sent
-- when one is). An admin reads it: select * from auth.mail_outbox order by id desc.
create table auth.mail_outbox (
    id bigserial primary key,
    created_at timestamptz not null default now(),
    recipient text not null,
    kind text not null,
    subject text not null,
    body text not null,
    sent_at timestamptz null
);
comment on table auth.mail_outbox is 'doska: outgoing auth mail (confirmation, magic link, recovery, invite).';

-- PKCE flows of mailed links (GoTrue's auth.flow_state). doska stores sha256(auth_code).
create type auth.code_challenge_method as enum ('s256', 'plain');
create table auth.flow_state (
    id uuid primary key,
    user_id uuid null,
    auth_code text not null,
    code_challenge_method auth.code_challenge_method not null,
    code_challenge text not null,
    provider_type text not null,
    provider_access_token text null,
    provider_refresh_token text null,
    created_at timestamptz null,
    updated_at timestamptz null,
    authentication_method text not null,
    auth_code_issued_at timestamptz null
);
comment on table auth.flow_state is 'Stores metadata for pkce logins';
create index idx_auth_code on auth.flow_state (auth_code);
create index idx_user_id_auth_method on auth.flow_state (user_id, authentication_method);
create index flow_state_created_at_idx on auth.flow_state (created_at desc);
