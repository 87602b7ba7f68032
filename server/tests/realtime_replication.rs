//! The replication transport and decoder against a real PostgreSQL 15: authentication methods,
//! slot creation, typed INSERT/UPDATE/DELETE changes, and resuming after acknowledgement
//! (acknowledged transactions are not sent again, unacknowledged ones are).
//!
//! The streaming tests run on the shared test PostgreSQL (`common::TestDb`: doska's embedded
//! cluster, a fresh database per test, a slot per test). The authentication tests need their
//! own `pg_hba.conf` and a TCP listener, which the embedded cluster deliberately does not
//! offer, so they start a throwaway cluster of their own (`HbaCluster`) as the `postgres` user.

mod common;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use doska::realtime::decode::{Change, ChangeKind, Decoder, Event};
use doska::realtime::lsn::Lsn;
use doska::realtime::replication::{
    ReplicationConnection, ReplicationError, ReplicationStream, SlotStatus, StreamOptions,
};
use doska::realtime::source::{Source, SourceItem, SourceOptions};
use serde_json::{Value, json};
use tokio::sync::watch;

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL cluster with a given `pg_hba.conf`, in a temp dir, stopped and removed on drop.
struct HbaCluster {
    dir: PathBuf,
    port: u16,
    child: Child,
}

fn postgres_ids() -> (u32, u32) {
    let name = std::ffi::CString::new("postgres").unwrap();
    // SAFETY: getpwnam returns a pointer into static storage or null; read once, right away.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!pw.is_null(), "no postgres user on this machine");
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

fn as_postgres(cmd: &mut Command) -> &mut Command {
    let (uid, gid) = postgres_ids();
    cmd.uid(uid).gid(gid)
}

impl HbaCluster {
    /// Unix socket only.
    fn start(hba: &str) -> HbaCluster {
        HbaCluster::start_with(hba, false)
    }

    /// With `tcp`, also listens on 127.0.0.1 at a free port.
    fn start_with(hba: &str, tcp: bool) -> HbaCluster {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = PathBuf::from(format!(
            "/tmp/doska-rt-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (uid, gid) = postgres_ids();
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        let data = dir.join("data");
        let out = as_postgres(&mut Command::new(format!("{BIN}/initdb")))
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let (listen, port) = if tcp {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            ("127.0.0.1", probe.local_addr().unwrap().port())
        } else {
            ("", 5432)
        };
        let mut cmd = Command::new(format!("{BIN}/postgres"));
        as_postgres(&mut cmd)
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&dir)
            .arg(format!("-clisten_addresses={listen}"))
            .arg(format!("-cport={port}"))
            .args(["-c", "wal_level=logical", "-c", "fsync=off"])
            // Short, so a client that stops answering keepalives is cut off within the test.
            .args(["-c", "wal_sender_timeout=2s"])
            .args(["-c", "max_wal_senders=10", "-c", "max_replication_slots=10"])
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; it makes the kernel kill postgres if the test
        // thread dies without running Drop.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        let cluster = HbaCluster { dir, port, child };
        for _ in 0..300 {
            // The socket file appears at bind(), just before listen(): connect to be sure.
            if std::os::unix::net::UnixStream::connect(cluster.dir.join(format!(".s.PGSQL.{port}")))
                .is_ok()
            {
                return cluster;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "postgres did not start: {}",
            std::fs::read_to_string(cluster.dir.join("log")).unwrap_or_default()
        );
    }

    fn config(&self, user: &str, password: Option<&str>) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host_path(&self.dir)
            .port(self.port)
            .user(user)
            .dbname("postgres");
        if let Some(p) = password {
            c.password(p);
        }
        c
    }
}

impl Drop for HbaCluster {
    fn drop(&mut self) {
        // SAFETY: plain signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the tests need of a running PostgreSQL.
trait Server {
    /// Superuser (`postgres`, no password) or the given login, on database `postgres`.
    fn config(&self, user: &str, password: Option<&str>) -> tokio_postgres::Config;

    /// A superuser client, once the server accepts connections.
    async fn admin(&self) -> tokio_postgres::Client {
        let mut last = None;
        for _ in 0..100 {
            match self
                .config("postgres", None)
                .connect(tokio_postgres::NoTls)
                .await
            {
                Ok((client, conn)) => {
                    tokio::spawn(conn);
                    return client;
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("cannot connect: {last:?}");
    }
}

impl Server for HbaCluster {
    fn config(&self, user: &str, password: Option<&str>) -> tokio_postgres::Config {
        HbaCluster::config(self, user, password)
    }
}

/// A fresh database (internal schema applied, so `supabase_realtime` exists, empty) on the
/// test binary's shared embedded PostgreSQL, with a slot name of its own: slots are
/// cluster-wide.
struct Rt {
    db: common::TestDb,
    slot: String,
}

impl Rt {
    async fn new() -> Rt {
        let db = common::TestDb::new().await;
        let slot = db.name.clone();
        Rt { db, slot }
    }

    /// Slots pin WAL on the shared cluster: drop ours at the end of a test.
    async fn drop_slot(&self) {
        self.admin()
            .await
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.slot],
            )
            .await
            .unwrap();
    }
}

impl Server for Rt {
    fn config(&self, user: &str, password: Option<&str>) -> tokio_postgres::Config {
        let mut c = common::cluster().config(&self.db.name);
        c.user(user);
        if let Some(p) = password {
            c.password(p);
        }
        c
    }
}

const TRUST_HBA: &str = "local all all trust\nlocal replication all trust\n";

#[tokio::test]
async fn authenticates_with_each_method() {
    let hba = "local all r_scram scram-sha-256\nlocal replication r_scram scram-sha-256\n\
               local all r_md5 md5\nlocal replication r_md5 md5\n\
               local all r_clear password\nlocal replication r_clear password\n"
        .to_string()
        + TRUST_HBA;
    let pg = HbaCluster::start(&hba);
    let admin = pg.admin().await;
    admin
        .batch_execute(
            "SET password_encryption = 'md5';
             CREATE ROLE r_md5 LOGIN REPLICATION PASSWORD 'pw md5';
             SET password_encryption = 'scram-sha-256';
             CREATE ROLE r_scram LOGIN REPLICATION PASSWORD 'pw scram';
             CREATE ROLE r_clear LOGIN REPLICATION PASSWORD 'pw clear';",
        )
        .await
        .unwrap();
    let (_stop, shutdown) = watch::channel(false);
    for (user, password) in [
        ("postgres", None),
        ("r_scram", Some("pw scram")),
        ("r_md5", Some("pw md5")),
        ("r_clear", Some("pw clear")),
    ] {
        let mut conn = ReplicationConnection::connect(&pg.config(user, password), shutdown.clone())
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        let info = conn.identify_system().await.unwrap();
        assert_eq!(info.dbname.as_deref(), Some("postgres"), "{user}");
        assert_eq!(info.timeline, 1);
        assert!(info.xlog_pos.is_valid());
    }
    for user in ["r_scram", "r_md5", "r_clear"] {
        let err = ReplicationConnection::connect(&pg.config(user, Some("wrong")), shutdown.clone())
            .await
            .unwrap_err();
        assert_eq!(err.sqlstate(), Some("28P01"), "{user}: {err}"); // invalid_password
        let err = ReplicationConnection::connect(&pg.config(user, None), shutdown.clone())
            .await
            .unwrap_err();
        assert!(matches!(err, ReplicationError::Config(_)), "{user}: {err}");
    }
    // A role without REPLICATION is refused by the server, not by us.
    admin
        .batch_execute("CREATE ROLE plain LOGIN")
        .await
        .unwrap();
    let err = ReplicationConnection::connect(&pg.config("plain", None), shutdown.clone())
        .await
        .unwrap_err();
    assert_eq!(err.sqlstate(), Some("42501"), "{err}"); // insufficient_privilege
}

/// Events of one transaction: everything up to and including its Commit.
async fn next_tx(stream: &mut ReplicationStream, decoder: &mut Decoder) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(15), stream.recv())
            .await
            .expect("no replication message within 15 s")
            .unwrap()
            .expect("stream ended");
        if std::env::var_os("DOSKA_DUMP_PGOUTPUT").is_some() {
            eprintln!("pgoutput {}", hex::encode(&msg.data));
        }
        if let Some(event) = decoder.decode(&msg.data).unwrap() {
            let done = matches!(event, Event::Commit { .. });
            events.push(event);
            if done {
                return events;
            }
        }
    }
}

fn changes(events: &[Event]) -> Vec<&Change> {
    events
        .iter()
        .filter_map(|e| {
            if let Event::Change(c) = e {
                Some(&**c)
            } else {
                None
            }
        })
        .collect()
}

fn commit_end(events: &[Event]) -> Lsn {
    match events.last() {
        Some(Event::Commit { end_lsn, .. }) => *end_lsn,
        other => panic!("transaction does not end with a commit: {other:?}"),
    }
}

fn titles(events: &[Event]) -> Vec<Value> {
    changes(events)
        .iter()
        .map(|c| c.record["title"].clone())
        .collect()
}

const SLOT: &str = "doska_test";

/// Starts streaming from the slot's confirmed position, retrying while the previous
/// walsender still holds the slot.
async fn start(pg: &impl Server, slot: &str, shutdown: watch::Receiver<bool>) -> ReplicationStream {
    let options = StreamOptions {
        status_interval: Duration::from_millis(200),
        ..StreamOptions::default()
    };
    for _ in 0..50 {
        let conn = ReplicationConnection::connect(&pg.config("postgres", None), shutdown.clone())
            .await
            .unwrap();
        match conn
            .start_replication(slot, Lsn::INVALID, options.clone())
            .await
        {
            Ok(stream) => return stream,
            Err(e) if e.is_slot_in_use() => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("START_REPLICATION: {e}"),
        }
    }
    panic!("slot stayed in use");
}

async fn confirmed_flush(admin: &tokio_postgres::Client, slot: &str) -> Lsn {
    let row = admin
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap();
    row.get::<_, String>(0).parse().unwrap()
}

/// Polls until the slot's confirmed position satisfies `ok`.
async fn wait_confirmed(
    admin: &tokio_postgres::Client,
    slot: &str,
    ok: impl Fn(Lsn) -> bool,
) -> Lsn {
    for _ in 0..100 {
        let lsn = confirmed_flush(admin, slot).await;
        if ok(lsn) {
            return lsn;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "confirmed_flush_lsn stuck at {}",
        confirmed_flush(admin, slot).await
    );
}

#[tokio::test]
async fn streams_typed_changes_and_resumes_after_ack() {
    let pg = Rt::new().await;
    let slot = pg.slot.as_str();
    let admin = pg.admin().await;
    admin
        .batch_execute(
            "CREATE TABLE public.todos (
                 id bigserial PRIMARY KEY, title text NOT NULL, done boolean NOT NULL DEFAULT false,
                 tags text[], meta jsonb, price numeric(10,2), due timestamptz);
             CREATE TABLE public.unpublished (id int);
             ALTER PUBLICATION supabase_realtime ADD TABLE public.todos;",
        )
        .await
        .unwrap();
    let (stop, shutdown) = watch::channel(false);

    let mut conn = ReplicationConnection::connect(&pg.config("postgres", None), shutdown.clone())
        .await
        .unwrap();
    assert!(
        matches!(conn.create_slot(slot).await.unwrap(), SlotStatus::Created { consistent_point } if consistent_point.is_valid())
    );
    assert_eq!(
        conn.create_slot(slot).await.unwrap(),
        SlotStatus::AlreadyExists
    );
    drop(conn);

    let mut stream = start(&pg, slot, shutdown.clone()).await;
    let mut decoder = Decoder::new();
    admin
        .batch_execute(
            "BEGIN;
             INSERT INTO todos (title, tags, meta, price, due)
                 VALUES ('milk', '{a,\"b c\"}', '{\"n\": 1}', 2.50, '2024-05-01 10:00:00+00');
             UPDATE todos SET done = true WHERE id = 1;
             DELETE FROM todos WHERE id = 1;
             COMMIT;",
        )
        .await
        .unwrap();
    let tx1 = next_tx(&mut stream, &mut decoder).await;
    let Event::Begin { final_lsn, .. } = tx1[0] else {
        panic!("first event {:?}", tx1[0])
    };
    let Event::Commit {
        commit_lsn,
        end_lsn,
        commit_timestamp,
    } = tx1[tx1.len() - 1]
    else {
        unreachable!()
    };
    assert_eq!(final_lsn, commit_lsn);
    assert!(end_lsn > commit_lsn);
    assert!((chrono::Utc::now() - commit_timestamp).num_seconds().abs() < 60);

    let c = changes(&tx1);
    assert_eq!(
        c.iter().map(|c| c.kind).collect::<Vec<_>>(),
        [ChangeKind::Insert, ChangeKind::Update, ChangeKind::Delete]
    );
    for (i, change) in c.iter().enumerate() {
        assert_eq!(
            (change.schema.as_str(), change.table.as_str()),
            ("public", "todos")
        );
        assert_eq!(
            (
                change.commit_lsn,
                change.commit_timestamp,
                change.index_in_tx
            ),
            (commit_lsn, commit_timestamp, i as u32)
        );
    }
    let columns: Vec<_> = c[0]
        .columns
        .iter()
        .map(|col| (col.name.as_str(), col.type_name.as_str()))
        .collect();
    assert_eq!(
        columns,
        [
            ("id", "int8"),
            ("title", "text"),
            ("done", "bool"),
            ("tags", "_text"),
            ("meta", "jsonb"),
            ("price", "numeric"),
            ("due", "timestamptz")
        ]
    );
    let inserted = json!({"id": 1, "title": "milk", "done": false, "tags": ["a", "b c"], "meta": {"n": 1},
                          "price": 2.5, "due": "2024-05-01 10:00:00+00"});
    assert_eq!(Value::Object(c[0].record.clone()), inserted);
    assert_eq!(c[0].old_record, None);
    let mut updated = inserted.clone();
    updated["done"] = json!(true);
    assert_eq!(Value::Object(c[1].record.clone()), updated);
    assert_eq!(c[1].old_record, None); // default identity, key unchanged
    assert!(c[2].record.is_empty());
    assert_eq!(
        c[2].old_record.clone().map(Value::Object),
        Some(json!({"id": 1}))
    );

    // Two more transactions; only the first is acknowledged.
    admin
        .batch_execute("INSERT INTO todos (title) VALUES ('eggs')")
        .await
        .unwrap();
    let tx2 = next_tx(&mut stream, &mut decoder).await;
    assert_eq!(titles(&tx2), [json!("eggs")]);
    stream.ack(commit_end(&tx1));
    // The periodic status update reports it without closing the stream.
    wait_confirmed(&admin, slot, |lsn| lsn >= commit_end(&tx1)).await;
    assert!(confirmed_flush(&admin, slot).await < commit_end(&tx2));

    // Shutdown ends the stream cleanly, after a final status update.
    stop.send(true).unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(10), stream.recv())
            .await
            .unwrap()
            .unwrap()
            .is_none()
    );
    // Acknowledged tx1 is confirmed, unacknowledged tx2 is not. (The confirmed position may be
    // past tx1: other tests write WAL on the shared cluster, and idle keepalive positions
    // before tx2 are confirmable.)
    let confirmed = confirmed_flush(&admin, slot).await;
    assert!(
        confirmed >= commit_end(&tx1) && confirmed < commit_end(&tx2),
        "{confirmed}"
    );

    admin
        .batch_execute("INSERT INTO todos (title) VALUES ('bread')")
        .await
        .unwrap();
    let (stop, shutdown) = watch::channel(false);
    let mut stream = start(&pg, slot, shutdown.clone()).await;
    let mut decoder = Decoder::new();
    let again = next_tx(&mut stream, &mut decoder).await;
    assert_eq!(
        titles(&again),
        [json!("eggs")],
        "the unacknowledged transaction is sent again"
    );
    assert_eq!(commit_end(&again), commit_end(&tx2));
    let tx3 = next_tx(&mut stream, &mut decoder).await;
    assert_eq!(titles(&tx3), [json!("bread")]);
    stream.ack(commit_end(&tx3));
    stream.close().await.unwrap();
    assert!(confirmed_flush(&admin, slot).await >= commit_end(&tx3));

    // Everything acknowledged: a new session starts with the next transaction.
    let mut stream = start(&pg, slot, shutdown.clone()).await;
    let mut decoder = Decoder::new();
    admin
        .batch_execute("INSERT INTO todos (title) VALUES ('tea')")
        .await
        .unwrap();
    let tx4 = next_tx(&mut stream, &mut decoder).await;
    assert_eq!(
        titles(&tx4),
        [json!("tea")],
        "acknowledged transactions are not sent again"
    );
    stream.ack(commit_end(&tx4));

    // WAL of unpublished tables produces no messages; once all is acknowledged, the idle
    // keepalive position is confirmed so the slot does not hold that WAL.
    admin
        .batch_execute("INSERT INTO unpublished VALUES (1)")
        .await
        .unwrap();
    wait_confirmed(&admin, slot, |lsn| lsn > commit_end(&tx4)).await;

    stop.send(true).unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(10), stream.recv())
            .await
            .unwrap()
            .unwrap()
            .is_none()
    );
    pg.drop_slot().await;
}

#[tokio::test]
async fn refuses_bad_names_and_stops_on_shutdown() {
    let pg = Rt::new().await;
    let (stop, shutdown) = watch::channel(false);
    let mut conn = ReplicationConnection::connect(&pg.config("postgres", None), shutdown.clone())
        .await
        .unwrap();
    assert!(matches!(
        conn.create_slot("Bad-Name").await,
        Err(ReplicationError::Config(_))
    ));
    // An unknown slot is the server's error.
    let err = conn
        .start_replication("missing", Lsn::INVALID, StreamOptions::default())
        .await
        .unwrap_err();
    assert!(err.is_slot_missing(), "{err}");
    let mut conn = ReplicationConnection::connect(&pg.config("postgres", None), shutdown.clone())
        .await
        .unwrap();
    stop.send(true).unwrap();
    assert!(matches!(
        conn.identify_system().await,
        Err(ReplicationError::Shutdown)
    ));
    assert!(matches!(
        ReplicationConnection::connect(&pg.config("postgres", None), shutdown).await,
        Err(ReplicationError::Shutdown)
    ));
    pg.drop_slot().await;
}

#[tokio::test]
async fn tcp_with_scram_and_keepalive_replies() {
    let hba = "host all r_scram 127.0.0.1/32 scram-sha-256\nhost replication r_scram 127.0.0.1/32 scram-sha-256\n"
        .to_string()
        + TRUST_HBA;
    let pg = HbaCluster::start_with(&hba, true);
    let admin = pg.admin().await;
    admin
        .batch_execute(
            "CREATE ROLE r_scram LOGIN REPLICATION PASSWORD 'pw scram';
             CREATE TABLE public.todos (id bigserial PRIMARY KEY, title text NOT NULL);
             CREATE PUBLICATION supabase_realtime FOR TABLE public.todos;",
        )
        .await
        .unwrap();
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(pg.port)
        .user("r_scram")
        .password("pw scram")
        .dbname("postgres");
    let (_stop, shutdown) = watch::channel(false);
    let mut conn = ReplicationConnection::connect(&config, shutdown.clone())
        .await
        .unwrap();
    conn.create_slot(SLOT).await.unwrap();
    // No periodic updates within the test: only replies to the server's keepalive requests
    // keep the connection alive past wal_sender_timeout (2 s).
    let options = StreamOptions {
        status_interval: Duration::from_secs(3600),
        ..StreamOptions::default()
    };
    let mut stream = conn
        .start_replication(SLOT, Lsn::INVALID, options)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    admin
        .batch_execute("INSERT INTO todos (title) VALUES ('late')")
        .await
        .unwrap();
    let tx = next_tx(&mut stream, &mut Decoder::new()).await;
    assert_eq!(titles(&tx), [json!("late")]);
    stream.close().await.unwrap();
}

#[tokio::test]
async fn toast_replica_identity_and_schema_changes() {
    let pg = Rt::new().await;
    let slot = pg.slot.as_str();
    let admin = pg.admin().await;
    admin
        .batch_execute(
            "CREATE TABLE public.docs (id int PRIMARY KEY, body text, n int);
             ALTER PUBLICATION supabase_realtime ADD TABLE public.docs;",
        )
        .await
        .unwrap();
    let (_stop, shutdown) = watch::channel(false);
    let mut conn = ReplicationConnection::connect(&pg.config("postgres", None), shutdown.clone())
        .await
        .unwrap();
    conn.create_slot(slot).await.unwrap();
    let mut stream = start(&pg, slot, shutdown.clone()).await;
    let mut decoder = Decoder::new();

    // ~13 kB of hex: compresses to well over the 2 kB TOAST threshold, so it is stored out of line.
    admin
        .batch_execute(
            "INSERT INTO docs SELECT 1, string_agg(md5(i::text), ''), 0 FROM generate_series(1, 400) i",
        )
        .await
        .unwrap();
    let inserted = next_tx(&mut stream, &mut decoder).await;
    let body = changes(&inserted)[0].record["body"].clone();
    assert_eq!(body.as_str().map(str::len), Some(400 * 32));

    // Default identity: the unchanged TOASTed column is not sent.
    admin
        .batch_execute("UPDATE docs SET n = 1 WHERE id = 1")
        .await
        .unwrap();
    let tx = next_tx(&mut stream, &mut decoder).await;
    let c = changes(&tx)[0];
    assert_eq!(Value::Object(c.record.clone()), json!({"id": 1, "n": 1}));
    assert_eq!(c.unchanged_toast, ["body"]);
    assert_eq!(c.old_record, None);

    // Identity full: the old row carries it, and fills the new record.
    admin
        .batch_execute("ALTER TABLE docs REPLICA IDENTITY FULL; UPDATE docs SET n = 2 WHERE id = 1")
        .await
        .unwrap();
    let tx = next_tx(&mut stream, &mut decoder).await;
    let c = changes(&tx)[0];
    assert_eq!(c.record["body"], body);
    assert_eq!(c.record["n"], json!(2));
    assert!(c.unchanged_toast.is_empty());
    let old = c.old_record.as_ref().expect("full old row");
    assert_eq!(
        (old["n"].clone(), old["body"].clone()),
        (json!(1), body.clone())
    );

    // A new column: pgoutput describes the relation again before the next row.
    admin
        .batch_execute("ALTER TABLE docs ADD COLUMN tag text DEFAULT 'x'; INSERT INTO docs (id, n) VALUES (2, 0)")
        .await
        .unwrap();
    let tx = next_tx(&mut stream, &mut decoder).await;
    let c = changes(&tx)[0];
    assert_eq!(
        c.columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["id", "body", "n", "tag"]
    );
    assert_eq!(
        Value::Object(c.record.clone()),
        json!({"id": 2, "body": null, "n": 0, "tag": "x"})
    );

    // Deleting under identity full: the whole old row, with the TOASTed value.
    admin
        .batch_execute("DELETE FROM docs WHERE id = 1")
        .await
        .unwrap();
    let tx = next_tx(&mut stream, &mut decoder).await;
    let c = changes(&tx)[0];
    assert_eq!(c.kind, ChangeKind::Delete);
    assert_eq!(c.old_record.as_ref().map(|o| o["body"].clone()), Some(body));
    stream.close().await.unwrap();
    pg.drop_slot().await;
}

async fn next_item(source: &mut Source) -> SourceItem {
    tokio::time::timeout(Duration::from_secs(15), source.recv())
        .await
        .expect("no source item within 15 s")
        .expect("source stopped")
}

/// Items up to and including the next Commit, skipping nothing: (items, commit end).
async fn source_tx(source: &mut Source) -> (Vec<SourceItem>, Lsn) {
    let mut seen = Vec::new();
    loop {
        let item = next_item(source).await;
        let end = match &item {
            SourceItem::Event(Event::Commit { end_lsn, .. }) => Some(*end_lsn),
            _ => None,
        };
        seen.push(item);
        if let Some(end) = end {
            return (seen, end);
        }
    }
}

fn source_titles(items: &[SourceItem]) -> Vec<Value> {
    items
        .iter()
        .filter_map(|i| match i {
            SourceItem::Event(Event::Change(c)) => Some(c.record["title"].clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn source_reconnects_and_resends_only_unacknowledged() {
    let pg = Rt::new().await;
    let slot = pg.slot.as_str();
    let admin = pg.admin().await;
    admin
        .batch_execute(
            "CREATE TABLE public.todos (id bigserial PRIMARY KEY, title text NOT NULL);
             ALTER PUBLICATION supabase_realtime ADD TABLE public.todos;",
        )
        .await
        .unwrap();
    let (stop, shutdown) = watch::channel(false);
    let options = SourceOptions {
        slot: slot.to_string(),
        stream: StreamOptions {
            status_interval: Duration::from_millis(200),
            ..StreamOptions::default()
        },
        retry_min: Duration::from_millis(100),
        ..SourceOptions::default()
    };
    let mut source = Source::spawn(
        pg.config("postgres", None),
        options.clone(),
        shutdown.clone(),
    );
    let first = next_item(&mut source).await;
    assert!(
        matches!(
            first,
            SourceItem::Started {
                slot_created: Some(_)
            }
        ),
        "{first:?}"
    );

    admin
        .batch_execute("INSERT INTO todos (title) VALUES ('a')")
        .await
        .unwrap();
    let (items, end_a) = source_tx(&mut source).await;
    assert_eq!(source_titles(&items), [json!("a")]);
    source.ack(end_a);
    admin
        .batch_execute("INSERT INTO todos (title) VALUES ('b')")
        .await
        .unwrap();
    let (items, _) = source_tx(&mut source).await;
    assert_eq!(source_titles(&items), [json!("b")]);
    wait_confirmed(&admin, slot, |lsn| lsn >= end_a).await;

    // Kill the walsender: the source says so, reconnects, and resends only 'b'.
    admin
        .execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
        .await
        .unwrap();
    let (items, end_b) = source_tx(&mut source).await;
    assert!(
        matches!(items[0], SourceItem::Interrupted { .. }),
        "{:?}",
        items[0]
    );
    assert!(
        items.contains(&SourceItem::Started { slot_created: None }),
        "{items:?}"
    );
    assert_eq!(source_titles(&items), [json!("b")]);
    source.ack(end_b);

    // Shutdown stops it, after confirming what was acknowledged.
    stop.send(true).unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(10), async {
        let mut rest = Vec::new();
        while let Some(item) = source.recv().await {
            rest.push(item);
        }
        rest
    })
    .await
    .expect("source did not stop");
    assert!(
        rest.iter()
            .all(|i| !matches!(i, SourceItem::Event(Event::Change(_)))),
        "{rest:?}"
    );
    assert!(confirmed_flush(&admin, slot).await >= end_b);

    // A lost slot is recreated (and reported as created).
    admin
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
        .unwrap();
    let (_stop, shutdown) = watch::channel(false);
    let mut source = Source::spawn(pg.config("postgres", None), options, shutdown);
    assert!(matches!(
        source.recv().await.unwrap(),
        SourceItem::Started {
            slot_created: Some(_)
        }
    ));
    admin
        .batch_execute("INSERT INTO todos (title) VALUES ('c')")
        .await
        .unwrap();
    let (items, _) = source_tx(&mut source).await;
    assert_eq!(source_titles(&items), [json!("c")]);
    source.close().await;
    pg.drop_slot().await;
}
