//! Delivering rendered requests to webhook URLs.
//!
//! [`Deliverer`] runs the loop: claim due deliveries from the queue (or take
//! those an ingest's enqueue leased to it at once: `handoff.rs`), send each
//! ([`attempt`]) through the shared [`client`], then ack, retry on the
//! [`backoff`] schedule, or dead-letter, each in one atomic queue step.
//! [`sign`] and the webhook's auth are applied at send time from the live
//! config; [`ssrf`] refuses private targets; [`endpoint`] caps in-flight sends
//! and opens a circuit breaker per endpoint, so one dead endpoint cannot hold
//! the workers other bots need.

pub mod attempt;
mod backlog;
pub mod backoff;
pub mod client;
mod decide;
pub mod endpoint;
mod handoff;
pub mod sign;
pub mod ssrf;
mod worker;

pub use worker::Deliverer;
