//! The command line: `serve` (the default), `migrate`, `keys`, `s3-keys`, `config`,
//! `policies apply|check|diff|test`, `gen types`, `school create`. Parses flags, env vars and the
//! config file into one `Config`, sets up logging, runs the command and turns any failure into one
//! line on stderr and a non-zero exit — never a backtrace.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{
    config::{Config, LogFormat, Settings},
    pg, secret, startup,
};

#[derive(Parser, Debug)]
#[command(
    name = "doska",
    version,
    about = "A Supabase-compatible backend in one binary"
)]
pub struct Cli {
    /// A TOML file of settings (keys as the flags, with underscores); flags and env vars win over it.
    #[arg(long, global = true, env = "DOSKA_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Serve everything on one port (the default command).
    Serve,
    /// Apply pending migrations, print what was applied, exit.
    Migrate,
    /// Print the anon and service_role keys as JSON.
    Keys,
    /// Print the effective configuration, secrets masked.
    Config,
    /// Manage S3 access keys (besides the operator's pair from config).
    #[command(name = "s3-keys", subcommand)]
    S3Keys(S3KeysAction),
    /// Apply, check, diff or test the policy files (attaches to a running serve's database).
    Policies {
        #[command(subcommand)]
        action: PoliciesAction,
    },
    /// Generate code from the database (attaches to a running serve's database).
    #[command(subcommand)]
    Gen(GenAction),
    /// TeacherUchit: register a school and appoint its first admin (attaches like `policies`).
    #[command(subcommand)]
    School(SchoolAction),
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenAction {
    /// Print TypeScript types of the exposed schemas (--db-schemas) in the shape `supabase gen
    /// types typescript` prints: `export type Database = …`.
    Types,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum SchoolAction {
    /// Make a school, its first admin (e-mail confirmed, role school_admin) and a join code for its
    /// teachers, in one transaction; print `{"school_id", "school_code", "admin_id", "admin_email"}`
    /// as JSON (with `admin_password` when doska chose it).
    Create {
        /// The school's name, e.g. "Школа №14".
        #[arg(long)]
        name: String,
        /// Its city, e.g. "Казань".
        #[arg(long)]
        city: String,
        /// The first admin's e-mail: their sign-in.
        #[arg(long)]
        admin_email: String,
        /// The first admin's name as the staff list shows it.
        #[arg(long, default_value = "")]
        admin_name: String,
        /// The first admin's password; when absent doska makes one and prints it once. Prefer the
        /// env var to the flag (a flag shows in `ps`).
        #[arg(long, env = "DOSKA_ADMIN_PASSWORD", hide_env_values = true)]
        admin_password: Option<String>,
        /// The lowest grade of the school's scale (default 1).
        #[arg(long)]
        grade_min: Option<i16>,
        /// The highest grade of the school's scale (default 5).
        #[arg(long)]
        grade_max: Option<i16>,
    },
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum S3KeysAction {
    /// Make a key; prints `{"access_key_id": …, "secret_access_key": …}` (the secret is shown once).
    Create {
        /// Bind the key to this user: it then acts as that user under the storage policies.
        #[arg(long)]
        user: Option<uuid::Uuid>,
    },
    /// List the keys (never their secrets).
    List,
    /// Revoke a key by its access key id.
    Revoke { access_key_id: String },
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoliciesAction {
    /// Run pending migrations, then make the database match the policy files; print what changed.
    Apply,
    /// Validate the policy files against the database without changing anything; exit 1 if invalid.
    Check,
    /// Print the SQL `apply` would run, changing nothing.
    Diff,
    /// Run the cases in <policies>/tests/*.toml against the files as written (in a rolled-back
    /// transaction); print each case and `N passed, M failed`; exit 1 on any failure.
    Test,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DOSKA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tokio_postgres=warn"));
    // A closed stderr (a log pipe gone) must never panic a request: drop the lines instead.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

pub fn resolve(cli: &Cli) -> Result<Config, String> {
    let file = match &cli.config {
        Some(p) => Settings::from_file(p).map_err(|e| e.to_string())?,
        None => Settings::default(),
    };
    Config::resolve(cli.settings.clone().over(file)).map_err(|e| e.to_string())
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match resolve(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("doska: {e}");
            return ExitCode::from(2);
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    if command == Command::Config {
        print!("{}", config.masked_toml());
        return ExitCode::SUCCESS;
    }
    init_logging(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("doska: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Serve => startup::serve(config).await.map_err(|e| e.to_string()),
            Command::Migrate => migrate(config).await,
            Command::Keys => keys(&config).await,
            Command::S3Keys(action) => s3_keys(config, action).await,
            Command::Policies { action } => policies(config, action).await,
            Command::Gen(GenAction::Types) => gen_types(config).await,
            Command::School(action) => school(config, action).await,
            Command::Config => unreachable!("handled before the runtime starts"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("doska: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `work` with the configured database attached (embedded or external) and the JWT secret,
/// then closes the database whatever `work` returned.
async fn with_database<T>(
    config: &Config,
    work: impl AsyncFnOnce(&startup::Database, &str) -> Result<T, String>,
) -> Result<T, String> {
    startup::ensure_data_dir(&config.data_dir).map_err(|e| e.to_string())?;
    let database = startup::Database::open(config, pg::Mode::Attach)
        .await
        .map_err(|e| e.to_string())?;
    let result = match database.jwt_secret(config).await {
        Ok(secret) => work(&database, &secret).await,
        Err(e) => Err(e.to_string()),
    };
    database.close().await;
    result
}

/// The project's keys. On an external database without `--jwt-secret`, the secret is the one the
/// database shares, so the database is asked; otherwise no PostgreSQL is needed.
async fn keys(config: &Config) -> Result<(), String> {
    let secret = if config.database_url.is_some() && config.jwt_secret.is_none() {
        with_database(config, async |_, secret| Ok(secret.to_string())).await?
    } else {
        startup::ensure_data_dir(&config.data_dir).map_err(|e| e.to_string())?;
        secret::load_or_create(config.jwt_secret.as_deref(), &config.data_dir)
            .map_err(|e| e.to_string())?
    };
    println!("{}", crate::jwt::project_keys(secret.as_bytes()));
    Ok(())
}

async fn s3_keys(config: Config, action: S3KeysAction) -> Result<(), String> {
    use crate::storage::s3_keys;
    with_database(&config, async |database, secret| {
        startup::prepare(&config, database, secret)
            .await
            .map_err(|e| e.to_string())?;
        let client = database.admin_client().await.map_err(|e| e.to_string())?;
        let db = |e: tokio_postgres::Error| crate::db::migrate::describe(&e);
        match action {
            S3KeysAction::Create { user } => {
                let key = s3_keys::create(&client, secret.as_bytes(), user)
                    .await
                    .map_err(db)?;
                println!("{key}");
            }
            S3KeysAction::List => println!("{}", s3_keys::list(&client).await.map_err(db)?),
            S3KeysAction::Revoke { access_key_id } => {
                if !s3_keys::revoke(&client, &access_key_id).await.map_err(db)? {
                    return Err(format!("no active S3 key {access_key_id}"));
                }
                println!("revoked {access_key_id}");
            }
        }
        Ok(())
    })
    .await
}

async fn migrate(config: Config) -> Result<(), String> {
    let applied = with_database(&config, async |database, secret| {
        startup::prepare(&config, database, secret)
            .await
            .map_err(|e| e.to_string())
    })
    .await?;
    if applied.is_empty() {
        println!("no pending migrations");
    }
    for name in applied {
        println!("applied {name}");
    }
    Ok(())
}

/// Prints the TypeScript types of the exposed schemas, after pending migrations (as `s3-keys`).
async fn gen_types(config: Config) -> Result<(), String> {
    let text = with_database(&config, async |database, secret| {
        startup::prepare(&config, database, secret)
            .await
            .map_err(|e| e.to_string())?;
        let client = database.admin_client().await.map_err(|e| e.to_string())?;
        crate::typegen::generate(&client, &config.db_schemas)
            .await
            .map_err(|e| crate::db::migrate::describe(&e))
    })
    .await?;
    print!("{text}");
    Ok(())
}

async fn policies(config: Config, action: PoliciesAction) -> Result<(), String> {
    with_database(&config, async |database, secret| {
        run_policies(&config, database, secret, action).await
    })
    .await
}

async fn run_policies(
    config: &Config,
    database: &startup::Database,
    secret: &str,
    action: PoliciesAction,
) -> Result<(), String> {
    use crate::policies::{Mode, apply, read_dir};
    if action == PoliciesAction::Test {
        return test_policies(config, database, secret).await;
    }
    if action == PoliciesAction::Apply {
        for name in startup::prepare(config, database, secret)
            .await
            .map_err(|e| e.to_string())?
        {
            println!("applied migration {name}");
        }
    }
    let mut client = database.admin_client().await.map_err(|e| e.to_string())?;
    let sources = read_dir(&config.policies).map_err(|e| e.to_string())?;
    let mode = match action {
        PoliciesAction::Apply => Mode::Apply,
        PoliciesAction::Check => Mode::Check,
        PoliciesAction::Diff | PoliciesAction::Test => Mode::Diff,
    };
    let outcome = match apply(&mut client, &sources, mode, &config.db_schemas).await {
        Ok(o) => o,
        Err(e) => {
            for line in e.lines() {
                eprintln!("{line}");
            }
            return Err(match action {
                PoliciesAction::Apply => "the policy files are invalid; nothing was changed".into(),
                _ => "the policy files are invalid".into(),
            });
        }
    };
    for w in &outcome.warnings {
        eprintln!("warning: {w}");
    }
    match action {
        PoliciesAction::Diff => {
            if outcome.statements.is_empty() {
                println!("-- no changes");
            }
            for s in &outcome.statements {
                println!("{s};");
            }
        }
        PoliciesAction::Apply | PoliciesAction::Check | PoliciesAction::Test => {
            if action == PoliciesAction::Apply {
                for s in &outcome.statements {
                    println!("{s};");
                }
            }
            let mut sections = String::new();
            if outcome.buckets > 0 {
                sections.push_str(&format!(", {} buckets", outcome.buckets));
            }
            if outcome.published > 0 {
                sections.push_str(&format!(", {} published tables", outcome.published));
            }
            println!(
                "{}: {} roles, {} tables, {} policies{sections}; {} statement(s) {}",
                if action == PoliciesAction::Apply {
                    "applied"
                } else {
                    "ok"
                },
                outcome.roles,
                outcome.tables,
                outcome.policies,
                outcome.statements.len(),
                if action == PoliciesAction::Apply {
                    "run"
                } else {
                    "would run"
                },
            );
        }
    }
    Ok(())
}

async fn test_policies(
    config: &Config,
    database: &startup::Database,
    secret: &str,
) -> Result<(), String> {
    use crate::testing::{TestError, run};
    // The schema the cases run against: pending migrations first, as serve would.
    startup::prepare(config, database, secret)
        .await
        .map_err(|e| e.to_string())?;
    let mut client = database.admin_client().await.map_err(|e| e.to_string())?;
    let sources = crate::policies::read_dir(&config.policies).map_err(|e| e.to_string())?;
    let tests = config.policies.join("tests");
    let report = run(&mut client, &sources, &tests, &config.db_schemas)
        .await
        .map_err(|e| match e {
            TestError::Policies(e) => {
                for line in e.lines() {
                    eprintln!("{line}");
                }
                "the policy files are invalid".to_string()
            }
            other => other.to_string(),
        })?;
    for line in &report.lines {
        println!("{line}");
    }
    if report.failed > 0 {
        return Err(format!("{} policy test(s) failed", report.failed));
    }
    Ok(())
}

/// `doska school create`: the schema and roles made current as serve would (pending migrations,
/// then the policy files), then the school, its admin and a code in one transaction.
async fn school(config: Config, action: SchoolAction) -> Result<(), String> {
    let SchoolAction::Create {
        name,
        city,
        admin_email,
        admin_name,
        admin_password,
        grade_min,
        grade_max,
    } = action;
    let auth = crate::auth::AuthConfig::from_config(&config).map_err(|e| e.to_string())?;
    let chosen = admin_password.is_none();
    let password = admin_password.unwrap_or_else(|| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 15]>())
    });
    if password.chars().count() < auth.password_min_length {
        return Err(format!(
            "--admin-password must be at least {} characters",
            auth.password_min_length
        ));
    }
    let hash = crate::auth::password::Hasher::new(auth.argon2, 1)
        .map_err(|e| e.to_string())?
        .hash(&password)
        .await
        .map_err(|e| e.to_string())?;
    let new = crate::schools::NewSchool {
        name,
        city,
        admin_email,
        admin_name,
        grade_min,
        grade_max,
    };
    let made = with_database(&config, async |database, secret| {
        startup::prepare(&config, database, secret)
            .await
            .map_err(|e| e.to_string())?;
        startup::apply_policies(&config, database)
            .await
            .map_err(|e| e.to_string())?;
        // The auth helpers the registration shares with the admin API take a pooled client.
        let pool =
            crate::db::pools::pool(database.target.admin.clone(), 1).map_err(|e| e.to_string())?;
        let mut client = pool.get().await.map_err(|e| e.to_string())?;
        crate::schools::register(&mut client, &new, &hash)
            .await
            .map_err(|e| e.to_string())
    })
    .await?;
    let mut out = serde_json::json!({
        "school_id": made.school_id,
        "school_code": made.code,
        "admin_id": made.admin_id,
        "admin_email": made.admin_email,
    });
    if chosen {
        out["admin_password"] = password.into();
    }
    println!("{out}");
    Ok(())
}
