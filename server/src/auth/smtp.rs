//! Delivers auth mail to the relay named by `--smtp-url`, through `lettre`'s SMTP transport:
//! `smtp://[user:password@]host[:port][?from=address]` (plain TCP, for a local or trusted relay),
//! `smtp://…?tls=required` (STARTTLS, port 587 by default) or `smtps://…` (TLS from the start,
//! port 465); `&ca=/path.pem` adds a CA to the system's roots. AUTH PLAIN when credentials are
//! given. Messages come from `auth.mail_outbox`: rows are claimed with `FOR UPDATE SKIP LOCKED`
//! (several doska processes never send one twice), marked sent, and released again if the relay
//! refuses them. What stays here is doska's own: the `--smtp-url` grammar (lettre's URL form has no
//! `from=` or `ca=`), the trust roots, and the outbox.
//! Rejects: other schemes, relays whose certificate does not verify, a relay without STARTTLS when
//! it is required, addresses lettre cannot send to, refusals from the relay.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::{ContentType, MIME_VERSION_1_0};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, CertificateStore, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

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

/// A relay ready to use: its settings and the transport (TLS configuration included) built once.
pub struct Relay {
    pub config: SmtpConfig,
    from: Address,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

/// The system's trust roots (as OpenSSL finds them, or $SSL_CERT_FILE), plus the `ca=` file.
fn tls_parameters(config: &SmtpConfig) -> Result<TlsParameters, SmtpError> {
    let mut builder =
        TlsParameters::builder(config.host.clone()).certificate_store(CertificateStore::Default);
    if let Some(f) = &config.ca_file {
        let pem = std::fs::read(f)
            .map_err(|e| SmtpError::BadUrl(format!("reading {}: {e}", f.display())))?;
        let ca = Certificate::from_pem(&pem)
            .map_err(|e| SmtpError::BadUrl(format!("parsing {}: {e}", f.display())))?;
        builder = builder.add_root_certificate(ca);
    }
    builder
        .build_rustls()
        .map_err(|e| SmtpError::BadUrl(format!("TLS settings: {e}")))
}

impl Relay {
    pub fn new(config: SmtpConfig) -> Result<Relay, SmtpError> {
        use lettre::transport::smtp::client::Tls as Mode;
        let tls = match config.tls {
            Tls::None => Mode::None,
            Tls::StartTls => Mode::Required(tls_parameters(&config)?),
            Tls::Implicit => Mode::Wrapper(tls_parameters(&config)?),
        };
        let from = config
            .from
            .parse::<Address>()
            .map_err(|e| SmtpError::BadUrl(format!("invalid from address: {e}")))?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port)
            .tls(tls)
            .hello_name(ClientId::Domain("doska".into()))
            .timeout(Some(SEND_TIMEOUT));
        if let Some((user, pass)) = &config.credentials {
            builder = builder
                .credentials(Credentials::new(user.clone(), pass.clone()))
                .authentication(vec![Mechanism::Plain]);
        }
        Ok(Relay {
            from,
            transport: builder.build(),
            config,
        })
    }
}

/// The bound on one whole delivery, and on each reply within it.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("invalid --smtp-url: {0}")]
    BadUrl(String),
    /// An address or message lettre will not put on the wire.
    #[error("mail not sendable: {0}")]
    BadMessage(String),
    /// The connection failed or the relay refused (lettre's error carries its reply).
    #[error("SMTP delivery failed: {0}")]
    Send(lettre::transport::smtp::Error),
    #[error("SMTP relay did not answer in time")]
    Timeout,
}

/// Percent-decoding of the URL's userinfo (a query string goes through `http::query`).
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
        if let Err(e) = from.parse::<Address>() {
            return Err(bad(&format!("invalid from address: {e}")));
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

/// The message: a UTF-8 text body, which lettre encodes as 7bit, quoted-printable or base64 so
/// that any relay carries it, and a subject encoded as RFC 2047 when it is not ASCII.
pub fn message(from: &Address, to: &str, subject: &str, body: &str) -> Result<Message, SmtpError> {
    let to = to
        .parse::<Address>()
        .map_err(|e| SmtpError::BadMessage(format!("recipient {to:?}: {e}")))?;
    Message::builder()
        .from(Mailbox::new(None, from.clone()))
        .to(Mailbox::new(None, to))
        .subject(subject)
        .message_id(Some(format!("<{}@doska>", uuid::Uuid::new_v4())))
        .header(MIME_VERSION_1_0)
        .header(ContentType::TEXT_PLAIN)
        .body(body.to_owned())
        .map_err(|e| SmtpError::BadMessage(e.to_string()))
}

/// Sends one message; the whole exchange is bounded by 30 seconds.
pub async fn send(relay: &Relay, to: &str, subject: &str, body: &str) -> Result<(), SmtpError> {
    let message = message(&relay.from, to, subject, body)?;
    tokio::time::timeout(SEND_TIMEOUT, relay.transport.send(message))
        .await
        .map_err(|_| SmtpError::Timeout)?
        .map_err(SmtpError::Send)?;
    Ok(())
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
            "smtp://x?from=not-an-address",
        ] {
            assert!(SmtpConfig::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages() {
        let from: Address = "a@x.io".parse().unwrap();
        let m = message(&from, "b@y.io", "Hi", "line\n.dot\nend").unwrap();
        let text = String::from_utf8(m.formatted()).unwrap();
        assert!(text.contains("From: a@x.io\r\n"), "{text}");
        assert!(text.contains("To: b@y.io\r\n"), "{text}");
        assert!(text.contains("Subject: Hi\r\n"), "{text}");
        assert!(
            text.contains("Content-Type: text/plain; charset=utf-8\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Content-Transfer-Encoding: 7bit\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\nline\r\n.dot\r\nend"), "{text}");
        let m = message(&from, "b@y.io", "Сброс пароля", "Привет").unwrap();
        let text = String::from_utf8(m.formatted()).unwrap();
        assert!(
            text.is_ascii(),
            "non-ASCII is encoded for any relay: {text}"
        );
        assert!(text.contains("Subject: =?utf-8?b?"), "{text}");
        for bad in ["b@y.io\r\nBcc: c@z.io", "<b@y.io>", "nobody"] {
            assert!(message(&from, bad, "Hi", "x").is_err(), "{bad}");
        }
    }
}
