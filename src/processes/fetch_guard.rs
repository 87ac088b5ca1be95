//! The rules of an outgoing fetch whose target a third party can steer (the site's feed can
//! redirect, its host name can be made to resolve anywhere): no loopback, private, link-local or
//! metadata address, except the configured URL's own host; at most [`MAX_REDIRECTS`] redirects,
//! to http(s) only.
//!
//! The check sits where the address is known: in the resolver for host names (so a name that
//! resolves to 127.0.0.1 is refused after resolution, and the connection uses exactly the
//! addresses checked: no second look-up to rebind) and in the redirect policy for IP literals,
//! which never reach the resolver.

use std::net::{IpAddr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect::{Attempt, Policy};

use crate::foundation::net::is_public;

/// The most redirects followed from the configured URL.
pub const MAX_REDIRECTS: usize = 3;

/// Why a fetch was refused; shown in the feed's last error and the command's output.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{0} resolves only to loopback, private or link-local addresses, which a feed may not lead to")]
    PrivateName(String),
    #[error("a redirect to {0}, a loopback, private or link-local address, was refused")]
    PrivateAddress(String),
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
    #[error("a redirect to a {0}: URL was refused (only http and https)")]
    Scheme(String),
}

/// What the configured URL lets through besides public addresses: when its host is itself
/// private (an IP literal, or a name that resolves only to private addresses, such as a feed on
/// the operator's network or `localhost`), exactly those addresses, on the configured port.
/// A configured name that resolves to public addresses lets nothing private through, so a later
/// answer of its DNS pointing at 127.0.0.1 or the metadata service is refused like any other.
#[derive(Clone, Debug, Default)]
pub struct Trusted {
    host: String,
    port: Option<u16>,
    addresses: Vec<IpAddr>,
}

impl Trusted {
    /// Looks at the configured URL (resolving its name once, now).
    pub async fn of(url: &url::Url) -> Self {
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url.port_or_known_default();
        let addresses = match url.host() {
            Some(url::Host::Ipv4(v4)) => vec![IpAddr::V4(v4)],
            Some(url::Host::Ipv6(v6)) => vec![IpAddr::V6(v6)],
            Some(url::Host::Domain(name)) => tokio::net::lookup_host((name, port.unwrap_or(80)))
                .await
                .map(|found| found.map(|a| a.ip()).collect())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let private_only = !addresses.is_empty() && addresses.iter().all(|ip| !is_public(*ip));
        Self {
            host,
            port,
            addresses: if private_only { addresses } else { Vec::new() },
        }
    }

    fn allows(&self, host: &str, ip: IpAddr) -> bool {
        is_public(ip) || (host.eq_ignore_ascii_case(&self.host) && self.addresses.contains(&ip))
    }
}

/// Resolves host names with the system's resolver and keeps only the addresses [`Trusted`]
/// allows.
pub struct Resolver {
    pub trusted: Trusted,
}

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        let trusted = self.trusted.clone();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| trusted.allows(&host, a.ip()))
                .collect();
            if kept.is_empty() {
                return Err(Box::new(Refused::PrivateName(host)) as _);
            }
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

/// The redirect policy: at most [`MAX_REDIRECTS`], http(s) only; an IP-literal target must be
/// public or the configured private address, and the configured private host is reached on its
/// configured port only.
pub fn redirects(trusted: Trusted) -> Policy {
    Policy::custom(move |attempt: Attempt| {
        // `previous` holds every URL requested so far, the configured one first.
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(Refused::TooManyRedirects);
        }
        let url = attempt.url();
        if url.scheme() != "http" && url.scheme() != "https" {
            let scheme = url.scheme().to_string();
            return attempt.error(Refused::Scheme(scheme));
        }
        let host = url.host_str().unwrap_or_default();
        let literal = match url.host() {
            Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        };
        let private_literal = literal.is_some_and(|ip| !trusted.allows(host, ip));
        let other_port_of_private_host = !trusted.addresses.is_empty()
            && host.eq_ignore_ascii_case(&trusted.host)
            && url.port_or_known_default() != trusted.port;
        if private_literal || other_port_of_private_host {
            let target = url.to_string();
            return attempt.error(Refused::PrivateAddress(target));
        }
        attempt.follow()
    })
}

/// A reqwest error in words: the refusal from this module when there is one underneath.
pub fn explain(error: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return refused.to_string();
        }
        source = e.source();
    }
    format!("{error:#}")
}
