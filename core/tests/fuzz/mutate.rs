//! Mutators: turn a seed document into the inputs a parser rarely sees.
//!
//! JSON is mutated as a tree (nodes replaced, retyped, removed, duplicated,
//! nested, grafted from another document) and as bytes; TOML line by line
//! and as bytes. All of it is driven by a `fastrand::Rng` seeded from the
//! fuzz engine's input, so a failing case replays from its seed.

use serde_json::{Value, json};

/// Strings that reach interesting branches.
pub const WORDS: &[&str] = &[
    "",
    "messages",
    "whatsapp_business_account",
    "instagram",
    "sent",
    "delivered",
    "read",
    "played",
    "failed",
    "deleted",
    "replied",
    "queued",
    "1099887766",
    "2000111222",
    "3000999888",
    "15550001111",
    "+15550002222",
    "+",
    "1750857384",
    "0",
    "-1",
    "1099511627776",
    "99999999999999999999999",
    "1e400",
    "wamid.HBgLMTU1NTA",
    "{\"campaign_id\":\"c-1\",\"campaign_name\":\"N\",\"template\":\"t\"}",
    "{\"campaign_id\":7}",
    "{\"template\":\"\"}",
    "[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]",
    "{",
    "é👍",
    "tab\there",
    "nul\u{0}byte",
    "acme",
];

pub const KEYS: &[&str] = &[
    "object",
    "entry",
    "id",
    "changes",
    "field",
    "value",
    "metadata",
    "phone_number_id",
    "display_phone_number",
    "statuses",
    "messages",
    "errors",
    "status",
    "timestamp",
    "recipient_id",
    "recipient_user_id",
    "recipient_type",
    "biz_opaque_callback_data",
    "conversation",
    "pricing",
    "code",
    "title",
    "message",
    "error_data",
    "details",
    "context",
    "from",
    "type",
    "button",
    "text",
    "body",
    "interactive",
    "button_reply",
    "list_reply",
    "reaction",
    // canonical event fields, for parse_batch
    "bot_id",
    "message_id",
    "recipient",
    "sender",
    "channel_name",
    "campaign",
    "template",
    "reply",
    "error",
    "final",
    "name",
    "trace_id",
    "unknown",
];

pub fn random_string(rng: &mut fastrand::Rng) -> String {
    match rng.u8(..10) {
        0 => "w".repeat(rng.usize(200..700)),
        1 => (0..rng.usize(0..20)).map(|_| rng.char(..)).collect(),
        _ => WORDS[rng.usize(..WORDS.len())].to_string(),
    }
}

pub fn random_number(rng: &mut fastrand::Rng) -> Value {
    match rng.u8(..7) {
        0 => json!(rng.u64(..)),
        1 => json!(rng.i64(..)),
        2 => json!(rng.f64() * 1e308),
        3 => json!(1750857384u64),
        4 => json!(1u64 << 40),
        5 => json!(-0.5),
        _ => json!(rng.u64(..100)),
    }
}

pub fn random_value(rng: &mut fastrand::Rng, depth: usize) -> Value {
    let leaf = depth == 0 || rng.u8(..3) == 0;
    match rng.u8(..if leaf { 4 } else { 6 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.bool()),
        2 => random_number(rng),
        3 => Value::String(random_string(rng)),
        4 => Value::Array(
            (0..rng.usize(0..4))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.usize(0..5))
                .map(|_| {
                    (
                        KEYS[rng.usize(..KEYS.len())].to_string(),
                        random_value(rng, depth - 1),
                    )
                })
                .collect(),
        ),
    }
}

/// Every node's path in `value`.
pub fn paths(value: &Value, prefix: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    out.push(prefix.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                prefix.push(Seg::Key(key.clone()));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                prefix.push(Seg::Index(index));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

#[derive(Clone)]
pub enum Seg {
    Key(String),
    Index(usize),
}

pub fn node_mut<'a>(value: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |node, seg| match seg {
        Seg::Key(key) => node.get_mut(key.as_str()),
        Seg::Index(index) => node.get_mut(*index),
    })
}

/// One structure-aware mutation of `value`: a node replaced, retyped,
/// removed, duplicated, or grafted from `donor`.
pub fn mutate_tree(rng: &mut fastrand::Rng, value: &mut Value, donor: &Value) {
    let mut all = Vec::new();
    paths(value, &mut Vec::new(), &mut all);
    let path = all[rng.usize(..all.len())].clone();
    let mut donor_paths = Vec::new();
    paths(donor, &mut Vec::new(), &mut donor_paths);
    let graft = {
        let donor_path = &donor_paths[rng.usize(..donor_paths.len())];
        let mut donor = donor.clone();
        node_mut(&mut donor, donor_path)
            .map(|n| n.take())
            .unwrap_or(Value::Null)
    };
    let Some(node) = node_mut(value, &path) else {
        return;
    };
    match rng.u8(..8) {
        0 => *node = random_value(rng, 3),
        1 => *node = graft,
        2 => {
            // Retype: numbers to strings and back, strings to numbers.
            *node = match node.take() {
                Value::String(s) => s
                    .parse::<u64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| json!(s.len())),
                Value::Number(n) => Value::String(n.to_string()),
                Value::Array(items) => items.into_iter().next().unwrap_or(Value::Null),
                other => json!([other]),
            }
        }
        3 => match node {
            Value::Object(map) if !map.is_empty() => {
                let key = map
                    .keys()
                    .nth(rng.usize(..map.len()))
                    .cloned()
                    .unwrap_or_default();
                map.remove(&key);
            }
            Value::Array(items) if !items.is_empty() => {
                items.remove(rng.usize(..items.len()));
            }
            other => *other = Value::Null,
        },
        4 => match node {
            Value::Array(items) if !items.is_empty() => {
                let copy = items[rng.usize(..items.len())].clone();
                for _ in 0..rng.usize(1..4) {
                    items.push(copy.clone());
                }
            }
            Value::Object(map) => {
                map.insert(
                    KEYS[rng.usize(..KEYS.len())].to_string(),
                    random_value(rng, 2),
                );
            }
            other => *other = json!([other.take()]),
        },
        5 => *node = Value::String(random_string(rng)),
        6 => *node = random_number(rng),
        _ => {
            // Nest it: deep, but below serde_json's recursion limit.
            let mut nested = node.take();
            for _ in 0..rng.usize(1..100) {
                nested = json!([nested]);
            }
            *node = nested;
        }
    }
}

/// Byte-level mutations: flips, JSON-significant insertions, deletions,
/// duplicated ranges, truncation.
pub fn mutate_bytes(rng: &mut fastrand::Rng, bytes: &mut Vec<u8>) {
    const SIGNIFICANT: &[u8] = b"{}[]\",:0123456789-+eE.\\ntf \x00\xff\xc3";
    for _ in 0..rng.usize(1..9) {
        if bytes.is_empty() {
            bytes.push(b'{');
        }
        let at = rng.usize(..bytes.len());
        match rng.u8(..6) {
            0 => bytes[at] ^= 1 << rng.u8(..8),
            1 => bytes.insert(at, SIGNIFICANT[rng.usize(..SIGNIFICANT.len())]),
            2 => {
                let end = (at + rng.usize(1..64)).min(bytes.len());
                bytes.drain(at..end);
            }
            3 => {
                let end = (at + rng.usize(1..256)).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                let to = rng.usize(..=bytes.len());
                bytes.splice(to..to, copy);
            }
            4 => bytes.truncate(at),
            _ => bytes[at] = SIGNIFICANT[rng.usize(..SIGNIFICANT.len())],
        }
    }
}

/// Values a config key might be given, valid and not.
const TOML_VALUES: &[&str] = &[
    "\"\"",
    "0",
    "-1",
    "1e400",
    "true",
    "[]",
    "{}",
    "\"1ms\"",
    "\"0s\"",
    "\"99999999999999999h\"",
    "\"5s\"",
    "[\"all\"]",
    "[\"read\", \"bogus\"]",
    "\"${MISSING_VAR}\"",
    "\"${FUZZ_TOKEN}\"",
    "\"${\"",
    "\"http://10.0.0.1/x\"",
    "\"http://[::1]:0/\"",
    "\"https://example.com/a\"",
    "\"redis://127.0.0.1:1\"",
    "\"50/s\"",
    "\"0/s\"",
    "\"1000000000/ms\"",
    "\"jelou\"",
    "\"plugins/nope.wasm\"",
    "{ type = \"bearer\", token = \"t\" }",
    "{ type = \"hmac-sha256\", secret = \"s\", header = \"Content-Type\" }",
    "{ type = \"standard-webhooks\", secrets = [] }",
    "{ type = \"standard-webhooks\", secret = \"whsec_!!\" }",
    "\"127.0.0.1:0\"",
    "\"[::1]:99999\"",
    "9223372036854775808",
    "\"é👍\"",
    "[[1], [\"a\"]]",
];

/// Keys from the config reference, and one that is not.
const TOML_KEYS: &[&str] = &[
    "listen",
    "admin_listen",
    "ingest_tokens",
    "admin_tokens",
    "max_body_bytes",
    "header_read_timeout",
    "idle_timeout",
    "body_read_timeout",
    "max_connections",
    "backend",
    "url",
    "prefix",
    "path",
    "dedup_window",
    "timeout",
    "retry_schedule",
    "allow_private_networks",
    "verify_token",
    "app_secrets",
    "id",
    "channel_name",
    "phone_number_ids",
    "ingest_rate_limit",
    "name",
    "events",
    "plugin",
    "auth",
    "sign",
    "rate_limit",
    "include",
    "bogus_key",
];

/// Table headers, real and not.
const TOML_HEADERS: &[&str] = &[
    "[server]",
    "[queue]",
    "[delivery]",
    "[meta]",
    "[[bots]]",
    "[[bots.webhooks]]",
    "[bots]",
    "[[server]]",
    "[plugins]",
    "[bots.webhooks.auth]",
];

fn pick<'a>(rng: &mut fastrand::Rng, from: &[&'a str]) -> &'a str {
    from[rng.usize(..from.len())]
}

/// Line-level mutations of a TOML document: lines removed, duplicated,
/// swapped; values and keys replaced from the reference; tables inserted.
pub fn mutate_toml(rng: &mut fastrand::Rng, text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for _ in 0..rng.usize(1..5) {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let at = rng.usize(..lines.len());
        match rng.u8(..7) {
            0 => {
                lines.remove(at);
            }
            1 => {
                let copy = lines[at].clone();
                lines.insert(rng.usize(..=lines.len()), copy);
            }
            2 => {
                let other = rng.usize(..lines.len());
                lines.swap(at, other);
            }
            3 => {
                if let Some((key, _)) = lines[at].split_once('=') {
                    lines[at] = format!("{key}= {}", pick(rng, TOML_VALUES));
                }
            }
            4 => {
                if let Some((_, value)) = lines[at].split_once('=') {
                    lines[at] = format!("{} ={value}", pick(rng, TOML_KEYS));
                }
            }
            5 => lines.insert(at, pick(rng, TOML_HEADERS).to_string()),
            _ => {
                let line = format!("{} = {}", pick(rng, TOML_KEYS), pick(rng, TOML_VALUES));
                lines.insert(at, line);
            }
        }
    }
    lines.join("\n")
}
