//! The soak's config: 100 bots, two webhooks each, on four receivers; which
//! webhooks an event must reach; and the config text, with the harmless
//! variants the chaos driver reloads.

use std::path::Path;

/// Bots that get load: `soak-000` .. `soak-099`.
pub const BOTS: usize = 100;
/// Receivers (endpoints) the webhooks are spread over.
pub const RECEIVERS: usize = 4;
/// Webhook names of every bot.
pub const HOOKS: [&str; 2] = ["a", "b"];
/// The built-in formats.
pub const PLUGINS: [&str; 4] = ["jelou", "engage", "connectly", "wpp"];

pub const INGEST_TOKEN: &str = "soak-ingest-token";
pub const ADMIN_TOKEN: &str = "soak-admin-token";
/// Webhook `b` authenticates with this bearer token.
pub const HOOK_B_TOKEN: &str = "soak-hook-b-token";
/// Webhook `a` is signed (Standard Webhooks) with this secret.
pub const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The environment variable each dispatcher's `listen` comes from (the two
/// share one config file).
pub const LISTEN_ENV: &str = "SOAK_LISTEN";

/// The statuses the load sends, with their weights (`disconnected` is left
/// out: it has no message id to find the event by in a body).
pub const STATUSES: [(&str, u32); 9] = [
    ("queued", 5),
    ("created", 5),
    ("sent", 15),
    ("delivered", 25),
    ("read", 20),
    ("replied", 6),
    ("failed", 12),
    ("number_not_found", 6),
    ("expired", 6),
];

pub fn bot_name(bot: usize) -> String {
    format!("soak-{bot:03}")
}

/// The bot index of a `soak-NNN` name.
pub fn bot_index(name: &str) -> Option<usize> {
    name.strip_prefix("soak-")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n < BOTS)
}

pub fn hook_index(name: &str) -> Option<usize> {
    HOOKS.iter().position(|h| *h == name)
}

/// Which receiver a bot's webhook posts to: `a` and `b` of one bot go to
/// neighbouring receivers, so one event's deliveries fare differently.
pub fn receiver_of(bot: usize, hook: usize) -> usize {
    (bot / 4 + hook) % RECEIVERS
}

/// The format of a bot's webhook: every pair of formats occurs.
pub fn plugin_of(bot: usize, hook: usize) -> usize {
    (bot + hook) % PLUGINS.len()
}

/// The `events` filter of a bot's webhook (`None`: `["all"]`).
pub fn events_of(bot: usize, hook: usize) -> Option<&'static [&'static str]> {
    if hook == 0 {
        return None;
    }
    Some(match bot % 3 {
        0 => &["delivered", "read"],
        1 => &["failed", "number_not_found", "expired", "replied"],
        _ => &["sent", "delivered", "read", "failed", "queued"],
    })
}

/// Whether a built-in format drops a status (docs/formats.md, "Which
/// statuses each format sends"; checked against the formats' own code by
/// [`check_drop_table`]).
pub fn drops(plugin: usize, status: &str) -> bool {
    match PLUGINS[plugin] {
        "jelou" => matches!(status, "queued" | "created" | "disconnected"),
        "engage" | "connectly" => {
            matches!(status, "queued" | "created" | "replied" | "disconnected")
        }
        _ => matches!(status, "sent" | "replied"),
    }
}

/// Whether an event of `status` for `bot` must reach webhook `hook`: its
/// filter matches and its format does not drop it.
pub fn expected(bot: usize, hook: usize, status: &str) -> bool {
    let matches = events_of(bot, hook).is_none_or(|list| list.contains(&status));
    matches && !drops(plugin_of(bot, hook), status)
}

/// One canonical event: `soak-<n>`, message `wamid.soak.<n>` (every format
/// carries the message id, so a receiver finds the event in any body).
pub fn event_json(n: usize, bot: usize, status: &str) -> serde_json::Value {
    let mut event = serde_json::json!({
        "id": format!("soak-{n}"),
        "bot_id": bot_name(bot),
        "message_id": format!("wamid.soak.{n}"),
        "status": status,
        "timestamp": 1_777_000_000u64 + n as u64,
        "recipient": "5939800000000",
        "sender": "16044441111",
    });
    if status == "replied" {
        event["reply"] = "Yes".into();
    }
    if matches!(status, "failed" | "number_not_found" | "expired") {
        event["error"] = serde_json::json!({"code": "131026", "message": "Message undeliverable"});
    }
    if matches!(status, "queued" | "created" | "sent" | "delivered") {
        event["final"] = false.into();
    }
    event
}

/// The event number in a body: the digits after `wamid.soak.`.
pub fn event_in_body(body: &[u8]) -> Option<usize> {
    const KEY: &[u8] = b"wamid.soak.";
    let start = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = body[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&body[start..start + len])
        .ok()?
        .parse()
        .ok()
}

/// Checks [`drops`] against the built-in formats compiled natively (the very
/// code the components are built from), for every status the load sends.
pub fn check_drop_table() -> Result<(), String> {
    type Render =
        fn(&statushook_plugin::StatusEvent) -> Option<statushook_plugin::serde_json::Value>;
    let natives: [Render; 4] = [
        jelou::render,
        engage::render,
        connectly::render,
        wpp::render,
    ];
    for (status, _) in STATUSES {
        let text = event_json(1, 0, status).to_string();
        let event = statushook::event::parse_event(text.as_bytes())
            .map_err(|e| format!("the soak's {status} event is invalid: {e:?}"))?;
        let sdk = to_sdk(&event);
        for (plugin, render) in natives.iter().enumerate() {
            let dropped = render(&sdk).is_none();
            if dropped != drops(plugin, status) {
                return Err(format!(
                    "the soak's drop table is wrong: {} {} {status}",
                    PLUGINS[plugin],
                    if dropped { "drops" } else { "sends" }
                ));
            }
        }
    }
    Ok(())
}

/// The SDK (guest-side) form of a core event, as the plugin host hands it
/// over (the same mapping as the plugins bench).
fn to_sdk(e: &statushook::event::StatusEvent) -> statushook_plugin::StatusEvent {
    use statushook::event::Status as C;
    use statushook_plugin::Status as S;
    statushook_plugin::StatusEvent {
        id: e.id.clone(),
        bot_id: e.bot_id.clone(),
        message_id: e.message_id.clone(),
        status: match e.status {
            C::Queued => S::Queued,
            C::Created => S::Created,
            C::Sent => S::Sent,
            C::Delivered => S::Delivered,
            C::Read => S::Read,
            C::Replied => S::Replied,
            C::Failed => S::Failed,
            C::NumberNotFound => S::NumberNotFound,
            C::Expired => S::Expired,
            C::Disconnected => S::Disconnected,
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

/// The harmless settings a reload changes: none of them changes which
/// webhooks an event matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// 0 or 1: the delivery timeout and retry schedule.
    pub delivery: usize,
    /// Whether the unloaded bot `spare` has its second webhook.
    pub spare_extra: bool,
}

impl Variant {
    pub const FIRST: Variant = Variant {
        delivery: 0,
        spare_extra: false,
    };

    /// The next variant in a cycle of four: every reload changes something.
    pub fn next(self) -> Variant {
        if self.spare_extra {
            Variant {
                delivery: 1 - self.delivery,
                spare_extra: false,
            }
        } else {
            Variant {
                spare_extra: true,
                ..self
            }
        }
    }

    /// `(timeout, retry_schedule)`.
    pub fn delivery(self) -> (&'static str, &'static str) {
        match self.delivery {
            0 => ("1s", r#"["200ms", "500ms", "1s", "2s"]"#),
            _ => ("1500ms", r#"["300ms", "700ms", "1500ms", "2s"]"#),
        }
    }

    pub fn describe(self) -> String {
        let (timeout, schedule) = self.delivery();
        format!(
            "timeout {timeout}, retry_schedule {schedule}, spare bot {} extra webhook",
            if self.spare_extra { "with" } else { "without" }
        )
    }
}

/// The longest delivery timeout of any variant: receivers that time out
/// answer later than this.
pub const MAX_TIMEOUT_MS: u64 = 1500;
/// The shortest: slow-but-ok receivers answer well within it.
pub const MIN_TIMEOUT_MS: u64 = 1000;

/// The config text both dispatchers share (`listen` from [`LISTEN_ENV`]).
pub fn config_text(
    redis_url: &str,
    receivers: &[String],
    cache: &Path,
    variant: Variant,
) -> String {
    let (timeout, schedule) = variant.delivery();
    let mut out = format!(
        "# Generated by the soak bench (core/benches/soak.rs): {describe}.\n\
         [server]\nlisten = \"${{{LISTEN_ENV}}}\"\ningest_tokens = [\"{INGEST_TOKEN}\"]\n\
         admin_tokens = [\"{ADMIN_TOKEN}\"]\nmax_body_bytes = 1048576\n\n\
         [queue]\nbackend = \"redis\"\nurl = \"{redis_url}\"\nprefix = \"soak\"\n\n\
         [delivery]\ntimeout = \"{timeout}\"\nretry_schedule = {schedule}\nallow_private_networks = true\n\n\
         [plugins]\ncache_dir = \"{cache}\"\n\n",
        describe = variant.describe(),
        cache = cache.display(),
    );
    for bot in 0..BOTS {
        let name = bot_name(bot);
        out.push_str(&format!(
            "[[bots]]\nid = \"{name}\"\nchannel_name = \"Soak {bot}\"\n"
        ));
        for (hook, hook_name) in HOOKS.iter().enumerate() {
            let events = match events_of(bot, hook) {
                None => "[\"all\"]".to_string(),
                Some(list) => format!(
                    "[{}]",
                    list.iter()
                        .map(|s| format!("\"{s}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let extra = if hook == 0 {
                format!("  sign = {{ type = \"standard-webhooks\", secret = \"{WHSEC}\" }}\n")
            } else {
                format!("  auth = {{ type = \"bearer\", token = \"{HOOK_B_TOKEN}\" }}\n")
            };
            out.push_str(&format!(
                "  [[bots.webhooks]]\n  name = \"{hook_name}\"\n  url = \"{url}/{name}/{hook_name}\"\n  \
                 events = {events}\n  plugin = \"{plugin}\"\n{extra}",
                url = receivers[receiver_of(bot, hook)],
                plugin = PLUGINS[plugin_of(bot, hook)],
            ));
        }
    }
    // A bot that never gets load: the reloads add and remove its second webhook.
    out.push_str(&format!(
        "[[bots]]\nid = \"spare\"\n  [[bots.webhooks]]\n  name = \"keep\"\n  url = \"{}/spare/keep\"\n  \
         events = [\"all\"]\n  plugin = \"wpp\"\n",
        receivers[0]
    ));
    if variant.spare_extra {
        out.push_str(&format!(
            "  [[bots.webhooks]]\n  name = \"extra\"\n  url = \"{}/spare/extra\"\n  \
             events = [\"failed\"]\n  plugin = \"jelou\"\n",
            receivers[1]
        ));
    }
    out
}

/// Checks a config text with the dispatcher's own parser.
pub fn validate(text: &str, path: &Path) -> Result<(), String> {
    let env = |name: &str| (name == LISTEN_ENV).then(|| "127.0.0.1:1".to_string());
    statushook::config::parse(text, path, &env)
        .map(|_| ())
        .map_err(|e| {
            let problems: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
            format!("the generated config is invalid: {}", problems.join("; "))
        })
}

/// Writes `text` to `path` the way a careful operator does: a temporary
/// file beside it (a dot name), then a rename, so the watcher never sees
/// half a file.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let dir = path.parent().ok_or("the config has no folder")?;
    let tmp = dir.join(".config.toml.new");
    std::fs::write(&tmp, text).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("rename to {}: {e}", path.display()))
}
