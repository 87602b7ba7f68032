//! Delivers auth mail over SMTP (RFC 5321) to the relay named by `--smtp-url`:
//! `smtp://[user:password@]host[:port][?from=address]` (plain TCP, for a local or trusted relay),
//! `smtp://…?tls=required` (STARTTLS, port 587 by default) or `smtps://…` (TLS from the start,
//! port 465); `&ca=/path.pem` adds a CA to the system's roots. AUTH PLAIN when credentials are
//! given. Messages come from `auth.mail_outbox`: rows are claimed with `FOR UPDATE SKIP LOCKED`
//! (several doska processes never send one twice), marked sent, and released again if the relay
//! refuses them.
//! Rejects: other schemes, relays whose certificate does not verify, a relay without STARTTLS when
//! it is required, recipients with line breaks, unexpected reply codes.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::TcpStream;

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Plain TCP: only for a relay on this host or a trusted network.
    None,
    /// Plain connect, then STARTTLS; a relay that does not offer it is refused.
    StartTls,
    /// TLS from the first byte (`smtps://`).
    Implicit,
}

/// Where and as whom to send.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, String)>,
    pub from: String,
    pub tls: Tls,
    /// An extra trusted CA (PEM), for relays with a private CA.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .field("from", &self.from)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// A relay ready to use: its settings and, for TLS, the client configuration built once.
pub struct Relay {
    pub config: SmtpConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// The system's trust roots (Debian's bundle, or $SSL_CERT_FILE) plus `extra`.
fn client_tls(extra: Option<&PathBuf>) -> Result<Arc<rustls::ClientConfig>, SmtpError> {
    let mut roots = rustls::RootCertStore::empty();
    let system = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
    let mut files = vec![];
    if system.exists() {
        files.push(system);
    }
    files.extend(extra.cloned());
    for f in &files {
        let pem = std::fs::read(f)
            .map_err(|e| SmtpError::BadUrl(format!("reading {}: {e}", f.display())))?;
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            let cert =
                cert.map_err(|e| SmtpError::BadUrl(format!("parsing {}: {e}", f.display())))?;
            // Bundles can hold certificates rustls cannot use as anchors; skip those.
            let _ = roots.add(cert);
        }
    }
    if roots.is_empty() {
        return Err(SmtpError::BadUrl(
            "TLS to the relay needs trusted roots: no system bundle and no ca=".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SmtpError::BadUrl(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Relay {
    pub fn new(config: SmtpConfig) -> Result<Relay, SmtpError> {
        let tls = match config.tls {
            Tls::None => None,
            Tls::StartTls | Tls::Implicit => Some(client_tls(config.ca_file.as_ref())?),
        };
        Ok(Relay { config, tls })
    }
}

/// The connection, before or after TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

async fn tls_wrap(
    tcp: TcpStream,
    config: &Arc<rustls::ClientConfig>,
    host: &str,
) -> Result<Stream, SmtpError> {
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| SmtpError::BadUrl(format!("host {host:?}: {e}")))?;
    let tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| SmtpError::Io(format!("TLS with the relay: {e}")))?;
    Ok(Stream::Tls(Box::new(tls)))
}

#[derive(Debug)]
pub enum SmtpError {
    BadUrl(String),
    Io(String),
    /// The relay answered with an unexpected code.
    Refused {
        step: &'static str,
        reply: String,
    },
    Timeout,
}

impl std::fmt::Display for SmtpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SmtpError::BadUrl(m) => write!(f, "invalid --smtp-url: {m}"),
            SmtpError::Io(m) => write!(f, "SMTP connection failed: {m}"),
            SmtpError::Refused { step, reply } => write!(f, "SMTP relay refused {step}: {reply}"),
            SmtpError::Timeout => write!(f, "SMTP relay did not answer in time"),
        }
    }
}

impl std::error::Error for SmtpError {}

impl From<std::io::Error> for SmtpError {
    fn from(e: std::io::Error) -> Self {
        SmtpError::Io(e.to_string())
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

impl SmtpConfig {
    pub fn parse(url: &str) -> Result<SmtpConfig, SmtpError> {
        let bad = |m: &str| SmtpError::BadUrl(m.to_owned());
        let (mut tls, rest) = if let Some(r) = url.strip_prefix("smtp://") {
            (Tls::None, r)
        } else if let Some(r) = url.strip_prefix("smtps://") {
            (Tls::Implicit, r)
        } else {
            return Err(bad("the scheme must be smtp:// or smtps://"));
        };
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let authority = authority.trim_end_matches('/');
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let credentials = userinfo.map(|u| {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            (decode(user), decode(pass))
        });
        let mut from = "doska@localhost".to_owned();
        let mut ca_file = None;
        for (k, v) in crate::http::query::url_pairs(query) {
            match (k.as_str(), v.as_str()) {
                ("from", _) => from = v,
                ("ca", _) => ca_file = Some(PathBuf::from(v)),
                ("tls", "required") if tls == Tls::None => tls = Tls::StartTls,
                ("tls", "none") if tls == Tls::None => {}
                _ => return Err(bad(&format!("unknown or conflicting parameter {k}={v:?}"))),
            }
        }
        let default_port = match tls {
            Tls::None => 25,
            Tls::StartTls => 587,
            Tls::Implicit => 465,
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (
                h.to_owned(),
                p.parse::<u16>().map_err(|_| bad("invalid port"))?,
            ),
            _ => (hostport.to_owned(), default_port),
        };
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        if from.contains(['\r', '\n', '<', '>']) {
            return Err(bad("invalid from address"));
        }
        Ok(SmtpConfig {
            host: host.trim_matches(['[', ']']).to_owned(),
            port,
            credentials,
            from,
            tls,
            ca_file,
        })
    }
}

/// The message as sent after DATA: headers, blank line, dot-stuffed CRLF body, final dot.
pub fn render_message(from: &str, to: &str, subject: &str, body: &str) -> String {
    let mut out = format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {}\r\nMessage-ID: <{}@doska>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n",
        chrono::Utc::now().to_rfc2822(),
        uuid::Uuid::new_v4()
    );
    for line in body.replace("\r\n", "\n").split('\n') {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
    out
}

struct Session {
    reader: BufReader<Stream>,
}

impl Session {
    /// Reads one (possibly multi-line) reply; returns its code and text.
    async fn reply(&mut self) -> Result<(u16, String), SmtpError> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).await? == 0 {
                return Err(SmtpError::Io("connection closed".into()));
            }
            if line.len() < 4 {
                return Err(SmtpError::Io(format!("malformed reply {line:?}")));
            }
            text.push_str(line.trim_end());
            text.push(' ');
            if line.as_bytes()[3] == b' ' {
                let code = line[..3]
                    .parse()
                    .map_err(|_| SmtpError::Io(format!("malformed reply {line:?}")))?;
                return Ok((code, text.trim_end().to_owned()));
            }
        }
    }

    async fn expect(&mut self, step: &'static str, ok: &[u16]) -> Result<String, SmtpError> {
        let (code, text) = self.reply().await?;
        if ok.contains(&code) {
            Ok(text)
        } else {
            Err(SmtpError::Refused { step, reply: text })
        }
    }

    async fn command(
        &mut self,
        step: &'static str,
        line: &str,
        ok: &[u16],
    ) -> Result<String, SmtpError> {
        self.reader.get_mut().write_all(line.as_bytes()).await?;
        self.reader.get_mut().write_all(b"\r\n").await?;
        self.expect(step, ok).await
    }
}

/// Sends one message; the whole exchange is bounded by 30 seconds.
pub async fn send(relay: &Relay, to: &str, subject: &str, body: &str) -> Result<(), SmtpError> {
    let cfg = &relay.config;
    if to.contains(['\r', '\n', '<', '>']) {
        return Err(SmtpError::Refused {
            step: "RCPT",
            reply: "recipient contains forbidden characters".into(),
        });
    }
    tokio::time::timeout(Duration::from_secs(30), async {
        let tcp = TcpStream::connect((cfg.host.as_str(), cfg.port)).await?;
        let stream = match (&relay.tls, cfg.tls) {
            (Some(tls), Tls::Implicit) => tls_wrap(tcp, tls, &cfg.host).await?,
            _ => Stream::Plain(tcp),
        };
        let mut s = Session {
            reader: BufReader::new(stream),
        };
        s.expect("the connection", &[220]).await?;
        let ehlo = s.command("EHLO", "EHLO doska", &[250]).await?;
        if let (Some(tls), Tls::StartTls) = (&relay.tls, cfg.tls) {
            if !ehlo
                .split_whitespace()
                .any(|w| w.eq_ignore_ascii_case("STARTTLS") || w.ends_with("-STARTTLS"))
            {
                return Err(SmtpError::Refused {
                    step: "STARTTLS",
                    reply: "the relay does not offer STARTTLS".into(),
                });
            }
            s.command("STARTTLS", "STARTTLS", &[220]).await?;
            let Stream::Plain(tcp) = s.reader.into_inner() else {
                unreachable!("STARTTLS happens on the plain connection")
            };
            s = Session {
                reader: BufReader::new(tls_wrap(tcp, tls, &cfg.host).await?),
            };
            s.command("EHLO", "EHLO doska", &[250]).await?;
        }
        if let Some((user, pass)) = &cfg.credentials {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
            s.command("AUTH", &format!("AUTH PLAIN {token}"), &[235])
                .await?;
        }
        s.command("MAIL", &format!("MAIL FROM:<{}>", cfg.from), &[250])
            .await?;
        s.command("RCPT", &format!("RCPT TO:<{to}>"), &[250, 251])
            .await?;
        s.command("DATA", "DATA", &[354]).await?;
        let msg = render_message(&cfg.from, to, subject, body);
        s.reader.get_mut().write_all(msg.as_bytes()).await?;
        s.expect("the message", &[250]).await?;
        // The message is accepted; a failed QUIT changes nothing.
        let _ = s.command("QUIT", "QUIT", &[221]).await;
        Ok(())
    })
    .await
    .map_err(|_| SmtpError::Timeout)?
}

/// Sends what is waiting in the outbox (claimed rows only), in the background.
pub fn deliver_pending(admin: deadpool_postgres::Pool, relay: Arc<Relay>) {
    tokio::spawn(async move {
        if let Err(e) = deliver(&admin, &relay).await {
            tracing::warn!(error = %e, "auth: outbox delivery failed");
        }
    });
}

async fn deliver(admin: &deadpool_postgres::Pool, relay: &Relay) -> Result<(), String> {
    let client = admin.get().await.map_err(|e| e.to_string())?;
    let rows = client
        .query(
            "update auth.mail_outbox set sent_at = now() where id in ( \
               select id from auth.mail_outbox where sent_at is null \
               and created_at > now() - interval '1 day' order by id limit 20 \
               for update skip locked) \
             returning id, recipient, subject, body",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    for r in rows {
        let id: i64 = r.get(0);
        let (to, subject, body): (String, String, String) = (r.get(1), r.get(2), r.get(3));
        match send(relay, &to, &subject, &body).await {
            Ok(()) => tracing::info!(outbox_id = id, "auth: mail sent"),
            Err(e) => {
                tracing::warn!(outbox_id = id, error = %e, "auth: mail not sent; left in the outbox");
                client
                    .execute(
                        "update auth.mail_outbox set sent_at = null where id = $1",
                        &[&id],
                    )
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c =
            SmtpConfig::parse("smtp://me%40x.io:p%3Ass@mail.local:2525?from=school@x.io").unwrap();
        assert_eq!(c.host, "mail.local");
        assert_eq!(c.port, 2525);
        assert_eq!(c.credentials, Some(("me@x.io".into(), "p:ss".into())));
        assert_eq!(c.from, "school@x.io");
        let c = SmtpConfig::parse("smtp://mail.local?from=school+news@x.io").unwrap();
        assert_eq!(
            c.from, "school+news@x.io",
            "a plus in an address stays a plus"
        );
        let c = SmtpConfig::parse("smtp://localhost").unwrap();
        assert_eq!(
            (c.port, c.credentials, c.from.as_str()),
            (25, None, "doska@localhost")
        );
        let c = SmtpConfig::parse("smtp://[::1]:2525").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 2525));
        let c = SmtpConfig::parse("smtp://relay.example?tls=required&ca=/tmp/ca.pem").unwrap();
        assert_eq!((c.tls, c.port), (Tls::StartTls, 587));
        assert_eq!(c.ca_file, Some(PathBuf::from("/tmp/ca.pem")));
        let c = SmtpConfig::parse("smtps://relay.example").unwrap();
        assert_eq!((c.tls, c.port), (Tls::Implicit, 465));
        for bad in [
            "smtps://x?tls=none",
            "smtp://x?tls=maybe",
            "smtp://x?what=1",
            "http://x",
            "smtp://",
            "smtp://x:port",
            "smtp://x?from=a%0d%0aBcc:b",
        ] {
            assert!(SmtpConfig::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_are_dot_stuffed_with_crlf() {
        let m = render_message("a@x", "b@y", "Hi", "line\n.dot\nend");
        assert!(m.contains("\r\n\r\nline\r\n..dot\r\nend\r\n.\r\n"), "{m}");
        assert!(m.starts_with("From: a@x\r\nTo: b@y\r\nSubject: Hi\r\n"));
    }
}
