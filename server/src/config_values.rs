//! Config values' grammar: durations (`90s`, `15m`, `1h`, `2d`) and sizes (`10M`, `512K`, `5G`),
//! and a duration key read with its default and least value. Rejects what does not parse.

use super::{ConfigError, MIB};

/// Parses `3600`, `90s`, `15m`, `1h`, `2d` into seconds.
pub fn parse_duration_secs(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        's' => (&s[..s.len() - 1], 1),
        'm' => (&s[..s.len() - 1], 60),
        'h' => (&s[..s.len() - 1], 3600),
        'd' => (&s[..s.len() - 1], 86400),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// A duration key's seconds: `value` read by [`parse_duration_secs`], or `(default, least)`'s
/// default when unset; under `least` or unreadable, an error naming the key.
pub(super) fn duration_setting(
    value: Option<&str>,
    (default, least): (u64, u64),
    key: &'static str,
) -> Result<u64, ConfigError> {
    let Some(a) = value else { return Ok(default) };
    parse_duration_secs(a)
        .filter(|d| *d >= least)
        .ok_or_else(|| ConfigError::Invalid {
            key,
            reason: format!(
                "`{a}` is not a duration of at least {least}s (e.g. {default}, 90s, 15m, 1h)"
            ),
        })
}

/// Parses `10M`, `512K`, `5G` or plain bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let upper = s.to_ascii_uppercase();
    let trimmed = upper.trim_end_matches("IB").trim_end_matches('B');
    let (num, mult) = match trimmed.chars().last()? {
        'K' => (&trimmed[..trimmed.len() - 1], 1024),
        'M' => (&trimmed[..trimmed.len() - 1], MIB),
        'G' => (&trimmed[..trimmed.len() - 1], 1024 * MIB),
        _ => (trimmed, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}
