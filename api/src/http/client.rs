//! Who the client is, for the per-client limits: the TCP peer, or, when the peer is one of the
//! configured reverse proxies, the address that proxy says it forwarded for (ADR-0024).
//!
//! `X-Forwarded-For` and `Forwarded` are believed only from a trusted proxy, and read from the
//! right: each proxy appends the address it received from, so the rightmost address that is not a
//! trusted proxy is the first one no proxy of ours vouches for. Anything to its left was written
//! by the client and may be forged. IPv6 clients are keyed by their /64, the smallest block one
//! subscriber is usually given: one subscriber's many addresses share one limit.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

/// The reverse proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// A trusted-proxy entry that is neither an address nor a CIDR range.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is neither an IP address nor a CIDR range")]
pub struct InvalidProxy(String);

impl TrustedProxies {
    /// Parses a comma-separated list of addresses and CIDR ranges (`10.0.0.0/8, ::1`); empty
    /// trusts nobody.
    ///
    /// # Errors
    /// [`InvalidProxy`] naming the first entry that does not parse.
    pub fn parse(list: &str) -> Result<Self, InvalidProxy> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| InvalidProxy(entry.to_owned()))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether `address` is a trusted proxy.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client behind `peer`: the peer itself unless it is a trusted proxy, else the
    /// rightmost forwarded address that is not one (the leftmost when all are).
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let chain = forwarded_chain(headers);
        chain
            .iter()
            .rev()
            .copied()
            .find(|address| !self.contains(*address))
            .or_else(|| chain.first().copied())
            .unwrap_or(peer)
    }
}

/// The addresses a request passed through, as its forwarding headers list them, oldest first:
/// `Forwarded`'s `for=` parameters when present (RFC 7239), else `X-Forwarded-For`. Entries that
/// are not addresses (`unknown`, obfuscated identifiers) end the chain there: nothing left of
/// them can be placed.
fn forwarded_chain(headers: &HeaderMap) -> Vec<IpAddr> {
    let forwarded: Vec<&str> = headers
        .get_all("forwarded")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                name.eq_ignore_ascii_case("for").then_some(value)
            })
        })
        .collect();
    let entries: Vec<Option<IpAddr>> = if forwarded.is_empty() {
        headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(parse_node)
            .collect()
    } else {
        forwarded.into_iter().map(parse_node).collect()
    };
    let usable = entries
        .iter()
        .rposition(Option::is_none)
        .map_or(0, |i| i + 1);
    entries[usable..]
        .iter()
        .flatten()
        .copied()
        .map(canonical)
        .collect()
}

/// One node of a forwarding header: `192.0.2.1`, `192.0.2.1:4711`, `"[2001:db8::1]:4711"`,
/// `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Ok(address) = node.parse::<IpAddr>() {
        return Some(address);
    }
    if let Ok(socket) = node.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    let inner = node.strip_prefix('[')?.split(']').next()?;
    inner.parse().ok()
}

/// IPv4-mapped IPv6 addresses as IPv4, so one client has one form.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

/// The key a client's limits count under: an IPv4 address as it is, an IPv6 address by its /64.
pub fn limit_key(address: IpAddr) -> IpAddr {
    match canonical(address) {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1_u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// The client a request comes from, as its limits key it ([`limit_key`]); absent when the router
/// runs without a listener (in-process tests).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<IpAddr>);

impl<S> FromRequestParts<S> for ClientAddress
where
    S: Send + Sync,
    TrustedProxies: FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        let proxies = TrustedProxies::from_ref(state);
        Ok(Self(peer.map(|peer| {
            limit_key(proxies.client(peer, &parts.headers))
        })))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let spoofed = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(
            proxies.client(ip("198.51.100.7"), &spoofed),
            ip("198.51.100.7")
        );
        let nobody = TrustedProxies::default();
        assert_eq!(nobody.client(ip("10.0.0.1"), &spoofed), ip("10.0.0.1"));
    }

    #[test]
    fn a_trusted_proxy_names_the_rightmost_address_it_does_not_trust() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 192.0.2.10").unwrap();
        // The client forged the first entry; the edge proxy appended the real one.
        let forged = headers(&[("x-forwarded-for", "203.0.113.9, 198.51.100.7, 10.1.2.3")]);
        assert_eq!(proxies.client(ip("10.0.0.1"), &forged), ip("198.51.100.7"));
        let rfc7239 = headers(&[(
            "forwarded",
            "for=203.0.113.9;proto=https, for=\"[2001:db8::7]:4711\", for=192.0.2.10",
        )]);
        assert_eq!(
            proxies.client(ip("192.0.2.10"), &rfc7239),
            ip("2001:db8::7")
        );
        let only_proxies = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.2.3")]);
        assert_eq!(
            proxies.client(ip("10.0.0.1"), &only_proxies),
            ip("10.9.9.9")
        );
        assert_eq!(
            proxies.client(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        let unknown = headers(&[("x-forwarded-for", "203.0.113.9, unknown")]);
        assert_eq!(proxies.client(ip("10.0.0.1"), &unknown), ip("10.0.0.1"));
    }

    #[test]
    fn ipv6_clients_share_a_limit_per_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(
            limit_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            limit_key(ip("2001:db8:1:2::1")),
            limit_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            limit_key(ip("2001:db8:1:2::1")),
            limit_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(limit_key(ip("::ffff:198.51.100.7")), ip("198.51.100.7"));
        assert_eq!(limit_key(ip("198.51.100.7")), ip("198.51.100.7"));
    }

    #[test]
    fn proxy_lists_parse_addresses_and_ranges_and_name_a_bad_entry() {
        assert_eq!(
            TrustedProxies::parse(" ").unwrap(),
            TrustedProxies::default()
        );
        assert!(TrustedProxies::parse("10.0.0.1, fd00::/8").is_ok());
        let error = TrustedProxies::parse("10.0.0.1, proxy.internal").unwrap_err();
        assert!(error.to_string().contains("proxy.internal"));
    }
}
