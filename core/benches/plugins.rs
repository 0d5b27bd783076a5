//! Plugin host benchmark: the four built-in formats through the wasmtime host
//! against the very same mapping code compiled natively.
//!
//! Run with `cargo bench --bench plugins` (release build). Prints markdown
//! tables to stdout and progress to stderr; BENCHMARKS.md explains each row.
//! No criterion: a small timing helper takes medians (and p90) of samples.
//!
//! Rows, per plugin:
//! - fresh instance: one `Plugin::render` on a host with warm instances off
//!   (new store + instance + WASI context, one `format` call), timed call by
//!   call;
//! - warm instance: one `Plugin::render` for the same webhook again and
//!   again, on a host that keeps instances warm (the default): the call alone;
//! - batch: `Plugin::render_batch` of 100 events in one instance, batch time / 100;
//! - native: `<crate>::render` + `statushook_plugin::json_body`, timed over
//!   1,000 calls per sample;
//! - instantiate + drop: `render` of an event the format drops (`Ok(None)`):
//!   instantiation plus a trivial call, the closest the public API gets to the
//!   bare instantiate cost;
//! - compile: `load_bytes` on a host without a cache;
//! - cached load: `load_bytes` on a host whose cache folder holds the artifact.
//!
//! `PLUGIN_BENCH_COMPONENTS=javascript=path/plugin.wasm,python=...` adds a
//! table for other components (the templates built in their languages): size,
//! compile, cached load, fresh and warm call, memory per instance, with the
//! event `failed_event` renders. `PLUGIN_BENCH_BUILTINS=0` skips the four.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use statushook::event::{self, StatusEvent, parse_event};
use statushook::plugin::{HostOptions, PluginHost, PluginLimits, Settings, builtin_wasm};
use statushook_plugin::serde_json::Value;

/// The webhook every render is for: warm instances are kept per owner.
const OWNER: &str = "acme-support/crm";

/// Events in one `render_batch` call.
const BATCH: usize = 100;
/// Individually timed `render` calls per plugin (after warm-up).
const RENDER_CALLS: usize = 3_000;
/// Timed batches per plugin.
const BATCH_SAMPLES: usize = 200;
/// Native samples per plugin, and calls per sample.
const NATIVE_SAMPLES: usize = 300;
const NATIVE_CALLS_PER_SAMPLE: usize = 1_000;
/// Compiles per plugin (each several tens of milliseconds or more).
const COMPILES: usize = 7;
/// Loads from the primed cache per plugin.
const CACHED_LOADS: usize = 30;

/// A built-in format: its name, its native mapping and a status it drops.
struct Format {
    name: &'static str,
    native: fn(&statushook_plugin::StatusEvent) -> Option<Value>,
    dropped_status: &'static str,
}

const FORMATS: [Format; 4] = [
    Format {
        name: "jelou",
        native: jelou::render,
        dropped_status: "queued",
    },
    Format {
        name: "engage",
        native: engage::render,
        dropped_status: "queued",
    },
    Format {
        name: "connectly",
        native: connectly::render,
        dropped_status: "queued",
    },
    Format {
        name: "wpp",
        native: wpp::render,
        dropped_status: "sent",
    },
];

// ---------------------------------------------------------------------------
// Timing helper.

#[path = "support/stats.rs"]
mod stats;
use stats::{Stats, measure};

// ---------------------------------------------------------------------------
// Events.

/// A realistic failed event: campaign, template, error with message and
/// details, sender and channel name. `n` varies the ids.
fn failed_event(n: usize) -> StatusEvent {
    let json = serde_json::json!({
        "id": format!("evt-2026-04-27-{n:06}"),
        "bot_id": "acme-support",
        "message_id": format!("wamid.HBgMNTkzOTgwMDAwMDAwFQIAERgSQkVOQ0g{n:06}"),
        "status": "failed",
        "timestamp": 1_777_326_005u64 + n as u64,
        "recipient": "5939800000000",
        "sender": "16044441111",
        "channel_name": "Acme Support",
        "campaign": { "id": "69efd6834d469ea6", "name": "November promo" },
        "template": "autentica_01",
        "error": {
            "code": "131026",
            "title": "Message undeliverable",
            "message": "buttons: Button at index 0 of type Url requires a parameter",
            "details": "Unable to deliver the message.",
            "type": "OAuthException",
            "trace_id": "AbCdEf0123456789"
        },
        "final": true
    });
    parse_event(json.to_string().as_bytes()).expect("the benchmark event is valid")
}

/// A small event of `status`, which the format under test drops.
fn dropped_event(status: &str) -> StatusEvent {
    let json = serde_json::json!({
        "id": "evt-2026-04-27-dropped",
        "bot_id": "acme-support",
        "message_id": "wamid.HBgMNTkzOTgwMDAwMDAwFQIAERgSRFJPUA",
        "status": status,
        "timestamp": 1_777_326_000u64,
        "recipient": "5939800000000",
        "sender": "16044441111",
    });
    parse_event(json.to_string().as_bytes()).expect("the dropped event is valid")
}

/// The SDK (guest-side) form of a core event: what the guest receives after
/// the canonical ABI has lifted it, built natively.
fn to_sdk(e: &StatusEvent) -> statushook_plugin::StatusEvent {
    use statushook_plugin::Status as S;
    statushook_plugin::StatusEvent {
        id: e.id.clone(),
        bot_id: e.bot_id.clone(),
        message_id: e.message_id.clone(),
        status: match e.status {
            event::Status::Queued => S::Queued,
            event::Status::Created => S::Created,
            event::Status::Sent => S::Sent,
            event::Status::Delivered => S::Delivered,
            event::Status::Read => S::Read,
            event::Status::Replied => S::Replied,
            event::Status::Failed => S::Failed,
            event::Status::NumberNotFound => S::NumberNotFound,
            event::Status::Expired => S::Expired,
            event::Status::Disconnected => S::Disconnected,
        },
        timestamp: e.timestamp,
        recipient: e.recipient.clone(),
        sender: e.sender.clone(),
        channel_name: e.channel_name.clone(),
        campaign: e.campaign.as_ref().map(|c| statushook_plugin::Campaign {
            id: c.id.clone(),
            name: c.name.clone(),
        }),
        template: e.template.clone(),
        reply: e.reply.clone(),
        error: e.error.as_ref().map(|x| statushook_plugin::ErrorInfo {
            code: x.code.clone(),
            title: x.title.clone(),
            message: x.message.clone(),
            details: x.details.clone(),
            type_: x.kind.clone(),
            trace_id: x.trace_id.clone(),
        }),
        final_: e.is_final,
    }
}

// ---------------------------------------------------------------------------
// The benchmark.

struct Row {
    name: &'static str,
    wasm_kib: f64,
    body_bytes: usize,
    fresh: Stats,
    warm: Stats,
    batch: Stats,
    native: Stats,
    drop: Stats,
    compile: Stats,
    cached_load: Stats,
}

fn main() {
    // `cargo bench --bench plugins -- --profile <plugin> [fresh|batch|drop]`
    // loops one path for 10 s, for `perf record` on the bench binary.
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--profile") {
        let name = args.get(at + 1).map_or("jelou", String::as_str);
        let path = args.get(at + 2).map_or("fresh", String::as_str);
        profile(name, path);
        return;
    }

    if let Ok(spec) = std::env::var("PLUGIN_BENCH_COMPONENTS") {
        components(&spec);
    }
    if std::env::var("PLUGIN_BENCH_BUILTINS").is_ok_and(|v| v == "0") {
        return;
    }
    builtins();
}

/// The four built-ins against their native code.
fn builtins() {
    let started = Instant::now();
    let load_before = load_average();
    let events: Vec<StatusEvent> = (0..BATCH).map(failed_event).collect();
    let sdk_events: Vec<statushook_plugin::StatusEvent> = events.iter().map(to_sdk).collect();
    let settings = Settings::default();

    // Compile times: a host without a cache compiles on every load.
    let compile_host = PluginHost::new(HostOptions {
        limits: PluginLimits::default(),
        cache_dir: None,
        ..HostOptions::default()
    })
    .expect("plugin host without cache");
    let compiles: Vec<Stats> = FORMATS
        .iter()
        .map(|format| {
            eprintln!("[{:>5.1}s] {}: compile", secs(started), format.name);
            let wasm = builtin_wasm(format.name).expect("a built-in");
            measure(1, COMPILES, 1, 1, || {
                black_box(
                    compile_host
                        .load_bytes(format.name, wasm)
                        .expect("compiles"),
                );
            })
        })
        .collect();
    drop(compile_host);

    // Everything else: one host with a private cache, as in production.
    let cache = tempfile::tempdir().expect("temp dir");
    let host = PluginHost::new(HostOptions {
        limits: PluginLimits::default(),
        cache_dir: Some(cache.path().to_path_buf()),
        ..HostOptions::default()
    })
    .expect("plugin host");
    let pooling = host.is_pooling();
    // The same, with warm instances off: every render instantiates.
    let fresh_host = PluginHost::new(HostOptions {
        limits: PluginLimits {
            warm_memory_bytes: 0,
            ..PluginLimits::default()
        },
        cache_dir: Some(cache.path().to_path_buf()),
        ..HostOptions::default()
    })
    .expect("plugin host without warm instances");

    let mut rows = Vec::new();
    for (format, compile) in FORMATS.iter().zip(compiles) {
        let name = format.name;
        let wasm = builtin_wasm(name).expect("a built-in");

        // Loading primes the cache; later loads of the same bytes are hits.
        let plugin = host.load(name, Path::new(".")).expect("built-in loads");
        let cached = std::fs::read_dir(cache.path())
            .expect("cache folder")
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .count();
        assert!(
            cached > 0,
            "the cache holds no artifact after loading {name}"
        );
        eprintln!("[{:>5.1}s] {name}: load from cache", secs(started));
        let cached_load = measure(2, CACHED_LOADS, 1, 1, || {
            black_box(host.load_bytes(name, wasm).expect("loads from cache"));
        });

        // The wasm output must be byte-for-byte the native output, and the
        // format must render (not drop) the benchmark event.
        let wasm_out = plugin
            .render(OWNER, &events[0], &settings)
            .expect("renders")
            .unwrap_or_else(|| panic!("{name} dropped the benchmark event"));
        let native_out = (format.native)(&sdk_events[0])
            .map(|v| statushook_plugin::json_body(&v))
            .unwrap_or_else(|| panic!("{name} (native) dropped the benchmark event"));
        assert_eq!(
            wasm_out.body, native_out.body,
            "{name}: wasm and native bodies differ"
        );
        assert_eq!(wasm_out.content_type, native_out.content_type);

        eprintln!(
            "[{:>5.1}s] {name}: render, fresh instance per call",
            secs(started)
        );
        let cold = fresh_host
            .load(name, Path::new("."))
            .expect("built-in loads");
        let mut i = 0;
        let fresh = measure(300, RENDER_CALLS, 1, 1, || {
            let event = &events[i % BATCH];
            i += 1;
            let out = cold.render(OWNER, event, &settings);
            assert!(matches!(out, Ok(Some(_))), "{name}: render failed: {out:?}");
            let _ = black_box(out);
        });

        eprintln!("[{:>5.1}s] {name}: render, warm instance", secs(started));
        let warm = measure(300, RENDER_CALLS, 1, 1, || {
            let event = &events[i % BATCH];
            i += 1;
            let out = plugin.render(OWNER, event, &settings);
            assert!(matches!(out, Ok(Some(_))), "{name}: render failed: {out:?}");
            let _ = black_box(out);
        });

        eprintln!("[{:>5.1}s] {name}: render_batch of {BATCH}", secs(started));
        let batch = measure(10, BATCH_SAMPLES, 1, BATCH, || {
            let out = plugin.render_batch(OWNER, &events, &settings);
            assert!(
                out.iter().all(|r| matches!(r, Ok(Some(_)))),
                "{name}: batch failed"
            );
            let _ = black_box(out);
        });

        eprintln!("[{:>5.1}s] {name}: native", secs(started));
        let mut j = 0;
        let native = measure(
            20 * NATIVE_CALLS_PER_SAMPLE,
            NATIVE_SAMPLES,
            NATIVE_CALLS_PER_SAMPLE,
            1,
            || {
                let event = black_box(&sdk_events[j % BATCH]);
                j += 1;
                black_box((format.native)(event).map(|v| statushook_plugin::json_body(&v)));
            },
        );

        eprintln!(
            "[{:>5.1}s] {name}: instantiate + dropped event",
            secs(started)
        );
        let dropped = dropped_event(format.dropped_status);
        let drop_stats = measure(300, RENDER_CALLS, 1, 1, || {
            let out = cold.render(OWNER, &dropped, &settings);
            assert!(
                matches!(out, Ok(None)),
                "{name}: expected a drop, got {out:?}"
            );
            let _ = black_box(out);
        });

        rows.push(Row {
            name,
            wasm_kib: wasm.len() as f64 / 1024.0,
            body_bytes: wasm_out.body.len(),
            fresh,
            warm,
            batch,
            native,
            drop: drop_stats,
            compile,
            cached_load,
        });
    }

    print_tables(&rows, pooling, secs(started), &load_before, &load_average());
}

/// Components given as `label=path.wasm,...`: what a plugin in that
/// language costs to load and to run.
fn components(spec: &str) {
    const FRESH_CALLS: usize = 200;
    const WARM_CALLS: usize = 2_000;
    let events: Vec<StatusEvent> = (0..BATCH).map(failed_event).collect();
    let settings = Settings::default();
    let cache = tempfile::tempdir().expect("temp dir");
    let options = |warm_memory_bytes, cache_dir: Option<&Path>| HostOptions {
        limits: PluginLimits {
            warm_memory_bytes,
            ..PluginLimits::default()
        },
        cache_dir: cache_dir.map(Path::to_path_buf),
        ..HostOptions::default()
    };
    println!("## Components\n");
    println!(
        "| component | size MB | compile s | load from cache ms | fresh call ms (median / p90) | warm call µs (median / p90) | memory per instance MiB | body B |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for entry in spec.split(',').filter(|e| !e.is_empty()) {
        let (label, path) = entry
            .split_once('=')
            .unwrap_or_else(|| panic!("PLUGIN_BENCH_COMPONENTS: `{entry}` is not label=path"));
        let wasm = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        eprintln!("{label}: compile ({:.1} MB)", wasm.len() as f64 / 1e6);
        // One compile, with the cache filling: a big component takes tens of
        // seconds, so more samples would say little more.
        let host = PluginHost::new(options(64 << 20, Some(cache.path()))).expect("host");
        let t = Instant::now();
        let plugin = host.load_bytes(label, &wasm).expect("compiles");
        let compile = t.elapsed();
        eprintln!("{label}: load from cache");
        let cached = measure(1, 10, 1, 1, || {
            black_box(host.load_bytes(label, &wasm).expect("loads from cache"));
        });
        let fresh_host = PluginHost::new(options(0, Some(cache.path()))).expect("host");
        let cold = fresh_host
            .load_bytes(label, &wasm)
            .expect("loads from cache");
        eprintln!("{label}: fresh calls");
        let body = cold
            .render(OWNER, &events[0], &settings)
            .expect("renders")
            .map_or(0, |o| o.body.len());
        let mut i = 0;
        let fresh = measure(5, FRESH_CALLS, 1, 1, || {
            i += 1;
            let out = cold.render(OWNER, &events[i % BATCH], &settings);
            assert!(out.is_ok(), "{label}: {out:?}");
        });
        eprintln!("{label}: warm calls");
        let warm = measure(50, WARM_CALLS, 1, 1, || {
            i += 1;
            let out = plugin.render(OWNER, &events[i % BATCH], &settings);
            assert!(out.is_ok(), "{label}: {out:?}");
        });
        println!(
            "| {label} | {:.1} | {:.1} | {} | {} / {} | {} / {} | {:.1} | {body} |",
            wasm.len() as f64 / 1e6,
            compile.as_secs_f64(),
            ms(cached.median),
            ms(fresh.median),
            ms(fresh.p90),
            us(warm.median),
            us(warm.p90),
            plugin.instance_memory_bytes() as f64 / f64::from(1 << 20),
        );
    }
    println!();
}

/// Runs one path of one plugin in a loop for 10 s, untimed: a target for
/// `perf record`.
fn profile(name: &str, path: &str) {
    let format = FORMATS
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no built-in named {name}"));
    let events: Vec<StatusEvent> = (0..BATCH).map(failed_event).collect();
    let dropped = dropped_event(format.dropped_status);
    let settings = Settings::default();
    let host = PluginHost::new(HostOptions {
        limits: PluginLimits::default(),
        cache_dir: None,
        ..HostOptions::default()
    })
    .expect("plugin host");
    let plugin = host.load(name, Path::new(".")).expect("built-in loads");
    eprintln!("profiling {name} {path} for 10 s");
    let until = Instant::now() + std::time::Duration::from_secs(10);
    let mut calls = 0u64;
    while Instant::now() < until {
        for event in &events {
            match path {
                "batch" => {
                    let _ = black_box(plugin.render_batch(OWNER, &events, &settings));
                    calls += BATCH as u64;
                    break;
                }
                "drop" => {
                    let _ = black_box(plugin.render(OWNER, &dropped, &settings));
                }
                _ => {
                    let _ = black_box(plugin.render(OWNER, event, &settings));
                }
            }
            calls += 1;
        }
    }
    eprintln!("{calls} events");
}

/// The 1-, 5- and 15-minute load averages (Linux), to show whether something
/// else competed for the CPU during the run.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

/// Nanoseconds as microseconds, two decimals.
fn us(ns: f64) -> String {
    format!("{:.2}", ns / 1e3)
}

/// Nanoseconds as milliseconds, two decimals.
fn ms(ns: f64) -> String {
    format!("{:.2}", ns / 1e6)
}

fn print_tables(rows: &[Row], pooling: bool, elapsed: f64, load_before: &str, load_after: &str) {
    println!("## Plugin host benchmark\n");
    println!(
        "Event: `failed` with campaign, template and error; {BATCH} distinct events cycled. \
         Pooling allocator: {}.\n",
        if pooling { "on" } else { "off (on-demand)" }
    );

    println!("### Per event (µs; median / p90)\n");
    println!(
        "| plugin | wasm KiB | body B | fresh instance (`render`) | warm instance (`render`) | batch of {BATCH} (`render_batch`) / event | native (`render` + `json_body`) | fresh / native | batch / native |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.0} | {} | {} / {} | {} / {} | {} / {} | {} / {} | {:.0}x | {:.1}x |",
            r.name,
            r.wasm_kib,
            r.body_bytes,
            us(r.fresh.median),
            us(r.fresh.p90),
            us(r.warm.median),
            us(r.warm.p90),
            us(r.batch.median),
            us(r.batch.p90),
            us(r.native.median),
            us(r.native.p90),
            r.fresh.median / r.native.median,
            r.batch.median / r.native.median,
        );
    }

    println!("\n### Where the fresh-instance time goes (µs, medians)\n");
    println!(
        "| plugin | instantiate + dropped event (`render` → `Ok(None)`) | fresh − batch (≈ instantiate + per-call setup) | batch − native (≈ canonical ABI + slower wasm code) |"
    );
    println!("|---|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} / {} | {} | {} |",
            r.name,
            us(r.drop.median),
            us(r.drop.p90),
            us(r.fresh.median - r.batch.median),
            us(r.batch.median - r.native.median),
        );
    }

    println!("\n### Loading (ms; median / p90)\n");
    println!("| plugin | compile (`load_bytes`, no cache) | load from primed cache |");
    println!("|---|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} / {} (n={}) | {} / {} (n={}) |",
            r.name,
            ms(r.compile.median),
            ms(r.compile.p90),
            r.compile.samples,
            ms(r.cached_load.median),
            ms(r.cached_load.p90),
            r.cached_load.samples,
        );
    }

    println!(
        "\nSamples: fresh and drop {RENDER_CALLS} calls each timed alone; batch {BATCH_SAMPLES} batches; \
         native {NATIVE_SAMPLES} samples of {NATIVE_CALLS_PER_SAMPLE} calls. Total run {elapsed:.1} s; \
         load average before {load_before}, after {load_after}."
    );
}
