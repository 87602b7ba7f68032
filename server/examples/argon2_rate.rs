//! The ceiling for bench/auth: how many argon2id verifications one core does per second with doska's
//! own code and default cost. Prints `{"per_core": <verifications/s>, "cost": "..."}`.
//! Usage: `cargo run --release --example argon2_rate -- [seconds]`.

use std::time::{Duration, Instant};

use doska::auth::password::{Argon2Cost, Hasher, Verified, verify_blocking};

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let cost = Argon2Cost::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let hasher = Hasher::new(cost, 1).expect("default cost is valid");
    let stored = runtime
        .block_on(hasher.hash("correct horse battery staple"))
        .expect("hash");
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut n = 0u64;
    while Instant::now() < deadline {
        let v = verify_blocking("correct horse battery staple", &stored, cost);
        assert_eq!(v, Verified::Yes { rehash: false });
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    println!("{{\"per_core\": {rate:.2}, \"cost\": \"{cost:?}\"}}");
}
