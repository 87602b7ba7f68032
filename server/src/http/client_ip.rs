//! The client's address: the socket's peer, or — when that peer is a trusted proxy
//! (`--trusted-proxies`) — the nearest address in `X-Forwarded-For` that is not itself a trusted
//! proxy. Rejects (ignores) the header from untrusted peers, so a client cannot pick its own
//! address to dodge per-IP rate limits; unparsable entries end the walk.

use std::net::IpAddr;

use http::HeaderMap;

/// An address range: `10.0.0.0/8`, `::1/128`, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Parses a comma-separated list of addresses and CIDR ranges (`--trusted-proxies`).
pub fn parse_list(list: Option<&str>) -> Result<Vec<IpNet>, String> {
    list.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            IpNet::parse(p)
                .ok_or_else(|| format!("`{p}` is not an address or CIDR range (e.g. 10.0.0.0/8)"))
        })
        .collect()
}

impl IpNet {
    pub fn parse(s: &str) -> Option<IpNet> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            // An IPv4 range also covers the same address seen as IPv4-mapped IPv6.
            (IpAddr::V4(_), IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The client address for a request from `peer`.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    // Right to left: each hop appended the address it received from; stop at the first one that
    // is not one of ours.
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.into_iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| IpNet::parse(s).unwrap()).collect()
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().unwrap());
        h
    }

    #[test]
    fn parse_and_contain() {
        let cases = [
            ("10.0.0.0/8", "10.1.2.3", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("::1", "::1", true),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            ("127.0.0.0/8", "::ffff:127.0.0.1", true),
        ];
        for (net, ip, want) in cases {
            assert_eq!(
                IpNet::parse(net).unwrap().contains(ip.parse().unwrap()),
                want,
                "{net} {ip}"
            );
        }
        for bad in ["", "10.0.0.0/33", "::/129", "nope", "10.0.0.0/x"] {
            assert_eq!(IpNet::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn resolve_table() {
        let trusted = nets(&["127.0.0.1", "10.0.0.0/8"]);
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        let cases: [(&str, IpAddr, &str, &str); 6] = [
            (
                "untrusted peer: header ignored",
                stranger,
                "1.2.3.4",
                "203.0.113.9",
            ),
            (
                "trusted peer: the client",
                proxy,
                "198.51.100.7",
                "198.51.100.7",
            ),
            (
                "spoofed left part skipped",
                proxy,
                "6.6.6.6, 198.51.100.7",
                "198.51.100.7",
            ),
            (
                "inner proxies skipped",
                proxy,
                "198.51.100.7, 10.0.0.5",
                "198.51.100.7",
            ),
            (
                "garbage ends the walk",
                proxy,
                "198.51.100.7, junk",
                "127.0.0.1",
            ),
            (
                "all trusted: the left-most",
                proxy,
                "10.0.0.9, 10.0.0.5",
                "10.0.0.9",
            ),
        ];
        for (name, peer, header, want) in cases {
            assert_eq!(
                resolve(peer, &xff(header), &trusted).to_string(),
                want,
                "{name}"
            );
        }
        assert_eq!(resolve(proxy, &HeaderMap::new(), &trusted), proxy);
        assert_eq!(resolve(proxy, &xff("1.2.3.4"), &[]), proxy);
    }
}
