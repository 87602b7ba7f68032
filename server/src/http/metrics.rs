//! Metrics in Prometheus text format for `GET /metrics`: request counts and latency histograms by front
//! door and status, pool use, and gauges later stages register (slot lag, sockets, …). Holds no
//! labels from user input beyond the fixed front-door names and numeric statuses.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

type GaugeFn = Box<dyn Fn() -> Vec<(String, f64)> + Send + Sync>;

struct Gauge {
    name: String,
    help: String,
    /// Returns (label set like `pool="request",state="idle"`, value) pairs when scraped.
    read: GaugeFn,
}

#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    requests: Mutex<BTreeMap<(&'static str, u16), Histogram>>,
    gauges: Mutex<Vec<Gauge>>,
}

/// The fixed label for a path, so metrics never carry user-controlled text.
pub fn door_of(path: &str) -> &'static str {
    const DOORS: [(&str, &str); 6] = [
        ("/rest/v1", "rest"),
        ("/auth/v1", "auth"),
        ("/realtime/v1", "realtime"),
        ("/storage/v1", "storage"),
        ("/health", "health"),
        ("/metrics", "metrics"),
    ];
    DOORS
        .iter()
        .find(|(p, _)| path == *p || path.starts_with(&format!("{p}/")))
        .map(|(_, d)| *d)
        .unwrap_or("other")
}

impl Metrics {
    pub fn observe(&self, door: &'static str, status: u16, latency: Duration) {
        let secs = latency.as_secs_f64();
        let mut map = self.inner.requests.lock().expect("metrics lock poisoned");
        let h = map.entry((door, status)).or_default();
        h.count += 1;
        h.sum += secs;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
    }

    /// Registers a gauge read at scrape time.
    pub fn gauge(
        &self,
        name: &str,
        help: &str,
        read: impl Fn() -> Vec<(String, f64)> + Send + Sync + 'static,
    ) {
        self.inner
            .gauges
            .lock()
            .expect("metrics lock poisoned")
            .push(Gauge {
                name: name.into(),
                help: help.into(),
                read: Box::new(read),
            });
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let map = self
            .inner
            .requests
            .lock()
            .expect("metrics lock poisoned")
            .clone();
        out.push_str("# HELP doska_http_requests_total HTTP requests by front door and status.\n");
        out.push_str("# TYPE doska_http_requests_total counter\n");
        for ((door, status), h) in &map {
            let _ = writeln!(
                out,
                "doska_http_requests_total{{door=\"{door}\",status=\"{status}\"}} {}",
                h.count
            );
        }
        out.push_str(
            "# HELP doska_http_request_duration_seconds Latency of HTTP requests by front door and status.\n",
        );
        out.push_str("# TYPE doska_http_request_duration_seconds histogram\n");
        for ((door, status), h) in &map {
            let labels = format!("door=\"{door}\",status=\"{status}\"");
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "doska_http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "doska_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "doska_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "doska_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        for g in self
            .inner
            .gauges
            .lock()
            .expect("metrics lock poisoned")
            .iter()
        {
            let _ = writeln!(out, "# HELP {} {}", g.name, g.help);
            let _ = writeln!(out, "# TYPE {} gauge", g.name);
            for (labels, v) in (g.read)() {
                if labels.is_empty() {
                    let _ = writeln!(out, "{} {v}", g.name);
                } else {
                    let _ = writeln!(out, "{}{{{labels}}} {v}", g.name);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doors_are_fixed_labels() {
        assert_eq!(door_of("/rest/v1/todos"), "rest");
        assert_eq!(door_of("/rest/v1"), "rest");
        assert_eq!(door_of("/rest/v10"), "other");
        assert_eq!(door_of("/\"evil"), "other");
    }

    #[test]
    fn renders_counts_and_histograms() {
        let m = Metrics::default();
        m.observe("rest", 200, Duration::from_millis(3));
        m.observe("rest", 200, Duration::from_millis(30));
        m.gauge("doska_test_gauge", "A test.", || {
            vec![("pool=\"x\"".into(), 2.0)]
        });
        let text = m.render();
        assert!(text.contains("doska_http_requests_total{door=\"rest\",status=\"200\"} 2"));
        assert!(text.contains(
            "doska_http_request_duration_seconds_bucket{door=\"rest\",status=\"200\",le=\"0.005\"} 1"
        ));
        assert!(
            text.contains(
                "doska_http_request_duration_seconds_count{door=\"rest\",status=\"200\"} 2"
            )
        );
        assert!(text.contains("doska_test_gauge{pool=\"x\"} 2"));
    }
}
