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

/// Resolves host names with the system's resolver and keeps only public addresses, except for
/// the configured host.
pub struct Resolver {
    pub configured_host: String,
}

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        let trusted = host.eq_ignore_ascii_case(&self.configured_host);
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| trusted || is_public(a.ip()))
                .collect();
            if kept.is_empty() {
                return Err(Box::new(Refused::PrivateName(host)) as _);
            }
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

/// The redirect policy: at most [`MAX_REDIRECTS`], http(s) only, and an IP-literal target must
/// be public unless it is the configured host.
pub fn redirects(configured_host: String) -> Policy {
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
        let literal = match url.host() {
            Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        };
        let host = url.host_str().unwrap_or_default();
        if let Some(ip) = literal {
            if !is_public(ip) && !host.eq_ignore_ascii_case(&configured_host) {
                let target = url.to_string();
                return attempt.error(Refused::PrivateAddress(target));
            }
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
