//! A test guest that misbehaves on purpose, for the plugin host's tests.
//!
//! The webhook setting `mode` picks the behaviour (absent means `ok`):
//!
//! | mode | does |
//! |---|---|
//! | `ok` | `{"id": <event id>, "status": <status>}` as JSON |
//! | `loop` | spins forever (the host's deadline must stop it) |
//! | `memory` | allocates and touches 1 MiB chunks forever (the memory limit must stop it) |
//! | `trap` | panics, which aborts (traps) the component |
//! | `big-output` | a JSON-typed body of `bytes` bytes (default 100 000 000) |
//! | `forbidden-header` | the ok body plus header `header` (default `Authorization`): `x` |
//! | `bad-content-type` | a content type with a CRLF and an injected header |
//! | `bad-json` | content type `application/json` with a body that is not JSON |
//! | `bad-header-name` | the ok body plus a header named `Bad Header` |
//! | `reject` | `Err("hostile guest: rejected on purpose")` |
//! | `log-flood` | 100 000 warn lines of 1 KiB each, then the ok body |
//! | `count` | the ok body plus `calls`: how many calls this instance has served |
//!
//! Any other mode is an error naming it. Not an example of a plugin to copy:
//! see `examples/crm-plugin` for that.

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};

/// Calls this instance has served (`count` mode): tells a warm instance from
/// a fresh one.
static CALLS: AtomicU32 = AtomicU32::new(0);

use statushook_plugin::{Outgoing, Plugin, Settings, StatusEvent};

/// The hostile plugin.
pub struct Hostile;

impl Plugin for Hostile {
    fn format(event: StatusEvent, settings: Settings) -> Result<Option<Outgoing>, String> {
        let mode = settings.get("mode").unwrap_or("ok");
        let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        let outgoing = match mode {
            "ok" => ok(&event),
            "loop" => spin(),
            "memory" => hoard(),
            "trap" => panic!("hostile guest: deliberate trap"),
            "big-output" => {
                let bytes = match settings.get("bytes") {
                    Some(text) => text
                        .parse()
                        .map_err(|e| format!("hostile guest: setting bytes {text:?}: {e}"))?,
                    None => 100_000_000,
                };
                Outgoing {
                    content_type: "application/json".to_string(),
                    headers: Vec::new(),
                    body: vec![b'a'; bytes],
                }
            }
            "forbidden-header" => {
                let name = settings.get("header").unwrap_or("Authorization");
                with_header(ok(&event), name)
            }
            "bad-content-type" => Outgoing {
                content_type: "application/json\r\nX-Injected: 1".to_string(),
                ..ok(&event)
            },
            "bad-json" => Outgoing {
                content_type: "application/json".to_string(),
                headers: Vec::new(),
                body: br#"{"not": json"#.to_vec(),
            },
            "bad-header-name" => with_header(ok(&event), "Bad Header"),
            "reject" => return Err("hostile guest: rejected on purpose".to_string()),
            "log-flood" => {
                let line = "x".repeat(1024);
                for _ in 0..100_000 {
                    statushook_plugin::log::warn(&line);
                }
                ok(&event)
            }
            "count" => statushook_plugin::json_body(&statushook_plugin::serde_json::json!({
                "id": event.id,
                "status": event.status.as_str(),
                "calls": calls,
            })),
            other => return Err(format!("hostile guest: unknown mode {other:?}")),
        };
        Ok(Some(outgoing))
    }
}

#[cfg(target_arch = "wasm32")]
statushook_plugin::export_plugin!(Hostile);

/// The well-behaved body: the event id and status.
fn ok(event: &StatusEvent) -> Outgoing {
    statushook_plugin::json_body(&statushook_plugin::serde_json::json!({
        "id": event.id,
        "status": event.status.as_str(),
    }))
}

/// `outgoing` with one more header `name: x`.
fn with_header(mut outgoing: Outgoing, name: &str) -> Outgoing {
    outgoing.headers.push((name.to_string(), "x".to_string()));
    outgoing
}

/// Never returns; `black_box` keeps the optimiser from proving the loop
/// side-effect free and deleting it.
fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Allocates and writes 1 MiB chunks until the host stops it (or allocation
/// fails, which aborts).
fn hoard() -> ! {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        // Writing non-zero bytes touches every page, so the memory is really used.
        chunks.push(black_box(vec![1u8; 1 << 20]));
        black_box(&mut chunks);
    }
}
