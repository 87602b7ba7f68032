//! `changes`: N sockets, one channel each with one `postgres_changes` INSERT binding (filtered
//! to its own user's rows when tokens are given), counting what arrives and the latency from
//! the change's `commit_timestamp` to its arrival. Ends when `--expect` changes arrived, after
//! `--idle-secs` without one, or after `--max-secs`; with `--hold`, when stdin closes.
//!
//! Rejects a token file with fewer lines than sockets, and any socket that cannot join.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::Args;
use crate::phx::{self, Ws};

#[derive(Default)]
struct Counters {
    joined: AtomicU64,
    received: AtomicU64,
    first_micros: AtomicI64,
    last_micros: AtomicI64,
}

pub async fn run(args: &Args) -> Result<(), String> {
    let url = args.str("url")?;
    let apikey = args.str("apikey")?;
    let sockets = args.num("sockets", 1)? as usize;
    let table = args.opt("table").unwrap_or_else(|| "bench_changes".into());
    let expect = args.num("expect", u64::MAX)?;
    let idle = Duration::from_secs(args.num("idle-secs", 5)?);
    let max = Duration::from_secs(args.num("max-secs", 120)?);
    let users: Vec<(String, String)> = match args.opt("tokens") {
        None => Vec::new(),
        Some(path) => std::fs::read_to_string(&path)
            .map_err(|e| format!("{path}: {e}"))?
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(u, t)| (u.to_string(), t.to_string()))
            .collect(),
    };
    if !users.is_empty() && users.len() < sockets {
        return Err(format!("{} tokens for {sockets} sockets", users.len()));
    }
    let counters = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    // Connect in bounded parallel so the listen backlog never overflows.
    let connecting = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::with_capacity(sockets);
    for i in 0..sockets {
        let mut binding = json!({"event": "INSERT", "schema": "public", "table": table});
        let token = users.get(i).map(|(user, token)| {
            binding["filter"] = json!(format!("user_id=eq.{user}"));
            token.clone()
        });
        let join = phx::join_frame(
            &format!("realtime:bench-{i}"),
            json!([binding]),
            token.as_deref(),
        );
        let (url, apikey, counters, stop, connecting) = (
            url.clone(),
            apikey.clone(),
            counters.clone(),
            stop_rx.clone(),
            connecting.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let ws = {
                let _permit = connecting.acquire().await.map_err(|e| e.to_string())?;
                let mut ws = phx::connect(&url, &apikey).await?;
                phx::join(&mut ws, join).await?;
                ws
            };
            counters.joined.fetch_add(1, Ordering::Relaxed);
            Ok::<_, String>(socket(ws, &counters, stop).await)
        }));
    }
    let started = Instant::now();
    while counters.joined.load(Ordering::Relaxed) < sockets as u64 {
        if let Some(t) = tasks.iter().find(|t| t.is_finished()) {
            let _ = t;
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err("sockets did not all join within 120 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if counters.joined.load(Ordering::Relaxed) < sockets as u64 {
        for t in tasks {
            if t.is_finished() {
                if let Ok(Err(e)) = t.await {
                    return Err(e);
                }
                break;
            }
        }
        return Err("a socket ended before joining".into());
    }
    println!("{}", json!({"ready": true, "sockets": sockets}));
    let ready = Instant::now();
    if args.flag("hold") {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(_)) = lines.next_line().await {}
    } else {
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let received = counters.received.load(Ordering::Relaxed);
            let last = counters.last_micros.load(Ordering::Relaxed);
            let quiet = received > 0 && phx::now_micros() - last > idle.as_micros() as i64;
            if received >= expect || quiet || ready.elapsed() > max {
                break;
            }
        }
    }
    let _ = stop_tx.send(true);
    let mut latencies = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(l)) => latencies.extend(l),
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(e.to_string()),
        }
    }
    latencies.sort_unstable();
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "{}",
        json!({
            "received": counters.received.load(Ordering::Relaxed),
            "first_micros": counters.first_micros.load(Ordering::Relaxed),
            "last_micros": counters.last_micros.load(Ordering::Relaxed),
            "p50_ms": ms(phx::percentile(&latencies, 50.0)),
            "p99_ms": ms(phx::percentile(&latencies, 99.0)),
            "max_ms": ms(latencies.last().copied().unwrap_or(0)),
        })
    );
    Ok(())
}

/// Reads one socket until told to stop; returns the latencies (µs) of the changes it got.
async fn socket(ws: Ws, counters: &Counters, mut stop: watch::Receiver<bool>) -> Vec<u64> {
    let (mut sink, mut stream) = ws.split();
    let mut latencies = Vec::new();
    let mut heartbeat = tokio::time::interval(phx::HEARTBEAT);
    heartbeat.tick().await;
    let mut reference = 1;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = heartbeat.tick() => {
                reference += 1;
                if sink.send(phx::heartbeat_frame(reference)).await.is_err() {
                    break;
                }
            }
            msg = stream.next() => {
                let Some(Ok(msg)) = msg else { break };
                let Message::Text(text) = msg else { continue };
                let now = phx::now_micros();
                let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
                if v[3] != "postgres_changes" {
                    continue;
                }
                let committed = v[4]["data"]["commit_timestamp"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.timestamp_micros());
                if let Some(c) = committed {
                    latencies.push(u64::try_from(now - c).unwrap_or(0));
                }
                if counters.received.fetch_add(1, Ordering::Relaxed) == 0 {
                    counters.first_micros.store(now, Ordering::Relaxed);
                }
                counters.last_micros.fetch_max(now, Ordering::Relaxed);
            }
        }
    }
    let _ = sink.close().await;
    latencies
}
