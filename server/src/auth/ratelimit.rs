//! Token-bucket rate limits for the abuse-prone auth endpoints, per client IP and per account.
//! Rejects: a request whose bucket is empty, with the seconds until one token is back
//! (→ 429 `over_request_rate_limit` + `Retry-After`). Buckets live in this process; several doska
//! processes behind a balancer each enforce their own share (see design.md, "Scale past one machine").

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
    /// POST /token?grant_type=password and /signup, per IP.
    SignIn,
    /// POST /token?grant_type=password, per account (e-mail): slows guessing one password from
    /// many IPs.
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
            sign_in_account: Rate::new(10, 300),
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
    /// names as the fields (`sign_in`, `sign_in_account`, `refresh`, `otp`, `otp_account`, `verify`,
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
            Class::SignInAccount => self.sign_in_account,
            Class::Refresh => self.refresh,
            Class::Otp => self.otp,
            Class::OtpAccount => self.otp_account,
            Class::Verify => self.verify,
            Class::Anonymous => self.anonymous,
        }
    }
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

    /// Takes one token from `class`'s bucket for `key`; `Err(secs)` when empty.
    pub fn check(&self, class: Class, key: &str) -> Result<(), u64> {
        self.check_at(class, key, Instant::now())
    }

    fn check_at(&self, class: Class, key: &str, now: Instant) -> Result<(), u64> {
        let rate = self.limits.rate(class);
        if !self.limits.enabled || rate.burst == 0 {
            return Ok(());
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
        let b = buckets.entry((class, key.to_owned())).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / per_sec).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
    fn disabled_never_refuses() {
        let l = Limiter::new(RateLimits {
            enabled: false,
            ..RateLimits::default()
        });
        for _ in 0..1000 {
            assert!(l.check(Class::SignIn, "k").is_ok());
        }
        let l = limiter(Rate::parse("off").unwrap());
        for _ in 0..1000 {
            assert!(l.check(Class::SignIn, "k").is_ok());
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
