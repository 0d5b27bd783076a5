//! The plugin host through real components: the built-in formats against the
//! spec's worked cases, hostile guests, load errors and the compiled cache.

mod support;

use std::time::Duration;

use statushook::event::parse_event;
use statushook::plugin::{HostOptions, LoadError, PluginHost, PluginLimits, RenderError, Settings};
use support::{event, guest, host, host_with, vectors};

/// The webhook the renders are for: instances are kept warm per owner.
const OWNER: &str = "acme/crm";

fn settings(pairs: &[(&str, &str)]) -> Settings {
    pairs.iter().map(|(k, v)| (*k, *v)).collect()
}

fn check_vectors(provider: &str) {
    let plugin = host().load(provider, ".".as_ref()).expect("built-in loads");
    let cases = vectors(provider);
    assert!(!cases.is_empty(), "{provider}: no cases");
    for case in cases {
        let event = parse_event(case.event.to_string().as_bytes()).unwrap_or_else(|e| {
            panic!(
                "{provider} / {}: the vector's event is invalid: {e}",
                case.name
            )
        });
        let rendered = plugin
            .render(OWNER, &event, &Settings::default())
            .unwrap_or_else(|e| panic!("{provider} / {}: {e}", case.name));
        match (rendered, &case.expect) {
            (None, serde_json::Value::Null) => {}
            (None, expect) => panic!("{provider} / {}: dropped, expected {expect}", case.name),
            (Some(out), expect) => {
                assert_eq!(
                    out.content_type, "application/json",
                    "{provider} / {}",
                    case.name
                );
                let body: serde_json::Value = serde_json::from_slice(&out.body).expect("JSON body");
                assert_eq!(&body, expect, "{provider} / {}", case.name);
            }
        }
    }
}

#[test]
fn jelou_reproduces_every_vector() {
    check_vectors("jelou");
}

#[test]
fn engage_reproduces_every_vector() {
    check_vectors("engage");
}

#[test]
fn connectly_reproduces_every_vector() {
    check_vectors("connectly");
}

#[test]
fn wpp_reproduces_every_vector() {
    check_vectors("wpp");
}

#[test]
fn batch_path_renders_like_single_calls() {
    let plugin = host().load("jelou", ".".as_ref()).expect("loads");
    let events: Vec<_> = ["sent", "delivered", "queued", "read", "failed"]
        .iter()
        .map(|s| event(s))
        .collect();
    let batch = plugin.render_batch(OWNER, &events, &Settings::default());
    assert_eq!(batch.len(), events.len());
    for (event, result) in events.iter().zip(batch) {
        assert_eq!(
            result,
            plugin.render(OWNER, event, &Settings::default()),
            "{}",
            event.status
        );
    }
}

/// Renders with the hostile guest in `mode`, then proves the host still
/// serves: the same plugin in `ok` mode and a built-in both render.
fn hostile(mode: &str, extra: &[(&str, &str)]) -> RenderError {
    hostile_on(host(), mode, extra)
}

fn hostile_on(host: &PluginHost, mode: &str, extra: &[(&str, &str)]) -> RenderError {
    let plugin = host
        .load_file(&guest("hostile"))
        .expect("hostile guest loads");
    let mut pairs = vec![("mode", mode)];
    pairs.extend_from_slice(extra);
    let error = plugin
        .render(OWNER, &event("read"), &settings(&pairs))
        .expect_err("the hostile call must fail");
    let after = plugin.render(OWNER, &event("read"), &settings(&[("mode", "ok")]));
    assert!(
        matches!(after, Ok(Some(_))),
        "the plugin serves the next call after {mode}: {after:?}"
    );
    let jelou = host.load("jelou", ".".as_ref()).expect("loads");
    assert!(matches!(
        jelou.render(OWNER, &event("read"), &Settings::default()),
        Ok(Some(_))
    ));
    error
}

#[test]
fn infinite_loop_is_stopped_at_the_deadline() {
    let started = std::time::Instant::now();
    let error = hostile("loop", &[]);
    let took = started.elapsed();
    assert_eq!(error.code(), "timeout", "{error}");
    assert!(error.to_string().contains("100 ms"), "{error}");
    // The limit is CPU time: the loop cannot have used 100 ms of it in
    // less wall time (the rest of `hostile` only adds to `took`), and the
    // wall-time backstop is ten times the limit.
    assert!(took >= Duration::from_millis(100), "stopped after {took:?}");
}

/// A host whose deadline is far away, for tests about other limits: on a
/// loaded 2-core machine, filling 64 MiB can take longer than 100 ms.
fn patient_host() -> &'static PluginHost {
    static HOST: std::sync::OnceLock<PluginHost> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        host_with(PluginLimits {
            timeout: Duration::from_secs(30),
            ..PluginLimits::default()
        })
    })
}

#[test]
fn memory_bomb_is_stopped_at_the_limit() {
    let error = hostile_on(patient_host(), "memory", &[]);
    assert!(
        matches!(error, RenderError::MemoryLimit { limit_bytes, .. } if limit_bytes == 64 << 20),
        "{error}"
    );
}

#[test]
fn a_trap_is_reported_with_the_guest_panic_message() {
    let error = hostile("trap", &[]);
    assert_eq!(error.code(), "trap");
    assert!(
        error.to_string().contains("hostile guest: deliberate trap"),
        "{error}"
    );
}

#[test]
fn a_100_mb_output_is_refused() {
    // With the default 64 MiB memory the guest cannot even build it...
    let error = hostile_on(patient_host(), "big-output", &[]);
    assert_eq!(error.code(), "memory_limit", "{error}");
    // ...and with room (and time) for it, the output cap refuses it.
    let roomy = host_with(PluginLimits {
        max_memory_bytes: 256 << 20,
        timeout: Duration::from_secs(30),
        ..PluginLimits::default()
    });
    let error = hostile_on(&roomy, "big-output", &[]);
    assert_eq!(
        error,
        RenderError::OutputTooLarge {
            plugin: guest("hostile").display().to_string(),
            size: 100_000_000,
            limit: 1 << 20,
        }
    );
    // A body just under the cap is fine.
    let plugin = host().load_file(&guest("hostile")).expect("loads");
    let ok = plugin.render(
        OWNER,
        &event("read"),
        &settings(&[("mode", "big-output"), ("bytes", "1048576")]),
    );
    assert!(
        matches!(ok, Err(RenderError::MalformedOutput { .. })),
        "a JSON content type with a non-JSON body: {ok:?}"
    );
}

#[test]
fn forbidden_headers_are_refused() {
    for header in [
        "Authorization",
        "webhook-signature",
        "Webhook-Id",
        "Host",
        "Content-Length",
        "X-Hub-Signature-256",
    ] {
        let error = hostile("forbidden-header", &[("header", header)]);
        assert_eq!(
            error,
            RenderError::ForbiddenHeader {
                plugin: guest("hostile").display().to_string(),
                header: header.into()
            }
        );
    }
}

#[test]
fn malformed_output_is_refused() {
    for mode in ["bad-content-type", "bad-json", "bad-header-name"] {
        let error = hostile(mode, &[]);
        assert_eq!(error.code(), "malformed_output", "{mode}: {error}");
    }
}

#[test]
fn a_plugin_refusal_is_its_own_error() {
    let error = hostile("reject", &[]);
    assert!(
        matches!(&error, RenderError::Rejected { reason, .. } if reason == "hostile guest: rejected on purpose"),
        "{error}"
    );
}

#[test]
fn a_log_flood_is_capped_and_the_call_completes() {
    let plugin = patient_host().load_file(&guest("hostile")).expect("loads");
    let out = plugin.render(OWNER, &event("read"), &settings(&[("mode", "log-flood")]));
    assert!(matches!(out, Ok(Some(_))), "{out:?}");
}

#[test]
fn a_batch_with_a_trapping_plugin_fails_each_event_and_recovers() {
    let plugin = host().load_file(&guest("hostile")).expect("loads");
    let events = vec![event("read"), event("sent"), event("failed")];
    let results = plugin.render_batch(OWNER, &events, &settings(&[("mode", "trap")]));
    assert_eq!(results.len(), 3);
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(RenderError::Trap { .. }))),
        "{results:?}"
    );
    let results = plugin.render_batch(OWNER, &events, &settings(&[("mode", "ok")]));
    assert!(
        results.iter().all(|r| matches!(r, Ok(Some(_)))),
        "{results:?}"
    );
}

#[test]
fn a_component_without_the_formatter_export_is_refused() {
    let error = host()
        .load_file(&guest("no_export"))
        .expect_err("must not load");
    assert!(
        matches!(&error, LoadError::MissingExport { exports, .. } if exports == "run"),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("statushook:plugin/formatter@0.1.0"),
        "{error}"
    );
}

/// A component importing `import` (an empty instance) and exporting nothing.
fn component_importing(import: &str) -> Vec<u8> {
    use wasm_encoder::{
        Component, ComponentImportSection, ComponentTypeRef, ComponentTypeSection, InstanceType,
    };
    let mut types = ComponentTypeSection::new();
    types.instance(&InstanceType::new());
    let mut imports = ComponentImportSection::new();
    imports.import(import, ComponentTypeRef::Instance(0));
    let mut component = Component::new();
    component.section(&types);
    component.section(&imports);
    component.finish()
}

#[test]
fn what_the_host_would_refuse_is_refused_before_any_compile() {
    let cache = tempfile::tempdir().expect("temp dir");
    let host = PluginHost::new(HostOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        ..HostOptions::default()
    })
    .expect("host");
    let error = host
        .load_bytes("js-plugin", &component_importing("wasi:http/types@0.2.3"))
        .expect_err("must not load");
    let text = error.to_string();
    assert!(
        text.contains("imports wasi:http/types@0.2.3") && text.contains("-d http -d fetch-event"),
        "{text}"
    );
    let error = host
        .load_bytes("odd", &component_importing("acme:secrets/vault"))
        .expect_err("must not load");
    assert!(
        error.to_string().contains("imports acme:secrets/vault"),
        "{error}"
    );
    // Refused on their imports and exports alone: nothing was compiled.
    for guest_name in ["no_export", "other_wit"] {
        assert!(host.load_file(&guest(guest_name)).is_err());
    }
    let compiled = std::fs::read_dir(cache.path())
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(compiled, 0, "no compiled component was cached");
}

#[test]
fn a_plugin_built_against_another_wit_version_is_refused() {
    let error = host()
        .load_file(&guest("other_wit"))
        .expect_err("must not load");
    assert!(
        matches!(&error, LoadError::WrongVersion { found, .. } if found == "statushook:plugin/formatter@0.2.0"),
        "{error}"
    );
}

#[test]
fn a_plugin_whose_wit_changed_at_the_same_version_is_refused_naming_what_differs() {
    let error = host()
        .load_file(&guest("changed_wit"))
        .expect_err("must not load");
    let text = error.to_string();
    assert!(
        text.contains("`format` parameter `event`: field `timestamp`: the host's WIT has u64, the plugin's u32"),
        "{text}"
    );
}

#[test]
fn bytes_that_are_not_a_component_are_refused() {
    let error = host()
        .load_bytes("junk", b"this is not wasm")
        .expect_err("must not load");
    assert!(error.to_string().contains("not WebAssembly"), "{error}");
    let core_module = b"\0asm\x01\0\0\0";
    let error = host()
        .load_bytes("core", core_module)
        .expect_err("must not load");
    assert!(
        error.to_string().contains("core WebAssembly module"),
        "{error}"
    );
    let error = host()
        .load("no-such-format", ".".as_ref())
        .expect_err("must not load");
    assert!(matches!(error, LoadError::UnknownBuiltin(_)), "{error}");
    let error = host()
        .load("missing/plugin.wasm", ".".as_ref())
        .expect_err("must not load");
    assert!(matches!(error, LoadError::Read { .. }), "{error}");
}

#[test]
fn compiled_plugins_are_cached_and_a_bad_entry_is_a_miss() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = || statushook::plugin::HostOptions {
        limits: PluginLimits::default(),
        cache_dir: Some(dir.path().to_path_buf()),
        pooling: true,
    };
    let first = PluginHost::new(options()).expect("host");
    first.load("wpp", ".".as_ref()).expect("compiles");
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(entries.len(), 1, "one compiled artifact: {entries:?}");
    assert!(entries[0].to_string_lossy().ends_with(".cwasm"));

    // A second host (a restart) loads from the cache and renders the same.
    let second = PluginHost::new(options()).expect("host");
    let plugin = second.load("wpp", ".".as_ref()).expect("loads from cache");
    assert!(matches!(
        plugin.render(OWNER, &event("read"), &Settings::default()),
        Ok(Some(_))
    ));

    // A corrupted entry is ignored, recompiled and rewritten.
    std::fs::write(&entries[0], b"garbage").expect("corrupt");
    let third = PluginHost::new(options()).expect("host");
    let plugin = third.load("wpp", ".".as_ref()).expect("recompiles");
    assert!(matches!(
        plugin.render(OWNER, &event("read"), &Settings::default()),
        Ok(Some(_))
    ));
    assert!(std::fs::metadata(&entries[0]).expect("rewritten").len() > 1000);
}

#[test]
fn more_concurrent_renders_than_slots_wait_instead_of_failing() {
    let host = host_with(PluginLimits {
        max_concurrent_instances: 2,
        ..PluginLimits::default()
    });
    let plugin = host.load("connectly", ".".as_ref()).expect("loads");
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    for _ in 0..50 {
                        let out = plugin.render(OWNER, &event("failed"), &Settings::default());
                        assert!(matches!(out, Ok(Some(_))), "{out:?}");
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("render thread");
        }
    });
}

#[test]
fn a_slow_plugin_does_not_block_other_plugins() {
    // While one thread is stuck in an infinite loop, another renders. The
    // loop's timeout is long enough for the other renders to finish first
    // on the slowest machine.
    let host = host_with(PluginLimits {
        timeout: Duration::from_secs(2),
        ..PluginLimits::default()
    });
    let plugin = host.load_file(&guest("hostile")).expect("loads");
    let jelou = host.load("jelou", ".".as_ref()).expect("loads");
    let started = std::sync::Barrier::new(2);
    std::thread::scope(|scope| {
        let stuck = scope.spawn(|| {
            started.wait();
            plugin.render(OWNER, &event("read"), &settings(&[("mode", "loop")]))
        });
        started.wait();
        for _ in 0..20 {
            assert!(matches!(
                jelou.render(OWNER, &event("read"), &Settings::default()),
                Ok(Some(_))
            ));
        }
        // Had the loop held the other renders up, it would have timed out
        // (and finished) before they did.
        assert!(!stuck.is_finished(), "the other plugin waited for the loop");
        assert_eq!(
            stuck.join().expect("thread").expect_err("times out").code(),
            "timeout"
        );
    });
}

#[test]
fn a_plugin_that_cannot_start_under_the_limits_is_refused_at_load() {
    // Its initial memory (128 MiB) is over the 64 MiB limit.
    let error = host()
        .load_file(&guest("trap_on_load"))
        .expect_err("must not load");
    assert!(error.to_string().contains("exceeds the limit"), "{error}");
    // The on-demand allocator (no pool to reject it at compile time) refuses
    // it by trial instantiation instead.
    let on_demand = support::host_with_options(PluginLimits::default(), false);
    assert!(!on_demand.is_pooling());
    let error = on_demand
        .load_file(&guest("trap_on_load"))
        .expect_err("must not load");
    assert!(matches!(error, LoadError::CannotStart { .. }), "{error}");
    assert!(error.to_string().contains("memory"), "{error}");
}

#[test]
fn a_plugin_learns_what_its_renders_cost() {
    // Ingest renders on its async thread only plugins known to be cheap:
    // unmeasured and slow ones go to the blocking pool.
    let host = host_with(PluginLimits {
        timeout: Duration::from_millis(50),
        ..PluginLimits::default()
    });
    let jelou = host.load("jelou", ".".as_ref()).expect("loads");
    assert_eq!(jelou.typical_cost(), None, "not measured before a render");
    jelou
        .render(OWNER, &event("read"), &Settings::default())
        .expect("renders");
    assert!(jelou.typical_cost().is_some_and(|c| c > Duration::ZERO));

    let slow = host.load_file(&guest("hostile")).expect("loads");
    let _ = slow.render(OWNER, &event("read"), &settings(&[("mode", "loop")]));
    assert!(
        slow.typical_cost()
            .is_some_and(|c| c >= Duration::from_millis(40)),
        "a render that ran to its time limit makes the plugin expensive: {:?}",
        slow.typical_cost()
    );
}

/// The `calls` a `count`-mode render reports: how many calls the instance
/// that rendered it has served.
fn calls_served(plugin: &statushook::plugin::Plugin, owner: &str) -> u64 {
    let out = plugin
        .render(owner, &event("read"), &settings(&[("mode", "count")]))
        .expect("renders")
        .expect("sends");
    let body: serde_json::Value = serde_json::from_slice(&out.body).expect("JSON");
    body["calls"].as_u64().expect("calls")
}

#[test]
fn a_webhook_gets_its_warm_instance_back_and_no_other_webhook_does() {
    let host = host_with(PluginLimits::default());
    let plugin = host.load_file(&guest("hostile")).expect("loads");
    assert_eq!(calls_served(&plugin, "acme/crm"), 1);
    assert_eq!(
        calls_served(&plugin, "acme/crm"),
        2,
        "the same instance again"
    );
    // Another tenant's webhook on the same plugin: never acme's instance.
    assert_eq!(calls_served(&plugin, "globex/crm"), 1);
    assert_eq!(calls_served(&plugin, "acme/crm"), 3);
    let (instances, bytes) = host.warm_usage();
    assert_eq!(instances, 2, "one kept per webhook");
    assert!(
        bytes >= 2 * 64 * 1024,
        "each holds its linear memory: {bytes} bytes"
    );
    assert!(plugin.instance_memory_bytes() >= 64 * 1024);

    // A trapped instance is not kept: the next render starts fresh.
    let trapped = plugin.render("acme/crm", &event("read"), &settings(&[("mode", "trap")]));
    assert!(
        matches!(trapped, Err(RenderError::Trap { .. })),
        "{trapped:?}"
    );
    assert_eq!(calls_served(&plugin, "acme/crm"), 1);

    // A reload that drops the plugin returns its instances' memory.
    drop(plugin);
    assert_eq!(host.warm_usage(), (0, 0));
}

#[test]
fn warm_instances_stay_within_their_memory_budget_and_can_be_turned_off() {
    let off = host_with(PluginLimits {
        warm_memory_bytes: 0,
        ..PluginLimits::default()
    });
    let plugin = off.load_file(&guest("hostile")).expect("loads");
    for _ in 0..3 {
        assert_eq!(
            calls_served(&plugin, "acme/crm"),
            1,
            "a fresh instance each time"
        );
    }
    assert_eq!(off.warm_usage(), (0, 0));

    // Room for one instance (and its growth in a call), not two: the second
    // webhook's is not kept.
    let probe = host_with(PluginLimits::default());
    let one = probe
        .load_file(&guest("hostile"))
        .expect("loads")
        .instance_memory_bytes();
    let tight = host_with(PluginLimits {
        warm_memory_bytes: usize::try_from(one * 3 / 2).expect("fits"),
        ..PluginLimits::default()
    });
    let plugin = tight.load_file(&guest("hostile")).expect("loads");
    calls_served(&plugin, "acme/crm");
    calls_served(&plugin, "globex/crm");
    assert_eq!(tight.warm_usage().0, 1);
    assert_eq!(calls_served(&plugin, "acme/crm"), 2);
    assert_eq!(calls_served(&plugin, "globex/crm"), 1);
}
