//! `fanout`: N receiver sockets and S sender sockets join one topic; in each wave the senders
//! push M binary broadcasts between them, and the wave ends when every receiver got all M (or
//! after 30 s, counted as lost). Prints the frames delivered per second over all waves.
//!
//! The same client runs against doska and against `bare`, so the two rates compare the servers.
//! Rejects sockets that cannot join.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::Args;
use crate::phx;

const TOPIC: &str = "realtime:fanout";

pub async fn run(args: &Args) -> Result<(), String> {
    let url = args.str("url")?;
    let apikey = args.opt("apikey").unwrap_or_default();
    let receivers = args.num("sockets", 1000)? as usize;
    let senders = args.num("senders", 20)?.max(1) as usize;
    let wave = args.num("wave", 400)?.max(1);
    let waves = args.num("waves", 5)?;
    let received = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let connecting = Arc::new(Semaphore::new(64));
    let mut joins = Vec::new();
    for i in 0..receivers + senders {
        let (url, apikey, connecting) = (url.clone(), apikey.clone(), connecting.clone());
        joins.push(tokio::spawn(async move {
            let _permit = connecting.acquire().await.map_err(|e| e.to_string())?;
            let mut ws = phx::connect(&url, &apikey).await?;
            phx::join(&mut ws, phx::join_frame(TOPIC, json!([]), None)).await?;
            Ok::<_, String>((i, ws))
        }));
    }
    let mut sender_queues = Vec::new();
    let mut tasks = Vec::new();
    for j in joins {
        let (i, ws) = j.await.map_err(|e| e.to_string())??;
        let (mut sink, mut stream) = ws.split();
        let mut stop = stop_rx.clone();
        if i < receivers {
            let received = received.clone();
            tasks.push(tokio::spawn(async move {
                let mut heartbeat = tokio::time::interval(phx::HEARTBEAT);
                heartbeat.tick().await;
                loop {
                    tokio::select! {
                        _ = stop.changed() => break,
                        _ = heartbeat.tick() => { let _ = sink.send(phx::heartbeat_frame(2)).await; }
                        msg = stream.next() => match msg {
                            Some(Ok(Message::Binary(b))) if b.first() == Some(&4) => {
                                received.fetch_add(1, Ordering::Relaxed);
                            }
                            Some(Ok(_)) => {}
                            _ => break,
                        },
                    }
                }
            }));
        } else {
            let (tx, mut rx) = mpsc::channel::<u64>(4);
            sender_queues.push(tx);
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                loop {
                    tokio::select! {
                        _ = stop.changed() => break,
                        // Drain what others broadcast so the server never sees this one as slow.
                        msg = stream.next() => if !matches!(msg, Some(Ok(_))) { break },
                        count = rx.recv() => {
                            let Some(count) = count else { break };
                            for _ in 0..count {
                                n += 1;
                                let payload = json!({"n": n, "pad": "x".repeat(64)}).to_string();
                                let frame = phx::broadcast_push("1", TOPIC, "bench", &payload);
                                if sink.feed(frame).await.is_err() {
                                    return;
                                }
                            }
                            if sink.flush().await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }));
        }
    }
    // Settle: every join reply is in before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per_sender = wave.div_ceil(senders as u64);
    let sent_per_wave = per_sender * senders as u64;
    let started = Instant::now();
    let mut expected = 0u64;
    let mut lost = 0u64;
    for _ in 0..waves {
        expected += sent_per_wave * receivers as u64;
        for q in &sender_queues {
            q.send(per_sender).await.map_err(|e| e.to_string())?;
        }
        let wave_start = Instant::now();
        while received.load(Ordering::Relaxed) + lost < expected {
            if wave_start.elapsed() > Duration::from_secs(30) {
                lost = expected - received.load(Ordering::Relaxed);
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let got = received.load(Ordering::Relaxed);
    println!(
        "{}",
        json!({
            "frames": got,
            "expected": expected,
            "lost": expected.saturating_sub(got),
            "seconds": seconds,
            "rate": got as f64 / seconds,
        })
    );
    Ok(())
}
