//! The rules of config.toml, one test per rule, on text parsed with a fake
//! environment.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::deliver::sign::Encoding;
use crate::event::Status;
use crate::plugin::PluginLimits;
use crate::queue::Order;
use crate::queue::redis::{RedisOptions, RedisServers};

/// The reference config of the README, with a real Standard Webhooks secret.
const EXAMPLE: &str = r#"[server]
listen = "127.0.0.1:8080"
ingest_tokens = ["${STATUSHOOK_INGEST_TOKEN}"]   # bearer tokens for POST /v1/events
admin_tokens = ["${STATUSHOOK_ADMIN_TOKEN}"]     # bearer tokens for the admin API
max_body_bytes = 1048576

[queue]
backend = "embedded"            # "embedded" (one node, durable file store) or "redis"
path = "data/queue"             # embedded only
# url = "redis://127.0.0.1:6379" # redis only; any number of dispatchers may share it
# prefix = "statushook"          # redis key prefix, so several deployments can share a Redis

[delivery]
timeout = "10s"                                  # per attempt
retry_schedule = ["5s", "1m", "10m", "1h", "6h"] # waits before attempts 2, 3, ...; then dead letter
allow_private_networks = false                   # refuse loopback/private/link-local targets unless true

[meta]
verify_token = "${META_VERIFY_TOKEN}"
app_secrets = ["${META_APP_SECRET}"]

[[bots]]
id = "acme-support"
channel_name = "Acme Support"
phone_number_ids = ["1099887766"]                # Meta phone number ids this bot owns
ingest_tokens = ["${ACME_INGEST_TOKEN}"]         # optional: tokens valid only for this bot's events

  [[bots.webhooks]]
  name = "crm"
  url = "https://crm.example.com/whatsapp/status"
  events = ["read", "failed", "replied"]          # canonical statuses, or ["all"]
  plugin = "jelou"                                # a built-in name, or a path to a .wasm component
  auth = { type = "bearer", token = "${CRM_TOKEN}" }
  sign = { type = "standard-webhooks", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }
  settings = { }                                  # string key/values handed to the plugin
"#;

fn env(name: &str) -> Option<String> {
    let value = match name {
        "STATUSHOOK_INGEST_TOKEN" => "ingest-token",
        "STATUSHOOK_ADMIN_TOKEN" => "admin-token",
        "META_VERIFY_TOKEN" => "verify-token",
        "META_APP_SECRET" => "app-secret",
        "ACME_INGEST_TOKEN" => "acme-token",
        "CRM_TOKEN" => "crm-token",
        "EMPTY" => "",
        _ => return None,
    };
    Some(value.to_string())
}

fn path() -> &'static Path {
    Path::new("/etc/statushook/config.toml")
}

fn parse_ok(text: &str) -> Config {
    parse(text, path(), &env).unwrap_or_else(|e| panic!("expected a valid config, got:\n{e}"))
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(text, path(), &env) {
        Ok(config) => panic!("expected problems, got {config:#?}"),
        Err(e) => e.problems,
    }
}

/// The only problem of `text`, which must be with `key` at `line`.
fn problem(text: &str, key: &str, line: usize) -> Problem {
    let found = problems(text);
    assert_eq!(found.len(), 1, "expected one problem, got {found:#?}");
    let problem = found.into_iter().next().expect("one problem");
    assert_eq!(problem.key, key, "{problem}");
    assert_eq!(problem.line, Some(line), "{problem}");
    assert_eq!(problem.file, path());
    problem
}

fn assert_contains(problem: &Problem, words: &str) {
    assert!(
        problem.message.contains(words),
        "{problem:?} should say {words:?}"
    );
}

/// A valid config with one bot and the webhook table `webhook` (lines 5 on).
fn with_webhook(webhook: &str) -> String {
    format!("[[bots]]\nid = \"acme\"\n\n[[bots.webhooks]]\n{webhook}\n")
}

const WEBHOOK: &str = "name = \"crm\"\nurl = \"https://crm.example.com/hook\"\nevents = [\"all\"]\nplugin = \"jelou\"";

#[test]
fn the_example_of_interfaces_md_is_valid() {
    let config = parse_ok(EXAMPLE);
    assert_eq!(
        config.server.listen,
        "127.0.0.1:8080".parse().expect("addr")
    );
    assert_eq!(config.server.ingest_tokens, ["ingest-token"]);
    assert_eq!(config.server.admin_tokens, ["admin-token"]);
    assert_eq!(config.server.max_body_bytes, 1_048_576);
    assert_eq!(
        config.queue.backend,
        QueueBackend::Embedded {
            path: PathBuf::from("/etc/statushook/data/queue")
        }
    );
    assert_eq!(config.queue.dedup_window, Duration::from_secs(86_400));
    assert_eq!(config.delivery.timeout, Duration::from_secs(10));
    assert_eq!(
        config.delivery.retry_schedule,
        [5, 60, 600, 3600, 21_600].map(Duration::from_secs)
    );
    assert!(!config.delivery.allow_private_networks);
    assert_eq!(
        config.meta,
        Some(MetaConfig {
            verify_token: "verify-token".into(),
            app_secrets: vec!["app-secret".into()],
        })
    );
    let bot = config.bot("acme-support").expect("bot");
    assert_eq!(bot.channel_name.as_deref(), Some("Acme Support"));
    assert_eq!(bot.phone_number_ids, ["1099887766"]);
    assert_eq!(bot.ingest_tokens, ["acme-token"]);
    let webhook = &bot.webhooks[0];
    assert_eq!(webhook.name, "crm");
    assert_eq!(
        webhook.url.as_str(),
        "https://crm.example.com/whatsapp/status"
    );
    assert_eq!(
        webhook.events,
        EventFilter::Only(BTreeSet::from([
            Status::Read,
            Status::Failed,
            Status::Replied
        ]))
    );
    assert_eq!(webhook.plugin, "jelou");
    assert_eq!(
        webhook.auth,
        Auth::Bearer {
            token: "crm-token".into()
        }
    );
    let Sign::StandardWebhooks { secrets } = &webhook.sign else {
        panic!("expected standard-webhooks, got {:?}", webhook.sign);
    };
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0].len(), 24);
    assert!(webhook.settings.is_empty());
    assert_eq!(config.path, path());
    assert_eq!(config.base_dir(), Path::new("/etc/statushook"));
    assert!(config.bot("nobody").is_none());
}

#[test]
fn the_listener_limits_are_read_and_checked() {
    let config = parse_ok(
        "[server]\nheader_read_timeout = \"2s\"\nidle_timeout = \"5m\"\nbody_read_timeout = \"500ms\"\nmax_connections = 64\n",
    );
    assert_eq!(config.server.header_read_timeout, Duration::from_secs(2));
    assert_eq!(config.server.idle_timeout, Duration::from_secs(300));
    assert_eq!(config.server.body_read_timeout, Duration::from_millis(500));
    assert_eq!(config.server.max_connections, 64);
    let p = problem(
        "[server]\nidle_timeout = \"0s\"\n",
        "server.idle_timeout",
        2,
    );
    assert_contains(&p, "must be longer than 0");
    problem(
        "[server]\nmax_connections = 0\n",
        "server.max_connections",
        2,
    );
    problem(
        "[server]\nheader_read_timeout = 10\n",
        "server.header_read_timeout",
        2,
    );
    let config = parse_ok("[server]\nadmin_listen = \"127.0.0.1:9090\"\n");
    assert_eq!(
        config.server.admin_listen,
        Some("127.0.0.1:9090".parse().expect("addr"))
    );
    assert_eq!(parse_ok("# defaults\n").server.admin_listen, None);
    let p = problem(
        "[server]\nlisten = \"127.0.0.1:8080\"\nadmin_listen = \"127.0.0.1:8080\"\n",
        "server.admin_listen",
        3,
    );
    assert_contains(&p, "same address as listen");
}

#[test]
fn rate_limits_are_n_per_second_or_minute() {
    let text = with_webhook(&format!("{WEBHOOK}\nrate_limit = \"50/s\"")).replace(
        "id = \"acme\"\n",
        "id = \"acme\"\ningest_rate_limit = \"600/m\"\n",
    );
    let config = parse_ok(&text);
    let bot = &config.bots[0];
    assert_eq!(
        bot.ingest_rate_limit.map(|r| r.to_string()),
        Some("600/m".into())
    );
    assert_eq!(
        bot.webhooks[0].rate_limit.map(|r| r.to_string()),
        Some("50/s".into())
    );
    let text = with_webhook(&format!("{WEBHOOK}\nrate_limit = \"50/h\""));
    let p = problem(&text, "bots[0].webhooks[0].rate_limit", 9);
    assert_contains(&p, "unknown unit \"h\"");
}

#[test]
fn per_message_order_and_suppressed_regressions_are_read() {
    let order = |extra: &str| {
        parse_ok(&with_webhook(&format!("{WEBHOOK}\n{extra}"))).bots[0].webhooks[0].order
    };
    assert_eq!(order(""), Order::Any);
    assert_eq!(order("order = \"per-message\""), Order::PerMessage);
    assert_eq!(
        order("order = \"per-message\"\nsuppress_regressions = true"),
        Order::PerMessageNoRegressions
    );
    assert_eq!(
        order("order = \"per-message\"\nsuppress_regressions = false"),
        Order::PerMessage
    );
    let text = with_webhook(&format!("{WEBHOOK}\norder = \"fifo\""));
    let p = problem(&text, "bots[0].webhooks[0].order", 9);
    assert_contains(&p, "the one order is \"per-message\"");
    let text = with_webhook(&format!("{WEBHOOK}\nsuppress_regressions = true"));
    let p = problem(&text, "bots[0].webhooks[0].suppress_regressions", 9);
    assert_contains(&p, "needs order = \"per-message\"");
}

#[test]
fn absent_sections_take_their_defaults() {
    let config = parse_ok("# nothing but defaults\n");
    assert_eq!(
        config.server.listen,
        "127.0.0.1:8080".parse().expect("addr")
    );
    assert!(config.server.ingest_tokens.is_empty());
    assert!(config.server.admin_tokens.is_empty());
    assert_eq!(config.server.max_body_bytes, 1 << 20);
    assert_eq!(config.server.header_read_timeout, Duration::from_secs(10));
    assert_eq!(config.server.idle_timeout, Duration::from_secs(60));
    assert_eq!(config.server.body_read_timeout, Duration::from_secs(30));
    assert_eq!(config.server.max_connections, 1_000);
    assert_eq!(
        config.queue.backend,
        QueueBackend::Embedded {
            path: PathBuf::from("/etc/statushook/data/queue")
        }
    );
    assert_eq!(config.delivery.max_in_flight, 256);
    assert_eq!(config.delivery.max_in_flight_per_endpoint, 16);
    assert_eq!(config.delivery.retry_schedule.len(), 5);
    assert_eq!(config.plugins.limits, PluginLimits::default());
    assert_eq!(config.plugins.cache_dir, None);
    assert_eq!(config.meta, None);
    assert!(config.bots.is_empty());
}

#[test]
fn a_bare_file_name_has_the_current_folder_as_base() {
    let config = parse("[queue]\npath = \"q\"\n", Path::new("config.toml"), &env).expect("valid");
    assert_eq!(config.base_dir(), Path::new("."));
    assert_eq!(
        config.queue.backend,
        QueueBackend::Embedded {
            path: PathBuf::from("./q")
        }
    );
}

#[test]
fn an_empty_file_is_its_own_error() {
    for text in ["", "  \n\t\n"] {
        let error = parse(text, path(), &env).expect_err("empty");
        assert!(error.is_empty_file());
        assert_eq!(
            error.to_string(),
            "/etc/statushook/config.toml: the config file is empty"
        );
    }
    let error = parse("[server]\nlisten = 1\n", path(), &env).expect_err("invalid");
    assert!(!error.is_empty_file());
}

#[test]
fn syntax_errors_keep_their_line_and_column() {
    let found = problems("[server]\nlisten = \"127.0.0.1:8080\n");
    assert_eq!(found[0].line, Some(2), "{found:?}");
    assert_eq!(found[0].key, "");
    assert_contains(&found[0], "syntax error at column");
    let found = problems("[server]\n[server]\n");
    assert_eq!(found[0].line, Some(2), "{found:?}");
    assert_contains(&found[0], "duplicate key");
}

#[test]
fn unknown_keys_are_reported_with_their_path_and_line() {
    let text = with_webhook(&format!("{WEBHOOK}\nevnts = [\"read\"]"));
    let p = problem(&text, "bots[0].webhooks[0].evnts", 9);
    assert_contains(
        &p,
        "unknown key (did you mean events?); expected one of name, url, events, plugin, auth, sign, settings",
    );

    let p = problem(
        "[server]\nlisten = \"127.0.0.1:1\"\nport = 80\n",
        "server.port",
        3,
    );
    assert_contains(
        &p,
        "expected one of listen, admin_listen, ingest_tokens, admin_tokens, metrics_tokens, max_body_bytes",
    );
    let p = problem("[servr]\n", "servr", 1);
    assert_contains(&p, "did you mean server?");
    let p = problem("[[bots]]\nid = \"a\"\nname = \"x\"\n", "bots[0].name", 3);
    assert_contains(&p, "expected one of id, channel_name");
    problem("[delivery.extra]\nx = 1\n", "delivery.extra", 1);
}

#[test]
fn unknown_keys_of_auth_and_sign_depend_on_their_type() {
    let text = with_webhook(&format!(
        "{WEBHOOK}\nauth = {{ type = \"bearer\", token = \"t\", username = \"u\" }}"
    ));
    let p = problem(&text, "bots[0].webhooks[0].auth.username", 9);
    assert_contains(&p, "expected one of type, token");
    let text = with_webhook(&format!(
        "{WEBHOOK}\nsign = {{ type = \"none\", secret = \"s\" }}"
    ));
    let p = problem(&text, "bots[0].webhooks[0].sign.secret", 9);
    assert_contains(&p, "the only key here is type");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"[server]
listen = "nowhere"
max_body_bytes = 0

[delivery]
timeout = "10"

[[bots]]
id = "bad id!"

  [[bots.webhooks]]
  name = "crm"
  url = "ftp://crm.example.com/"
  events = []
  plugin = "nope"
  colour = "blue"
"#;
    let found = problems(text);
    let keys: Vec<(&str, Option<usize>)> = found.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert_eq!(
        keys,
        [
            ("server.listen", Some(2)),
            ("server.max_body_bytes", Some(3)),
            ("delivery.timeout", Some(6)),
            ("bots[0].id", Some(9)),
            ("bots[0].webhooks[0].url", Some(13)),
            ("bots[0].webhooks[0].events", Some(14)),
            ("bots[0].webhooks[0].plugin", Some(15)),
            ("bots[0].webhooks[0].colour", Some(16)),
        ],
        "{found:#?}"
    );
    let error = ConfigError::new(found);
    assert_eq!(error.to_string().lines().count(), 8);
    assert!(
        error
            .to_string()
            .starts_with("/etc/statushook/config.toml:2: server.listen: ")
    );
}

#[test]
fn environment_variables_are_substituted_in_every_string() {
    let text = with_webhook(&format!(
        "{WEBHOOK}\nauth = {{ type = \"header\", name = \"X-Api-Key\", value = \"key-${{CRM_TOKEN}}\" }}\nsettings = {{ account = \"${{ACME_INGEST_TOKEN}}\", literal = \"$${{CRM_TOKEN}}\" }}"
    ));
    let config = parse_ok(&text);
    let webhook = &config.bots[0].webhooks[0];
    assert_eq!(
        webhook.auth,
        Auth::Header {
            name: "X-Api-Key".into(),
            value: "key-crm-token".into()
        }
    );
    assert_eq!(webhook.settings["account"], "acme-token");
    assert_eq!(webhook.settings["literal"], "${CRM_TOKEN}");
}

#[test]
fn every_missing_environment_variable_is_named_with_its_key() {
    let text = "[server]\ningest_tokens = [\"${NOPE_ONE}\", \"${NOPE_TWO}\"]\n\n[meta]\nverify_token = \"${NOPE_THREE}\"\napp_secrets = [\"x\"]\n";
    let found = problems(text);
    let seen: Vec<(&str, Option<usize>, &str)> = found
        .iter()
        .map(|p| (p.key.as_str(), p.line, p.message.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (
                "server.ingest_tokens[0]",
                Some(2),
                "environment variable NOPE_ONE is not set"
            ),
            (
                "server.ingest_tokens[1]",
                Some(2),
                "environment variable NOPE_TWO is not set"
            ),
            (
                "meta.verify_token",
                Some(5),
                "environment variable NOPE_THREE is not set"
            ),
        ]
    );
}

#[test]
fn a_variable_set_to_nothing_leaves_an_empty_token() {
    let p = problem(
        "[server]\nadmin_tokens = [\"${EMPTY}\"]\n",
        "server.admin_tokens[0]",
        2,
    );
    assert_contains(&p, "must not be an empty string");
}

#[test]
fn malformed_references_are_problems() {
    let p = problem("[server]\nlisten = \"${UNCLOSED\"\n", "server.listen", 2);
    assert_contains(&p, "$${ for a literal");
}

#[test]
fn durations_need_a_unit() {
    let config = parse_ok(
        "[delivery]\ntimeout = \"500ms\"\nretry_schedule = []\n[plugins]\ntimeout = \"2s\"\n[queue]\ndedup_window = \"1h\"\n",
    );
    assert_eq!(config.delivery.timeout, Duration::from_millis(500));
    assert!(config.delivery.retry_schedule.is_empty());
    assert_eq!(config.plugins.limits.timeout, Duration::from_secs(2));
    assert_eq!(config.queue.dedup_window, Duration::from_secs(3600));

    let p = problem("[delivery]\ntimeout = \"10\"\n", "delivery.timeout", 2);
    assert_contains(&p, "e.g. \"500ms\", \"10s\", \"1m\" or \"6h\"");
    let p = problem(
        "[delivery]\nretry_schedule = [\"5s\",\n  \"1d\"]\n",
        "delivery.retry_schedule[1]",
        3,
    );
    assert_contains(&p, "invalid duration \"1d\"");
    let p = problem("[delivery]\ntimeout = 10\n", "delivery.timeout", 2);
    assert_contains(&p, "expected a string, found an integer");
    let p = problem("[delivery]\ntimeout = \"0s\"\n", "delivery.timeout", 2);
    assert_contains(&p, "longer than 0");
}

#[test]
fn server_values_are_checked() {
    let p = problem("[server]\nlisten = \"localhost:80\"\n", "server.listen", 2);
    assert_contains(&p, "not an IP address and port");
    problem(
        "[server]\nmax_body_bytes = -1\n",
        "server.max_body_bytes",
        2,
    );
    let p = problem(
        "[server]\nmax_body_bytes = \"1MB\"\n",
        "server.max_body_bytes",
        2,
    );
    assert_contains(&p, "expected a whole number, found a string");
    let p = problem(
        "[server]\ningest_tokens = [\"a\", \"\"]\n",
        "server.ingest_tokens[1]",
        2,
    );
    assert_contains(&p, "must not be an empty string");
    let p = problem("[server]\nadmin_tokens = \"a\"\n", "server.admin_tokens", 2);
    assert_contains(&p, "expected an array, found a string");
    let config = parse_ok("[server]\nlisten = \"[::]:9000\"\nmax_body_bytes = 10\n");
    assert_eq!(config.server.listen.port(), 9000);
    assert_eq!(config.server.max_body_bytes, 10);
}

#[test]
fn the_redis_queue_needs_a_url() {
    let p = problem("[queue]\nbackend = \"redis\"\n", "queue.url", 1);
    assert_contains(&p, "needs a url");
    let config = parse_ok("[queue]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n");
    assert_eq!(
        config.queue.backend,
        QueueBackend::Redis(RedisOptions::standalone(
            "redis://127.0.0.1:6379",
            "statushook"
        ))
    );
    let found = problems(
        "[queue]\nbackend = \"redis\"\nurl = \"http://x\"\npath = \"q\"\nprefix = \"a b\"\n",
    );
    let keys: Vec<_> = found.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert_eq!(
        keys,
        [
            ("queue.url", Some(3)),
            ("queue.path", Some(4)),
            ("queue.prefix", Some(5))
        ]
    );
    let p = problem("[queue]\nurl = \"redis://x\"\n", "queue.url", 2);
    assert_contains(&p, "only the redis backend");
    let p = problem("[queue]\nbackend = \"sqlite\"\n", "queue.backend", 2);
    assert_contains(&p, "expected \"embedded\" or \"redis\"");
}

#[test]
fn a_redis_cluster_takes_seed_nodes_shards_and_a_replica_wait() {
    let config = parse_ok(
        "[queue]\nbackend = \"redis\"\ncluster_urls = [\"redis://10.0.0.1:7000\", \"redis://10.0.0.2:7000\"]\nshards = 12\nwait_replicas = 1\n",
    );
    assert_eq!(
        config.queue.backend,
        QueueBackend::Redis(RedisOptions {
            servers: RedisServers::Cluster(vec![
                "redis://10.0.0.1:7000".into(),
                "redis://10.0.0.2:7000".into()
            ]),
            prefix: "statushook".into(),
            shards: 12,
            wait_replicas: 1,
        })
    );
    let both =
        "[queue]\nbackend = \"redis\"\nurl = \"redis://a\"\ncluster_urls = [\"redis://b\"]\n";
    assert_contains(&problem(both, "queue.cluster_urls", 3), "not both");
    let none = "[queue]\nbackend = \"redis\"\ncluster_urls = []\n";
    assert_contains(&problem(none, "queue.cluster_urls", 3), "at least one seed");
    let bad = "[queue]\nbackend = \"redis\"\ncluster_urls = [\"redis://a\", \"http://b\"]\n";
    assert_contains(&problem(bad, "queue.cluster_urls[1]", 3), "scheme");
    let zero = "[queue]\nbackend = \"redis\"\nurl = \"redis://a\"\nshards = 0\n";
    assert_contains(&problem(zero, "queue.shards", 4), "greater than 0");
    let many = "[queue]\nbackend = \"redis\"\nurl = \"redis://a\"\nshards = 20000\n";
    assert_contains(&problem(many, "queue.shards", 4), "16384 slots");
    let negative = "[queue]\nbackend = \"redis\"\nurl = \"redis://a\"\nwait_replicas = -1\n";
    assert_contains(&problem(negative, "queue.wait_replicas", 4), "0 or more");
    let braces = "[queue]\nbackend = \"redis\"\nurl = \"redis://a\"\nprefix = \"a{b}\"\n";
    assert_contains(&problem(braces, "queue.prefix", 4), "braces");
    let embedded = "[queue]\nshards = 4\n";
    assert_contains(
        &problem(embedded, "queue.shards", 2),
        "only the redis backend",
    );
}

#[test]
fn plugin_limits_and_cache_dir_are_read() {
    let config = parse_ok(
        "[plugins]\nmax_memory_bytes = 1048576\nmax_output_bytes = 4096\nmax_concurrent_instances = 8\ncache_dir = \"cache\"\n",
    );
    let limits = &config.plugins.limits;
    assert_eq!(limits.max_memory_bytes, 1 << 20);
    assert_eq!(limits.max_output_bytes, 4096);
    assert_eq!(limits.max_concurrent_instances, 8);
    assert_eq!(limits.timeout, PluginLimits::default().timeout);
    assert_eq!(
        config.plugins.cache_dir,
        Some(PathBuf::from("/etc/statushook/cache"))
    );
    let p = problem(
        "[plugins]\nmax_concurrent_instances = 5000000000\n",
        "plugins.max_concurrent_instances",
        2,
    );
    assert_contains(&p, "too large");
}

#[test]
fn bots_may_bring_their_own_admin_tokens_and_meta_apps() {
    let config = parse_ok(
        "[server]\nmetrics_tokens = [\"scrape\"]\n[meta]\nverify_token = \"v\"\n\
         [[bots]]\nid = \"acme\"\nadmin_tokens = [\"acme-admin\"]\nmeta_app_secrets = [\"acme-app\"]\n",
    );
    assert_eq!(config.server.metrics_tokens, ["scrape"]);
    let meta = config.meta.as_ref().expect("[meta]");
    assert!(meta.app_secrets.is_empty(), "the bot's app is the only one");
    assert_eq!(config.bots[0].admin_tokens, ["acme-admin"]);
    assert_eq!(config.bots[0].meta_app_secrets, ["acme-app"]);
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("acme-admin") && !shown.contains("acme-app") && !shown.contains("scrape")
    );

    let p = problem(
        "[[bots]]\nid = \"acme\"\nmeta_app_secrets = [\"acme-app\"]\n",
        "bots[0].meta_app_secrets",
        3,
    );
    assert_contains(&p, "needs a [meta] section with verify_token");
    let p = problem(
        "[[bots]]\nid = \"acme\"\nadmin_tokens = [\"\"]\n",
        "bots[0].admin_tokens[0]",
        3,
    );
    assert_contains(&p, "must not be an empty string");
}

#[test]
fn meta_needs_its_token_and_secrets() {
    let found = problems("[meta]\napp_secrets = []\n");
    let keys: Vec<_> = found.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert_eq!(
        keys,
        [
            ("meta.verify_token", Some(1)),
            ("meta.app_secrets", Some(1))
        ]
    );
}

#[test]
fn bot_ids_follow_the_event_charset_and_are_unique() {
    let p = problem("[[bots]]\nid = \"acme support\"\n", "bots[0].id", 2);
    assert_contains(&p, "letters, digits, '_', '.' or '-'");
    problem(
        &format!("[[bots]]\nid = \"{}\"\n", "a".repeat(129)),
        "bots[0].id",
        2,
    );
    problem("[[bots]]\nid = \"\"\n", "bots[0].id", 2);
    parse_ok(&format!("[[bots]]\nid = \"A.b_c-{}\"\n", "9".repeat(122)));
    let p = problem(
        "[[bots]]\nid = \"a\"\n[[bots]]\nid = \"a\"\n",
        "bots[1].id",
        4,
    );
    assert_contains(&p, "duplicate bot id \"a\"; bots[0] already has it");
    let p = problem("[[bots]]\nchannel_name = \"x\"\n", "bots[0].id", 1);
    assert_contains(&p, "required key is missing");
    problem("bots = [1]\n", "bots[0]", 1);
    let p = problem("[bots]\nid = \"a\"\n", "bots", 1);
    assert_contains(&p, "expected an array of tables ([[bots]]), found a table");
    let p = problem(
        "[[bots]]\nid = \"a\"\n[bots.webhooks]\nname = \"x\"\n",
        "bots[0].webhooks",
        3,
    );
    assert_contains(&p, "([[bots.webhooks]])");
}

#[test]
fn a_phone_number_id_belongs_to_one_bot() {
    let text = "[[bots]]\nid = \"acme\"\nphone_number_ids = [\"1099\"]\n\n[[bots]]\nid = \"globex\"\nphone_number_ids = [\"2000\", \"1099\"]\n";
    let p = problem(text, "bots[1].phone_number_ids[1]", 7);
    assert_contains(&p, "bot \"acme\" (bots[0])");
    assert_contains(&p, "bot \"globex\" (bots[1])");
    let p = problem(
        "[[bots]]\nid = \"acme\"\nphone_number_ids = [\"1\", \"1\"]\n",
        "bots[0].phone_number_ids[1]",
        3,
    );
    assert_contains(&p, "listed twice");
}

#[test]
fn webhook_names_are_unique_within_a_bot_only() {
    let text = format!("{}\n[[bots.webhooks]]\n{WEBHOOK}\n", with_webhook(WEBHOOK));
    let p = problem(&text, "bots[0].webhooks[1].name", 11);
    assert_contains(
        &p,
        "duplicate webhook name \"crm\"; bots[0].webhooks[0] already has it",
    );
    let two_bots = format!(
        "{}\n[[bots]]\nid = \"other\"\n[[bots.webhooks]]\n{WEBHOOK}\n",
        with_webhook(WEBHOOK)
    );
    assert_eq!(parse_ok(&two_bots).bots.len(), 2);
    let text = with_webhook(&WEBHOOK.replace("name = \"crm\"", "name = \"\""));
    problem(&text, "bots[0].webhooks[0].name", 5);
}

#[test]
fn webhooks_need_their_required_keys() {
    let found = problems("[[bots]]\nid = \"a\"\n[[bots.webhooks]]\nauth = { type = \"none\" }\n");
    let keys: Vec<_> = found.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert_eq!(
        keys,
        [
            ("bots[0].webhooks[0].name", Some(3)),
            ("bots[0].webhooks[0].url", Some(3)),
            ("bots[0].webhooks[0].events", Some(3)),
            ("bots[0].webhooks[0].plugin", Some(3)),
        ]
    );
}

#[test]
fn webhook_urls_are_absolute_http_with_a_host() {
    for (url, words) in [
        ("crm.example.com/hook", "not an absolute URL"),
        (
            "ftp://crm.example.com/hook",
            "must be http or https, not \"ftp\"",
        ),
        ("https://", "not a valid URL"),
        ("https://exa mple.com/", "not a valid URL"),
    ] {
        let text = with_webhook(&WEBHOOK.replace("https://crm.example.com/hook", url));
        let p = problem(&text, "bots[0].webhooks[0].url", 6);
        assert_contains(&p, words);
    }
    let text = with_webhook(
        &WEBHOOK.replace("https://crm.example.com/hook", "http://10.0.0.1:8080/x?a=1"),
    );
    assert_eq!(parse_ok(&text).bots[0].webhooks[0].url.port(), Some(8080));
}

#[test]
fn events_are_canonical_statuses_or_all() {
    let text = with_webhook(&WEBHOOK.replace("[\"all\"]", "[\"read\", \"reed\"]"));
    let p = problem(&text, "bots[0].webhooks[0].events[1]", 7);
    assert_contains(&p, "unknown status \"reed\"");
    assert_contains(&p, &Status::names());
    let text = with_webhook(&WEBHOOK.replace("[\"all\"]", "[]"));
    let p = problem(&text, "bots[0].webhooks[0].events", 7);
    assert_contains(&p, "at least one status");
    let text = with_webhook(&WEBHOOK.replace("[\"all\"]", "[\"read\", \"all\"]"));
    problem(&text, "bots[0].webhooks[0].events[1]", 7);

    let config = parse_ok(&with_webhook(WEBHOOK));
    let all = &config.bots[0].webhooks[0].events;
    assert_eq!(all, &EventFilter::All);
    assert!(Status::ALL.iter().all(|&s| all.matches(s)));
    let text = with_webhook(&WEBHOOK.replace("[\"all\"]", "[\"failed\", \"number_not_found\"]"));
    let only = parse_ok(&text).bots[0].webhooks[0].events.clone();
    assert!(only.matches(Status::NumberNotFound));
    assert!(only.matches(Status::Failed));
    assert!(!only.matches(Status::Read));
}

#[test]
fn plugins_are_built_in_names_or_paths() {
    for plugin in [
        "jelou",
        "engage",
        "connectly",
        "wpp",
        "plugins/crm.wasm",
        "crm.wasm",
        "/opt/crm",
    ] {
        let text = with_webhook(&WEBHOOK.replace("\"jelou\"", &format!("{plugin:?}")));
        assert_eq!(parse_ok(&text).bots[0].webhooks[0].plugin, plugin);
    }
    let text = with_webhook(&WEBHOOK.replace("\"jelou\"", "\"jelu\""));
    let p = problem(&text, "bots[0].webhooks[0].plugin", 8);
    assert_contains(&p, "the built-in plugins are jelou, engage, connectly, wpp");
}

fn auth_problem(auth: &str, key: &str) -> Problem {
    let text = with_webhook(&format!("{WEBHOOK}\nauth = {auth}"));
    problem(&text, &format!("bots[0].webhooks[0].auth{key}"), 9)
}

fn auth_of(auth: &str) -> Auth {
    let text = with_webhook(&format!("{WEBHOOK}\nauth = {auth}"));
    parse_ok(&text).bots[0].webhooks[0].auth.clone()
}

#[test]
fn auth_types_and_their_keys() {
    assert_eq!(auth_of("{ type = \"none\" }"), Auth::None);
    assert_eq!(
        auth_of("{ type = \"basic\", username = \"u\", password = \"\" }"),
        Auth::Basic {
            username: "u".into(),
            password: String::new()
        }
    );
    assert_eq!(
        auth_of("{ type = \"header\", name = \"X-Api-Key\", value = \"k\" }"),
        Auth::Header {
            name: "X-Api-Key".into(),
            value: "k".into()
        }
    );
    let p = auth_problem("{ type = \"oauth\" }", ".type");
    assert_contains(
        &p,
        "unknown type \"oauth\"; expected one of \"none\", \"basic\", \"bearer\", \"header\"",
    );
    let p = auth_problem("{ token = \"t\" }", ".type");
    assert_contains(&p, "required key is missing");
    let p = auth_problem("\"bearer\"", "");
    assert_contains(&p, "expected a table, found a string");
    auth_problem("{ type = \"bearer\" }", ".token");
    auth_problem("{ type = \"bearer\", token = \"\" }", ".token");
    auth_problem("{ type = \"bearer\", token = \"a\\nb\" }", ".token");
    let p = auth_problem(
        "{ type = \"basic\", username = \"\", password = \"p\" }",
        ".username",
    );
    assert_contains(&p, "must not be empty");
    auth_problem(
        "{ type = \"basic\", username = \"a:b\", password = \"p\" }",
        ".username",
    );
    auth_problem("{ type = \"basic\", username = \"u\" }", ".password");
    let p = auth_problem(
        "{ type = \"header\", name = \"X Key\", value = \"k\" }",
        ".name",
    );
    assert_contains(&p, "not a valid HTTP header name");
    auth_problem(
        "{ type = \"header\", name = \"X-Key\", value = \"\" }",
        ".value",
    );
}

#[test]
fn header_auth_may_not_use_a_header_the_host_owns() {
    for name in ["Authorization", "Content-Type", "webhook-signature", "Host"] {
        auth_problem(
            &format!("{{ type = \"header\", name = \"{name}\", value = \"k\" }}"),
            ".name",
        );
    }
}

fn sign_problem(sign: &str, key: &str) -> Problem {
    let text = with_webhook(&format!("{WEBHOOK}\nsign = {sign}"));
    problem(&text, &format!("bots[0].webhooks[0].sign{key}"), 9)
}

fn sign_of(sign: &str) -> Sign {
    let text = with_webhook(&format!("{WEBHOOK}\nsign = {sign}"));
    parse_ok(&text).bots[0].webhooks[0].sign.clone()
}

#[test]
fn standard_webhooks_secrets_are_whsec_and_base64() {
    assert_eq!(
        sign_of("{ type = \"standard-webhooks\", secret = \"whsec_aGVsbG8=\" }"),
        Sign::StandardWebhooks {
            secrets: vec![b"hello".to_vec()]
        }
    );
    assert_eq!(
        sign_of("{ type = \"standard-webhooks\", secret = \"whsec_aGVsbG8\" }"),
        Sign::StandardWebhooks {
            secrets: vec![b"hello".to_vec()]
        }
    );
    // Rolling a secret: both, the new one first.
    assert_eq!(
        sign_of("{ type = \"standard-webhooks\", secrets = [\"whsec_bmV3\", \"whsec_b2xk\"] }"),
        Sign::StandardWebhooks {
            secrets: vec![b"new".to_vec(), b"old".to_vec()]
        }
    );
    sign_problem(
        "{ type = \"standard-webhooks\", secrets = [\"whsec_bmV3\", \"nope\"] }",
        ".secrets[1]",
    );
    sign_problem("{ type = \"standard-webhooks\", secrets = [] }", ".secrets");
    let p = sign_problem(
        "{ type = \"standard-webhooks\", secret = \"whsec_bmV3\", secrets = [\"whsec_b2xk\"] }",
        ".secrets",
    );
    assert_contains(&p, "not both");
    let p = sign_problem(
        "{ type = \"standard-webhooks\", secret = \"aGVsbG8=\" }",
        ".secret",
    );
    assert_contains(&p, "must start with \"whsec_\"");
    let p = sign_problem(
        "{ type = \"standard-webhooks\", secret = \"whsec_not base64!\" }",
        ".secret",
    );
    assert_contains(&p, "not valid base64");
    assert!(!p.message.contains("not base64!"), "the secret leaked: {p}");
    sign_problem(
        "{ type = \"standard-webhooks\", secret = \"whsec_\" }",
        ".secret",
    );
    sign_problem("{ type = \"standard-webhooks\" }", ".secret");
}

#[test]
fn hmac_signatures_name_a_header_and_an_encoding() {
    assert_eq!(
        sign_of(
            "{ type = \"hmac\", secret = \"s3cret\", header = \"X-Hub-Signature-256\", encoding = \"hex\", prefix = \"sha256=\" }"
        ),
        Sign::Hmac {
            secret: b"s3cret".to_vec(),
            header: "X-Hub-Signature-256".into(),
            encoding: Encoding::Hex,
            prefix: "sha256=".into()
        }
    );
    assert_eq!(
        sign_of(
            "{ type = \"hmac\", secret = \"s\", header = \"X-Signature\", encoding = \"base64\" }"
        ),
        Sign::Hmac {
            secret: b"s".to_vec(),
            header: "X-Signature".into(),
            encoding: Encoding::Base64,
            prefix: String::new()
        }
    );
    let Sign::Hmac { encoding, .. } =
        sign_of("{ type = \"hmac\", secret = \"s\", header = \"X-Sig\" }")
    else {
        panic!("expected hmac");
    };
    assert_eq!(encoding, Encoding::Hex);
    let p = sign_problem(
        "{ type = \"hmac\", secret = \"s\", header = \"X-Sig\", encoding = \"base32\" }",
        ".encoding",
    );
    assert_contains(&p, "expected \"hex\" or \"base64\"");
    sign_problem(
        "{ type = \"hmac\", secret = \"s\", header = \"X Sig\" }",
        ".header",
    );
    sign_problem(
        "{ type = \"hmac\", secret = \"\", header = \"X-Sig\" }",
        ".secret",
    );
    sign_problem("{ type = \"hmac\", secret = \"s\" }", ".header");
    // A header statushook sets itself would be sent twice or overwritten.
    let p = sign_problem(
        "{ type = \"hmac\", secret = \"s\", header = \"Content-Type\" }",
        ".header",
    );
    assert_contains(&p, "\"Content-Type\" is a header statushook sets itself");
    let p = sign_problem("{ type = \"rsa\" }", ".type");
    assert_contains(&p, "\"none\", \"standard-webhooks\", \"hmac\"");
}

#[test]
fn settings_are_string_key_values() {
    let text = with_webhook(&format!(
        "{WEBHOOK}\n\n[bots.webhooks.settings]\nchannel = \"whatsapp\"\n\"x.y\" = \"1\""
    ));
    let settings = parse_ok(&text).bots[0].webhooks[0].settings.clone();
    assert_eq!(settings["channel"], "whatsapp");
    assert_eq!(settings["x.y"], "1");
    let text = with_webhook(&format!("{WEBHOOK}\nsettings = {{ retries = 3 }}"));
    let p = problem(&text, "bots[0].webhooks[0].settings.retries", 9);
    assert_contains(&p, "quote the value");
}

#[test]
fn problems_display_as_file_line_key_message() {
    let problem = Problem::new("config.toml", Some(12), "bots[0].webhooks[1].url", "bad");
    assert_eq!(
        problem.to_string(),
        "config.toml:12: bots[0].webhooks[1].url: bad"
    );
    let problem = Problem::new("config.toml", None, "server", "bad");
    assert_eq!(problem.to_string(), "config.toml: server: bad");
    let problem = Problem::new("config.toml", None, "", "bad");
    assert_eq!(problem.to_string(), "config.toml: bad");
}

#[test]
fn debug_output_hides_secrets() {
    let text = with_webhook(&format!(
        "{WEBHOOK}\nauth = {{ type = \"basic\", username = \"u\", password = \"hunter2\" }}\nsign = {{ type = \"hmac\", secret = \"hunter3\", header = \"X-Sig\" }}"
    ));
    let debug = format!(
        "{:?}",
        parse_ok(&format!(
            "{EXAMPLE}\n{}",
            text.replace("id = \"acme\"", "id = \"acme2\"")
        ))
    );
    for secret in [
        "hunter2",
        "hunter3",
        "crm-token",
        "acme-token",
        "ingest-token",
        "admin-token",
        "verify-token",
        "app-secret",
    ] {
        assert!(!debug.contains(secret), "{secret} leaked in {debug}");
    }
}

#[test]
fn load_reads_the_file_and_reports_a_missing_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("config.toml");
    let error = load(&file).expect_err("missing file");
    assert_eq!(error.problems.len(), 1);
    assert!(
        error.problems[0]
            .message
            .starts_with("cannot read config file"),
        "{error}"
    );
    std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:9\"\n").expect("write");
    assert_eq!(load(&file).expect("valid").server.listen.port(), 9);
    std::fs::write(&file, b"[server]\nlisten = \"\xff\"\n").expect("write");
    let error = load(&file).expect_err("not utf-8");
    assert_eq!(error.problems[0].line, Some(2));
}
