//! The one configuration of doska: every key comes from a flag, an env var `DOSKA_<KEY>` or a TOML file
//! (`--config`), in that order of precedence, else its default. Each key maps mechanically: the field
//! `jwt_secret` is `--jwt-secret`, `DOSKA_JWT_SECRET` and `jwt_secret` in the file. Rejects unknown file
//! keys, malformed values and impossible combinations (a TLS cert without its key).

use std::{fmt, net::SocketAddr, path::PathBuf};

use clap::Args;
use serde::{Deserialize, Serialize};

/// Largest realtime client message accepted by default (payload included;
/// `--realtime-max-message-bytes`); larger ones get an error reply.
pub const REALTIME_MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Every setting as it arrives from the command line + env, or from the file: all optional, so the
/// layers can be merged field by field before defaults apply.
#[derive(Args, Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address of the HTTP listener (REST, auth, realtime, storage, health, metrics).
    #[arg(long, global = true, env = "DOSKA_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Where doska keeps its state: the embedded PostgreSQL, the JWT secret, stored files.
    #[arg(long, global = true, env = "DOSKA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// An external PostgreSQL to use instead of the embedded one (its user needs superuser rights,
    /// or CREATEROLE + REPLICATION + BYPASSRLS; see docs/operations.md).
    #[arg(long, global = true, env = "DOSKA_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Redis (`redis://[:password@]host[:port]`) for what several doska on one database share:
    /// rate limits and realtime's broadcast and presence between them (else PostgreSQL carries it).
    #[arg(long, global = true, env = "DOSKA_REDIS_URL")]
    pub redis_url: Option<String>,
    /// HS256 secret for every JWT doska signs and checks; generated into the data dir when absent.
    #[arg(long, global = true, env = "DOSKA_JWT_SECRET")]
    pub jwt_secret: Option<String>,
    /// Lifetime of access tokens doska issues, in seconds.
    #[arg(long, global = true, env = "DOSKA_JWT_EXP")]
    pub jwt_exp: Option<i64>,
    /// Folder of the app's SQL migrations, applied in file-name order.
    #[arg(long, global = true, env = "DOSKA_MIGRATIONS")]
    pub migrations: Option<PathBuf>,
    /// Folder of the access policy files.
    #[arg(long, global = true, env = "DOSKA_POLICIES")]
    pub policies: Option<PathBuf>,
    /// A folder of static files served at `/` (the frontend); `""` serves none. Default: the
    /// TeacherUchit app, `./examples/teacheruchit`.
    // An OsString parser: unlike clap's PathBuf parser it takes `""`, which means "none".
    #[arg(long = "static", global = true, env = "DOSKA_STATIC",
          value_parser = clap::builder::TypedValueParser::map(clap::builder::OsStringValueParser::new(), PathBuf::from))]
    #[serde(rename = "static")]
    pub static_dir: Option<PathBuf>,
    /// Supabase's default grants on `public` (`supabase`) or none (`none`).
    #[arg(long, global = true, env = "DOSKA_DEFAULT_GRANTS")]
    pub default_grants: Option<DefaultGrants>,
    /// Log lines as `text` or `json`.
    #[arg(long, global = true, env = "DOSKA_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// PEM certificate chain; with --tls-key, every listener speaks TLS.
    #[arg(long, global = true, env = "DOSKA_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, global = true, env = "DOSKA_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Comma-separated origins browsers may call from; `*` (the default) allows any.
    #[arg(long, global = true, env = "DOSKA_CORS_ORIGINS")]
    pub cors_origins: Option<String>,
    /// Body size limits per route prefix, `prefix=bytes` comma-separated (suffixes K, M, G);
    /// merged over the defaults.
    #[arg(long, global = true, env = "DOSKA_BODY_LIMITS")]
    pub body_limits: Option<String>,
    /// Schemas the REST API exposes, comma-separated; the first is the default.
    #[arg(long, global = true, env = "DOSKA_DB_SCHEMAS")]
    pub db_schemas: Option<String>,
    /// Cap on the rows any REST response returns.
    #[arg(long, global = true, env = "DOSKA_DB_MAX_ROWS")]
    pub db_max_rows: Option<i64>,
    /// Schemas put on every REST request's `search_path` after the exposed schema it uses,
    /// comma-separated (PostgREST's `db-extra-search-path`); default `public,extensions`.
    #[arg(long, global = true, env = "DOSKA_DB_EXTRA_SEARCH_PATH")]
    pub db_extra_search_path: Option<String>,
    /// Connections in the request pool (and, halved, the admin pool).
    #[arg(long, global = true, env = "DOSKA_DB_POOL")]
    pub db_pool: Option<usize>,
    /// Per-request statement timeout in milliseconds (0 = none).
    #[arg(long, global = true, env = "DOSKA_DB_STATEMENT_TIMEOUT")]
    pub db_statement_timeout: Option<u64>,
    /// How long a graceful shutdown waits for in-flight requests, in seconds.
    #[arg(long, global = true, env = "DOSKA_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<u64>,
    /// Public URL of the site, the default redirect target of auth links.
    #[arg(long, global = true, env = "DOSKA_SITE_URL")]
    pub site_url: Option<String>,
    /// Where stored files' bytes live (default `<data-dir>/storage`).
    #[arg(long, global = true, env = "DOSKA_STORAGE_DIR")]
    pub storage_dir: Option<PathBuf>,
    /// Age after which a stored file no row refers to is removed: seconds, or with a suffix s/m/h/d.
    #[arg(long, global = true, env = "DOSKA_STORAGE_ORPHAN_AGE")]
    pub storage_orphan_age: Option<String>,
    /// How long a "day" of S3 lifecycle rules lasts (default 1d; shorter only for tests, as Ceph's
    /// `rgw_lc_debug_interval`): seconds, or with a suffix s/m/h/d.
    #[arg(long, global = true, env = "DOSKA_STORAGE_LIFECYCLE_DAY")]
    pub storage_lifecycle_day: Option<String>,
    /// Where object bytes live: `disk` (the storage dir) or `s3` (an S3 service: AWS, MinIO, Ceph).
    #[arg(long, global = true, env = "DOSKA_STORAGE_BACKEND")]
    pub storage_backend: Option<StorageBackendKind>,
    /// The S3 service's URL (default `https://s3.<region>.amazonaws.com`).
    #[arg(long, global = true, env = "DOSKA_STORAGE_S3_ENDPOINT")]
    pub storage_s3_endpoint: Option<String>,
    /// The bucket that holds the bytes (it must exist).
    #[arg(long, global = true, env = "DOSKA_STORAGE_S3_BUCKET")]
    pub storage_s3_bucket: Option<String>,
    /// The S3 service's region (default `us-east-1`).
    #[arg(long, global = true, env = "DOSKA_STORAGE_S3_REGION")]
    pub storage_s3_region: Option<String>,
    /// Access key id doska signs its requests to the S3 service with.
    #[arg(long, global = true, env = "DOSKA_STORAGE_S3_ACCESS_KEY_ID")]
    pub storage_s3_access_key_id: Option<String>,
    /// Secret access key for --storage-s3-access-key-id.
    #[arg(long, global = true, env = "DOSKA_STORAGE_S3_SECRET_ACCESS_KEY")]
    pub storage_s3_secret_access_key: Option<String>,
    /// Path-style URLs (`endpoint/bucket/key`) instead of virtual-hosted ones (`bucket.endpoint/key`);
    /// default true with --storage-s3-endpoint (MinIO, Ceph), false for AWS.
    #[arg(long, global = true, env = "DOSKA_STORAGE_S3_PATH_STYLE", action = clap::ArgAction::Set)]
    pub storage_s3_path_style: Option<bool>,
    /// How long realtime keeps changes for clients that reconnect with `since`: seconds, or with
    /// a suffix s/m/h/d.
    #[arg(long, global = true, env = "DOSKA_REALTIME_REPLAY_WINDOW")]
    pub realtime_replay_window: Option<String>,
    /// Most entries the realtime replay log keeps (the oldest go first).
    #[arg(long, global = true, env = "DOSKA_REALTIME_REPLAY_MAX_ROWS")]
    pub realtime_replay_max_rows: Option<u64>,
    /// Largest realtime client message (and REST broadcast body) accepted, in bytes.
    #[arg(long, global = true, env = "DOSKA_REALTIME_MAX_MESSAGE_BYTES")]
    pub realtime_max_message_bytes: Option<usize>,
    /// Address of the S3 listener; it runs only when an S3 key pair is configured.
    #[arg(long, global = true, env = "DOSKA_S3_LISTEN")]
    pub s3_listen: Option<SocketAddr>,
    /// The operator's S3 access key id (acts as service_role).
    #[arg(long, global = true, env = "DOSKA_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,
    /// The operator's S3 secret access key.
    #[arg(long, global = true, env = "DOSKA_S3_SECRET_ACCESS_KEY")]
    pub s3_secret_access_key: Option<String>,
    /// Proxies whose `X-Forwarded-For` names the client (comma-separated addresses or CIDR ranges);
    /// from any other peer the header is ignored.
    #[arg(long, global = true, env = "DOSKA_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
    /// doska's own public base URL, used in links auth mails (default `http://<listen>`).
    #[arg(long, global = true, env = "DOSKA_EXTERNAL_URL")]
    pub external_url: Option<String>,
    /// More redirect targets auth links may lead to, comma-separated; a trailing `*` allows a prefix.
    #[arg(long, global = true, env = "DOSKA_REDIRECT_URLS")]
    pub redirect_urls: Option<String>,
    /// Shortest password sign-up and password changes accept.
    #[arg(long, global = true, env = "DOSKA_PASSWORD_MIN_LENGTH")]
    pub password_min_length: Option<usize>,
    /// Confirm sign-ups at once, without a mailed link (`true`/`false`).
    #[arg(long, global = true, env = "DOSKA_AUTH_AUTOCONFIRM", action = clap::ArgAction::Set)]
    pub auth_autoconfirm: Option<bool>,
    /// Refuse new sign-ups (admins can still create users).
    #[arg(long, global = true, env = "DOSKA_AUTH_DISABLE_SIGNUP", action = clap::ArgAction::Set)]
    pub auth_disable_signup: Option<bool>,
    /// Allow anonymous sign-ins.
    #[arg(long, global = true, env = "DOSKA_AUTH_ANONYMOUS", action = clap::ArgAction::Set)]
    pub auth_anonymous: Option<bool>,
    /// A password change needs the current password or a reauthentication nonce.
    #[arg(long, global = true, env = "DOSKA_SECURE_PASSWORD_CHANGE", action = clap::ArgAction::Set)]
    pub secure_password_change: Option<bool>,
    /// argon2id cost, e.g. `m=19456,t=2,p=1` (KiB, iterations, lanes).
    #[arg(long, global = true, env = "DOSKA_ARGON2")]
    pub argon2: Option<String>,
    /// Concurrent password hashes (default: cores − 1, at least 1).
    #[arg(long, global = true, env = "DOSKA_HASH_POOL")]
    pub hash_pool: Option<usize>,
    /// Seconds a rotated refresh token may still be presented (tabs refreshing at once).
    #[arg(long, global = true, env = "DOSKA_REFRESH_REUSE_WINDOW")]
    pub refresh_reuse_window: Option<i64>,
    /// Lifetime of mailed links and one-time codes, seconds.
    #[arg(long, global = true, env = "DOSKA_OTP_EXP")]
    pub otp_exp: Option<i64>,
    /// Auth rate limits: `off`, or `name=count/seconds,…` over GoTrue's defaults.
    #[arg(long, global = true, env = "DOSKA_RATE_LIMITS")]
    pub rate_limits: Option<String>,
    /// SMTP relay for auth mail, `smtp://user:pass@host:port` (or smtps://); else mail waits in
    /// auth.mail_outbox.
    #[arg(long, global = true, env = "DOSKA_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// PEM file of an EC P-256 or RSA private key: access tokens become ES256/RS256 with a `kid`.
    #[arg(long, global = true, env = "DOSKA_JWT_SIGNING_KEY")]
    pub jwt_signing_key: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DefaultGrants {
    Supabase,
    None,
}

#[derive(clap::ValueEnum, Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackendKind {
    Disk,
    S3,
}

/// Where object bytes live.
#[derive(Debug, Clone)]
pub enum StorageBackend {
    /// Files under `storage_dir`.
    Disk,
    /// Objects in a bucket of an S3 service.
    S3(std::sync::Arc<S3Backend>),
}

/// The S3 service that holds object bytes (`--storage-backend s3`).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Backend {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl S3Backend {
    /// The bucket's base URL (path or virtual-hosted style), or why the settings make none.
    pub fn bucket_url(&self) -> Result<rusty_s3::Bucket, String> {
        let endpoint: url::Url = self
            .endpoint
            .parse()
            .map_err(|e| format!("`{}` is not a URL: {e}", self.endpoint))?;
        let style = if self.path_style {
            rusty_s3::UrlStyle::Path
        } else {
            rusty_s3::UrlStyle::VirtualHost
        };
        rusty_s3::Bucket::new(endpoint, style, self.bucket.clone(), self.region.clone()).map_err(
            |e| {
                format!(
                    "no URL for bucket `{}` at `{}`: {e}",
                    self.bucket, self.endpoint
                )
            },
        )
    }
}

impl fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Backend")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

#[derive(clap::ValueEnum, Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The effective configuration, defaults applied.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    /// `None` until the secret is loaded from (or created in) the data dir.
    pub jwt_secret: Option<String>,
    pub jwt_exp: i64,
    pub migrations: PathBuf,
    pub policies: PathBuf,
    pub static_dir: Option<PathBuf>,
    pub default_grants: DefaultGrants,
    pub log_format: LogFormat,
    pub tls: Option<TlsFiles>,
    pub cors_origins: CorsOrigins,
    pub body_limits: BodyLimits,
    pub db_schemas: Vec<String>,
    pub db_max_rows: Option<i64>,
    pub db_extra_search_path: Vec<String>,
    pub db_pool: usize,
    pub db_statement_timeout_ms: u64,
    pub shutdown_timeout_secs: u64,
    pub site_url: String,
    pub trusted_proxies: Vec<crate::http::client_ip::IpNet>,
    pub storage_dir: PathBuf,
    pub storage_orphan_age_secs: u64,
    pub storage_lifecycle_day_secs: u64,
    pub storage_backend: StorageBackend,
    pub realtime_replay_window_secs: u64,
    pub realtime_replay_max_rows: u64,
    pub realtime_max_message_bytes: usize,
    pub s3_listen: SocketAddr,
    /// The operator's S3 key pair; the S3 listener runs only when it is set.
    pub s3_keys: Option<S3Keys>,
    /// Auth's settings as given; `auth::AuthConfig::from_config` parses and defaults them.
    pub auth: AuthSettings,
}

#[derive(Clone)]
pub struct S3Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl fmt::Debug for S3Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Keys")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The pool size when none is configured: four connections per core, at least eight. Requests are
/// multiplexed over the pool, so more backends than PostgreSQL can run at once only add scheduling
/// stalls: on 2 cores, 32 connections gave REST p99s of 40–400 ms where 8 gave 5–12 ms and a higher
/// rate (bench/rest, docs/benchmarks.md).
fn default_db_pool() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (4 * cores).max(8)
}

/// The auth front door's settings, unparsed: their grammar belongs to `auth`.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    pub external_url: Option<String>,
    pub redirect_urls: Vec<String>,
    pub password_min_length: Option<usize>,
    pub autoconfirm: Option<bool>,
    pub disable_signup: Option<bool>,
    pub anonymous: Option<bool>,
    pub secure_password_change: Option<bool>,
    pub argon2: Option<String>,
    pub hash_pool: Option<usize>,
    pub refresh_reuse_window: Option<i64>,
    pub otp_exp: Option<i64>,
    pub rate_limits: Option<String>,
    pub smtp_url: Option<String>,
    pub jwt_signing_key: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CorsOrigins {
    Any,
    List(Vec<String>),
}

impl CorsOrigins {
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            CorsOrigins::Any => true,
            CorsOrigins::List(list) => list.iter().any(|o| o == origin),
        }
    }
}

/// Body size limits by route prefix; the longest matching prefix wins.
#[derive(Debug, Clone, PartialEq)]
pub struct BodyLimits {
    pub by_prefix: Vec<(String, u64)>,
    pub fallback: u64,
}

impl BodyLimits {
    pub fn for_path(&self, path: &str) -> u64 {
        self.by_prefix
            .iter()
            .filter(|(p, _)| path.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, l)| *l)
            .unwrap_or(self.fallback)
    }
}

const MIB: u64 = 1024 * 1024;

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            by_prefix: vec![
                ("/rest/v1".into(), 10 * MIB),
                ("/auth/v1".into(), MIB),
                ("/realtime/v1".into(), MIB),
                ("/storage/v1".into(), 50 * 1024 * MIB),
            ],
            fallback: MIB,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {}: {reason}", .path.display())]
    File { path: PathBuf, reason: String },
    #[error("setting {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

macro_rules! merge_fields {
    ($hi:expr, $lo:expr, $($f:ident),* $(,)?) => {
        Settings { $($f: $hi.$f.or($lo.$f),)* }
    };
}

impl Settings {
    /// Fields set here win; the rest come from `lower`.
    pub fn over(self, lower: Settings) -> Settings {
        merge_fields!(
            self,
            lower,
            listen,
            data_dir,
            database_url,
            redis_url,
            jwt_secret,
            jwt_exp,
            migrations,
            policies,
            static_dir,
            default_grants,
            log_format,
            tls_cert,
            tls_key,
            cors_origins,
            body_limits,
            db_schemas,
            db_max_rows,
            db_extra_search_path,
            db_pool,
            db_statement_timeout,
            shutdown_timeout,
            site_url,
            trusted_proxies,
            storage_dir,
            storage_orphan_age,
            storage_lifecycle_day,
            storage_backend,
            storage_s3_endpoint,
            storage_s3_bucket,
            storage_s3_region,
            storage_s3_access_key_id,
            storage_s3_secret_access_key,
            storage_s3_path_style,
            realtime_replay_window,
            realtime_replay_max_rows,
            realtime_max_message_bytes,
            s3_listen,
            s3_access_key_id,
            s3_secret_access_key,
            external_url,
            redirect_urls,
            password_min_length,
            auth_autoconfirm,
            auth_disable_signup,
            auth_anonymous,
            secure_password_change,
            argon2,
            hash_pool,
            refresh_reuse_window,
            otp_exp,
            rate_limits,
            smtp_url,
            jwt_signing_key,
        )
    }

    pub fn from_file(path: &std::path::Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            reason: e.message().to_string()
                + &e.span()
                    .map(|s| format!(" (line {})", line_of(&text, s.start)))
                    .unwrap_or_default(),
        })
    }
}

fn line_of(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].matches('\n').count() + 1
}

fn parse_body_limits(s: &str) -> Result<BodyLimits, ConfigError> {
    let mut limits = BodyLimits::default();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let invalid = || ConfigError::Invalid {
            key: "body_limits",
            reason: format!("`{part}` is not `prefix=size` (e.g. /rest/v1=10M)"),
        };
        let (prefix, size) = part.split_once('=').ok_or_else(invalid)?;
        let size = parse_size(size).ok_or_else(invalid)?;
        if !prefix.starts_with('/') {
            return Err(invalid());
        }
        limits.by_prefix.retain(|(p, _)| p != prefix);
        limits.by_prefix.push((prefix.to_string(), size));
    }
    Ok(limits)
}

impl Config {
    pub fn resolve(s: Settings) -> Result<Config, ConfigError> {
        let storage_backend = storage_backend(&s)?;
        let tls = match (s.tls_cert, s.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid {
                    key: "tls_cert",
                    reason: "--tls-cert and --tls-key go together".into(),
                });
            }
        };
        let cors_origins = match s.cors_origins.as_deref().map(str::trim) {
            None | Some("*") | Some("") => CorsOrigins::Any,
            Some(list) => CorsOrigins::List(
                list.split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_string())
                    .filter(|o| !o.is_empty())
                    .collect(),
            ),
        };
        let db_schemas: Vec<String> = s
            .db_schemas
            .as_deref()
            .unwrap_or("public")
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect();
        if db_schemas.is_empty() {
            return Err(ConfigError::Invalid {
                key: "db_schemas",
                reason: "needs at least one schema".into(),
            });
        }
        let db_extra_search_path: Vec<String> = s
            .db_extra_search_path
            .as_deref()
            .unwrap_or("public,extensions")
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect();
        if let Some(secret) = &s.jwt_secret
            && secret.len() < 32
        {
            return Err(ConfigError::Invalid {
                key: "jwt_secret",
                reason: "must be at least 32 characters".into(),
            });
        }
        let db_pool = s.db_pool.unwrap_or_else(default_db_pool);
        if db_pool == 0 {
            return Err(ConfigError::Invalid {
                key: "db_pool",
                reason: "must be at least 1".into(),
            });
        }
        let s3_keys = match (s.s3_access_key_id, s.s3_secret_access_key) {
            (Some(access_key_id), Some(secret_access_key)) => Some(S3Keys {
                access_key_id,
                secret_access_key,
            }),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid {
                    key: "s3_access_key_id",
                    reason: "--s3-access-key-id and --s3-secret-access-key go together".into(),
                });
            }
        };
        let storage_orphan_age_secs = duration_setting(
            s.storage_orphan_age.as_deref(),
            (3600, 0),
            "storage_orphan_age",
        )?;
        let storage_lifecycle_day_secs = duration_setting(
            s.storage_lifecycle_day.as_deref(),
            (86_400, 1),
            "storage_lifecycle_day",
        )?;
        let realtime_replay_window_secs = duration_setting(
            s.realtime_replay_window.as_deref(),
            (300, 0),
            "realtime_replay_window",
        )?;
        let realtime_max_message_bytes = match s.realtime_max_message_bytes {
            None => REALTIME_MAX_MESSAGE_BYTES,
            Some(n) if (1024..=64 * 1024 * 1024).contains(&n) => n,
            Some(n) => {
                return Err(ConfigError::Invalid {
                    key: "realtime_max_message_bytes",
                    reason: format!("{n} is outside 1024..=67108864"),
                });
            }
        };
        let data_dir = s.data_dir.unwrap_or_else(|| PathBuf::from("./doska-data"));
        let listen = s
            .listen
            .unwrap_or_else(|| "127.0.0.1:8000".parse().expect("literal address"));
        let static_on = !matches!(&s.static_dir, Some(p) if p.as_os_str().is_empty());
        Ok(Config {
            realtime_replay_window_secs,
            realtime_replay_max_rows: s.realtime_replay_max_rows.unwrap_or(100_000),
            realtime_max_message_bytes,
            storage_dir: s.storage_dir.unwrap_or_else(|| data_dir.join("storage")),
            storage_orphan_age_secs,
            storage_lifecycle_day_secs,
            storage_backend,
            s3_listen: s
                .s3_listen
                .unwrap_or_else(|| "127.0.0.1:9000".parse().expect("literal address")),
            s3_keys,
            listen,
            data_dir,
            database_url: s.database_url,
            jwt_secret: s.jwt_secret,
            jwt_exp: s.jwt_exp.unwrap_or(3600),
            migrations: s
                .migrations
                .unwrap_or_else(|| PathBuf::from("./migrations")),
            policies: s.policies.unwrap_or_else(|| PathBuf::from("./policies")),
            // Like the migrations and policies, relative to the working directory (the repository
            // when run with `cargo run`); an empty value turns static serving off.
            static_dir: match s.static_dir {
                Some(p) if p.as_os_str().is_empty() => None,
                Some(p) => Some(p),
                None => Some(PathBuf::from("./examples/teacheruchit")),
            },
            default_grants: s.default_grants.unwrap_or(DefaultGrants::Supabase),
            log_format: s.log_format.unwrap_or(LogFormat::Text),
            tls,
            cors_origins,
            body_limits: match s.body_limits {
                Some(b) => parse_body_limits(&b)?,
                None => BodyLimits::default(),
            },
            db_schemas,
            db_max_rows: s.db_max_rows,
            db_extra_search_path,
            db_pool,
            db_statement_timeout_ms: s.db_statement_timeout.unwrap_or(0),
            shutdown_timeout_secs: s.shutdown_timeout.unwrap_or(10),
            site_url: default_site_url(s.site_url, s.external_url.as_deref(), &listen, static_on),
            trusted_proxies: crate::http::client_ip::parse_list(s.trusted_proxies.as_deref())
                .map_err(|reason| ConfigError::Invalid {
                    key: "trusted_proxies",
                    reason,
                })?,
            redis_url: s.redis_url,
            auth: AuthSettings {
                external_url: s.external_url,
                redirect_urls: s
                    .redirect_urls
                    .as_deref()
                    .unwrap_or("")
                    .split(',')
                    .map(|u| u.trim().to_string())
                    .filter(|u| !u.is_empty())
                    .collect(),
                password_min_length: s.password_min_length,
                autoconfirm: s.auth_autoconfirm,
                disable_signup: s.auth_disable_signup,
                anonymous: s.auth_anonymous,
                secure_password_change: s.secure_password_change,
                argon2: s.argon2,
                hash_pool: s.hash_pool,
                refresh_reuse_window: s.refresh_reuse_window,
                otp_exp: s.otp_exp,
                rate_limits: s.rate_limits,
                smtp_url: s.smtp_url,
                jwt_signing_key: s.jwt_signing_key,
            },
        })
    }

    /// The effective configuration as `doska config` prints it: TOML, secrets masked.
    pub fn masked_toml(&self) -> String {
        let mask = |s: &Option<String>| s.as_ref().map(|_| "********".to_string());
        let mut v = serde_json::json!({
            "listen": self.listen.to_string(),
            "data_dir": self.data_dir.display().to_string(),
            "database_url": self.database_url.as_deref().map(mask_url),
            "jwt_secret": mask(&self.jwt_secret),
            "jwt_exp": self.jwt_exp,
            "migrations": self.migrations.display().to_string(),
            "policies": self.policies.display().to_string(),
            "static": self.static_dir.as_ref().map(|p| p.display().to_string()),
            "default_grants": self.default_grants,
            "log_format": self.log_format,
            "tls_cert": self.tls.as_ref().map(|t| t.cert.display().to_string()),
            "tls_key": self.tls.as_ref().map(|t| t.key.display().to_string()),
            "cors_origins": match &self.cors_origins { CorsOrigins::Any => "*".to_string(), CorsOrigins::List(l) => l.join(",") },
            "body_limits": self.body_limits.by_prefix.iter().map(|(p, l)| format!("{p}={l}")).collect::<Vec<_>>().join(","),
            "db_schemas": self.db_schemas.join(","),
            "db_max_rows": self.db_max_rows,
            "db_extra_search_path": self.db_extra_search_path.join(","),
            "db_pool": self.db_pool,
            "db_statement_timeout": self.db_statement_timeout_ms,
            "shutdown_timeout": self.shutdown_timeout_secs,
            "site_url": self.site_url,
            "storage_dir": self.storage_dir.display().to_string(),
            "storage_orphan_age": self.storage_orphan_age_secs,
            "s3_listen": self.s3_listen.to_string(),
            "s3_access_key_id": self.s3_keys.as_ref().map(|k| k.access_key_id.clone()),
            "s3_secret_access_key": self.s3_keys.as_ref().map(|_| "********"),
            "trusted_proxies": (!self.trusted_proxies.is_empty()).then(|| self.trusted_proxies.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")),
            "external_url": self.auth.external_url,
            "redirect_urls": (!self.auth.redirect_urls.is_empty()).then(|| self.auth.redirect_urls.join(",")),
            "password_min_length": self.auth.password_min_length,
            "auth_autoconfirm": self.auth.autoconfirm,
            "auth_disable_signup": self.auth.disable_signup,
            "auth_anonymous": self.auth.anonymous,
            "secure_password_change": self.auth.secure_password_change,
            "argon2": self.auth.argon2,
            "hash_pool": self.auth.hash_pool,
            "refresh_reuse_window": self.auth.refresh_reuse_window,
            "otp_exp": self.auth.otp_exp,
            "rate_limits": self.auth.rate_limits,
            "smtp_url": self.auth.smtp_url.as_deref().map(mask_url),
            "jwt_signing_key": self.auth.jwt_signing_key.as_ref().map(|p| p.display().to_string()),
        });
        // Past json!'s recursion limit, so set apart.
        v["storage_lifecycle_day"] = self.storage_lifecycle_day_secs.into();
        v["realtime_replay_window"] = self.realtime_replay_window_secs.into();
        v["realtime_replay_max_rows"] = self.realtime_replay_max_rows.into();
        v["realtime_max_message_bytes"] = self.realtime_max_message_bytes.into();
        v["redis_url"] = self.redis_url.as_deref().map(mask_url).into();
        match &self.storage_backend {
            StorageBackend::Disk => v["storage_backend"] = "disk".into(),
            StorageBackend::S3(b) => {
                v["storage_backend"] = "s3".into();
                v["storage_s3_endpoint"] = b.endpoint.clone().into();
                v["storage_s3_bucket"] = b.bucket.clone().into();
                v["storage_s3_region"] = b.region.clone().into();
                v["storage_s3_path_style"] = b.path_style.into();
                v["storage_s3_access_key_id"] = b.access_key_id.clone().into();
                v["storage_s3_secret_access_key"] = "********".into();
            }
        }
        let mut out = String::new();
        if let serde_json::Value::Object(map) = v {
            for (k, v) in map {
                match v {
                    serde_json::Value::Null => out.push_str(&format!("# {k} is not set\n")),
                    other => out.push_str(&format!("{k} = {other}\n")),
                }
            }
        }
        out
    }
}

/// The backend of `--storage-backend` and its `--storage-s3-*` settings; S3 needs a bucket and a key
/// pair, and an endpoint that is an http(s) URL.
fn storage_backend(s: &Settings) -> Result<StorageBackend, ConfigError> {
    let s3_set = s.storage_s3_endpoint.is_some()
        || s.storage_s3_bucket.is_some()
        || s.storage_s3_access_key_id.is_some()
        || s.storage_s3_secret_access_key.is_some();
    match s.storage_backend.unwrap_or(StorageBackendKind::Disk) {
        StorageBackendKind::Disk if s3_set => Err(ConfigError::Invalid {
            key: "storage_backend",
            reason: "--storage-s3-* settings need --storage-backend s3".into(),
        }),
        StorageBackendKind::Disk => Ok(StorageBackend::Disk),
        StorageBackendKind::S3 => {
            let need = |v: &Option<String>, key: &'static str| {
                v.clone()
                    .filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| ConfigError::Invalid {
                        key,
                        reason: "is required with --storage-backend s3".into(),
                    })
            };
            let bucket = need(&s.storage_s3_bucket, "storage_s3_bucket")?;
            let access_key_id = need(&s.storage_s3_access_key_id, "storage_s3_access_key_id")?;
            let secret_access_key = need(
                &s.storage_s3_secret_access_key,
                "storage_s3_secret_access_key",
            )?;
            let region = s
                .storage_s3_region
                .clone()
                .unwrap_or_else(|| "us-east-1".into());
            let endpoint = s
                .storage_s3_endpoint
                .clone()
                .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
            let backend = S3Backend {
                path_style: s
                    .storage_s3_path_style
                    .unwrap_or(s.storage_s3_endpoint.is_some()),
                endpoint: endpoint.trim_end_matches('/').to_string(),
                bucket,
                region,
                access_key_id,
                secret_access_key,
            };
            backend
                .bucket_url()
                .map_err(|reason| ConfigError::Invalid {
                    key: "storage_s3_endpoint",
                    reason,
                })?;
            Ok(StorageBackend::S3(std::sync::Arc::new(backend)))
        }
    }
}

/// Hides the password of a `postgres://user:pass@host/db` URL (and of `password=` in key/value form).
pub fn mask_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((creds, host)) = rest.rsplit_once('@')
    {
        let user = creds.split(':').next().unwrap_or("");
        if creds.contains(':') {
            return format!("{scheme}://{user}:********@{host}");
        }
        return url.to_string();
    }
    url.split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=********".to_string()
            } else {
                kv.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where auth links lead by default: back to doska itself when it serves the frontend (the app is
/// there — `--external-url`, else `http://<listen>`), else Supabase's default, a dev server on
/// `http://localhost:3000`.
fn default_site_url(
    given: Option<String>,
    external_url: Option<&str>,
    listen: &SocketAddr,
    serves_frontend: bool,
) -> String {
    match (given, external_url) {
        (Some(url), _) => url,
        (None, _) if !serves_frontend => "http://localhost:3000".to_string(),
        (None, Some(external)) => external.trim_end_matches('/').to_string(),
        (None, None) => format!("http://{listen}"),
    }
}

#[path = "config_values.rs"]
mod values;
use values::duration_setting;
pub use values::{parse_duration_secs, parse_size};

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
