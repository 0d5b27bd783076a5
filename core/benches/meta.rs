//! Meta ingest benchmark: what one WhatsApp Cloud API webhook costs the
//! dispatcher before rendering and queueing, per status.
//!
//! Run with `cargo bench --bench meta` (release build). Prints a markdown
//! table to stdout and progress to stderr. No criterion: medians and p90 of
//! samples, each sample timing a run of back-to-back calls.
//!
//! Rows, for a body of 1 status (`tests/fixtures/meta/status_sent.json`: a
//! `sent` status with conversation, pricing and campaign callback data) and
//! a body of 100 such statuses (one change, distinct message ids, the four
//! Meta statuses in turn):
//! - verify: `Signature::from_headers` + `verify` (HMAC-SHA256 of the raw
//!   body) against two configured app secrets, the right one second (the
//!   worst case of a rotation);
//! - parse: `Envelope::parse` (the JSON body into a value, envelope checks);
//! - map: `map` of the parsed envelope (phone number lookup, canonical
//!   events built and checked);
//! - total: the three in a row, as the handler runs them.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use statushook::testing::meta::{Envelope, Signature, map};
use statushook::testing::meta::{HEADER, sign};

const SECRETS: [&str; 2] = [
    "0ld-app-secret-5f1c0e7a9b2d4c6e",
    "app-secret-8e2b4f6a1c3d5e7f9a0b",
];
/// Samples per row.
const SAMPLES: usize = 200;

#[path = "support/stats.rs"]
mod stats;
use stats::Stats;

/// Warms up, then takes [`SAMPLES`] samples of `calls` back-to-back calls;
/// returns nanoseconds per call.
fn measure(calls: usize, f: impl FnMut()) -> Stats {
    stats::measure(calls.max(10), SAMPLES, calls, 1, f)
}

fn fixture(name: &str) -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/meta/{name}.json"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).expect("the fixture is JSON")
}

/// A body with `n` statuses for phone number id 1099887766.
fn body_of(n: usize) -> Vec<u8> {
    let mut body = fixture("status_sent");
    let template = body["entry"][0]["changes"][0]["value"]["statuses"][0].clone();
    let statuses: Vec<Value> = (0..n)
        .map(|i| {
            let mut status = template.clone();
            status["id"] = json!(format!(
                "wamid.HBgLMTU1NTAwMDIyMjIVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY{i:05}"
            ));
            status["status"] = json!(["sent", "delivered", "read", "failed"][i % 4]);
            status["timestamp"] = json!((1_750_857_384 + i).to_string());
            status
        })
        .collect();
    body["entry"][0]["changes"][0]["value"]["statuses"] = Value::Array(statuses);
    serde_json::to_vec(&body).expect("serializes")
}

struct Row {
    statuses: usize,
    bytes: usize,
    verify: Stats,
    parse: Stats,
    map: Stats,
    total: Stats,
}

fn main() {
    let started = Instant::now();
    let bots: HashMap<String, String> =
        HashMap::from([("1099887766".to_string(), "acme".to_string())]);
    let mut rows = Vec::new();
    for (statuses, calls) in [(1usize, 2_000usize), (100, 20)] {
        let body = body_of(statuses);
        let mut headers = HeaderMap::new();
        headers.insert(
            HEADER,
            HeaderValue::from_str(&sign(SECRETS[1].as_bytes(), &body)).expect("ascii"),
        );
        // The three steps must do their job on this body.
        let envelope = Envelope::parse(&body).expect("a webhook");
        let mapped = map(&envelope, &bots);
        assert_eq!((mapped.events.len(), mapped.skipped.len()), (statuses, 0));
        Signature::from_headers(&headers)
            .and_then(|s| s.verify(&SECRETS, &body))
            .expect("verifies");

        eprintln!(
            "[{:>5.1}s] {statuses} status(es), {} bytes",
            started.elapsed().as_secs_f64(),
            body.len()
        );
        let verify = measure(calls, || {
            let signature = Signature::from_headers(black_box(&headers)).expect("well formed");
            black_box(signature.verify(&SECRETS, black_box(&body))).expect("verifies");
        });
        let parse = measure(calls, || {
            black_box(Envelope::parse(black_box(&body)).expect("a webhook"));
        });
        let map_stats = measure(calls, || {
            black_box(map(black_box(&envelope), &bots));
        });
        let total = measure(calls, || {
            let signature = Signature::from_headers(black_box(&headers)).expect("well formed");
            signature
                .verify(&SECRETS, black_box(&body))
                .expect("verifies");
            let envelope = Envelope::parse(&body).expect("a webhook");
            black_box(map(&envelope, &bots));
        });
        rows.push(Row {
            statuses,
            bytes: body.len(),
            verify,
            parse,
            map: map_stats,
            total,
        });
    }
    print_table(&rows, started.elapsed().as_secs_f64());
}

fn micros(ns: f64) -> String {
    format!("{:.2}", ns / 1000.0)
}

fn print_table(rows: &[Row], took: f64) {
    println!("### Meta ingest: verify + parse + map, per body and per status\n");
    println!(
        "Release build, {} CPU(s) available, {SAMPLES} samples per cell; median (p90) in µs. Two app secrets configured, the body signed with the second.\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("| body | bytes | verify | parse | map | total per body | total per status |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let cell = |s: Stats| format!("{} ({})", micros(s.median), micros(s.p90));
        let per = row.statuses as f64;
        println!(
            "| {} status{} | {} | {} | {} | {} | {} | {} ({}) |",
            row.statuses,
            if row.statuses == 1 { "" } else { "es" },
            row.bytes,
            cell(row.verify),
            cell(row.parse),
            cell(row.map),
            cell(row.total),
            micros(row.total.median / per),
            micros(row.total.p90 / per),
        );
    }
    println!("\n({took:.1} s)");
}
