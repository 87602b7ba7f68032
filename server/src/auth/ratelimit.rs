//! Token-bucket rate limits for the abuse-prone auth endpoints, per client IP and per account, and
//! the rule for failed password sign-ins (per IP and e-mail, with a per-e-mail backstop that never
//! holds back an address that has not failed). Rejects: a request whose bucket is empty, with the
//! seconds until one token is back (→ 429 `over_request_rate_limit` + `Retry-After`). Buckets sit
//! behind [`RateStore`]; [`Limiter`] keeps them in this process (one doska on its embedded
//! PostgreSQL), `buckets::SharedBuckets` in Redis or PostgreSQL, where every doska on the database
//! counts against the same ones (docs/operations.md, "Scaling out").

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// `burst` requests at once, refilled at `burst` per `per_secs` seconds. `burst == 0` disables it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub burst: u32,
    pub per_secs: u32,
}

impl Rate {
    pub const fn new(burst: u32, per_secs: u32) -> Rate {
        Rate { burst, per_secs }
    }
    /// Parses "N/SECONDS" (e.g. "30/300"), or "off".
    pub fn parse(s: &str) -> Option<Rate> {
        if s.trim() == "off" {
            return Some(Rate::new(0, 1));
        }
        let (n, secs) = s.trim().split_once('/')?;
        let r = Rate::new(n.trim().parse().ok()?, secs.trim().parse().ok()?);
        (r.per_secs > 0).then_some(r)
    }
}

/// Which endpoints share a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// POST /token?grant_type=password and /signup, per IP (every attempt counts).
    SignIn,
    /// Failed password checks per (IP, e-mail) — and per user for `current_password` on PUT /user:
    /// slows guessing one account's password without letting another address lock it.
    SignInFailure,
    /// Failed password sign-ins per e-mail, from any IP: a much higher backstop against guessing
    /// from many addresses; it holds back only addresses that have failed for that e-mail.
    SignInAccount,
    /// POST /token?grant_type=refresh_token, per IP.
    Refresh,
    /// /otp, /recover, /reauthenticate, /resend, per IP.
    Otp,
    /// Mails to one address (otp, recover), per account.
    OtpAccount,
    /// /verify, per IP.
    Verify,
    /// Anonymous sign-ups, per IP.
    Anonymous,
}

/// The configured rates (GoTrue's hosted defaults as the starting point).
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimits {
    pub enabled: bool,
    pub sign_in: Rate,
    pub sign_in_failure: Rate,
    pub sign_in_account: Rate,
    pub refresh: Rate,
    pub otp: Rate,
    pub otp_account: Rate,
    pub verify: Rate,
    pub anonymous: Rate,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            enabled: true,
            sign_in: Rate::new(30, 300),
            sign_in_failure: Rate::new(10, 300),
            sign_in_account: Rate::new(100, 300),
            refresh: Rate::new(150, 300),
            otp: Rate::new(30, 3600),
            otp_account: Rate::new(3, 3600),
            verify: Rate::new(30, 300),
            anonymous: Rate::new(30, 3600),
        }
    }
}

impl RateLimits {
    /// Parses `--rate-limits`: `off`, or `name=N/SECONDS` pairs (comma-separated) over the defaults,
    /// names as the fields (`sign_in`, `sign_in_failure`, `sign_in_account`, `refresh`, `otp`, `otp_account`, `verify`,
    /// `anonymous`), each value also accepting `off`.
    pub fn parse(spec: &str) -> Result<RateLimits, String> {
        let mut limits = RateLimits::default();
        let spec = spec.trim();
        if spec == "off" {
            limits.enabled = false;
            return Ok(limits);
        }
        for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("rate limit {pair:?} is not name=N/SECONDS"))?;
            let rate = Rate::parse(value)
                .ok_or_else(|| format!("rate limit {pair:?}: value is not N/SECONDS or off"))?;
            let slot = match name.trim() {
                "sign_in" => &mut limits.sign_in,
                "sign_in_failure" => &mut limits.sign_in_failure,
                "sign_in_account" => &mut limits.sign_in_account,
                "refresh" => &mut limits.refresh,
                "otp" => &mut limits.otp,
                "otp_account" => &mut limits.otp_account,
                "verify" => &mut limits.verify,
                "anonymous" => &mut limits.anonymous,
                other => return Err(format!("unknown rate limit {other:?}")),
            };
            *slot = rate;
        }
        Ok(limits)
    }

    pub fn rate(&self, class: Class) -> Rate {
        match class {
            Class::SignIn => self.sign_in,
            Class::SignInFailure => self.sign_in_failure,
            Class::SignInAccount => self.sign_in_account,
            Class::Refresh => self.refresh,
            Class::Otp => self.otp,
            Class::OtpAccount => self.otp_account,
            Class::Verify => self.verify,
            Class::Anonymous => self.anonymous,
        }
    }
}

/// How a bucket stands when looked at without taking from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Full: nothing was recorded against the key within its window.
    Untouched,
    /// Tokens were taken, at least one is left.
    Used,
}

/// Where the buckets live. [`Limiter`] keeps them in this process; `buckets::SharedBuckets`, shared
/// by every doska on the database (Redis, else a PostgreSQL table), implements the same two calls.
#[async_trait::async_trait]
pub trait RateStore: Send + Sync {
    /// Looks at `class`'s bucket for `key` without taking from it; `Err(secs)` until a token is back
    /// when it is empty.
    async fn check(&self, class: Class, key: &str) -> Result<Fill, u64>;
    /// Takes one token (a request, or a failure, happened); `Err(secs)` when there was none.
    async fn record(&self, class: Class, key: &str) -> Result<(), u64>;
}

/// The key of a failed-sign-in bucket for one client IP and one (normalized) e-mail.
fn ip_email(ip: &str, email: &str) -> String {
    format!("{ip} {email}")
}

/// Before a password sign-in's hash is checked: refuses when this IP has failed too often for this
/// e-mail, or when the e-mail's backstop is empty and this IP is one of those that failed for it.
/// A client that has not failed for the e-mail in the window (the teacher at her own address) is
/// never held back by other addresses' failures.
pub async fn sign_in_allowed(store: &dyn RateStore, ip: &str, email: &str) -> Result<(), u64> {
    let pair = store
        .check(Class::SignInFailure, &ip_email(ip, email))
        .await?;
    match store.check(Class::SignInAccount, email).await {
        Err(secs) if pair == Fill::Used => Err(secs),
        _ => Ok(()),
    }
}

/// After a wrong password (or an unknown e-mail): counts the failure for the pair and the e-mail.
pub async fn sign_in_failed(store: &dyn RateStore, ip: &str, email: &str) {
    // Either bucket being empty already is fine: the next attempt is refused by `sign_in_allowed`.
    let _ = store
        .record(Class::SignInFailure, &ip_email(ip, email))
        .await;
    let _ = store.record(Class::SignInAccount, email).await;
}

/// How a bucket of `rate` stands given the tokens it held before a take (refilled to now): empty
/// (`Err(secs)` until one token is back), full, or used. Shared stores answer with those tokens.
pub fn fill_of(rate: Rate, tokens: f64) -> Result<Fill, u64> {
    let per_sec = f64::from(rate.burst) / f64::from(rate.per_secs.max(1));
    if tokens < 1.0 {
        return Err(((1.0 - tokens) / per_sec).ceil().max(1.0) as u64);
    }
    Ok(if tokens >= f64::from(rate.burst) {
        Fill::Untouched
    } else {
        Fill::Used
    })
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets; keys are kept only while they are not full, so memory follows recent traffic.
pub struct Limiter {
    limits: RateLimits,
    buckets: Mutex<HashMap<(Class, String), Bucket>>,
}

/// Past this many keys, full buckets are dropped on the next check.
const PRUNE_AT: usize = 10_000;

impl Limiter {
    pub fn new(limits: RateLimits) -> Limiter {
        Limiter {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Looks at (`take == false`) or takes one token from (`take == true`) `class`'s bucket for
    /// `key` at `now`.
    fn at(&self, class: Class, key: &str, now: Instant, take: bool) -> Result<Fill, u64> {
        let rate = self.limits.rate(class);
        if !self.limits.enabled || rate.burst == 0 {
            return Ok(Fill::Untouched);
        }
        let burst = f64::from(rate.burst);
        let per_sec = burst / f64::from(rate.per_secs);
        // A poisoned lock only means another request panicked mid-update; the map is still usable.
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= PRUNE_AT {
            buckets.retain(|(c, _), b| {
                let r = self.limits.rate(*c);
                let full = b.tokens
                    + now.duration_since(b.at).as_secs_f64() * f64::from(r.burst)
                        / f64::from(r.per_secs.max(1));
                full < f64::from(r.burst)
            });
        }
        let entry = (class, key.to_owned());
        let Some(b) = buckets.get_mut(&entry) else {
            if take {
                buckets.insert(
                    entry,
                    Bucket {
                        tokens: burst - 1.0,
                        at: now,
                    },
                );
            }
            return Ok(Fill::Untouched);
        };
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec).min(burst);
        b.at = now;
        let fill = fill_of(rate, b.tokens)?;
        if take {
            b.tokens -= 1.0;
        }
        Ok(fill)
    }

    /// [`RateStore::check`] without waiting (the store is this process).
    pub fn check_now(&self, class: Class, key: &str) -> Result<Fill, u64> {
        self.at(class, key, Instant::now(), false)
    }

    /// [`RateStore::record`] without waiting.
    pub fn record_now(&self, class: Class, key: &str) -> Result<(), u64> {
        self.at(class, key, Instant::now(), true).map(drop)
    }
}

#[async_trait::async_trait]
impl RateStore for Limiter {
    async fn check(&self, class: Class, key: &str) -> Result<Fill, u64> {
        self.check_now(class, key)
    }

    async fn record(&self, class: Class, key: &str) -> Result<(), u64> {
        self.record_now(class, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    impl Limiter {
        fn check_at(&self, class: Class, key: &str, now: Instant) -> Result<(), u64> {
            self.at(class, key, now, true).map(drop)
        }
    }

    fn limiter(rate: Rate) -> Limiter {
        Limiter::new(RateLimits {
            sign_in: rate,
            ..RateLimits::default()
        })
    }

    #[test]
    fn burst_then_refuse_then_refill() {
        let l = limiter(Rate::new(3, 30));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check_at(Class::SignIn, "1.2.3.4", t0), Ok(()));
        }
        assert_eq!(l.check_at(Class::SignIn, "1.2.3.4", t0), Err(10));
        // other keys and classes have their own buckets
        assert_eq!(l.check_at(Class::SignIn, "5.6.7.8", t0), Ok(()));
        assert_eq!(l.check_at(Class::Refresh, "1.2.3.4", t0), Ok(()));
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(l.check_at(Class::SignIn, "1.2.3.4", t1), Ok(()));
        assert!(l.check_at(Class::SignIn, "1.2.3.4", t1).is_err());
    }

    #[test]
    fn check_looks_without_taking() {
        let l = limiter(Rate::new(2, 60));
        assert_eq!(l.check_now(Class::SignIn, "k"), Ok(Fill::Untouched));
        assert_eq!(l.check_now(Class::SignIn, "k"), Ok(Fill::Untouched));
        l.record_now(Class::SignIn, "k").unwrap();
        assert_eq!(l.check_now(Class::SignIn, "k"), Ok(Fill::Used));
        l.record_now(Class::SignIn, "k").unwrap();
        assert!(l.check_now(Class::SignIn, "k").is_err());
        assert!(l.record_now(Class::SignIn, "k").is_err());
    }

    /// The lockout an attacker could cause before: wrong passwords for the teacher's e-mail from
    /// another address lock out that address only, and the backstop never holds back an address
    /// that has not failed.
    #[tokio::test]
    async fn failed_sign_ins_lock_the_pair_not_the_account() {
        let l = Limiter::new(RateLimits {
            sign_in_failure: Rate::new(10, 300),
            sign_in_account: Rate::new(30, 300),
            ..RateLimits::default()
        });
        let (attacker, teacher, email) = ("6.6.6.6", "10.0.0.7", "t@school.test");
        for _ in 0..10 {
            assert_eq!(sign_in_allowed(&l, attacker, email).await, Ok(()));
            sign_in_failed(&l, attacker, email).await;
        }
        assert!(sign_in_allowed(&l, attacker, email).await.is_err());
        assert_eq!(sign_in_allowed(&l, teacher, email).await, Ok(()));
        // Other addresses of the attacker drain the backstop …
        for i in 0..30 {
            let ip = format!("7.7.7.{i}");
            if sign_in_allowed(&l, &ip, email).await.is_ok() {
                sign_in_failed(&l, &ip, email).await;
            }
        }
        assert!(l.check_now(Class::SignInAccount, email).is_err());
        assert!(sign_in_allowed(&l, "7.7.7.1", email).await.is_err());
        // … which still does not hold back the teacher, nor another e-mail from the attacker.
        assert_eq!(sign_in_allowed(&l, teacher, email).await, Ok(()));
        assert_eq!(
            sign_in_allowed(&l, "7.7.7.1", "other@school.test").await,
            Ok(())
        );
        // Once the teacher mistypes while the backstop is empty, she waits too.
        sign_in_failed(&l, teacher, email).await;
        assert!(sign_in_allowed(&l, teacher, email).await.is_err());
    }

    #[test]
    fn disabled_never_refuses() {
        let l = Limiter::new(RateLimits {
            enabled: false,
            ..RateLimits::default()
        });
        for _ in 0..1000 {
            assert!(l.record_now(Class::SignIn, "k").is_ok());
        }
        let l = limiter(Rate::parse("off").unwrap());
        for _ in 0..1000 {
            assert!(l.record_now(Class::SignIn, "k").is_ok());
        }
    }

    #[test]
    fn parse_rates() {
        assert_eq!(Rate::parse("30/300"), Some(Rate::new(30, 300)));
        assert_eq!(Rate::parse(" 5 / 60 "), Some(Rate::new(5, 60)));
        for bad in ["", "30", "30/0", "x/5", "-1/5"] {
            assert_eq!(Rate::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn parse_limit_specs() {
        assert!(!RateLimits::parse("off").unwrap().enabled);
        let l = RateLimits::parse("sign_in=5/60, refresh=off").unwrap();
        assert!(l.enabled);
        assert_eq!(l.sign_in, Rate::new(5, 60));
        assert_eq!(l.refresh.burst, 0);
        assert_eq!(l.verify, RateLimits::default().verify);
        assert_eq!(RateLimits::parse("").unwrap(), RateLimits::default());
        for bad in ["sign_in", "nope=1/1", "sign_in=1", "sign_in=1/0"] {
            assert!(RateLimits::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn full_buckets_are_pruned() {
        let l = limiter(Rate::new(2, 1));
        let t0 = Instant::now();
        for i in 0..PRUNE_AT {
            l.check_at(Class::SignIn, &i.to_string(), t0).unwrap();
        }
        let later = t0 + Duration::from_secs(5);
        l.check_at(Class::SignIn, "new", later).unwrap();
        assert_eq!(l.buckets.lock().unwrap().len(), 1);
    }
}
