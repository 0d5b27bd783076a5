//! statushook: delivers WhatsApp message status events to partner webhooks.
//!
//! Events flow through the modules in this order (folder names follow it):
//!
//! - `ingest`: the HTTP listener; `POST /v1/events` (canonical events) and
//!   `/v1/meta/webhook` (Meta's signed webhooks), the admin routes, health
//!   and metrics;
//! - [`event`]: the canonical status event and its strict JSON parsing;
//! - `route`: the routing table built from the config; which webhooks of a
//!   bot take an event, and fan-out into rendered deliveries;
//! - [`plugin`]: the WebAssembly host that renders an event into a partner's
//!   request with the webhook's plugin;
//! - [`queue`]: the durable queue of deliveries (Redis, or the embedded
//!   store), with leases, retries, dead letters and dedup marks;
//! - `deliver`: the workers that claim deliveries, sign and send them, and
//!   ack, retry or dead-letter each.
//!
//! Around them: [`config`] (`config.toml`, read, checked and resolved),
//! `reload` (applying config and plugin changes while running), `metrics`
//! and `activity` (what happened lately, for the console), `console` (the
//! operator's web view, served by `ingest`), [`app`] (assembling a running
//! dispatcher), and [`cli`] (the command line).
//!
//! The modules without links are internal; [`testing`] exposes the parts of
//! them that the integration tests and benchmarks drive directly.

#![deny(missing_docs)]

pub mod app;
pub mod cli;
pub mod config;
pub mod event;
pub mod plugin;
pub mod queue;
pub mod testing;

pub(crate) mod activity;
pub(crate) mod console;
pub(crate) mod deliver;
pub(crate) mod ingest;
pub(crate) mod metrics;
pub(crate) mod rate;
pub(crate) mod reload;
pub(crate) mod route;
