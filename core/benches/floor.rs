//! The floor of a durable delivery on this machine: the least a dispatcher
//! can do per event, measured by the pipeline bench exactly as it measures
//! `statushook`.
//!
//! This binary stands in for `statushook run --config <file>` (it reads the
//! config the pipeline bench generates): per request it checks the bearer
//! token, parses the event, writes it to Redis in one script call (a dedup
//! mark, the job, its lane entry, and the acks of earlier deliveries riding
//! along, as statushook's enqueue does), answers `202`, then POSTs a small
//! body naming the event to the webhook's URL with reqwest and queues its
//! ack for the next call. No routing, plugin, signature, metrics, log or
//! retry: one durable round trip and one send per event, on the same
//! runtime shape (one async worker), allocator and client crates.
//!
//! ```sh
//! cargo bench --bench floor --no-run          # prints the binary's path
//! STATUSHOOK_BIN=<that path> PIPELINE_BACKENDS=redis PIPELINE_SCENARIOS=2 \
//!   PIPELINE_COST_RATES=30,300,3000 PIPELINE_BENCH=quick cargo bench --bench pipeline
//! ```
//!
//! Redis only: the embedded store's floor would be a group commit per event.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The one script call per event: the dedup mark, the job and its lane
/// entry; then the acks riding along (ids whose send succeeded).
/// ARGV: prefix, now_ms, event id, bot, body, then acked ids.
const ENQUEUE: &str = r"
local p, now, id, bot, body = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local fresh = redis.call('SET', p .. ':dedup:' .. bot .. ':' .. id, '1', 'PX', 86400000, 'NX')
if fresh then
  redis.call('HSET', p .. ':job:' .. id, 'bot', bot, 'body', body)
  redis.call('ZADD', p .. ':lane:' .. bot, now, id)
end
for i = 6, #ARGV do
  redis.call('ZREM', p .. ':lane:' .. bot, ARGV[i])
  redis.call('DEL', p .. ':job:' .. ARGV[i])
end
return fresh and 1 or 0
";

/// What the floor dispatcher runs with, read from the generated config.
struct Setup {
    listen: SocketAddr,
    token: String,
    redis_url: String,
    webhook_url: String,
}

fn setup(config: &PathBuf) -> Result<Setup, String> {
    let text = std::fs::read_to_string(config)
        .map_err(|e| format!("cannot read {}: {e}", config.display()))?;
    let value: toml::Value = toml::from_str(&text).map_err(|e| format!("{e}"))?;
    let get = |path: &[&str]| -> Option<&toml::Value> {
        path.iter()
            .try_fold(&value, |v, key| match key.parse::<usize>() {
                Ok(i) => v.get(i),
                Err(_) => v.get(*key),
            })
    };
    let text_at = |path: &[&str]| -> Result<String, String> {
        get(path)
            .and_then(toml::Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("the config has no {}", path.join(".")))
    };
    if text_at(&["queue", "backend"])? != "redis" {
        return Err("the floor measures the Redis path only: run the pipeline bench with PIPELINE_BACKENDS=redis".into());
    }
    Ok(Setup {
        listen: text_at(&["server", "listen"])?
            .parse()
            .map_err(|e| format!("server.listen: {e}"))?,
        token: text_at(&["server", "ingest_tokens", "0"])?,
        redis_url: text_at(&["queue", "url"])?,
        webhook_url: text_at(&["bots", "0", "webhooks", "0", "url"])?,
    })
}

/// Shared by every request.
struct Floor {
    setup: Setup,
    redis: redis::aio::MultiplexedConnection,
    script: redis::Script,
    client: reqwest::Client,
    /// Ids delivered and not yet acked: they ride in the next script call.
    acks: Mutex<Vec<String>>,
}

#[derive(serde::Deserialize)]
struct Event {
    id: String,
    bot_id: String,
}

fn answer(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}

async fn handle(
    floor: Arc<Floor>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() == "/readyz" {
        return Ok(answer(StatusCode::OK, "ready"));
    }
    if request.uri().path() != "/v1/events" {
        return Ok(answer(StatusCode::NOT_FOUND, "not found"));
    }
    let authorized = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == floor.setup.token);
    if !authorized {
        return Ok(answer(StatusCode::UNAUTHORIZED, "unauthorized"));
    }
    let Ok(body) = request.into_body().collect().await.map(|b| b.to_bytes()) else {
        return Ok(answer(StatusCode::BAD_REQUEST, "unreadable body"));
    };
    let Ok(event) = serde_json::from_slice::<Event>(&body) else {
        return Ok(answer(StatusCode::BAD_REQUEST, "not an event"));
    };
    let delivered = format!(r#"{{"eventId":"{}","status":"delivered"}}"#, event.id);
    let riders = std::mem::take(&mut *floor.acks.lock().expect("acks lock"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut conn = floor.redis.clone();
    let written: redis::RedisResult<i64> = floor
        .script
        .arg("floor")
        .arg(now)
        .arg(&event.id)
        .arg(&event.bot_id)
        .arg(&delivered)
        .arg(&riders)
        .invoke_async(&mut conn)
        .await;
    match written {
        Ok(1) => {}
        Ok(_) => return Ok(answer(StatusCode::ACCEPTED, "duplicate")),
        Err(_) => return Ok(answer(StatusCode::SERVICE_UNAVAILABLE, "queue unavailable")),
    }
    let sender = Arc::clone(&floor);
    tokio::spawn(async move {
        let sent = sender
            .client
            .post(&sender.setup.webhook_url)
            .timeout(Duration::from_secs(2))
            .header("content-type", "application/json")
            .header("webhook-id", &event.id)
            .body(delivered)
            .send()
            .await;
        if let Ok(response) = sent
            && response.status().is_success()
        {
            let _ = response.bytes().await;
            sender.acks.lock().expect("acks lock").push(event.id);
        }
    });
    Ok(answer(StatusCode::ACCEPTED, "accepted"))
}

async fn serve(setup: Setup) -> Result<(), String> {
    let client = redis::Client::open(setup.redis_url.as_str()).map_err(|e| e.to_string())?;
    let redis = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("redis: {e}"))?;
    let listener = tokio::net::TcpListener::bind(setup.listen)
        .await
        .map_err(|e| format!("bind {}: {e}", setup.listen))?;
    let floor = Arc::new(Floor {
        setup,
        redis,
        script: redis::Script::new(ENQUEUE),
        // As statushook's client: rustls with ring, a keep-alive pool, no
        // redirects, no proxy.
        client: {
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .pool_max_idle_per_host(64)
                .tcp_nodelay(true)
                .build()
                .map_err(|e| e.to_string())?
        },
        acks: Mutex::new(Vec::new()),
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let floor = Arc::clone(&floor);
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(Arc::clone(&floor), request));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn main() -> ExitCode {
    // `cargo bench` runs every bench binary with `--bench`: nothing to do
    // unless started as a dispatcher (`run --config <file>`).
    let args: Vec<String> = std::env::args().collect();
    let config = match args.iter().position(|a| a == "--config") {
        Some(i) if args.get(1).is_some_and(|a| a == "run") => match args.get(i + 1) {
            Some(path) => PathBuf::from(path),
            None => {
                eprintln!("floor: --config needs a path");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!(
                "floor: a stand-in dispatcher for the pipeline bench (see its doc comment); nothing to run on its own"
            );
            return ExitCode::SUCCESS;
        }
    };
    let setup = match setup(&config) {
        Ok(setup) => setup,
        Err(e) => {
            eprintln!("floor: {e}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("floor: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(setup)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor: {e}");
            ExitCode::from(1)
        }
    }
}
