//! The command line: `serve` (the default), `migrate`, `keys`, `config`. Parses flags, env vars and the
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

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Serve everything on one port (the default command).
    Serve,
    /// Apply pending migrations, print what was applied, exit.
    Migrate,
    /// Print the anon and service_role keys as JSON.
    Keys,
    /// Print the effective configuration, secrets masked.
    Config,
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
            Command::Keys => keys(&config),
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

fn keys(config: &Config) -> Result<(), String> {
    startup::ensure_data_dir(&config.data_dir).map_err(|e| e.to_string())?;
    let secret = secret::load_or_create(config.jwt_secret.as_deref(), &config.data_dir)
        .map_err(|e| e.to_string())?;
    println!("{}", crate::jwt::project_keys(secret.as_bytes()));
    Ok(())
}

async fn migrate(config: Config) -> Result<(), String> {
    startup::ensure_data_dir(&config.data_dir).map_err(|e| e.to_string())?;
    let secret = secret::load_or_create(config.jwt_secret.as_deref(), &config.data_dir)
        .map_err(|e| e.to_string())?;
    let database = startup::Database::open(&config, pg::Mode::Attach)
        .await
        .map_err(|e| e.to_string())?;
    let result = startup::prepare(&config, &database, &secret).await;
    database.close().await;
    let applied = result.map_err(|e| e.to_string())?;
    if applied.is_empty() {
        println!("no pending migrations");
    }
    for name in applied {
        println!("applied {name}");
    }
    Ok(())
}
