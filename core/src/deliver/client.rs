//! The one HTTP client every delivery goes through.

use std::sync::Arc;
use std::time::Duration;

use super::ssrf::GuardedResolver;

/// `User-Agent` of every request: `statushook/<version>`.
pub const USER_AGENT: &str = concat!("statushook/", env!("CARGO_PKG_VERSION"));

/// Builds the shared client: rustls (ring), keep-alive pools, no redirects
/// followed (a 3xx is a failed attempt), and the SSRF-guarding resolver.
/// The per-attempt timeout is set on each request, so a reload can change it.
///
/// # Errors
///
/// [`ClientError`] if TLS cannot be set up on this machine.
pub fn build(allow_private_networks: bool) -> Result<reqwest::Client, ClientError> {
    // reqwest is built without a default crypto provider: ring builds faster
    // and needs no C toolchain beyond cc. Installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        // A proxy from HTTP(S)_PROXY would resolve and connect to the target
        // itself, bypassing the SSRF guard below.
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver::new(allow_private_networks)))
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .build()
        .map_err(ClientError)
}

/// The HTTP client could not be built (TLS could not be set up).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct ClientError(#[source] reqwest::Error);
