//! Password hashing: argon2id PHC strings with configurable cost, computed on a fixed pool of
//! dedicated threads so a flood of sign-ins cannot take every core (and each thread starts its next
//! hash the moment one ends, with no hop through the async runtime). Verifies imported argon2 and bcrypt hashes and says
//! when a stored hash should be replaced by a fresh argon2id one.
//! Rejects: stored hashes it cannot parse (they never match), invalid cost parameters at start-up.

use std::sync::{Arc, Mutex, mpsc};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Cost parameters for argon2id (OWASP's minimum recommendation by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Cost {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for Argon2Cost {
    fn default() -> Self {
        Argon2Cost {
            m_kib: 19 * 1024,
            t: 2,
            p: 1,
        }
    }
}

impl Argon2Cost {
    /// Parses `--argon2`: `m=KIB,t=ITERATIONS,p=LANES` (any subset, over the defaults).
    pub fn parse(spec: &str) -> Result<Argon2Cost, String> {
        let mut c = Argon2Cost::default();
        for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("argon2 parameter {pair:?} is not key=value"))?;
            let v: u32 = v
                .trim()
                .parse()
                .map_err(|_| format!("argon2 parameter {pair:?} is not a number"))?;
            match k.trim() {
                "m" => c.m_kib = v,
                "t" => c.t = v,
                "p" => c.p = v,
                other => return Err(format!("unknown argon2 parameter {other:?}")),
            }
        }
        Params::new(c.m_kib, c.t, c.p, None).map_err(|e| format!("argon2 parameters: {e}"))?;
        Ok(c)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The argon2 parameters are out of range (a configuration mistake).
    #[error("invalid argon2 parameters: {0}")]
    BadParams(String),
    /// Hashing failed or its blocking task died.
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

/// The outcome of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    No,
    /// Matches; `rehash` asks the caller to store a fresh argon2id hash (bcrypt import, old cost).
    Yes {
        rehash: bool,
    },
}

/// Hashes and verifies passwords; cheap to clone.
#[derive(Clone)]
pub struct Hasher {
    params: Params,
    cost: Argon2Cost,
    pool: Arc<HashPool>,
    /// Hash of a random password, verified against when the user is unknown so that an unknown
    /// e-mail costs the same time as a wrong password.
    dummy: Arc<str>,
}

/// Pool size by default: every core but one, at least one.
pub fn default_pool_size() -> usize {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    cores.saturating_sub(1).max(1)
}

impl Hasher {
    pub fn new(cost: Argon2Cost, pool_size: usize) -> Result<Hasher, PasswordError> {
        let params = Params::new(cost.m_kib, cost.t, cost.p, None)
            .map_err(|e| PasswordError::BadParams(e.to_string()))?;
        let random: [u8; 24] = rand::random();
        let dummy = hash_blocking(&params, &hex::encode(random))?;
        Ok(Hasher {
            params,
            cost,
            pool: Arc::new(HashPool::new(pool_size.max(1))?),
            dummy: dummy.into(),
        })
    }

    pub fn cost(&self) -> Argon2Cost {
        self.cost
    }

    /// A new argon2id PHC string for `password`.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let params = self.params.clone();
        let password = password.to_owned();
        self.run(move || hash_blocking(&params, &password)).await?
    }

    /// Checks `password` against `stored`; `None` (unknown user, or a user without a password)
    /// still spends one verification on the dummy hash and answers `No`.
    pub async fn verify(
        &self,
        password: &str,
        stored: Option<&str>,
    ) -> Result<Verified, PasswordError> {
        let password = password.to_owned();
        let (stored, real) = match stored {
            Some(s) if !s.is_empty() => (s.to_owned(), true),
            _ => (self.dummy.to_string(), false),
        };
        let cost = self.cost;
        let verified = self
            .run(move || verify_blocking(&password, &stored, cost))
            .await?;
        Ok(if real { verified } else { Verified::No })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pool.submit(Box::new(move || {
            // The caller may have gone (request cancelled): then nobody wants the answer.
            let _ = tx.send(f());
        }))?;
        rx.await
            .map_err(|_| PasswordError::Hashing("the hashing thread died".into()))
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// N long-lived threads taking jobs from one queue. Dropping the pool closes the queue; the
/// threads finish what they hold and exit.
struct HashPool {
    queue: Mutex<mpsc::Sender<Job>>,
}

impl HashPool {
    fn new(threads: usize) -> Result<HashPool, PasswordError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("doska-hash-{i}"))
                .spawn(move || {
                    loop {
                        // Hold the lock only to take a job, never while hashing.
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        match job {
                            // A panicking job drops its answer channel (the caller sees an
                            // error); the thread lives on for the next one.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| {
                    PasswordError::Hashing(format!("cannot start a hashing thread: {e}"))
                })?;
        }
        Ok(HashPool {
            queue: Mutex::new(tx),
        })
    }

    fn submit(&self, job: Job) -> Result<(), PasswordError> {
        self.queue
            .lock()
            .map_err(|_| PasswordError::Hashing("hashing queue poisoned".into()))?
            .send(job)
            .map_err(|_| PasswordError::Hashing("hashing threads are gone".into()))
    }
}

fn argon2id(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_blocking(params: &Params, password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| PasswordError::Hashing(e.to_string()))?;
    argon2id(params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hashing(e.to_string()))
}

/// Verifies against an argon2 (any variant) PHC string or a bcrypt modular string.
pub fn verify_blocking(password: &str, stored: &str, cost: Argon2Cost) -> Verified {
    if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$") {
        return match bcrypt::verify(password, stored) {
            Ok(true) => Verified::Yes { rehash: true },
            _ => Verified::No,
        };
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return Verified::No;
    };
    // Argon2::default() verifies any argon2 variant using the parameters embedded in the hash.
    if Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_err()
    {
        return Verified::No;
    }
    let current = parsed.algorithm.as_str() == "argon2id"
        && Params::try_from(&parsed)
            .map(|p| p.m_cost() == cost.m_kib && p.t_cost() == cost.t && p.p_cost() == cost.p)
            .unwrap_or(false);
    Verified::Yes { rehash: !current }
}

/// True when `s` looks like a hash doska can verify (for admin imports).
pub fn is_supported_hash(s: &str) -> bool {
    if s.starts_with("$2a$") || s.starts_with("$2b$") || s.starts_with("$2y$") {
        return s.len() == 60;
    }
    PasswordHash::new(s)
        .map(|h| h.algorithm.as_str().starts_with("argon2"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Argon2Cost {
        Argon2Cost {
            m_kib: 1024,
            t: 1,
            p: 1,
        }
    }

    #[tokio::test]
    async fn hash_then_verify_round_trips() {
        let h = Hasher::new(cheap(), 1).unwrap();
        let stored = h.hash("correct horse").await.unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert_eq!(
            h.verify("correct horse", Some(&stored)).await.unwrap(),
            Verified::Yes { rehash: false }
        );
        assert_eq!(
            h.verify("wrong horse", Some(&stored)).await.unwrap(),
            Verified::No
        );
    }

    #[tokio::test]
    async fn unknown_user_never_matches_even_the_dummy() {
        let h = Hasher::new(cheap(), 1).unwrap();
        assert_eq!(h.verify("", None).await.unwrap(), Verified::No);
        assert_eq!(h.verify("x", Some("")).await.unwrap(), Verified::No);
    }

    #[test]
    fn bcrypt_import_verifies_and_asks_for_rehash() {
        let stored = bcrypt::hash("s3cret-pass", 4).unwrap();
        assert!(is_supported_hash(&stored));
        assert_eq!(
            verify_blocking("s3cret-pass", &stored, cheap()),
            Verified::Yes { rehash: true }
        );
        assert_eq!(verify_blocking("other", &stored, cheap()), Verified::No);
    }

    #[test]
    fn other_cost_or_variant_asks_for_rehash() {
        let params = Params::new(2048, 1, 1, None).unwrap();
        let stored = hash_blocking(&params, "pw-123456").unwrap();
        assert_eq!(
            verify_blocking("pw-123456", &stored, cheap()),
            Verified::Yes { rehash: true }
        );
        assert_eq!(
            verify_blocking(
                "pw-123456",
                &stored,
                Argon2Cost {
                    m_kib: 2048,
                    t: 1,
                    p: 1
                }
            ),
            Verified::Yes { rehash: false }
        );
    }

    #[test]
    fn garbage_hashes_never_match() {
        for s in ["", "plain", "$argon2id$", "$2b$04$short", "$md5$abc"] {
            assert_eq!(verify_blocking("plain", s, cheap()), Verified::No, "{s}");
            assert!(!is_supported_hash(s), "{s}");
        }
    }

    #[test]
    fn bad_params_are_rejected() {
        assert!(
            Hasher::new(
                Argon2Cost {
                    m_kib: 1,
                    t: 0,
                    p: 1
                },
                1
            )
            .is_err()
        );
    }

    #[test]
    fn parse_cost_specs() {
        assert_eq!(Argon2Cost::parse("").unwrap(), Argon2Cost::default());
        assert_eq!(
            Argon2Cost::parse("m=65536, t=3,p=4").unwrap(),
            Argon2Cost {
                m_kib: 65536,
                t: 3,
                p: 4
            }
        );
        for bad in ["m", "m=x", "q=1", "t=0", "m=1"] {
            assert!(Argon2Cost::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_is_owasp() {
        assert_eq!(
            Argon2Cost::default(),
            Argon2Cost {
                m_kib: 19456,
                t: 2,
                p: 1
            }
        );
        assert!(default_pool_size() >= 1);
    }
}
