//! bench/realtime's load generator: opens many Phoenix (vsn 2.0.0, as realtime-js speaks it)
//! sockets against doska and measures what arrives — `postgres_changes` deliveries with their
//! commit-to-client latency, broadcast fan-out rate, or simply holds idle joined sockets — and
//! runs the bare tokio-tungstenite fan-out server that the broadcast figures are compared with;
//! and bench/soak's mixed load (sockets and REST connections held for a bounded time).
//! Driven by bench/realtime/run.py and bench/soak/run.py; prints one JSON line of results on stdout.
//!
//! Rejects unknown subcommands and options, and missing required options (exit 2 with usage).

mod bare;
mod changes;
mod fanout;
mod phx;
mod soak;

use std::collections::HashMap;

const USAGE: &str = "usage: doska-loadgen <command> [--option value]...
  changes   --url WS --apikey KEY [--sockets N] [--tokens FILE] [--table T] [--expect N]
            [--idle-secs S] [--max-secs S] [--hold]
            one channel per socket, one postgres_changes INSERT binding each (with FILE: line i is
            `<user id> <access token>` and the binding filters user_id=eq.<user id>); prints
            {\"ready\":true} once all joined, then the count, rate and latency of what arrived.
            --hold: keep the sockets joined until stdin closes (idle memory).
  fanout    --url WS --apikey KEY [--sockets N] [--senders S] [--wave M] [--waves W]
            N receivers and S senders join one topic; each wave the senders push M binary
            broadcasts in total and the wave ends when every receiver got them.
  bare      [--listen ADDR]   a plain fan-out server of the same frames; prints {\"port\":P}.
  soak      --url http://127.0.0.1:PORT --apikey KEY [--sockets N] [--http M] [--seconds S]
            [--room R] [--heartbeat-secs S] [--broadcast-secs S] [--inserts-per-sec N]
            [--post-every N] [--http-pause-ms MS] [--drain-secs S]
            N sockets in rooms of R (default 25: presence, a broadcast every 20 s, heartbeats
            every 10 s, postgres_changes on soak_feed fed by a trickle of inserts) and M
            keep-alive REST connections looping GETs and POSTs (a 500 ms pause after each
            answer) for S seconds; prints {\"ready\":…} after the ramp, then errors, p99s, counts.";

/// `--name value` options (and bare `--flag`s, stored as "true").
pub struct Args(HashMap<String, String>);

impl Args {
    fn parse(items: &[String]) -> Result<Args, String> {
        let mut map = HashMap::new();
        let mut it = items.iter().peekable();
        while let Some(item) = it.next() {
            let Some(name) = item.strip_prefix("--") else {
                return Err(format!("unexpected argument {item:?}"));
            };
            let value = match it.peek() {
                Some(v) if !v.starts_with("--") => it.next().cloned().unwrap_or_default(),
                _ => "true".to_string(),
            };
            map.insert(name.to_string(), value);
        }
        Ok(Args(map))
    }

    pub fn str(&self, name: &str) -> Result<String, String> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| format!("--{name} is required"))
    }

    pub fn opt(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    pub fn num(&self, name: &str, default: u64) -> Result<u64, String> {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name} must be a number, not {v:?}")),
        }
    }

    pub fn flag(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    fn check_known(&self, known: &[&str]) -> Result<(), String> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(format!("unknown option --{k}")),
            None => Ok(()),
        }
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = argv.split_first() else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = Args::parse(rest).and_then(|args| match command.as_str() {
        "changes" => {
            args.check_known(&[
                "url",
                "apikey",
                "sockets",
                "tokens",
                "table",
                "expect",
                "idle-secs",
                "max-secs",
                "hold",
            ])?;
            runtime.block_on(changes::run(&args))
        }
        "fanout" => {
            args.check_known(&["url", "apikey", "sockets", "senders", "wave", "waves"])?;
            runtime.block_on(fanout::run(&args))
        }
        "soak" => {
            args.check_known(&[
                "url",
                "apikey",
                "sockets",
                "http",
                "seconds",
                "room",
                "heartbeat-secs",
                "broadcast-secs",
                "inserts-per-sec",
                "post-every",
                "drain-secs",
                "http-pause-ms",
            ])?;
            runtime.block_on(soak::run(&args))
        }
        "bare" => {
            args.check_known(&["listen"])?;
            runtime.block_on(bare::run(&args))
        }
        other => Err(format!("unknown command {other:?}")),
    });
    if let Err(e) = result {
        eprintln!("doska-loadgen: {e}\n{USAGE}");
        std::process::exit(2);
    }
}
