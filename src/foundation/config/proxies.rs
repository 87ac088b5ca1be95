//! `IRIA_TRUSTED_PROXIES`: which proxies stand in front of the app, and so which address of a
//! request is its client's.
//!
//! A proxy appends the address of the peer it got the request from to `X-Forwarded-For`; what
//! was in the header before came from further away and may have been written by the client
//! itself. So the header is read from the right: starting with the connection's peer, every
//! address that is one of our proxies is stepped over, and the first one that is not is the
//! client's. Reading from the left, as many do, lets a client choose its address by sending a
//! header of its own (the proxy appends to it).

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// The proxies in front of the app.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TrustedProxies {
    /// None: the client is the connection's peer, and `X-Forwarded-For` is ignored.
    #[default]
    None,
    /// This many proxies, one behind the other (`1`: one load balancer): the client is the
    /// address that many steps from the right, counting the peer as the first.
    Hops(usize),
    /// Proxies known by address: every address in these networks is stepped over.
    Networks(Vec<IpNet>),
}

impl TrustedProxies {
    /// Reads the setting: a number of hops (`1`; `0` means none), or a comma-separated list of
    /// networks (`10.0.0.0/8`) and single addresses (`127.0.0.1`, `::1`).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(Self::None);
        }
        if let Ok(hops) = raw.parse::<usize>() {
            return Ok(if hops == 0 {
                Self::None
            } else {
                Self::Hops(hops)
            });
        }
        let mut networks = Vec::new();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let network = entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!(
                        "expected a number of proxies (such as 1) or a comma-separated list of \
                         networks and addresses (such as 10.0.0.0/8,127.0.0.1), got {entry:?}"
                    )
                })?;
            networks.push(network.trunc());
        }
        Ok(Self::Networks(networks))
    }

    /// Whether `X-Forwarded-For` is read at all.
    pub fn is_none(&self) -> bool {
        *self == Self::None
    }

    /// The client's address, from the connection's `peer` and the values of the
    /// `X-Forwarded-For` headers in the order received (several headers make one list).
    /// The walk goes from the right and stops at the first address that is not a trusted proxy;
    /// a hop that is not an address stops it too, and the last address reached is the answer
    /// (what stands left of an unreadable hop cannot be told apart from a client's invention).
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        let mut current = peer.to_canonical();
        let mut hops = forwarded_for
            .iter()
            .flat_map(|value| value.split(','))
            .rev()
            .map(parse_hop);
        let mut passed = 0usize;
        loop {
            let is_proxy = match self {
                Self::None => false,
                Self::Hops(n) => passed < *n,
                Self::Networks(networks) => networks.iter().any(|n| n.contains(&current)),
            };
            if !is_proxy {
                return current;
            }
            match hops.next() {
                Some(Some(next)) => {
                    current = next;
                    passed += 1;
                }
                // No hop left (the request started at a proxy, or came through fewer of them
                // than configured), or an unreadable one: the last address reached.
                Some(None) | None => return current,
            }
        }
    }
}

/// One hop of `X-Forwarded-For`: an address, perhaps with a port (`192.0.2.1:4711`,
/// `[2001:db8::1]:4711`) as some proxies write it. `None` for anything else (`unknown`, garbage).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .or_else(|_| {
            hop.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or("")
                .parse::<IpAddr>()
        })
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    const PEER: &str = "10.0.0.5";

    fn walk(setting: &str, header: &[&str]) -> String {
        TrustedProxies::parse(setting)
            .expect("setting")
            .client_ip(ip(PEER), header)
            .to_string()
    }

    #[test]
    fn the_setting_is_a_number_of_hops_or_a_list_of_networks() {
        assert_eq!(TrustedProxies::parse(""), Ok(TrustedProxies::None));
        assert_eq!(TrustedProxies::parse("0"), Ok(TrustedProxies::None));
        assert_eq!(TrustedProxies::parse(" 2 "), Ok(TrustedProxies::Hops(2)));
        assert_eq!(
            TrustedProxies::parse("10.0.0.0/8, 127.0.0.1,::1"),
            Ok(TrustedProxies::Networks(vec![
                "10.0.0.0/8".parse().expect("net"),
                "127.0.0.1/32".parse().expect("net"),
                "::1/128".parse().expect("net"),
            ]))
        );
        // A host part in the network is dropped, as `ip route` does.
        assert_eq!(
            TrustedProxies::parse("10.1.2.3/8"),
            Ok(TrustedProxies::Networks(vec!["10.0.0.0/8"
                .parse()
                .expect("net")]))
        );
        for bad in ["-1", "one", "10.0.0.0/33", "10.0.0.0/8,x", "1.5"] {
            let err = TrustedProxies::parse(bad).expect_err(bad);
            assert!(err.contains("number of proxies"), "{bad}: {err}");
        }
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() {
        assert_eq!(walk("", &["203.0.113.7"]), PEER);
        assert_eq!(walk("0", &["203.0.113.7, 198.51.100.1"]), PEER);
    }

    #[test]
    fn one_hop_takes_the_address_the_proxy_appended_not_what_the_client_prepended() {
        // The proxy appends the client's real address; the client wrote the rest.
        assert_eq!(walk("1", &["6.6.6.6", "203.0.113.7"]), "203.0.113.7");
        assert_eq!(walk("1", &["6.6.6.6, 7.7.7.7, 203.0.113.7"]), "203.0.113.7");
        assert_eq!(walk("1", &["203.0.113.7"]), "203.0.113.7");
        // No header: the request came to the proxy's address straight.
        assert_eq!(walk("1", &[]), PEER);
    }

    #[test]
    fn several_hops_step_over_that_many_proxies() {
        assert_eq!(
            walk("2", &["6.6.6.6, 203.0.113.7, 10.0.0.9"]),
            "203.0.113.7"
        );
        // Fewer hops than proxies configured: the farthest address there is.
        assert_eq!(walk("3", &["203.0.113.7"]), "203.0.113.7");
    }

    #[test]
    fn networks_step_over_every_trusted_address_from_the_right() {
        let setting = "10.0.0.0/8,192.168.0.0/16";
        assert_eq!(
            walk(setting, &["6.6.6.6, 203.0.113.7, 192.168.1.1, 10.1.1.1"]),
            "203.0.113.7"
        );
        // A client that prepends a trusted-looking address gains nothing: the walk stops at
        // the first untrusted one from the right.
        assert_eq!(
            walk(setting, &["10.9.9.9, 203.0.113.7, 10.1.1.1"]),
            "203.0.113.7"
        );
        // A peer that is not a trusted proxy is the client, whatever it sends.
        let direct = TrustedProxies::parse(setting)
            .expect("setting")
            .client_ip(ip("198.51.100.4"), &["6.6.6.6"]);
        assert_eq!(direct.to_string(), "198.51.100.4");
        // Everything trusted (a health check from the proxy itself): the farthest one.
        assert_eq!(walk(setting, &["10.2.2.2"]), "10.2.2.2");
    }

    #[test]
    fn an_unreadable_hop_stops_the_walk_at_the_last_address_reached() {
        assert_eq!(walk("2", &["203.0.113.7, unknown, 10.0.0.9"]), "10.0.0.9");
        assert_eq!(walk("1", &["203.0.113.7, garbage"]), PEER);
        assert_eq!(
            walk("10.0.0.0/8", &["6.6.6.6, <script>, 10.3.3.3"]),
            "10.3.3.3"
        );
    }

    #[test]
    fn hops_with_ports_and_mapped_addresses_are_read() {
        assert_eq!(walk("1", &["203.0.113.7:4711"]), "203.0.113.7");
        assert_eq!(walk("1", &["[2001:db8::1]:4711"]), "2001:db8::1");
        assert_eq!(walk("1", &["[2001:db8::1]"]), "2001:db8::1");
        assert_eq!(walk("1", &["::ffff:203.0.113.7"]), "203.0.113.7");
        let mapped_peer = TrustedProxies::parse("127.0.0.1")
            .expect("setting")
            .client_ip(ip("::ffff:127.0.0.1"), &["203.0.113.7"]);
        assert_eq!(mapped_peer.to_string(), "203.0.113.7");
    }
}
