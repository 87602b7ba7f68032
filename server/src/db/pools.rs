//! Connecting: the admin connection config (embedded superuser over the unix socket, or the
//! `--database-url` user) and the two pools built from it. The request pool logs in as
//! `authenticator`; on an external server its password is derived from the JWT secret, so every
//! doska sharing that secret agrees on it without another setting.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio_postgres::{Config as PgConfig, config::SslMode};

use super::tls;

/// Where the database is and how the admin logs in.
#[derive(Clone)]
pub struct Target {
    pub admin: PgConfig,
    /// Whether `authenticator` needs a password (a server reached over the network).
    pub external: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("--database-url is not a valid PostgreSQL URL: {0}")]
    BadUrl(String),
    #[error("cannot build the connection pool: {0}")]
    Build(String),
    #[error("--database-url: {0}")]
    Tls(#[from] tls::TlsError),
}

impl Target {
    /// The server at `url`; its TLS settings (`sslmode`, `sslrootcert`) become the process's
    /// (see [`tls`]).
    pub fn external(url: &str) -> Result<Target, PoolError> {
        let policy = tls::parse(url)?;
        tls::install(&policy)?;
        let mut admin: PgConfig = policy
            .url
            .parse()
            .map_err(|e: tokio_postgres::Error| PoolError::BadUrl(e.to_string()))?;
        if admin.get_connect_timeout().is_none() {
            admin.connect_timeout(Duration::from_secs(10));
        }
        admin.application_name("doska");
        Ok(Target {
            admin,
            external: true,
        })
    }

    pub fn embedded(admin: PgConfig) -> Target {
        let mut admin = admin;
        // A unix socket: PostgreSQL offers no TLS there, so do not ask.
        admin.application_name("doska").ssl_mode(SslMode::Disable);
        Target {
            admin,
            external: false,
        }
    }

    /// The same server and database, logged in as `authenticator`.
    pub fn authenticator(&self, jwt_secret: &[u8]) -> PgConfig {
        let mut c = self.admin.clone();
        c.user("authenticator");
        if self.external {
            c.password(authenticator_password(jwt_secret));
        }
        c.application_name("doska-request");
        c
    }
}

/// The password of `authenticator` on an external server: HMAC-SHA256 of a fixed label under the JWT
/// secret, hex. Derived, never stored; doska sets it (as a SCRAM verifier) on start.
pub fn authenticator_password(jwt_secret: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(jwt_secret).expect("HMAC takes any key length");
    mac.update(b"doska authenticator password v1");
    hex::encode(mac.finalize().into_bytes())
}

pub fn pool(config: PgConfig, size: usize) -> Result<Pool, PoolError> {
    let mgr = Manager::from_config(
        config,
        tls::connector(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(30)))
        .create_timeout(Some(Duration::from_secs(10)))
        .build()
        .map_err(|e| PoolError::Build(e.to_string()))
}

/// Connects one admin client outside any pool (migrations hold it across many statements).
pub async fn connect(config: &PgConfig) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = config.connect(tls::connector()).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "admin connection closed");
        }
    });
    Ok(client)
}
