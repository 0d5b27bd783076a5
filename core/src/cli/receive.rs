//! `statushook receive`: a demo webhook receiver that prints what arrives
//! and checks its signature, for trying statushook out (README tour).

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::deliver::sign;

use super::{EXIT_FAILURE, EXIT_USAGE};

/// Arguments of `statushook receive`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// A Standard Webhooks secret (`whsec_...`): check `webhook-signature`.
    #[arg(long, value_name = "WHSEC")]
    secret: Option<String>,
    /// The status code to answer with (try 500 to watch retries, 410 to stop them).
    #[arg(long, default_value_t = 200)]
    status: u16,
    /// Print each request as it came: every header in order and the body's
    /// exact bytes, not pretty-printed.
    #[arg(long)]
    raw: bool,
}

/// Serves until Ctrl-C, printing every request.
pub fn run(args: Args) -> ExitCode {
    let secret = match args.secret.as_deref().map(sign::decode_whsec) {
        None => None,
        Some(Ok(secret)) => Some(secret),
        Some(Err(e)) => {
            eprintln!("statushook: --secret is not a whsec_ secret: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let Ok(status) = http::StatusCode::from_u16(args.status) else {
        eprintln!("statushook: --status {} is not an HTTP status", args.status);
        return ExitCode::from(EXIT_USAGE);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("statushook: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("statushook: cannot listen on {}: {e}", args.listen);
                return ExitCode::from(EXIT_FAILURE);
            }
        };
        eprintln!(
            "receiving on http://{} (answering {status}); Ctrl-C to stop",
            args.listen
        );
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
            };
            let Ok((stream, _)) = accepted else { continue };
            let secret = secret.clone();
            let raw = args.raw;
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let secret = secret.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    print_request(&parts, &body, secret.as_deref(), raw);
                    // A short JSON answer, as real receivers give: the
                    // delivery log keeps it beside each attempt.
                    let answer = format!(
                        "{{\"received\":{},\"status\":{}}}",
                        status.is_success(),
                        status.as_u16()
                    );
                    let mut response = Response::new(Full::new(Bytes::from(answer)));
                    *response.status_mut() = status;
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// Prints one request: a line with the time (UTC), method, path,
/// `webhook-id` and the signature check, then the headers and the body
/// (pretty-printed JSON, or the exact bytes with `raw`).
fn print_request(parts: &http::request::Parts, body: &[u8], secret: Option<&[u8]>, raw: bool) {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let signature = match (secret, parts.headers.get("webhook-signature")) {
        (None, _) => "not checked (no --secret)".to_string(),
        (Some(_), None) => "missing".to_string(),
        (Some(secret), Some(_)) => {
            let timestamp = header("webhook-timestamp").parse().unwrap_or(0);
            let expected = sign::standard_webhooks(secret, header("webhook-id"), timestamp, body);
            let given = header("webhook-signature");
            if given.split(' ').any(|s| s == expected) {
                "valid".into()
            } else {
                format!("INVALID (got {given:?})")
            }
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "[{} UTC] {} {}  webhook-id={}  signature: {signature}",
        time_of_day(std::time::SystemTime::now()),
        parts.method,
        parts.uri.path(),
        header("webhook-id")
    );
    if raw {
        let _ = writeln!(out, "{} {} {:?}", parts.method, parts.uri, parts.version);
        for (name, value) in &parts.headers {
            let _ = out.write_all(name.as_str().as_bytes());
            let _ = out.write_all(b": ");
            let _ = out.write_all(value.as_bytes());
            let _ = out.write_all(b"\n");
        }
        let _ = out.write_all(b"\n");
        let _ = out.write_all(body);
        let _ = out.write_all(b"\n\n");
        let _ = out.flush();
        return;
    }
    for (name, value) in &parts.headers {
        let name = name.as_str();
        if !matches!(
            name,
            "host" | "content-length" | "accept" | "webhook-id" | "webhook-signature"
        ) {
            let _ = writeln!(out, "  {name}: {}", value.to_str().unwrap_or("<binary>"));
        }
    }
    let pretty = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let _ = writeln!(out, "{pretty}\n");
    let _ = out.flush();
}

/// `HH:MM:SS.mmm` of `now` in UTC: enough to watch retries arrive.
fn time_of_day(now: std::time::SystemTime) -> String {
    let since_epoch = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since_epoch.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        since_epoch.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::time_of_day;

    #[test]
    fn time_of_day_is_utc_with_millis() {
        assert_eq!(time_of_day(UNIX_EPOCH), "00:00:00.000");
        let t = UNIX_EPOCH + Duration::from_millis(1_777_326_002_045);
        assert_eq!(time_of_day(t), "21:40:02.045");
    }
}
