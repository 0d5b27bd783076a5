//! Fuzz targets: every parser of outside or stored bytes, fed inputs it
//! rarely sees.
//!
//! | target | parser | what must hold |
//! |---|---|---|
//! | `event_parser` | `parse_batch` / `parse_event` (`POST /v1/events`) | no panic; errors name a bounded set of problems; what parses round-trips |
//! | `meta_mapping` | `Envelope::parse` + `map` (`/v1/meta/webhook`) | no panic; every event produced is a valid canonical event |
//! | `meta_signature` | `X-Hub-Signature-256` | only the right signature (any case, spaces) verifies |
//! | `config_reader` | `config::parse` (`config.toml`) | no panic; every problem has a message and a line inside the file |
//! | `queue_records` | the stores' job records, delivery metadata, attempts | no panic; what decodes encodes back to the same bytes or value |
//!
//! The targets are [bolero] checks. Each input is either bytes as the engine
//! made them or a seed document (`seeds.rs`) mutated by a random number of
//! structure-aware steps (`mutate.rs`); under `cargo test` bolero draws them
//! at random, a fixed number per target, so CI runs every target in a few
//! seconds. Run longer, or replay a failure, with bolero's variables:
//!
//! ```text
//! BOLERO_RANDOM_ITERATIONS=2000000 cargo test --release --test fuzz -- --nocapture
//! BOLERO_RANDOM_SEED=<seed printed by the failure> cargo test --test fuzz <target>
//! ```
//!
//! [bolero]: https://camshaft.github.io/bolero/

mod mutate;
mod seeds;

use std::collections::HashMap;
use std::ops::Deref;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use bolero::check;
use bolero::generator::TypeGenerator;
use serde_json::{Value, json};
use statushook::event::{MAX_BATCH, parse_batch, parse_event};
use statushook::testing::meta::{Envelope, Signature, map, sign};
use statushook::testing::records;

/// Random inputs per target under `cargo test` (`BOLERO_RANDOM_ITERATIONS`
/// overrides).
const ITERATIONS: usize = 4000;

/// One fuzz input.
#[derive(Debug, TypeGenerator)]
enum Input {
    /// Bytes as the engine made them: under a coverage-guided engine, its own
    /// mutations work here.
    Raw(Vec<u8>),
    /// Seed document `base` (modulo their number), mutated `steps` times by a
    /// generator seeded with `seed`.
    Mutated { base: u16, seed: u64, steps: u8 },
}

impl Input {
    /// The bytes to parse: `mutate` applies one step to a seed document.
    fn bytes<T: Clone>(
        &self,
        seeds: &[T],
        mutate: impl Fn(&mut fastrand::Rng, &mut T),
        into_bytes: impl Fn(T) -> Vec<u8>,
    ) -> Vec<u8> {
        match self {
            Input::Raw(bytes) => bytes.clone(),
            Input::Mutated { base, seed, steps } => {
                let mut rng = fastrand::Rng::with_seed(*seed);
                let mut doc = seeds[usize::from(*base) % seeds.len()].clone();
                for _ in 0..=(steps % 4) {
                    mutate(&mut rng, &mut doc);
                }
                into_bytes(doc)
            }
        }
    }
}

/// Runs `target` on every fixed input, then on `ITERATIONS` random ones.
fn fuzz(fixed: &[Vec<u8>], make: impl Fn(&Input) -> Vec<u8>, target: impl Fn(&[u8])) {
    for input in fixed {
        target(input);
    }
    // A failing case is reported by bolero, then the test fails; nothing
    // here is observed after a panic.
    let run = AssertUnwindSafe(|input: &Input| target(&make(input)));
    check!()
        .with_type::<Input>()
        .with_iterations(ITERATIONS)
        .for_each(move |input| run.deref()(input));
}

/// Counts how often a target reached its happy path, so a mutator that only
/// ever produces garbage fails the run instead of passing vacuously.
struct Reached {
    ok: AtomicUsize,
    all: AtomicUsize,
}

impl Reached {
    const fn new() -> Self {
        Reached {
            ok: AtomicUsize::new(0),
            all: AtomicUsize::new(0),
        }
    }

    fn count(&self, ok: bool) {
        self.all.fetch_add(1, Ordering::Relaxed);
        self.ok.fetch_add(usize::from(ok), Ordering::Relaxed);
    }

    /// At least `per_mille` ‰ of the inputs reached the happy path (most
    /// mutations break a document; the bound catches mutators that break
    /// every one).
    fn at_least(&self, per_mille: usize, what: &str) {
        let (ok, all) = (
            self.ok.load(Ordering::Relaxed),
            self.all.load(Ordering::Relaxed),
        );
        eprintln!("{what}: {ok} of {all} inputs parsed");
        assert!(
            ok * 1000 >= all * per_mille,
            "{what}: only {ok} of {all} inputs reached the happy path; the mutators must keep some valid"
        );
    }
}

/// JSON documents, mutated as trees (against a donor from the same set) and
/// sometimes as bytes afterwards.
fn json_input(trees: &[Value]) -> impl Fn(&Input) -> Vec<u8> + '_ {
    move |input| {
        let mut bytes = input.bytes(
            trees,
            |rng, tree| {
                let donor = &trees[rng.usize(..trees.len())];
                mutate::mutate_tree(rng, tree, donor);
            },
            |tree| tree.to_string().into_bytes(),
        );
        if let Input::Mutated { seed, steps, .. } = input
            && steps % 8 == 7
        {
            mutate::mutate_bytes(&mut fastrand::Rng::with_seed(!seed), &mut bytes);
        }
        bytes
    }
}

// ---------------------------------------------------------------------------
// Canonical events.

#[test]
fn event_parser() {
    let valid = seeds::canonical_event();
    let trees = vec![
        valid.clone(),
        json!([valid.clone(), valid.clone(), valid.clone()]),
        json!({"id": "e", "bot_id": "b", "status": "disconnected", "timestamp": 1, "final": true}),
    ];
    let reached = Reached::new();
    let mut fixed = seeds::edge_cases();
    fixed.extend(seeds::meta_bodies());
    fuzz(&fixed, json_input(&trees), |body| {
        reached.count(check_batch(body));
    });
    reached.at_least(10, "event_parser");
}

/// Checks what `parse_batch` did with one body; whether it parsed.
fn check_batch(body: &[u8]) -> bool {
    match parse_batch(body) {
        Ok(events) => {
            assert!((1..=MAX_BATCH).contains(&events.len()));
            for event in &events {
                let json = serde_json::to_vec(event).expect("serializes");
                assert_eq!(parse_event(&json).as_ref(), Ok(event), "round trip");
            }
            true
        }
        Err(error) => {
            assert!(
                !error.errors.is_empty(),
                "an error names at least one problem"
            );
            assert!(error.errors.len() <= 50, "problems are bounded");
            assert!(!error.to_string().is_empty());
            false
        }
    }
}

// ---------------------------------------------------------------------------
// Meta's webhooks.

/// The bots the mapper may find: two of the fixtures' phone numbers.
fn meta_bots() -> HashMap<String, String> {
    HashMap::from([
        ("1099887766".to_string(), "acme".to_string()),
        ("2000111222".to_string(), "globex".to_string()),
    ])
}

#[test]
fn meta_mapping() {
    let bodies = seeds::meta_bodies();
    let trees: Vec<Value> = bodies
        .iter()
        .map(|body| serde_json::from_slice(body).expect("fixture is JSON"))
        .collect();
    let bots = meta_bots();
    let mapped = AtomicUsize::new(0);
    let mut fixed = bodies.clone();
    fixed.extend(seeds::edge_cases());
    fuzz(&fixed, json_input(&trees), |body| {
        mapped.fetch_add(check_meta(body, &bots), Ordering::Relaxed);
    });
    let mapped = mapped.into_inner();
    eprintln!("meta_mapping: {mapped} events mapped");
    assert!(
        mapped > ITERATIONS / 10,
        "the mutations must still reach the mapper's happy path: {mapped} events"
    );
}

/// Checks what the Meta parser and mapper did with one body; how many
/// events it mapped.
fn check_meta(body: &[u8], bots: &HashMap<String, String>) -> usize {
    let envelope = match Envelope::parse(body) {
        Ok(envelope) => envelope,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            return 0;
        }
    };
    let mapped = map(&envelope, bots);
    for event in &mapped.events {
        assert!(event.id.starts_with("meta:"), "{}", event.id);
        assert!(["acme", "globex"].contains(&event.bot_id.as_str()));
        let json = serde_json::to_vec(event).expect("serializes");
        assert_eq!(
            parse_event(&json).as_ref(),
            Ok(event),
            "a mapped event must be a valid canonical event"
        );
    }
    for skipped in &mapped.skipped {
        assert!(skipped.reason.metric_reason().starts_with("meta_"));
        assert!(!skipped.place.is_empty() && !skipped.detail.is_empty());
    }
    if (1..=MAX_BATCH).contains(&mapped.events.len()) {
        let batch = serde_json::to_vec(&mapped.events).expect("serializes");
        assert_eq!(parse_batch(&batch).as_ref(), Ok(&mapped.events));
    }
    mapped.events.len()
}

#[test]
fn meta_signature() {
    const SECRET: &str = "app-secret-8e2b4f6a1c3d5e7f9a0b";
    let body = seeds::fixture("status_sent");
    let good = sign(SECRET.as_bytes(), &body);
    let headers = [good.clone().into_bytes(), good.to_uppercase().into_bytes()];
    let make = |input: &Input| input.bytes(&headers, mutate::mutate_bytes, |header| header);
    fuzz(&headers, make, |header| {
        let header = String::from_utf8_lossy(header);
        let verdict = Signature::parse(&header).and_then(|s| s.verify(&[SECRET], &body));
        if verdict.is_ok() {
            // Only an equivalent spelling of the right signature passes.
            assert_eq!(header.trim().to_ascii_lowercase(), good, "{header:?}");
        }
    });
}

// ---------------------------------------------------------------------------
// The config reader.

#[test]
fn config_reader() {
    let configs = seeds::configs();
    let fixed: Vec<Vec<u8>> = configs.iter().map(|c| c.clone().into_bytes()).collect();
    let make = |input: &Input| {
        let mut bytes = input.bytes(
            &configs,
            |rng, text| *text = mutate::mutate_toml(rng, text),
            String::into_bytes,
        );
        if let Input::Mutated { seed, steps, .. } = input
            && steps % 8 == 7
        {
            mutate::mutate_bytes(&mut fastrand::Rng::with_seed(!seed), &mut bytes);
        }
        bytes
    };
    let reached = Reached::new();
    fuzz(&fixed, make, |bytes| {
        reached.count(check_config(bytes));
    });
    reached.at_least(5, "config_reader");
}

/// Checks what the config reader did with one file; whether it was valid.
fn check_config(bytes: &[u8]) -> bool {
    // The reader takes text: bytes that are not UTF-8 never reach it (the
    // loader refuses them first, naming the file).
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let env = |name: &str| (name == "FUZZ_TOKEN").then(|| "fuzz-token".to_string());
    match statushook::config::parse(text, Path::new("config.toml"), &env) {
        Ok(_) => true,
        Err(error) => {
            let lines = text.lines().count().max(1);
            assert!(!error.problems.is_empty(), "an error names a problem");
            for problem in &error.problems {
                assert!(!problem.message.is_empty(), "{problem}");
                if let Some(line) = problem.line {
                    assert!(
                        (1..=lines + 1).contains(&line),
                        "line {line} is outside a {lines}-line file: {problem}"
                    );
                }
            }
            false
        }
    }
}

// ---------------------------------------------------------------------------
// Queue records.

#[test]
fn queue_records() {
    let jobs = seeds::job_records();
    let documents = seeds::queue_json();
    let reached = Reached::new();
    let make = |input: &Input| input.bytes(&jobs, mutate::mutate_bytes, |b| b);
    fuzz(&jobs, make, |bytes| {
        reached.count(check_job_record(bytes));
    });
    reached.at_least(2, "job records");

    let json = Reached::new();
    let fixed: Vec<Vec<u8>> = documents
        .iter()
        .map(|d| d.to_string().into_bytes())
        .collect();
    fuzz(&fixed, json_input(&documents), |bytes| {
        json.count(check_queue_json(bytes));
    });
    json.at_least(10, "delivery and attempt records");
}

/// Checks the embedded store's decoder on one job record; whether it decoded.
fn check_job_record(bytes: &[u8]) -> bool {
    match records::embedded_job(bytes) {
        Ok(again) => {
            // Version 3 records encode back to the very same bytes; versions
            // 1 (no webhook) and 2 (no order) are upgraded, so they differ.
            if bytes.first() == Some(&3) {
                assert_eq!(again, bytes, "a job record re-encodes unchanged");
            } else {
                assert_eq!(again.first(), Some(&3));
                assert_eq!(records::embedded_job(&again).ok().as_ref(), Some(&again));
            }
            true
        }
        Err(error) => {
            assert!(!error.to_string().is_empty());
            false
        }
    }
}

/// Checks the delivery and attempt decoders on one JSON record; whether
/// either decoded it.
fn check_queue_json(bytes: &[u8]) -> bool {
    let delivery = round_trips(bytes, records::delivery, |d| {
        records::delivery_meta(d).expect("a decoded delivery encodes")
    });
    let attempt = round_trips(bytes, records::attempt, |a| {
        serde_json::to_vec(a).expect("an attempt encodes")
    });
    delivery || attempt
}

/// Whether `decode` reads `bytes`; what it reads must encode and decode
/// back to itself, and what it refuses must name the record.
fn round_trips<T: PartialEq + std::fmt::Debug>(
    bytes: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, statushook::queue::QueueError>,
    encode: impl Fn(&T) -> Vec<u8>,
) -> bool {
    match decode(bytes) {
        Ok(value) => {
            let again = encode(&value);
            assert_eq!(decode(&again).ok().as_ref(), Some(&value), "round trip");
            true
        }
        Err(error) => {
            assert!(
                error.to_string().contains("fuzz"),
                "names the record: {error}"
            );
            false
        }
    }
}
