//! The client side: one hyper HTTP/1.1 connection per client (`guard.rs` under it), and the
//! service that answers each request (as `orchestrator/router/dataplane/server.py`):
//!
//! * limits: more than `max_headers` headers or a head over `max_header_bytes` (431, in
//!   `guard.rs`), a body over `max_body_bytes` (413), a body not complete within
//!   `body_timeout_s` (408); each refusal closes the connection after a linger. A body cut
//!   short by a client that went away is never forwarded (`client_gone`);
//! * `/admin/*`, `/metrics`, `/healthz`, `/readyz`, `/readyz/local` and `/v1/feedback` are the
//!   control plane's: passed to it on loopback, untouched;
//! * shedding: 503 + `Retry-After: 1` at `max_concurrency` requests in flight, or while this
//!   process is saturated (`overload.rs`);
//! * headers both ways lose the hop-by-hop ones and every header a `Connection` line names;
//!   `X-Forwarded-For` gets the client's address; answers get `x-mco-cloud` and `x-mco-router`.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::forward::{forward, Answer, Req};
use crate::guard::{fmt_s, ConnShared, IDLE};
use crate::Dp;

/// `MCO_DATAPLANE_SLOW_LOG=1`: a line on stderr for every request that took over 20 ms here.
static SLOW_LOG: std::sync::LazyLock<bool> =
    std::sync::LazyLock::new(|| std::env::var_os("MCO_DATAPLANE_SLOW_LOG").is_some_and(|v| v == "1"));

const CONTROL_PATHS: [&str; 5] = ["/metrics", "/healthz", "/readyz", "/readyz/local", "/v1/feedback"];

fn hop_by_hop(name: &str) -> bool {
    matches!(name, "connection" | "keep-alive" | "proxy-connection" | "proxy-authenticate" | "proxy-authorization"
                   | "te" | "trailer" | "transfer-encoding" | "upgrade")
}

/// Header names every `Connection` line names.
fn connection_named(headers: &HeaderMap) -> HashSet<String> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

fn upstream_headers(headers: &HeaderMap, peer: &str) -> HeaderMap {
    let named = connection_named(headers);
    let mut out = HeaderMap::with_capacity(headers.len() + 1);
    let mut forwarded = String::new();
    for (name, value) in headers {
        let n = name.as_str();
        if n == "x-forwarded-for" {
            if !forwarded.is_empty() {
                forwarded.push_str(", ");
            }
            forwarded.push_str(value.to_str().unwrap_or(""));
            continue;
        }
        if hop_by_hop(n) || matches!(n, "host" | "content-length" | "expect") || (!named.is_empty() && named.contains(n)) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    let xff = if forwarded.is_empty() { peer.to_string() } else { format!("{forwarded}, {peer}") };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        out.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    out
}

type Reply = Response<Full<Bytes>>;

fn reply(dp: &Dp, answer: Answer, close: bool, own: bool) -> Reply {
    let named = connection_named(&answer.headers);
    let mut resp = Response::new(Full::new(answer.body));
    *resp.status_mut() = answer.status;
    let out = resp.headers_mut();
    for (name, value) in &answer.headers {
        let n = name.as_str();
        if hop_by_hop(n) || n == "content-length" || (!named.is_empty() && named.contains(n)) {
            continue;
        }
        if !own && matches!(n, "x-mco-cloud" | "x-mco-router" | "x-mco-request-id") {
            continue; // an upstream's own values: the router says who answered
        }
        out.append(name.clone(), value.clone());
    }
    if !own {
        if let Some(cloud) = answer.cloud {
            out.insert(HeaderName::from_static("x-mco-cloud"), cloud);
        }
        out.insert(HeaderName::from_static("x-mco-router"), dp.table().router_name.clone());
    }
    if close {
        out.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Answer `status` with `error` and close the connection (after a linger: `guard.rs`).
fn refuse(dp: &Dp, conn: &ConnShared, status: u16, error: String, counter: &'static str) -> Reply {
    dp.acc.client_error(counter);
    conn.refused.store(true, Ordering::Relaxed);
    conn.phase.store(IDLE, Ordering::Relaxed);
    reply(dp, Answer::json(status, json!({"error": error}), false), true, false)
}

struct Inflight<'a>(&'a Dp);

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub async fn handle(dp: Arc<Dp>, conn: Arc<ConnShared>, peer: Arc<str>, req: Request<Incoming>)
                    -> Result<Reply, Infallible> {
    let entered = Instant::now();
    let table = dp.table();
    let s = &table.settings;
    let (parts, body) = req.into_parts();
    if parts.headers.len() > s.max_headers {
        return Ok(refuse(&dp, &conn, 431, format!("more than {} request headers", s.max_headers), "header_too_large"));
    }
    if parts.method == Method::CONNECT
        || (parts.headers.contains_key("upgrade") && connection_named(&parts.headers).contains("upgrade"))
    {
        return Ok(refuse(&dp, &conn, 400, "protocol upgrades are not proxied".into(), "bad_request"));
    }
    let limit = s.max_body_bytes;
    let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Ok(refuse(&dp, &conn, 413, format!("request body is larger than {limit} bytes"), "body_too_large"));
    }
    let body_timeout = Duration::from_secs_f64(s.body_timeout_s);
    let body = match tokio::time::timeout(body_timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return Ok(refuse(&dp, &conn, 413, format!("request body is larger than {limit} bytes"), "body_too_large"));
        }
        Ok(Err(_)) => {
            // the client went away before its body was complete: what it sent is dropped
            dp.acc.client_error("client_gone");
            conn.refused.store(true, Ordering::Relaxed);
            return Ok(reply(&dp, Answer::json(400, json!({"error": "the request body was cut short"}), false), true, false));
        }
        Err(_) => {
            return Ok(refuse(&dp, &conn, 408, format!("request body not received within {} s", fmt_s(body_timeout)),
                             "body_timeout"));
        }
    };
    let path = parts.uri.path().to_string();
    let path_query = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| path.clone());
    let headers = upstream_headers(&parts.headers, &peer);
    let req = Req { method: parts.method, path, path_query, headers, body };
    if req.path.starts_with("/admin/") || CONTROL_PATHS.contains(&req.path.as_str()) {
        // an admin call sees every count so far, and what it changes routes the next request
        let admin = req.path.starts_with("/admin/") || req.path == "/metrics";
        if admin {
            crate::sync_now(&dp).await;
        }
        let answer = control(&dp, req).await;
        if admin {
            crate::sync_now(&dp).await;
        }
        conn.phase.store(IDLE, Ordering::Relaxed);
        return Ok(reply(&dp, answer, false, true));
    }
    if dp.inflight.load(Ordering::Relaxed) >= s.max_concurrency {
        dp.acc.client_error("shed_concurrency");
        conn.phase.store(IDLE, Ordering::Relaxed);
        let why = format!("the router is at its concurrency limit ({} requests)", s.max_concurrency);
        return Ok(reply(&dp, Answer::json(503, json!({"error": why, "hint": "retry after a second"}), true), false, false));
    }
    if dp.monitor.saturated() {
        dp.acc.client_error("shed_lag");
        conn.phase.store(IDLE, Ordering::Relaxed);
        let why = format!("the router is saturated (runtime {} ms late)", dp.monitor.current_lag_us() / 1000);
        return Ok(reply(&dp, Answer::json(503, json!({"error": why, "hint": "retry after a second"}), true), false, false));
    }
    dp.inflight.fetch_add(1, Ordering::Relaxed);
    let _inflight = Inflight(&dp);
    let started = Instant::now();
    let answer = forward(dp.clone(), table.clone(), req).await;
    dp.acc.client(started.elapsed().as_secs_f64(), answer.body.len());
    if *SLOW_LOG && entered.elapsed() > Duration::from_millis(20) {
        eprintln!("mco-dataplane: slow request: body {:.1} ms, forward {:.1} ms, runtime lag {:.1} ms",
                  (started - entered).as_secs_f64() * 1e3, started.elapsed().as_secs_f64() * 1e3,
                  dp.monitor.current_lag_us() as f64 / 1e3);
    }
    conn.phase.store(IDLE, Ordering::Relaxed);
    Ok(reply(&dp, answer, false, false))
}

/// A call for the control plane (admin API, metrics, the router's own probes, feedback).
async fn control(dp: &Dp, req: Req) -> Answer {
    let uri = format!("{}{}", dp.control_origin, req.path_query);
    let mut request = match Request::builder().method(req.method).uri(uri).body(Full::new(req.body)) {
        Ok(r) => r,
        Err(e) => return Answer::json(400, json!({"error": format!("bad request: {e}")}), false),
    };
    *request.headers_mut() = req.headers;
    let call = async {
        let resp = dp.client.request(request).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok::<_, String>(Answer { status: parts.status, headers: parts.headers, body, cloud: None })
    };
    match tokio::time::timeout(Duration::from_secs(30), call).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => Answer::json(502, json!({"error": format!("the router's control plane did not answer: {e}")}), true),
        Err(_) => Answer {
            status: StatusCode::GATEWAY_TIMEOUT,
            ..Answer::json(504, json!({"error": "the router's control plane did not answer within 30 s"}), true)
        },
    }
}
