//! Logical replication transport: opens a `replication=database` connection to PostgreSQL
//! (TCP or unix socket; trust, cleartext, MD5 or SCRAM-SHA-256 auth), creates the slot,
//! starts `pgoutput` streaming and hands the raw `XLogData` payloads to its caller.
//!
//! tokio-postgres cannot open replication connections, so this speaks the protocol itself on
//! top of postgres-protocol's frontend builders and SCRAM code, and frames backend messages by
//! hand (postgres-protocol's backend parser does not know `CopyBothResponse`).
//!
//! Durability rule: the flush LSN reported to PostgreSQL is only what the caller acknowledged
//! with [`ReplicationStream::ack`] (or an idle keepalive position once everything delivered was
//! acknowledged), so a restart resumes from the slot without losing a change.
//!
//! Rejects: TLS (`sslmode=require`), authentication methods other than the four above, slot and
//! publication names outside `[a-z0-9_]` (they end up in replication command text), frames
//! larger than [`MAX_FRAME`], and any message out of protocol order.

use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::lsn::Lsn;
use super::wire::{Reader, WireError};

/// The largest backend message accepted. PostgreSQL caps a single field at 1 GiB; a row
/// carrying several such fields is beyond what realtime should buffer.
pub const MAX_FRAME: usize = 1 << 30;

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01 00:00:00 UTC).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// How long a graceful close waits for the server to end the copy before dropping the socket.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The one error of the replication transport.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// Socket I/O failed or the server closed the connection.
    #[error("replication connection I/O: {0}")]
    Io(#[source] std::io::Error),
    /// The connection settings cannot be used (no host, TLS required, bad slot name...).
    #[error("replication connection settings: {0}")]
    Config(String),
    /// The server sent something this client does not expect at this point.
    #[error("replication protocol: {0}")]
    Protocol(String),
    /// The server asked for an authentication method this client does not speak.
    #[error("unsupported authentication: {0}")]
    UnsupportedAuth(String),
    /// The server answered with an `ErrorResponse`.
    #[error("server error {code}: {message}{}", .detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Server {
        code: String,
        message: String,
        detail: Option<String>,
    },
    /// The shutdown signal fired before the operation finished.
    #[error("replication stopped by shutdown")]
    Shutdown,
}

impl ReplicationError {
    /// The SQLSTATE when the server reported the error.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            ReplicationError::Server { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The slot is held by another walsender (55006 object_in_use): typically the previous
    /// connection of this very process, still exiting. Worth retrying after a moment.
    pub fn is_slot_in_use(&self) -> bool {
        self.sqlstate() == Some("55006")
    }

    /// `START_REPLICATION` named a slot that does not exist (42704 undefined_object): it was
    /// dropped, or lost with a restored cluster. The caller recreates it (loudly: changes made
    /// meanwhile are gone) with [`ReplicationConnection::create_slot`].
    pub fn is_slot_missing(&self) -> bool {
        self.sqlstate() == Some("42704")
    }
}

impl From<std::io::Error> for ReplicationError {
    fn from(e: std::io::Error) -> Self {
        ReplicationError::Io(e)
    }
}

impl From<WireError> for ReplicationError {
    fn from(e: WireError) -> Self {
        ReplicationError::Protocol(e.to_string())
    }
}

/// Answer of `IDENTIFY_SYSTEM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemInfo {
    pub system_id: String,
    pub timeline: u32,
    /// Current WAL flush position of the server.
    pub xlog_pos: Lsn,
    pub dbname: Option<String>,
}

/// Outcome of [`ReplicationConnection::create_slot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotStatus {
    /// The slot was made now; decoding starts at `consistent_point`.
    Created { consistent_point: Lsn },
    /// A slot of that name already existed and was kept as it is.
    AlreadyExists,
}

/// One `XLogData` message: a chunk of the output plugin's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XLogData {
    /// WAL position this message belongs to (for a pgoutput `Commit`, the end of the commit record).
    pub wal_start: Lsn,
    /// The server's current end of WAL.
    pub wal_end: Lsn,
    /// Server clock when sent, microseconds since 2000-01-01 UTC.
    pub send_time: i64,
    /// The output plugin's message (pgoutput bytes).
    pub data: Bytes,
}

/// Settings of one streaming session.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Publication(s) whose tables pgoutput sends.
    pub publication: String,
    /// How often a standby status update is sent even when the server does not ask.
    pub status_interval: Duration,
    /// How many `XLogData` messages may wait for the caller before reading from the server
    /// pauses (status updates keep going meanwhile).
    pub channel_capacity: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            publication: "supabase_realtime".to_string(),
            status_interval: Duration::from_secs(10),
            channel_capacity: 1024,
        }
    }
}

/// Where the server listens.
#[derive(Debug, Clone)]
enum Target {
    Tcp(String, u16),
    Unix(PathBuf),
}

trait Socket: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Socket for T {}

/// One backend message: its tag and body (length header stripped).
#[derive(Debug)]
struct Frame {
    tag: u8,
    body: Bytes,
}

/// A replication-mode connection before streaming starts.
pub struct ReplicationConnection {
    io: Pin<Box<dyn Socket>>,
    read_buf: BytesMut,
    shutdown: watch::Receiver<bool>,
}

impl fmt::Debug for ReplicationConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicationConnection")
            .finish_non_exhaustive()
    }
}

/// Slot and publication names go into replication command text, so only PostgreSQL's slot
/// name alphabet is allowed.
fn check_name(kind: &str, name: &str) -> Result<(), ReplicationError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ReplicationError::Config(format!(
            "{kind} name {name:?} must be 1-63 characters of [a-z0-9_]"
        )))
    }
}

fn targets(config: &tokio_postgres::Config) -> Result<Vec<Target>, ReplicationError> {
    use tokio_postgres::config::Host;
    let hosts = config.get_hosts();
    if hosts.is_empty() {
        return Err(ReplicationError::Config("no host given".into()));
    }
    let ports = config.get_ports();
    let port_of = |i: usize| match ports.len() {
        0 => 5432,
        1 => ports[0],
        _ => ports.get(i).copied().unwrap_or(5432),
    };
    Ok(hosts
        .iter()
        .enumerate()
        .map(|(i, host)| match host {
            Host::Tcp(name) => Target::Tcp(name.clone(), port_of(i)),
            Host::Unix(dir) => Target::Unix(dir.join(format!(".s.PGSQL.{}", port_of(i)))),
        })
        .collect())
}

/// TLS as the pools get it (`sslmode`, and the certificate check of `db::tls`): an SSLRequest
/// first; the server answers `S` (then the handshake) or `N` (plain, unless TLS is required).
async fn with_tls(
    mut s: TcpStream,
    host: &str,
    mode: tokio_postgres::config::SslMode,
) -> Result<Pin<Box<dyn Socket>>, ReplicationError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_postgres::config::SslMode;
    if mode == SslMode::Disable {
        return Ok(Box::pin(s));
    }
    let mut buf = BytesMut::new();
    frontend::ssl_request(&mut buf);
    s.write_all(&buf).await?;
    let mut answer = [0u8];
    s.read_exact(&mut answer).await?;
    if answer[0] != b'S' {
        if mode == SslMode::Require {
            return Err(ReplicationError::Config(format!(
                "the server at {host} does not offer TLS, which sslmode requires"
            )));
        }
        return Ok(Box::pin(s));
    }
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| ReplicationError::Config(format!("TLS server name {host:?}: {e}")))?;
    let tls = tokio_rustls::TlsConnector::from(crate::db::tls::client_config())
        .connect(name, s)
        .await
        .map_err(|e| ReplicationError::Config(format!("TLS with {host}: {e}")))?;
    Ok(Box::pin(tls))
}

/// Waits for `fut` unless shutdown fires first.
async fn or_shutdown<T>(
    shutdown: &mut watch::Receiver<bool>,
    fut: impl Future<Output = Result<T, ReplicationError>>,
) -> Result<T, ReplicationError> {
    if *shutdown.borrow() {
        return Err(ReplicationError::Shutdown);
    }
    tokio::select! {
        res = fut => res,
        _ = wait_shutdown(shutdown) => Err(ReplicationError::Shutdown),
    }
}

/// Resolves once the shutdown flag is true or its sender is gone.
async fn wait_shutdown(shutdown: &mut watch::Receiver<bool>) {
    // A dropped sender means the owner is gone: treat it as shutdown too.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn server_error(body: &[u8]) -> ReplicationError {
    let mut r = Reader::new(body);
    let (mut code, mut message, mut detail) = (String::new(), String::new(), None);
    while let Ok(field) = r.u8() {
        if field == 0 {
            break;
        }
        let Ok(value) = r.cstr() else { break };
        match field {
            b'C' => code = value.to_string(),
            b'M' => message = value.to_string(),
            b'D' => detail = Some(value.to_string()),
            _ => {}
        }
    }
    ReplicationError::Server {
        code,
        message,
        detail,
    }
}

fn pg_now_micros() -> i64 {
    let since_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_unix.as_micros()).unwrap_or(i64::MAX) - PG_EPOCH_OFFSET_MICROS
}

impl ReplicationConnection {
    /// Connects and authenticates with `config`'s hosts (tried in order), user, password and
    /// database, in `replication=database` mode.
    pub async fn connect(
        config: &tokio_postgres::Config,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Self, ReplicationError> {
        let user = config
            .get_user()
            .ok_or_else(|| ReplicationError::Config("no user given".into()))?
            .to_string();
        let dbname = config.get_dbname().unwrap_or(&user).to_string();
        let timeout = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(Duration::from_secs(10));
        let mut last_err = None;
        for target in targets(config)? {
            // The timeout covers connecting, authenticating and the startup exchange: a server
            // that accepts and then says nothing must not hang us.
            let conn_shutdown = shutdown.clone();
            let attempt = async {
                let io: Pin<Box<dyn Socket>> = match &target {
                    Target::Tcp(host, port) => {
                        let s = TcpStream::connect((host.as_str(), *port)).await?;
                        s.set_nodelay(true)?;
                        with_tls(s, host, config.get_ssl_mode()).await?
                    }
                    Target::Unix(path) => Box::pin(UnixStream::connect(path).await?),
                };
                let mut conn = ReplicationConnection {
                    io,
                    read_buf: BytesMut::with_capacity(8192),
                    shutdown: conn_shutdown,
                };
                conn.startup(&user, &dbname, config.get_password()).await?;
                Ok::<_, ReplicationError>(conn)
            };
            let connected = or_shutdown(&mut shutdown, async {
                tokio::time::timeout(timeout, attempt)
                    .await
                    .map_err(|_| ReplicationError::Io(std::io::ErrorKind::TimedOut.into()))?
            })
            .await;
            match connected {
                Ok(conn) => return Ok(conn),
                // An unreachable host is worth trying the next one; a refused login or
                // shutdown is final.
                Err(e @ ReplicationError::Io(_)) => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| ReplicationError::Config("no host given".into())))
    }

    async fn startup(
        &mut self,
        user: &str,
        dbname: &str,
        password: Option<&[u8]>,
    ) -> Result<(), ReplicationError> {
        let mut buf = BytesMut::new();
        frontend::startup_message(
            [
                ("user", user),
                ("database", dbname),
                ("replication", "database"),
                ("application_name", "doska_realtime"),
                ("client_encoding", "UTF8"),
            ],
            &mut buf,
        )?;
        self.send(&buf).await?;
        self.authenticate(user, password).await?;
        // ParameterStatus and BackendKeyData until ReadyForQuery.
        loop {
            let frame = self.read_frame().await?;
            match frame.tag {
                b'S' | b'K' | b'N' => {}
                b'Z' => return Ok(()),
                b'E' => return Err(server_error(&frame.body)),
                t => return Err(unexpected(t, "startup")),
            }
        }
    }

    async fn authenticate(
        &mut self,
        user: &str,
        password: Option<&[u8]>,
    ) -> Result<(), ReplicationError> {
        let need_password =
            || ReplicationError::Config("the server asks for a password and none was given".into());
        let mut scram: Option<sasl::ScramSha256> = None;
        let mut scram_verified = false;
        loop {
            let frame = self.read_frame().await?;
            match frame.tag {
                b'R' => {}
                b'E' => return Err(server_error(&frame.body)),
                t => return Err(unexpected(t, "authentication")),
            }
            let mut r = Reader::new(&frame.body);
            let mut out = BytesMut::new();
            match r.i32()? {
                // SCRAM is mutual: without the server's final message it proved nothing.
                0 if scram.is_some() && !scram_verified => {
                    return Err(ReplicationError::Protocol(
                        "server ended SCRAM without proving it knows the password".into(),
                    ));
                }
                0 => return Ok(()),
                3 => frontend::password_message(password.ok_or_else(need_password)?, &mut out)?,
                5 => {
                    let salt: [u8; 4] =
                        r.bytes(4)?.try_into().expect("bytes(4) returns four bytes");
                    let hash = md5_hash(user.as_bytes(), password.ok_or_else(need_password)?, salt);
                    frontend::password_message(hash.as_bytes(), &mut out)?;
                }
                10 => {
                    let mut mechanisms = Vec::new();
                    loop {
                        let m = r.cstr()?;
                        if m.is_empty() {
                            break;
                        }
                        mechanisms.push(m.to_string());
                    }
                    if !mechanisms.iter().any(|m| m == sasl::SCRAM_SHA_256) {
                        return Err(ReplicationError::UnsupportedAuth(format!(
                            "SASL mechanisms {mechanisms:?}"
                        )));
                    }
                    // No channel binding (SCRAM-SHA-256, not -PLUS), with or without TLS.
                    let state = sasl::ScramSha256::new(
                        password.ok_or_else(need_password)?,
                        sasl::ChannelBinding::unsupported(),
                    );
                    frontend::sasl_initial_response(
                        sasl::SCRAM_SHA_256,
                        state.message(),
                        &mut out,
                    )?;
                    scram = Some(state);
                }
                11 => {
                    let state = scram
                        .as_mut()
                        .ok_or_else(|| unexpected(b'R', "SASL continue before SASL start"))?;
                    state
                        .update(r.rest())
                        .map_err(|e| ReplicationError::Protocol(format!("SCRAM: {e}")))?;
                    frontend::sasl_response(state.message(), &mut out)?;
                }
                12 => {
                    let state = scram
                        .as_mut()
                        .ok_or_else(|| unexpected(b'R', "SASL final before SASL start"))?;
                    state
                        .finish(r.rest())
                        .map_err(|e| ReplicationError::Protocol(format!("SCRAM: {e}")))?;
                    scram_verified = true;
                    continue;
                }
                other => {
                    return Err(ReplicationError::UnsupportedAuth(format!(
                        "authentication request type {other}"
                    )));
                }
            }
            self.send(&out).await?;
        }
    }

    /// `IDENTIFY_SYSTEM`: who the server is and where its WAL ends.
    pub async fn identify_system(&mut self) -> Result<SystemInfo, ReplicationError> {
        let rows = self.simple_query("IDENTIFY_SYSTEM").await?;
        let row = rows
            .first()
            .ok_or_else(|| ReplicationError::Protocol("IDENTIFY_SYSTEM returned no row".into()))?;
        let field = |i: usize| row.get(i).cloned().flatten();
        let text = |i: usize| {
            field(i).ok_or_else(|| {
                ReplicationError::Protocol(format!("IDENTIFY_SYSTEM column {i} missing"))
            })
        };
        Ok(SystemInfo {
            system_id: text(0)?,
            timeline: text(1)?.parse().map_err(|_| {
                ReplicationError::Protocol("IDENTIFY_SYSTEM timeline is not a number".into())
            })?,
            xlog_pos: text(2)?
                .parse()
                .map_err(|e| ReplicationError::Protocol(format!("{e}")))?,
            dbname: field(3),
        })
    }

    /// `CREATE_REPLICATION_SLOT <slot> LOGICAL pgoutput`, keeping an existing slot of that name.
    pub async fn create_slot(&mut self, slot: &str) -> Result<SlotStatus, ReplicationError> {
        check_name("slot", slot)?;
        // NOEXPORT_SNAPSHOT: nobody reads the initial snapshot, and exporting one would pin it
        // until the next command.
        match self
            .simple_query(&format!(
                "CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput NOEXPORT_SNAPSHOT"
            ))
            .await
        {
            Ok(rows) => {
                let point = rows
                    .first()
                    .and_then(|row| row.get(1).cloned().flatten())
                    .ok_or_else(|| {
                        ReplicationError::Protocol(
                            "CREATE_REPLICATION_SLOT returned no consistent point".into(),
                        )
                    })?;
                let consistent_point = point
                    .parse()
                    .map_err(|e| ReplicationError::Protocol(format!("{e}")))?;
                Ok(SlotStatus::Created { consistent_point })
            }
            Err(e) if e.sqlstate() == Some("42710") => Ok(SlotStatus::AlreadyExists), // duplicate_object
            Err(e) => Err(e),
        }
    }

    /// `START_REPLICATION SLOT <slot> LOGICAL <start> (proto_version '1', publication_names ...)`.
    /// `start` = [`Lsn::INVALID`] resumes from the slot's confirmed flush position.
    /// Spawns the task that owns the socket from here on.
    pub async fn start_replication(
        self,
        slot: &str,
        start: Lsn,
        options: StreamOptions,
    ) -> Result<ReplicationStream, ReplicationError> {
        self.start_replication_with(slot, start, options, Acker::default())
            .await
    }

    /// Like [`start_replication`](Self::start_replication), acknowledging through `acker`: one
    /// `Acker` can outlive many connections, since WAL positions mean the same on all of them.
    pub async fn start_replication_with(
        mut self,
        slot: &str,
        start: Lsn,
        options: StreamOptions,
        acker: Acker,
    ) -> Result<ReplicationStream, ReplicationError> {
        check_name("slot", slot)?;
        check_name("publication", &options.publication)?;
        if options.channel_capacity == 0 || options.status_interval.is_zero() {
            return Err(ReplicationError::Config(
                "channel_capacity and status_interval must be positive".into(),
            ));
        }
        let command = format!(
            "START_REPLICATION SLOT {slot} LOGICAL {start} (proto_version '1', publication_names '{}')",
            options.publication
        );
        let mut buf = BytesMut::new();
        frontend::query(&command, &mut buf)?;
        self.send(&buf).await?;
        loop {
            let frame = self.read_frame().await?;
            match frame.tag {
                b'W' => break,
                b'N' => {}
                b'E' => {
                    let err = server_error(&frame.body);
                    self.read_until_ready().await?;
                    return Err(err);
                }
                t => return Err(unexpected(t, "START_REPLICATION")),
            }
        }
        let (events_tx, events) = mpsc::channel(options.channel_capacity);
        let task = tokio::spawn(stream_task(
            self,
            events_tx,
            Arc::clone(&acker.0),
            start,
            options.status_interval,
        ));
        Ok(ReplicationStream {
            events,
            acker,
            task: Some(task),
        })
    }

    /// Runs one simple query and returns its rows as text (replication commands answer in text).
    async fn simple_query(
        &mut self,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, ReplicationError> {
        let mut buf = BytesMut::new();
        frontend::query(sql, &mut buf)?;
        self.send(&buf).await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let frame = self.read_frame().await?;
            match frame.tag {
                b'T' | b'C' | b'N' | b'S' | b'I' => {}
                b'D' => rows.push(data_row(&frame.body)?),
                b'E' => error = Some(server_error(&frame.body)),
                b'Z' => break,
                t => return Err(unexpected(t, sql)),
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(rows),
        }
    }

    async fn read_until_ready(&mut self) -> Result<(), ReplicationError> {
        loop {
            if self.read_frame().await?.tag == b'Z' {
                return Ok(());
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), ReplicationError> {
        let io = &mut self.io;
        or_shutdown(&mut self.shutdown, async {
            io.write_all(bytes).await?;
            io.flush().await?;
            Ok(())
        })
        .await
    }

    /// Reads one backend message. Cancel-safe: bytes already read stay in `read_buf`.
    async fn read_frame(&mut self) -> Result<Frame, ReplicationError> {
        if *self.shutdown.borrow() {
            return Err(ReplicationError::Shutdown);
        }
        tokio::select! {
            res = read_frame_from(&mut self.io, &mut self.read_buf) => res,
            _ = wait_shutdown(&mut self.shutdown) => Err(ReplicationError::Shutdown),
        }
    }
}

/// Parses one frame out of `buf` if it holds a whole one.
fn take_frame(buf: &mut BytesMut) -> Result<Option<Frame>, ReplicationError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let tag = buf[0];
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 || len as usize > MAX_FRAME {
        return Err(ReplicationError::Protocol(format!(
            "message {:?} has invalid length {len}",
            tag as char
        )));
    }
    let total = 1 + len as usize;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(total);
    frame.advance(5);
    Ok(Some(Frame {
        tag,
        body: frame.freeze(),
    }))
}

async fn read_frame_from(
    io: &mut Pin<Box<dyn Socket>>,
    buf: &mut BytesMut,
) -> Result<Frame, ReplicationError> {
    loop {
        if let Some(frame) = take_frame(buf)? {
            return Ok(frame);
        }
        if io.read_buf(buf).await? == 0 {
            return Err(ReplicationError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            )));
        }
    }
}

fn data_row(body: &[u8]) -> Result<Vec<Option<String>>, ReplicationError> {
    let mut r = Reader::new(body);
    let n = r.i16()?;
    let mut row = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        let len = r.i32()?;
        if len < 0 {
            row.push(None);
        } else {
            let raw = r.bytes(len as usize)?;
            row.push(Some(String::from_utf8_lossy(raw).into_owned()));
        }
    }
    Ok(row)
}

fn unexpected(tag: u8, during: &str) -> ReplicationError {
    ReplicationError::Protocol(format!(
        "unexpected message {:?} during {during}",
        tag as char
    ))
}

mod stream;

use stream::*;
pub use stream::{Acker, ReplicationStream};

#[cfg(test)]
mod tests;
