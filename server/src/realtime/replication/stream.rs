//! The streaming half of the replication transport: the WAL payloads handed to the caller, the
//! standby status updates that report only what the caller acknowledged, keepalives, and a graceful
//! close.

use super::*;

/// Tells the stream which WAL positions the caller has fully handled. Cloneable, so the
/// stage that finishes a change can acknowledge it without owning the stream.
#[derive(Debug, Clone, Default)]
pub struct Acker(pub(super) Arc<AtomicU64>);

impl Acker {
    /// Marks everything up to `lsn` handled. Never moves backwards.
    pub fn ack(&self, lsn: Lsn) {
        self.0.fetch_max(lsn.0, Ordering::AcqRel);
    }

    /// The highest position acknowledged so far in this session.
    pub fn acked(&self) -> Lsn {
        Lsn(self.0.load(Ordering::Acquire))
    }
}

/// A running logical replication stream. Dropping it closes the connection gracefully
/// (final status update, then end of copy) from the background task.
pub struct ReplicationStream {
    pub(super) events: mpsc::Receiver<XLogData>,
    pub(super) acker: Acker,
    pub(super) task: Option<JoinHandle<Result<(), ReplicationError>>>,
}

impl fmt::Debug for ReplicationStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicationStream")
            .field("acked", &self.acker.acked())
            .finish_non_exhaustive()
    }
}

impl ReplicationStream {
    /// The next pgoutput message. `Ok(None)` once the stream ended cleanly (shutdown, or the
    /// server ended the copy); `Err` when it broke.
    pub async fn recv(&mut self) -> Result<Option<XLogData>, ReplicationError> {
        if let Some(message) = self.events.recv().await {
            return Ok(Some(message));
        }
        // Awaited through `&mut` and cleared only once finished, so a cancelled `recv` (it is
        // used in `select!`) does not lose the task's result.
        let Some(task) = self.task.as_mut() else {
            return Ok(None);
        };
        let finished = task.await;
        self.task = None;
        match finished {
            Ok(result) => result.map(|()| None),
            Err(join) => Err(ReplicationError::Protocol(format!(
                "replication task failed: {join}"
            ))),
        }
    }

    /// Marks everything up to `lsn` handled; see [`Acker::ack`]. Acknowledge a transaction with
    /// the end LSN of its commit (pgoutput `Commit.end_lsn`, also its `XLogData::wal_start`).
    pub fn ack(&self, lsn: Lsn) {
        self.acker.ack(lsn);
    }

    /// A handle for acknowledging from elsewhere.
    pub fn acker(&self) -> Acker {
        self.acker.clone()
    }

    /// Stops reading, sends the final status update, ends the copy and waits for the
    /// connection to close. Returns the error that ended the stream, if one did.
    pub async fn close(mut self) -> Result<(), ReplicationError> {
        self.events.close();
        // Unread messages are simply not acknowledged; the server sends them again next time.
        while self.events.recv().await.is_some() {}
        match self.task.take() {
            Some(task) => task.await.map_err(|join| {
                ReplicationError::Protocol(format!("replication task failed: {join}"))
            })?,
            None => Ok(()),
        }
    }
}

/// What the stream task knows about positions, to build standby status updates.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// Highest WAL end the server reported: what we have received ("write").
    pub(super) received: Lsn,
    /// A transaction's `Begin` was delivered and its `Commit` not yet.
    pub(super) in_tx: bool,
    /// End LSN of the last commit delivered to the caller.
    pub(super) last_commit_end: Lsn,
    /// A keepalive position seen between transactions, with the last commit end delivered
    /// before it: once that commit is acknowledged, everything up to the keepalive is handled
    /// (pgoutput sends nothing for WAL of unpublished tables, so without this the slot would
    /// hold WAL forever on a database whose published tables are quiet).
    pub(super) idle: Option<(Lsn, Lsn)>,
}

impl Progress {
    pub(super) fn delivered(&mut self, msg: &XLogData) {
        match msg.data.first() {
            Some(b'B') => self.in_tx = true,
            Some(b'C') => {
                self.in_tx = false;
                // Commit: flags (1), commit_lsn (8), end_lsn (8), timestamp (8).
                let end = msg
                    .data
                    .get(10..18)
                    .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")));
                self.last_commit_end = end.map(Lsn).unwrap_or(msg.wal_start);
            }
            _ => {}
        }
    }

    pub(super) fn keepalive(&mut self, wal_end: Lsn) {
        self.received = self.received.max(wal_end);
        if !self.in_tx {
            self.idle = Some((wal_end, self.last_commit_end));
        }
    }

    /// The flush position that may be confirmed given what the caller acknowledged.
    pub(super) fn confirmable(&self, acked: Lsn) -> Lsn {
        match self.idle {
            Some((idle_end, needs)) if acked >= needs => acked.max(idle_end),
            _ => acked,
        }
    }
}

pub(super) fn standby_status(progress: &Progress, acked: Lsn, reply: bool) -> BytesMut {
    let flush = progress.confirmable(acked);
    let mut msg = BytesMut::with_capacity(34);
    msg.put_u8(b'r');
    msg.put_u64(progress.received.max(flush).0); // written
    msg.put_u64(flush.0); // flushed: only what was handled
    msg.put_u64(flush.0); // applied
    msg.put_i64(pg_now_micros());
    msg.put_u8(u8::from(reply));
    let mut out = BytesMut::with_capacity(40);
    frontend::CopyData::new(&msg[..])
        .expect("status message is far below the CopyData size limit")
        .write(&mut out);
    out
}

/// Owns the socket while streaming: reads frames, answers keepalives, sends periodic status
/// updates (whether or not anyone consumes the stream) and stops on shutdown or when the
/// consumer goes away.
pub(super) async fn stream_task(
    mut conn: ReplicationConnection,
    events: mpsc::Sender<XLogData>,
    acked: Arc<AtomicU64>,
    start: Lsn,
    status_interval: Duration,
) -> Result<(), ReplicationError> {
    let mut progress = Progress {
        received: start,
        ..Progress::default()
    };
    let mut ticker = tokio::time::interval(status_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: Option<XLogData> = None;
    let mut shutdown = conn.shutdown.clone();
    let acked_now = || Lsn(acked.load(Ordering::Acquire));
    // Made once and polled in every round: not a new waiter per frame.
    let stopping = wait_shutdown(&mut shutdown);
    let consumer_gone = events.closed();
    tokio::pin!(stopping, consumer_gone);
    let result = loop {
        tokio::select! {
            biased;
            _ = &mut stopping => break Ok(()),
            _ = &mut consumer_gone => break Ok(()),
            _ = ticker.tick() => {
                if let Err(e) = send_raw(&mut conn.io, &standby_status(&progress, acked_now(), false)).await {
                    break Err(e);
                }
            }
            permit = events.reserve(), if pending.is_some() => {
                let Ok(permit) = permit else { break Ok(()) };
                let msg = pending.take().expect("branch enabled only with a pending message");
                progress.delivered(&msg);
                permit.send(msg);
            }
            frame = read_frame_from(&mut conn.io, &mut conn.read_buf), if pending.is_none() => {
                let frame = match frame { Ok(f) => f, Err(e) => break Err(e) };
                match handle_frame(frame, &mut progress) {
                    Ok(Streamed::Data(msg)) => pending = Some(msg),
                    Ok(Streamed::Keepalive { reply }) => {
                        if reply {
                            let status = standby_status(&progress, acked_now(), false);
                            if let Err(e) = send_raw(&mut conn.io, &status).await {
                                break Err(e);
                            }
                        }
                    }
                    Ok(Streamed::Ignored) => {}
                    Ok(Streamed::CopyDone) => {
                        // The server ended streaming (e.g. shut down): end ours and finish.
                        let mut out = BytesMut::new();
                        frontend::copy_done(&mut out);
                        let _ = send_raw(&mut conn.io, &out).await;
                        break Ok(());
                    }
                    Err(e) => break Err(e),
                }
            }
        }
    };
    if result.is_ok() {
        close_gracefully(&mut conn, &progress, acked_now()).await;
    }
    result
}

pub(super) enum Streamed {
    Data(XLogData),
    Keepalive {
        reply: bool,
    },
    /// Notices and parameter changes: nothing to do while streaming.
    Ignored,
    CopyDone,
}

pub(super) fn handle_frame(
    frame: Frame,
    progress: &mut Progress,
) -> Result<Streamed, ReplicationError> {
    match frame.tag {
        b'd' => {}
        b'c' => return Ok(Streamed::CopyDone),
        b'E' => return Err(server_error(&frame.body)),
        b'N' | b'S' => return Ok(Streamed::Ignored),
        t => return Err(unexpected(t, "streaming")),
    }
    let mut r = Reader::new(&frame.body);
    match r.u8()? {
        b'w' => {
            let wal_start = Lsn(r.u64()?);
            let wal_end = Lsn(r.u64()?);
            let send_time = r.i64()?;
            progress.received = progress.received.max(wal_end);
            let offset = r.offset();
            Ok(Streamed::Data(XLogData {
                wal_start,
                wal_end,
                send_time,
                data: frame.body.slice(offset..),
            }))
        }
        b'k' => {
            let wal_end = Lsn(r.u64()?);
            let _send_time = r.i64()?;
            let reply = r.u8()? != 0;
            progress.keepalive(wal_end);
            Ok(Streamed::Keepalive { reply })
        }
        other => Err(ReplicationError::Protocol(format!(
            "unknown CopyData message {:?}",
            other as char
        ))),
    }
}

pub(super) async fn send_raw(
    io: &mut Pin<Box<dyn Socket>>,
    bytes: &[u8],
) -> Result<(), ReplicationError> {
    io.write_all(bytes).await?;
    io.flush().await?;
    Ok(())
}

/// Final status update, CopyDone, wait (bounded) for the server to end its side, Terminate.
/// Errors are ignored: the connection is going away either way and what was not confirmed is
/// simply sent again next time.
pub(super) async fn close_gracefully(
    conn: &mut ReplicationConnection,
    progress: &Progress,
    acked: Lsn,
) {
    let mut out = standby_status(progress, acked, false);
    frontend::copy_done(&mut out);
    if send_raw(&mut conn.io, &out).await.is_err() {
        return;
    }
    let drain = async {
        loop {
            match read_frame_from(&mut conn.io, &mut conn.read_buf).await {
                Ok(frame) if frame.tag == b'Z' => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    };
    if let Ok(true) = tokio::time::timeout(CLOSE_TIMEOUT, drain).await {
        let mut out = BytesMut::new();
        frontend::terminate(&mut out);
        let _ = send_raw(&mut conn.io, &out).await;
        let _ = conn.io.shutdown().await;
        // Wait for the server to close its side, so the slot is free when we return.
        let mut sink = [0u8; 256];
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            while matches!(conn.io.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}
