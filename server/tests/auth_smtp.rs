//! Auth mail through an SMTP relay: a small relay speaking SMTP over a real socket (plain,
//! STARTTLS, implicit TLS with a test CA) receives what /recover sends, and the outbox row is marked
//! sent — or released when the relay refuses it.

mod common;

use std::time::Duration;

use common::{TestDb, request};
use doska::auth::{AuthConfig, password::Argon2Cost};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_rustls::TlsAcceptor;

#[derive(Clone)]
enum Mode {
    Plain,
    RefuseRcpt,
    StartTls(TlsAcceptor),
    Implicit(TlsAcceptor),
}

type Session = (Vec<String>, String);

enum Next<S> {
    Done,
    StartTls(S),
}

/// One SMTP conversation; returns the stream when the client asks for STARTTLS.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    greet: bool,
    offer_starttls: bool,
    refuse_rcpt: bool,
    log: &mut Session,
) -> Next<S> {
    let mut r = BufReader::new(stream);
    if greet {
        r.get_mut().write_all(b"220 fake relay\r\n").await.unwrap();
    }
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return Next::Done;
        }
        log.0.push(line.trim_end().to_owned());
        let reply: &[u8] = match line.split_whitespace().next().unwrap_or("") {
            "EHLO" if offer_starttls => b"250-fake\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n",
            "EHLO" => b"250-fake\r\n250 AUTH PLAIN\r\n",
            "STARTTLS" => {
                r.get_mut().write_all(b"220 go ahead\r\n").await.unwrap();
                return Next::StartTls(r.into_inner());
            }
            "AUTH" => b"235 ok\r\n",
            "RCPT" if refuse_rcpt => b"550 no such mailbox\r\n",
            "DATA" => {
                r.get_mut().write_all(b"354 go on\r\n").await.unwrap();
                loop {
                    let mut l = String::new();
                    r.read_line(&mut l).await.unwrap();
                    if l == ".\r\n" {
                        break;
                    }
                    log.1.push_str(&l);
                }
                b"250 queued\r\n"
            }
            "QUIT" => {
                r.get_mut().write_all(b"221 bye\r\n").await.unwrap();
                return Next::Done;
            }
            _ => b"250 ok\r\n",
        };
        r.get_mut().write_all(reply).await.unwrap();
        r.get_mut().flush().await.unwrap();
    }
}

async fn fake_relay(mode: Mode) -> (u16, tokio::sync::mpsc::Receiver<Session>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (tx, mode) = (tx.clone(), mode.clone());
            tokio::spawn(async move {
                let mut log: Session = (vec![], String::new());
                match mode {
                    Mode::Plain => {
                        converse(tcp, true, false, false, &mut log).await;
                    }
                    Mode::RefuseRcpt => {
                        converse(tcp, true, false, true, &mut log).await;
                    }
                    Mode::Implicit(acceptor) => {
                        let tls = acceptor.accept(tcp).await.expect("TLS handshake");
                        log.0.push("(tls)".into());
                        converse(tls, true, false, false, &mut log).await;
                    }
                    Mode::StartTls(acceptor) => {
                        if let Next::StartTls(tcp) =
                            converse(tcp, true, true, false, &mut log).await
                        {
                            let tls = acceptor.accept(tcp).await.expect("TLS handshake");
                            log.0.push("(tls)".into());
                            converse(tls, false, false, false, &mut log).await;
                        }
                    }
                }
                let _ = tx.send(log).await;
            });
        }
    });
    (port, rx)
}

/// A CA (written to a PEM file for `ca=`) and a relay certificate for `localhost` it signed.
fn test_pki() -> (std::path::PathBuf, TlsAcceptor) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let dir = common::temp_dir("smtp-ca");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .unwrap();
    (ca_file, TlsAcceptor::from(std::sync::Arc::new(config)))
}

struct Env {
    db: TestDb,
    url: String,
    anon: String,
}

async fn env(smtp_url: String) -> Env {
    let db = TestDb::new().await;
    let mut cfg = AuthConfig {
        argon2: Argon2Cost {
            m_kib: 1024,
            t: 1,
            p: 1,
        },
        hash_pool_size: 2,
        smtp_url: Some(smtp_url),
        ..AuthConfig::default()
    };
    cfg.rate_limits.enabled = false;
    let url = format!("{}/auth/v1", db.serve(&db.doors_with_auth(cfg).await).await);
    let anon = db.sign(json!({"role": "anon"}));
    Env { db, url, anon }
}

impl Env {
    async fn post(&self, path: &str, body: serde_json::Value) -> u16 {
        request(
            "POST",
            &format!("{}{}", self.url, path),
            &[("apikey", &self.anon), ("content-type", "application/json")],
            body.to_string(),
        )
        .await
        .status
    }
    /// Signs a user up and asks for a recovery mail.
    async fn recover(&self, email: &str) {
        assert_eq!(
            self.post("/signup", json!({"email": email, "password": "password-1"}))
                .await,
            200
        );
        assert_eq!(self.post("/recover", json!({"email": email})).await, 200);
    }
    async fn outbox_sent(&self, want: bool) -> bool {
        for _ in 0..50 {
            let sent: bool = self
                .db
                .value("select sent_at is not null from auth.mail_outbox", &[])
                .await;
            if sent == want {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

async fn next(rx: &mut tokio::sync::mpsc::Receiver<Session>) -> Session {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the relay got a session")
        .unwrap()
}

#[tokio::test]
async fn plain_relay_gets_the_mail_and_the_outbox_marks_it_sent() {
    let (port, mut rx) = fake_relay(Mode::Plain).await;
    let e = env(format!(
        "smtp://mailer:s3cret@127.0.0.1:{port}?from=school@example.com"
    ))
    .await;
    e.recover("smtp@example.com").await;
    let (commands, data) = next(&mut rx).await;
    use base64::Engine;
    let plain = base64::engine::general_purpose::STANDARD.encode("\0mailer\0s3cret");
    assert!(
        commands.contains(&format!("AUTH PLAIN {plain}")),
        "{commands:?}"
    );
    assert!(commands.contains(&"MAIL FROM:<school@example.com>".to_string()));
    assert!(commands.contains(&"RCPT TO:<smtp@example.com>".to_string()));
    assert!(data.contains("Subject: Reset your password\r\n"), "{data}");
    assert!(data.contains("/auth/v1/verify?token="), "{data}");
    let body: String = e.db.value("select body from auth.mail_outbox", &[]).await;
    let code: String = body
        .split("code")
        .last()
        .unwrap()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    assert!(data.contains(&code));
    assert!(e.outbox_sent(true).await, "the outbox row is marked sent");
}

#[tokio::test]
async fn mail_the_relay_refuses_stays_in_the_outbox() {
    let (port, mut rx) = fake_relay(Mode::RefuseRcpt).await;
    let e = env(format!("smtp://127.0.0.1:{port}")).await;
    e.recover("refused@example.com").await;
    let (commands, _) = next(&mut rx).await;
    assert!(
        !commands.iter().any(|c| c.starts_with("AUTH")),
        "no credentials, no AUTH"
    );
    assert!(!commands.iter().any(|c| c == "DATA"), "{commands:?}");
    assert!(
        e.outbox_sent(false).await,
        "a refused message is released for a later attempt"
    );
}

#[tokio::test]
async fn starttls_relay_with_a_private_ca() {
    let (ca, acceptor) = test_pki();
    let (port, mut rx) = fake_relay(Mode::StartTls(acceptor)).await;
    let e = env(format!(
        "smtp://u:p@localhost:{port}?tls=required&ca={}",
        ca.display()
    ))
    .await;
    e.recover("tls@example.com").await;
    let (commands, data) = next(&mut rx).await;
    let tls_at = commands
        .iter()
        .position(|c| c == "(tls)")
        .expect("upgraded");
    let auth_at = commands.iter().position(|c| c.starts_with("AUTH")).unwrap();
    assert!(tls_at < auth_at, "credentials only after TLS: {commands:?}");
    assert!(data.contains("/auth/v1/verify?token="));
    assert!(e.outbox_sent(true).await);
}

#[tokio::test]
async fn implicit_tls_relay_and_an_untrusted_certificate() {
    let (ca, acceptor) = test_pki();
    let (port, mut rx) = fake_relay(Mode::Implicit(acceptor.clone())).await;
    let e = env(format!("smtps://localhost:{port}?ca={}", ca.display())).await;
    e.recover("smtps@example.com").await;
    let (commands, data) = next(&mut rx).await;
    assert_eq!(commands.first().map(String::as_str), Some("(tls)"));
    assert!(data.contains("Reset your password"));
    assert!(e.outbox_sent(true).await);

    // Without the CA the relay's certificate does not verify: nothing is sent.
    let (port, _rx) = fake_relay(Mode::Implicit(acceptor)).await;
    let e = env(format!("smtps://localhost:{port}")).await;
    e.recover("untrusted@example.com").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        e.outbox_sent(false).await,
        "the message waits in the outbox"
    );
}
