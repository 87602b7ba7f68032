//! Bringing doska up and down, in the order that leaves nothing half-started: data dir, listener and
//! TLS (cheap to check, so a taken port fails before PostgreSQL starts), database (embedded or
//! external, checked), JWT secret (the data dir's, or the one an external database shares), internal schema, grants, app migrations, policy files, pools; then serving
//! (and re-applying changed policy files) until SIGINT or SIGTERM, draining requests, and stopping
//! PostgreSQL last. Every failure is one clear line (invalid policy files: one line per problem).

use std::{path::Path, sync::Arc, time::Duration};

use tokio::sync::watch;
use tokio_postgres::Client;

use crate::{
    auth::{Auth, AuthConfig, AuthDoor, keys::SigningKey},
    config::Config,
    db::{
        self, checks::CheckError, internal::InternalMigrationError, migrate::MigrateError,
        pools::Target,
    },
    http::{self, metrics::Metrics, router::Router, server::TlsError},
    jwt::Verifier,
    pg,
    realtime::{RealtimeDoor, hub::Hub},
    rest::{RestDoor, RestState},
    secret::{self, SecretError},
    state::{AppState, SharedState},
    storage::http::StorageDoor,
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    DataDir(String),
    #[error("{0}")]
    Secret(SecretError),
    #[error("{0}")]
    Pg(pg::PgError),
    #[error("cannot connect to {what}: {reason}")]
    Connect { what: String, reason: String },
    #[error("{0}")]
    Check(CheckError),
    #[error("{0}")]
    Internal(InternalMigrationError),
    #[error("{0}")]
    Migrate(MigrateError),
    #[error("{0}")]
    Pool(db::pools::PoolError),
    #[error(
        "cannot listen on {addr}: {reason} (is another doska running? choose another address with --listen)"
    )]
    Listen { addr: String, reason: String },
    #[error("{0}")]
    Tls(TlsError),
    #[error("database: {0}")]
    Db(String),
    /// Invalid policy files: doska never serves without the policies the files declare.
    #[error("the policy files are invalid, so doska will not serve (nothing was changed):\n{0}")]
    Policies(crate::policies::ApplyError),
    #[error("auth: {0}")]
    Auth(crate::auth::SetupError),
    #[error("{0}")]
    Redis(crate::cluster::RedisError),
    /// The embedded PostgreSQL kept dying: doska stops so that its own supervisor restarts it.
    #[error("{0}")]
    PgGaveUp(String),
}

/// Creates the data dir if needed and checks doska can write there.
pub fn ensure_data_dir(dir: &Path) -> Result<(), StartError> {
    let fail = |e: std::io::Error| {
        StartError::DataDir(format!(
            "data dir {} is not usable: {e} (choose another with --data-dir)",
            dir.display()
        ))
    };
    if dir.exists() && !dir.is_dir() {
        return Err(StartError::DataDir(format!(
            "data dir {} is a file, not a folder (choose another with --data-dir)",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(".doska-write-test");
    std::fs::write(&probe, b"ok").map_err(fail)?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// The database doska works on: where it is, and the embedded cluster when doska runs one.
pub struct Database {
    pub target: Target,
    cluster: Option<pg::Cluster>,
}

impl Database {
    /// Opens the configured database: `--database-url` (checked for what doska needs), else the
    /// embedded cluster in the data dir (started, or attached to a running `doska serve`'s).
    pub async fn open(config: &Config, mode: pg::Mode) -> Result<Database, StartError> {
        match &config.database_url {
            Some(url) => {
                let target = Target::external(url).map_err(StartError::Pool)?;
                let client =
                    db::pools::connect(&target.admin)
                        .await
                        .map_err(|e| StartError::Connect {
                            what: format!("the database at {}", crate::config::mask_url(url)),
                            reason: db::migrate::describe(&e),
                        })?;
                db::checks::external(&client)
                    .await
                    .map_err(StartError::Check)?;
                Ok(Database {
                    target,
                    cluster: None,
                })
            }
            None => {
                let opts = pg::EmbeddedOptions {
                    data_dir: config.data_dir.clone(),
                    mode,
                };
                let cluster = tokio::task::spawn_blocking(move || pg::Cluster::start(&opts))
                    .await
                    .map_err(|e| StartError::Db(format!("starting PostgreSQL panicked: {e}")))?
                    .map_err(StartError::Pg)?;
                Ok(Database {
                    target: Target::embedded(cluster.config("postgres")),
                    cluster: Some(cluster),
                })
            }
        }
    }

    /// The JWT secret: configured; else the data dir's (embedded), or the one every instance on this
    /// external database shares (stored there by the first; the internal schema is brought up to
    /// date first, so its table exists).
    pub async fn jwt_secret(&self, config: &Config) -> Result<String, StartError> {
        if config.jwt_secret.is_some() || !self.target.external {
            return secret::load_or_create(config.jwt_secret.as_deref(), &config.data_dir)
                .map_err(StartError::Secret);
        }
        let mut client = self.admin_client().await?;
        db::internal::apply(&mut client)
            .await
            .map_err(StartError::Internal)?;
        secret::shared(None, &client, &config.data_dir)
            .await
            .map_err(StartError::Secret)
    }

    pub async fn admin_client(&self) -> Result<Client, StartError> {
        db::pools::connect(&self.target.admin)
            .await
            .map_err(|e| StartError::Connect {
                what: "the database as admin".into(),
                reason: db::migrate::describe(&e),
            })
    }

    /// Has the embedded PostgreSQL restarted whenever it dies (see `pg::Supervision`); resolves
    /// with the reason once the supervisor gives up. Never resolves for an external database
    /// (the pools and the replication stream reconnect to it by themselves) or a joined server.
    pub fn watch_embedded(&self) -> Result<impl Future<Output = String> + use<>, StartError> {
        let supervision = match &self.cluster {
            Some(cluster) => cluster.supervise().map_err(StartError::Pg)?,
            None => None,
        };
        Ok(async move {
            let Some(mut rx) = supervision else {
                return std::future::pending().await;
            };
            match rx
                .wait_for(|s| matches!(s, pg::Supervision::GaveUp { .. }))
                .await
            {
                Ok(s) => match &*s {
                    pg::Supervision::GaveUp { reason } => reason.clone(),
                    other => format!("{other:?}"),
                },
                // The supervisor is gone without giving up: the cluster is being stopped.
                Err(_) => std::future::pending().await,
            }
        })
    }

    /// Stops the embedded cluster when this process started it.
    pub async fn close(self) {
        if let Some(cluster) = self.cluster {
            match tokio::task::spawn_blocking(move || cluster.stop()).await {
                Ok(Ok(())) => tracing::info!("PostgreSQL stopped"),
                Ok(Err(e)) => tracing::error!(error = %e, "stopping PostgreSQL"),
                Err(e) => tracing::error!(error = %e, "stopping PostgreSQL panicked"),
            }
        }
    }
}

/// Internal schema, the authenticator's password (external servers), default grants, the app's
/// migrations and the no-RLS warning. Returns the app migrations applied.
pub async fn prepare(
    config: &Config,
    database: &Database,
    jwt_secret: &str,
) -> Result<Vec<String>, StartError> {
    let mut client = database.admin_client().await?;
    let applied_internal = db::internal::apply(&mut client)
        .await
        .map_err(StartError::Internal)?;
    if !applied_internal.is_empty() {
        tracing::info!(migrations = ?applied_internal, "applied internal migrations");
    }
    if database.target.external {
        // A SCRAM verifier computed here, so the password itself never reaches the server's logs.
        let verifier = postgres_protocol::password::scram_sha_256(
            db::pools::authenticator_password(jwt_secret.as_bytes()).as_bytes(),
        );
        let sql = format!(
            "alter role authenticator password {}",
            db::quote_literal(&verifier)
        );
        // Roles are the cluster's, not the database's: instances starting together (on this
        // database or another of the cluster) update the same pg_authid row, and PostgreSQL
        // refuses the loser ("tuple concurrently updated", XX000) instead of waiting. Retried.
        let mut attempt = 0;
        loop {
            match client.batch_execute(&sql).await {
                Ok(()) => break,
                Err(e)
                    if attempt < 20
                        && e.as_db_error().is_some_and(|d| {
                            d.code() == &tokio_postgres::error::SqlState::INTERNAL_ERROR
                                && d.message().contains("concurrently updated")
                        }) =>
                {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20 + 10 * attempt)).await;
                }
                Err(e) => return Err(StartError::Db(db::migrate::describe(&e))),
            }
        }
    }
    db::grants::apply_default_grants(&client, config.default_grants, &config.db_schemas)
        .await
        .map_err(|e| StartError::Db(db::migrate::describe(&e)))?;
    let applied = db::migrate::apply_dir(&mut client, &config.migrations)
        .await
        .map_err(StartError::Migrate)?;
    for name in &applied {
        tracing::info!(migration = %name, "applied migration");
    }
    Ok(applied)
}

/// Applies the policy files (after migrations); returns the hash of the set now in force. Logs the
/// warnings, among them every exposed table without row-level security.
pub async fn apply_policies(config: &Config, database: &Database) -> Result<String, StartError> {
    let mut client = database.admin_client().await?;
    let dir = config.policies.clone();
    let sources = tokio::task::spawn_blocking(move || crate::policies::read_dir(&dir))
        .await
        .map_err(|e| StartError::Db(format!("reading the policy files panicked: {e}")))?
        .map_err(|e| StartError::Policies(crate::policies::ApplyError::Parse(e)))?;
    let outcome = crate::policies::apply(
        &mut client,
        &sources,
        crate::policies::Mode::Apply,
        &config.db_schemas,
    )
    .await
    .map_err(StartError::Policies)?;
    for w in &outcome.warnings {
        tracing::warn!("{w}");
    }
    // Object versions carry storage.objects' policies (internal migration 0017); event triggers
    // copy them where doska's admin is a superuser, this where it is not.
    client
        .batch_execute("select storage.doska_mirror_object_policies()")
        .await
        .map_err(|e| StartError::Db(db::migrate::describe(&e)))?;
    tracing::info!(
        roles = outcome.roles,
        tables = outcome.tables,
        policies = outcome.policies,
        buckets = outcome.buckets,
        published = outcome.published,
        statements = outcome.statements.len(),
        "policies applied"
    );
    Ok(outcome.hash)
}

/// Builds the shared state on an open, prepared database. `signing_key` is auth's asymmetric key,
/// when one is configured: tokens auth signs with it must pass the shared verifier too.
pub fn build_state(
    config: Arc<Config>,
    database: &Database,
    jwt_secret: &str,
    signing_key: Option<&SigningKey>,
    shutdown: watch::Receiver<bool>,
) -> Result<SharedState, StartError> {
    let admin = db::pools::pool(database.target.admin.clone(), config.db_pool.max(2))
        .map_err(StartError::Pool)?;
    let pool = db::pools::pool(
        database.target.authenticator(jwt_secret.as_bytes()),
        config.db_pool,
    )
    .map_err(StartError::Pool)?;
    let mut verifier = Verifier::hs256(jwt_secret.as_bytes());
    if let Some(key) = signing_key {
        let decoding = key
            .decoding_key()
            .map_err(|e| StartError::Auth(crate::auth::SetupError::Key(e)))?;
        verifier = verifier.with_key(Some(key.kid.clone()), key.alg, decoding);
    }
    let metrics = Metrics::default();
    for (name, p) in [("request", pool.clone()), ("admin", admin.clone())] {
        metrics.gauge(
            &format!("doska_db_pool_{name}_connections"),
            &format!("Connections of the {name} pool by state."),
            move || {
                let s = p.status();
                vec![
                    ("state=\"open\"".into(), s.size as f64),
                    ("state=\"idle\"".into(), s.available as f64),
                    ("state=\"max\"".into(), s.max_size as f64),
                    ("state=\"waiting\"".into(), s.waiting as f64),
                ]
            },
        );
    }
    let state = Arc::new(AppState {
        verifier,
        jwt_secret: Arc::from(jwt_secret.as_bytes()),
        config,
        admin,
        commit_group: crate::db::group::Group::new(pool.clone(), crate::db::group::RUNNING),
        pool,
        metrics,
        shutdown,
    });
    Ok(state)
}

/// Each front door's own state, built once at start-up.
pub struct Doors {
    /// REST's schema cache and settings.
    pub rest: RestState,
    /// Auth's settings, key, hasher, limiter and mailer.
    pub auth: Arc<Auth>,
    /// Realtime's channels and presence.
    pub hub: Arc<Hub>,
}

impl Doors {
    /// The doors of `state` with `auth`'s machinery. REST's schema cache starts empty: `serve`
    /// loads it before listening, and the first REST request loads it when it is still empty.
    pub fn open(state: &SharedState, auth: Auth) -> Doors {
        Doors {
            rest: RestState::new(&state.config),
            auth: Arc::new(auth),
            hub: Arc::new(Hub::new()),
        }
    }

    /// The router with every door mounted at its prefix.
    pub fn router(&self, state: &SharedState) -> Arc<Router> {
        let s = || state.clone();
        Arc::new(
            Router::new(s())
                .mount("/rest/v1", Arc::new(RestDoor::new(s(), self.rest.clone())))
                .mount("/auth/v1", Arc::new(AuthDoor::new(s(), self.auth.clone())))
                .mount(
                    "/realtime/v1",
                    Arc::new(RealtimeDoor::new(s(), self.hub.clone())),
                )
                .mount("/storage/v1", Arc::new(StorageDoor::new(s()))),
        )
    }
}

/// Binds a listener (before anything heavier starts, so a taken port fails fast).
pub fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, StartError> {
    http::server::bind(addr).map_err(|e| StartError::Listen {
        addr: addr.to_string(),
        reason: e.to_string(),
    })
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

/// `doska serve`.
pub async fn serve(config: Config) -> Result<(), StartError> {
    // Settings that cannot work fail here, before anything starts; read once, kept for the door.
    let mut auth = AuthConfig::from_config(&config)
        .and_then(Auth::new)
        .map_err(StartError::Auth)?;
    let redis = match config.redis_url.as_deref() {
        Some(url) if config.database_url.is_some() => Some(Arc::new(
            crate::cluster::RedisLink::open(url).map_err(StartError::Redis)?,
        )),
        Some(_) => {
            tracing::warn!(
                "--redis-url is ignored without --database-url: one doska on its embedded PostgreSQL shares nothing"
            );
            None
        }
        None => None,
    };
    ensure_data_dir(&config.data_dir)?;
    let listener = bind(config.listen)?;
    // Storage's S3 listener, when an operator key pair is configured; bound here too so a taken
    // port fails start-up with one clear line.
    let s3_bound = match &config.s3_keys {
        Some(keys) => {
            let listener = bind(config.s3_listen).map_err(|e| match e {
                StartError::Listen { addr, reason } => StartError::Listen {
                    addr,
                    reason: format!(
                        "{reason} (the S3 listener; choose another address with --s3-listen)"
                    ),
                },
                other => other,
            })?;
            Some((listener, keys.clone()))
        }
        None => None,
    };
    let tls = match &config.tls {
        Some(t) => Some(http::server::tls_acceptor(&t.cert, &t.key).map_err(StartError::Tls)?),
        None => None,
    };
    let database = Database::open(&config, pg::Mode::Serve).await?;
    let jwt_secret = match database.jwt_secret(&config).await {
        Ok(s) => s,
        Err(e) => {
            database.close().await;
            return Err(e);
        }
    };
    // From now on a dead embedded PostgreSQL is started again; this resolves if that keeps failing.
    let gave_up = match database.watch_embedded() {
        Ok(f) => f,
        Err(e) => {
            database.close().await;
            return Err(e);
        }
    };
    if let Err(e) = prepare(&config, &database, &jwt_secret).await {
        database.close().await;
        return Err(e);
    }
    let policies_hash = match apply_policies(&config, &database).await {
        Ok(h) => h,
        Err(e) => {
            database.close().await;
            return Err(e);
        }
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let config = Arc::new(config);
    let state = match build_state(
        config.clone(),
        &database,
        &jwt_secret,
        auth.signing_key.as_ref(),
        shutdown_rx.clone(),
    ) {
        Ok(s) => s,
        Err(e) => {
            database.close().await;
            return Err(e);
        }
    };
    // Several doska may share an external database: rate limits count in one place (Redis, else
    // PostgreSQL), and realtime's broadcasts and presence reach every instance (the bus).
    let cluster = database
        .target
        .external
        .then(|| crate::cluster::Cluster::new(jwt_secret.as_bytes(), redis));
    if let Some(cluster) = &cluster {
        auth.limiter = Box::new(crate::auth::buckets::SharedBuckets::new(
            auth.config.rate_limits.clone(),
            state.admin.clone(),
            cluster,
        ));
    }
    // Each door's own state; REST's schema cache loaded now and kept fresh on NOTIFY pgrst.
    let doors = Doors::open(&state, auth);
    if let Err(e) = doors.rest.reload(&state.admin).await {
        tracing::warn!(error = %e, "rest: schema cache not loaded at start");
    }
    doors
        .rest
        .listen(&state, database.target.admin.clone())
        .await;
    let addr = listener.local_addr().map_err(|e| StartError::Listen {
        addr: config.listen.to_string(),
        reason: e.to_string(),
    })?;
    // Database changes to realtime subscribers, from the replication slot, until shutdown.
    let realtime = crate::realtime::start(&state, doors.hub.clone(), database.target.admin.clone());
    let bus = cluster.map(|c| {
        crate::realtime::bus::start(&state, doors.hub.clone(), c, database.target.admin.clone())
    });
    // Storage's own listener (S3), its orphan cleanup and its lifecycle rules; all stop with the
    // shutdown signal.
    let s3 = crate::storage::s3::spawn(s3_bound, tls.clone(), state.clone());
    let cleanup = tokio::spawn(crate::storage::orphan_cleanup(state.clone()));
    let lifecycle = tokio::spawn(crate::storage::lifecycle(state.clone()));
    // A change to the policy files changes grants: REST reloads its schema cache.
    let (rest, admin) = (doors.rest.clone(), state.admin.clone());
    let on_applied: crate::policies::watch::OnApplied = Box::new(move || {
        let (rest, admin) = (rest.clone(), admin.clone());
        Box::pin(async move {
            if let Err(e) = rest.reload(&admin).await {
                tracing::warn!(error = %e, "reloading the REST schema cache after a policy change");
            }
            // Object versions follow storage.objects' policies (see `apply_policies`).
            if let Ok(c) = admin.get().await
                && let Err(e) = c
                    .batch_execute("select storage.doska_mirror_object_policies()")
                    .await
            {
                tracing::warn!(error = %e, "copying the storage policies to object versions");
            }
        })
    });
    let watcher = crate::policies::watch::spawn(
        state.clone(),
        config.policies.clone(),
        policies_hash,
        on_applied,
    );
    let scheme = if tls.is_some() { "https" } else { "http" };
    http::static_files::warn_if_missing(config.static_dir.as_deref());
    tracing::info!(url = %format!("{scheme}://{addr}"), "doska listening");
    let server = tokio::spawn(http::server::run(
        listener,
        tls,
        doors.router(&state),
        shutdown_rx,
        Duration::from_secs(config.shutdown_timeout_secs),
    ));
    let failure = tokio::select! {
        _ = shutdown_signal() => None,
        reason = gave_up => Some(reason),
    };
    match &failure {
        None => tracing::info!("shutting down: draining requests"),
        Some(reason) => {
            tracing::error!(%reason, "shutting down with an error so the service manager restarts doska")
        }
    }
    let _ = shutdown_tx.send(true);
    let _ = server.await;
    let _ = realtime.await;
    if let Some(bus) = bus {
        let _ = bus.await;
    }
    if let Some(s3) = s3 {
        let _ = s3.await;
    }
    let _ = cleanup.await;
    let _ = lifecycle.await;
    let _ = watcher.await;
    state.pool.close();
    state.admin.close();
    drop(state);
    database.close().await;
    match failure {
        None => Ok(()),
        Some(reason) => Err(StartError::PgGaveUp(reason)),
    }
}
