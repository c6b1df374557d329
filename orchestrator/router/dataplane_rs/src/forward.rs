//! One request across the targets: tries, retries and hedges, with the accounting of every
//! try (the rules of `orchestrator/router/dataplane/forward.py`):
//!
//! * a refused connect is retried on the next target always (the request never left);
//! * a reset (even mid-response: answers are buffered whole) or a per-try timeout is retried
//!   for repeatable requests only (GET, HEAD and the allow-list, default `POST /v1/predict`);
//! * an upstream 5xx is retried once at most, for repeatable requests; a request that got a
//!   5xx from two clouds is answered with it (a query of death), never tried on a third;
//! * an answer over `max_response_bytes` is a 502 naming the cap, never retried; 4xx pass.
//! * hedging (repeatable requests, two or more candidates): a second copy to the next target
//!   after the first one's recent p95, within the retry budget; the first good answer wins and
//!   the loser runs on to its own outcome, so it is still accounted.
//!
//! Every retry and hedge takes from the retry budget and waits a jittered backoff.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderMap, HeaderValue, CONTENT_LENGTH};
use hyper::{Method, Request, StatusCode};
use serde_json::json;

use crate::stats::Kind;
use crate::table::{Table, Target};
use crate::Dp;

pub struct Req {
    pub method: Method,
    pub path: String,
    pub path_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub cloud: Option<HeaderValue>,
}

impl Answer {
    pub fn json(status: u16, doc: serde_json::Value, retry_after: bool) -> Answer {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        if retry_after {
            headers.insert("retry-after", HeaderValue::from_static("1"));
        }
        Answer {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            headers,
            body: Bytes::from(doc.to_string()),
            cloud: None,
        }
    }
}

pub enum Outcome {
    Answer(StatusCode, HeaderMap, Bytes),
    #[allow(dead_code)] // (the detail is for debugging; clients get the kind, as from the Python side)
    Fail(Kind, String),
}

fn classify(err: &hyper_util::client::legacy::Error) -> Kind {
    if err.is_connect() {
        let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
        while let Some(e) = source {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::TimedOut {
                    return Kind::Timeout;
                }
            }
            source = e.source();
        }
        return Kind::Connect;
    }
    Kind::Reset
}

/// Send one try to `target` and account its outcome.
pub async fn try_once(dp: Arc<Dp>, table: Arc<Table>, target: Arc<Target>, req: Arc<Req>) -> Outcome {
    let started = Instant::now();
    let started_us = dp.monitor.now_us();
    let settings = &table.settings;
    let max = settings.max_response_bytes;
    let uri = format!("{}{}{}", target.origin, target.prefix, req.path_query);
    let mut request = match Request::builder().method(req.method.clone()).uri(uri).body(Full::new(req.body.clone())) {
        Ok(r) => r,
        Err(e) => return Outcome::Fail(Kind::Reset, format!("bad upstream request: {e}")),
    };
    *request.headers_mut() = req.headers.clone();
    let work = async {
        let resp = dp.client.request(request).await.map_err(|e| (classify(&e), e.to_string()))?;
        let (parts, body) = resp.into_parts();
        let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > max) {
            return Err((Kind::TooLarge, format!("the upstream answer is larger than {max} bytes")));
        }
        let body = Limited::new(body, max).collect().await.map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                (Kind::TooLarge, format!("the upstream answer is larger than {max} bytes"))
            } else {
                (Kind::Reset, format!("the connection broke before the answer was complete: {e}"))
            }
        })?;
        Ok((parts.status, parts.headers, body.to_bytes()))
    };
    let outcome = match tokio::time::timeout(settings.per_try(), work).await {
        Ok(Ok((status, headers, body))) => Outcome::Answer(status, headers, body),
        Ok(Err((kind, detail))) => Outcome::Fail(kind, detail),
        Err(_) => {
            let own = dp.monitor.stalled_since(started_us);
            let seconds = started.elapsed().as_secs_f64();
            dp.acc.failed(&target.name, Kind::Timeout, seconds, req.body.len(), own);
            if !own {
                dp.urgent.notify_one();
            }
            return Outcome::Fail(Kind::Timeout, "per-try timeout".into());
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    match &outcome {
        Outcome::Answer(status, _, body) => {
            dp.acc.answered(&target.name, status.as_u16(), seconds, req.body.len(), body.len());
            if status.as_u16() >= 500 {
                dp.urgent.notify_one();
            }
        }
        Outcome::Fail(kind, _) => {
            dp.acc.failed(&target.name, *kind, seconds, req.body.len(), false);
            dp.urgent.notify_one();
        }
    }
    outcome
}

fn backoff(dp: &Dp, table: &Table, attempt: u32) -> Duration {
    let s = &table.settings;
    let cap = s.backoff_max_s.min(s.backoff_base_s * 2f64.powi(attempt as i32 - 1));
    let x = dp.rng.lock().map(|mut r| r.unit()).unwrap_or(0.5);
    Duration::from_secs_f64((cap * x).max(0.0))
}

type Tried = Vec<serde_json::Value>;

pub async fn forward(dp: Arc<Dp>, table: Arc<Table>, req: Req) -> Answer {
    let s = &table.settings;
    dp.budget.request();
    let candidates = {
        let mut rng = dp.rng.lock().unwrap_or_else(|e| e.into_inner());
        table.candidates(&mut rng, |name| dp.acc.ewma(name))
    };
    if candidates.is_empty() {
        dp.acc.client_error("no_target");
        return Answer::json(503, json!({"error": "the router has no targets configured"}), false);
    }
    let repeatable = table.repeatable(&req.method, &req.path);
    let req = Arc::new(req);
    let n = candidates.len();
    let mut tried: Tried = Vec::new();
    let mut last_5xx: Option<Answer> = None;
    let mut fivexx = 0;
    let mut attempt: u32 = 0;
    let started = Instant::now();
    let deadline = Duration::from_secs_f64(s.deadline_s);
    let try_bound = Duration::from_secs_f64(s.connect_timeout_s + s.per_try_timeout_s);
    let mut late = false;
    while attempt < s.attempts {
        if attempt > 0 {
            if !dp.budget.try_acquire(s.budget_ratio, s.budget_min_per_s) {
                break;
            }
            let pause = backoff(&dp, &table, attempt);
            if started.elapsed() + pause >= deadline {
                late = true;
                break;
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        let remaining = deadline.saturating_sub(started.elapsed());
        let outcomes: Vec<(Arc<crate::table::Target>, Outcome)> = if attempt == 0 && s.hedge && repeatable && n > 1 {
            let hedged = hedged(dp.clone(), table.clone(), &candidates, req.clone());
            if remaining < try_bound * 2 {
                match tokio::time::timeout(remaining, hedged).await {
                    Ok(o) => o,
                    Err(_) => {
                        late = true;
                        tried.push(json!({"target": candidates[0].name, "failure": "deadline"}));
                        break;
                    }
                }
            } else {
                hedged.await
            }
        } else {
            let target = candidates[attempt as usize % n].clone();
            if attempt > 0 {
                dp.acc.retry(&target.name);
            }
            let fut = try_once(dp.clone(), table.clone(), target.clone(), req.clone());
            if remaining < try_bound {
                // the try runs on past the deadline to its own outcome, so it is still accounted
                let handle = tokio::spawn(fut);
                match tokio::time::timeout(remaining, handle).await {
                    Ok(Ok(o)) => vec![(target, o)],
                    _ => {
                        late = true;
                        tried.push(json!({"target": target.name, "failure": "deadline"}));
                        break;
                    }
                }
            } else {
                vec![(target.clone(), fut.await)]
            }
        };
        attempt += outcomes.len() as u32;
        let mut stop = false;
        for (target, outcome) in outcomes {
            match outcome {
                Outcome::Fail(kind, _) => {
                    tried.push(json!({"target": target.name, "failure": kind.as_str()}));
                    if kind == Kind::TooLarge {
                        dp.acc.client_error("response_too_large");
                        return Answer::json(502, json!({"error": format!(
                            "the answer of {} is larger than limits.max_response_bytes ({} bytes)",
                            target.name, s.max_response_bytes)}), false);
                    }
                    if kind != Kind::Connect && !repeatable {
                        stop = true;
                    }
                }
                Outcome::Answer(status, headers, body) => {
                    let answer = Answer { status, headers, body, cloud: Some(target.cloud_header.clone()) };
                    if status.as_u16() >= 500 {
                        tried.push(json!({"target": target.name, "failure": format!("HTTP {}", status.as_u16())}));
                        last_5xx = Some(answer);
                        fivexx += 1;
                        if fivexx >= 2 || !repeatable {
                            stop = true; // the same failure on two clouds is the request's, not theirs
                        }
                        continue;
                    }
                    return answer;
                }
            }
        }
        if stop {
            break;
        }
    }
    dp.acc.client_error("all_failed");
    if let Some(answer) = last_5xx {
        return answer;
    }
    if table.all_down {
        return Answer::json(503, json!({"error": "no healthy cloud: every target is down", "tried": tried}), true);
    }
    if late {
        dp.acc.client_error("deadline");
        return Answer::json(503, json!({"error": format!(
            "no answer within the router's deadline (retries.deadline_s = {} s)", s.deadline_s), "tried": tried}), true);
    }
    Answer::json(502, json!({"error": "no target answered", "tried": tried}), false)
}

type TryFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send>>;

/// The first try, and a second on the next target if the first is slower than its recent p95.
/// The outcomes in the order they came, ending at the first answer below 500 (or when every
/// try made has failed).
async fn hedged(dp: Arc<Dp>, table: Arc<Table>, candidates: &[Arc<Target>], req: Arc<Req>)
                -> Vec<(Arc<Target>, Outcome)> {
    let s = &table.settings;
    let (first, second) = (candidates[0].clone(), candidates[1].clone());
    let delay = s.hedge_min_delay_s.max(first.recent_p95_s.unwrap_or(s.per_try_timeout_s / 4.0));
    let mut one: TryFuture = Box::pin(try_once(dp.clone(), table.clone(), first.clone(), req.clone()));
    tokio::select! {
        outcome = &mut one => return vec![(first, outcome)],
        _ = tokio::time::sleep(Duration::from_secs_f64(delay)) => {}
    }
    if !dp.budget.try_acquire(s.budget_ratio, s.budget_min_per_s) {
        return vec![(first, one.await)];
    }
    dp.acc.hedge(&second.name);
    let mut two: TryFuture = Box::pin(try_once(dp.clone(), table.clone(), second.clone(), req.clone()));
    let good = |o: &Outcome| matches!(o, Outcome::Answer(status, _, _) if status.as_u16() < 500);
    tokio::select! {
        outcome = &mut one => {
            if good(&outcome) {
                tokio::spawn(two); // the loser runs on to its own outcome, and is accounted
                return vec![(first, outcome)];
            }
            vec![(first, outcome), (second.clone(), two.await)]
        }
        outcome = &mut two => {
            if good(&outcome) {
                tokio::spawn(one);
                return vec![(second, outcome)];
            }
            vec![(second, outcome), (first.clone(), one.await)]
        }
    }
}
