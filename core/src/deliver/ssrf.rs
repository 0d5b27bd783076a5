//! The SSRF guard: webhook URLs come from config, but a name can resolve to
//! anything, so deliveries must not reach loopback, private, link-local or
//! otherwise non-public addresses unless `allow_private_networks = true`.
//!
//! Two halves, both needed:
//!
//! - [`GuardedResolver`] is the HTTP client's DNS resolver. It drops every
//!   non-public address a name resolves to; the client connects only to the
//!   addresses it returns, so the address actually connected to is checked
//!   (a name that resolves differently on a second lookup cannot slip by).
//! - [`check_url`] checks IP-literal hosts (`http://127.0.0.1/`,
//!   `http://[::1]/`), which the client connects to without asking the
//!   resolver.
//!
//! The client must also not use a proxy (`no_proxy()`) and not follow
//! redirects, or the target is reached some other way.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Why a delivery target was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsrfError {
    /// The URL's host is an IP address that is not public.
    #[error(
        "the webhook URL's host {ip} is a private or local address; \
         set allow_private_networks = true in [delivery] to permit it"
    )]
    PrivateAddress {
        /// The refused address.
        ip: IpAddr,
    },
    /// The host name resolves only to non-public addresses.
    #[error(
        "host `{host}` resolves only to private or local addresses; \
         set allow_private_networks = true in [delivery] to permit it"
    )]
    PrivateName {
        /// The host name as looked up.
        host: String,
    },
    /// The host name resolved to no addresses at all.
    #[error("host `{host}` resolves to no addresses")]
    NoAddresses {
        /// The host name as looked up.
        host: String,
    },
    /// The URL has no host to deliver to.
    #[error("the webhook URL has no host")]
    NoHost,
}

/// Whether `ip` is a public, globally routable unicast address a webhook may
/// be delivered to.
///
/// False for unspecified, loopback, private, shared (CGNAT), link-local,
/// multicast, broadcast, documentation, benchmarking, reserved and protocol
/// assignment ranges, and for IPv6 unique-local and site-local addresses and
/// anything outside the global unicast block `2000::/3`. IPv6 forms that embed
/// an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64 `64:ff9b::/96`, 6to4
/// `2002::/16`) are judged by the embedded address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let refused = a == 0 // "this network", includes 0.0.0.0
        || a == 10 // private
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT) 100.64/10
        || a == 127 // loopback
        || (a == 169 && b == 254) // link-local
        || (a == 172 && (16..32).contains(&b)) // private 172.16/12
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments 192.0.0/24
        || (a == 192 && b == 0 && c == 2) // documentation TEST-NET-1
        || (a == 192 && b == 168) // private
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
        || (a == 198 && b == 51 && c == 100) // documentation TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // documentation TEST-NET-3
        || a >= 224; // multicast 224/4, reserved 240/4, broadcast
    !refused
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // Forms that embed an IPv4 address: judged by that address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4); // ::ffff:a.b.c.d
    }
    if s[..6] == [0; 6] {
        // IPv4-compatible ::a.b.c.d (deprecated); includes :: and ::1, whose
        // embedded 0.0.0.0 and 0.0.0.1 are refused.
        return is_public_v4(embedded_v4(s[6], s[7]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded_v4(s[6], s[7])); // NAT64 64:ff9b::/96
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded_v4(s[1], s[2])); // 6to4 2002::/16
    }
    // Only 2000::/3 is global unicast. This also refuses unique-local
    // fc00::/7, link-local fe80::/10, site-local fec0::/10, multicast ff00::/8,
    // discard-only 100::/64 and local-use NAT64 64:ff9b:1::/48.
    if s[0] & 0xe000 != 0x2000 {
        return false;
    }
    match s[0] {
        // IETF protocol assignments 2001::/23 (Teredo, benchmarking, ...) and
        // documentation 2001:db8::/32.
        0x2001 => s[1] >= 0x200 && s[1] != 0x0db8,
        // Documentation 3fff::/20.
        0x3fff => s[1] >= 0x1000,
        _ => true,
    }
}

fn embedded_v4(high: u16, low: u16) -> Ipv4Addr {
    let [a, b] = high.to_be_bytes();
    let [c, d] = low.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// Checks a webhook URL before a delivery: an IP-literal host must be public
/// unless `allow_private`. Host names pass here: the HTTP client resolves them
/// with [`GuardedResolver`], which checks every address.
pub fn check_url(url: &Url, allow_private: bool) -> Result<(), SsrfError> {
    let ip = match url.host() {
        None => return Err(SsrfError::NoHost),
        Some(Host::Domain(_)) => return Ok(()),
        Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
    };
    if allow_private || is_public(ip) {
        Ok(())
    } else {
        Err(SsrfError::PrivateAddress { ip })
    }
}

/// A DNS resolver for the HTTP client that returns only public addresses
/// (all addresses when `allow_private`), failing with
/// [`SsrfError::PrivateName`] when none remain.
///
/// Install it with `reqwest::ClientBuilder::dns_resolver`. A change of
/// `allow_private_networks` needs a new client.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardedResolver {
    allow_private: bool,
}

impl GuardedResolver {
    /// A resolver that refuses non-public addresses unless `allow_private`.
    pub fn new(allow_private: bool) -> Self {
        Self { allow_private }
    }

    /// Resolves `host` with the system resolver and filters the result.
    /// The ports are 0: the client fills in the URL's port.
    pub async fn lookup(&self, host: &str) -> Result<Vec<SocketAddr>, std::io::Error> {
        let all: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
        if all.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                SsrfError::NoAddresses {
                    host: host.to_owned(),
                },
            ));
        }
        if self.allow_private {
            return Ok(all);
        }
        let (public, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
            all.into_iter().partition(|addr| is_public(addr.ip()));
        if !refused.is_empty() {
            tracing::debug!(host, ?refused, "ssrf guard dropped non-public addresses");
        }
        if public.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                SsrfError::PrivateName {
                    host: host.to_owned(),
                },
            ));
        }
        Ok(public)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = *self;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = resolver.lookup(&host).await?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSED: &[&str] = &[
        "0.0.0.0",
        "0.1.2.3",
        "127.0.0.1",
        "127.255.255.254",
        "10.0.0.1",
        "10.255.255.255",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "100.64.0.1",
        "100.127.255.255",
        "169.254.169.254", // cloud metadata
        "192.0.0.8",
        "192.0.2.1",
        "198.51.100.7",
        "203.0.113.9",
        "198.18.0.1",
        "198.19.255.255",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",
        "::10.1.2.3",
        "64:ff9b::127.0.0.1",
        "64:ff9b::192.168.0.1",
        "64:ff9b:1::8.8.8.8",
        "2002:7f00:1::",
        "2002:c0a8:101::1",
        "fe80::1",
        "febf::1",
        "fec0::1",
        "fc00::1",
        "fd12:3456:789a::1",
        "ff02::1",
        "ff0e::1",
        "100::1",
        "2001:db8::1",
        "2001::1",   // Teredo
        "2001:2::1", // benchmarking
        "3fff::1",   // documentation (RFC 9637)
        "3fff:fff::1",
        "4000::1",       // outside 2000::/3
        "::2:3:4:5:6:7", // reserved ::/8 outside the embedded forms
    ];

    const ALLOWED: &[&str] = &[
        "1.1.1.1",
        "8.8.8.8",
        "93.184.216.34",
        "9.255.255.255",
        "11.0.0.1",
        "100.63.255.255",
        "100.128.0.1",
        "172.15.255.255",
        "172.32.0.1",
        "169.253.1.1",
        "192.0.1.1",
        "192.169.0.1",
        "198.17.255.255",
        "198.20.0.1",
        "223.255.255.255",
        "::ffff:8.8.8.8",
        "::8.8.8.8",
        "64:ff9b::8.8.8.8",
        "2002:0808:0808::1",
        "2606:4700:4700::1111",
        "2001:4860:4860::8888",
        "2a00:1450:4001::1",
        "2001:200::1",
        "3fff:1000::1",
    ];

    #[test]
    fn table_of_addresses() {
        for addr in REFUSED {
            let ip: IpAddr = addr.parse().expect(addr);
            assert!(!is_public(ip), "{addr} should be refused");
        }
        for addr in ALLOWED {
            let ip: IpAddr = addr.parse().expect(addr);
            assert!(is_public(ip), "{addr} should be allowed");
        }
    }

    fn url(s: &str) -> Url {
        Url::parse(s).expect(s)
    }

    #[test]
    fn check_url_ip_literals() {
        for s in [
            "http://127.0.0.1:8080/",
            "http://[::1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://2130706433/", // 127.0.0.1 in decimal
            "http://0x7f.1/",
            "https://169.254.169.254/latest/meta-data/",
        ] {
            let err = check_url(&url(s), false).expect_err(s);
            assert!(matches!(err, SsrfError::PrivateAddress { .. }), "{s}");
            assert!(err.to_string().contains("allow_private_networks = true"));
            check_url(&url(s), true).expect(s);
        }
        check_url(&url("https://93.184.216.34/"), false).expect("public literal");
        check_url(&url("https://[2606:4700:4700::1111]/"), false).expect("public v6");
    }

    #[test]
    fn check_url_names_pass_to_the_resolver() {
        check_url(&url("http://localhost:8080/"), false).expect("names pass");
        check_url(&url("https://crm.example.com/hook"), false).expect("names pass");
        assert_eq!(
            check_url(&url("data:text/plain,hi"), false),
            Err(SsrfError::NoHost)
        );
    }

    #[tokio::test]
    async fn resolver_refuses_localhost_unless_allowed() {
        let err = GuardedResolver::new(false)
            .lookup("localhost")
            .await
            .expect_err("localhost refused");
        let message = err.to_string();
        assert!(
            message.contains("resolves only to private or local addresses"),
            "{message}"
        );
        assert!(message.contains("allow_private_networks = true in [delivery]"));

        let addrs = GuardedResolver::new(true)
            .lookup("localhost")
            .await
            .expect("allowed");
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }

    #[tokio::test]
    async fn resolver_through_the_reqwest_trait() {
        let name: Name = "localhost".parse().expect("name");
        let err = match GuardedResolver::new(false).resolve(name).await {
            Ok(addrs) => panic!("localhost resolved: {:?}", addrs.collect::<Vec<_>>()),
            Err(err) => err,
        };
        assert!(err.to_string().contains("private or local"), "{err}");

        let name: Name = "localhost".parse().expect("name");
        let addrs: Vec<SocketAddr> = GuardedResolver::new(true)
            .resolve(name)
            .await
            .expect("allowed")
            .collect();
        assert!(!addrs.is_empty());
    }

    #[tokio::test]
    async fn resolver_passes_ip_literal_names_through_the_same_check() {
        // Literals normally never reach the resolver, but if they do they are checked.
        assert!(
            GuardedResolver::new(false)
                .lookup("127.0.0.1")
                .await
                .is_err()
        );
        let addrs = GuardedResolver::new(false)
            .lookup("93.184.216.34")
            .await
            .expect("public literal");
        assert_eq!(
            addrs[0].ip(),
            "93.184.216.34".parse::<IpAddr>().expect("ip")
        );
    }

    #[tokio::test]
    async fn reqwest_client_with_the_guard_refuses_localhost() {
        // reqwest is built with `rustls-no-provider`: a provider must be installed.
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .dns_resolver(std::sync::Arc::new(GuardedResolver::new(false)))
            .no_proxy()
            .build()
            .expect("client");
        let err = client
            .get("http://localhost:9/")
            .send()
            .await
            .expect_err("refused");
        let mut chain = String::new();
        let mut source: Option<&dyn std::error::Error> = Some(&err);
        while let Some(e) = source {
            chain.push_str(&e.to_string());
            chain.push('\n');
            source = e.source();
        }
        assert!(chain.contains("private or local addresses"), "{chain}");
    }
}
