//! What this side reports to the control plane: per-target outcomes and latency, what
//! clients saw, and its own saturation; plus the retry budget it applies.
//!
//! Outcomes are added up between two reports (a histogram with the same buckets as
//! `orchestrator/router/accounting.py`, counters, an EWMA) and the order of successes and
//! failures is kept as runs (`[["ok", 40], ["connect", 1]]`), so the control plane's
//! outlier detection sees the same consecutive failures it would have seen itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

const FACTOR: f64 = 1.05;
const FIRST_BOUND_S: f64 = 50e-6;

pub struct Bounds(Vec<f64>);

impl Bounds {
    pub fn new() -> Bounds {
        // as accounting.py: 50 µs * 1.05^i up to 120 s
        let n = ((120.0f64 / FIRST_BOUND_S).ln() / FACTOR.ln()) as usize + 2;
        Bounds((0..n).map(|i| FIRST_BOUND_S * FACTOR.powf(i as f64)).collect())
    }
    /// bisect_left: the first bound >= seconds (len() for the overflow bucket)
    pub fn index(&self, seconds: f64) -> usize {
        self.0.partition_point(|b| *b < seconds)
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Kind {
    Connect,
    Timeout,
    Reset,
    TooLarge,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Connect => "connect",
            Kind::Timeout => "timeout",
            Kind::Reset => "reset",
            Kind::TooLarge => "too_large",
        }
    }
}

#[derive(Serialize, Default)]
pub struct TargetDelta {
    counts: HashMap<usize, u64>,
    requests: u64,
    latency_sum_s: f64,
    bytes_out: u64,
    bytes_in: u64,
    responses_4xx: u64,
    retries: u64,
    hedges: u64,
    errors: HashMap<&'static str, u64>,
    runs: Vec<(&'static str, u64)>,
    ewma_s: f64,
}

impl TargetDelta {
    fn run(&mut self, kind: &'static str) {
        match self.runs.last_mut() {
            Some((k, n)) if *k == kind => *n += 1,
            _ => self.runs.push((kind, 1)),
        }
    }
    fn ewma(&mut self, ewma: &mut f64, seconds: f64) {
        *ewma = if *ewma == 0.0 { seconds } else { *ewma + 0.2 * (seconds - *ewma) };
        self.ewma_s = *ewma;
    }
}

#[derive(Serialize, Default)]
pub struct OverallDelta {
    counts: HashMap<usize, u64>,
    requests: u64,
    latency_sum_s: f64,
    bytes_out: u64,
}

#[derive(Serialize, Default)]
pub struct Report {
    pub version: u64,
    pub targets: HashMap<String, TargetDelta>,
    pub overall: OverallDelta,
    pub client_errors: HashMap<&'static str, u64>,
    pub own_stall_timeouts: u64,
    pub saturation: Option<serde_json::Value>,
    pub retry_budget: Option<serde_json::Value>,
}

impl Report {
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty() && self.overall.requests == 0 && self.client_errors.is_empty()
    }
}

pub struct Acc {
    bounds: Bounds,
    inner: Mutex<AccInner>,
}

#[derive(Default)]
struct AccInner {
    report: Report,
    ewma: HashMap<String, f64>, // kept across reports: the latency policy's p2c reads it
}

impl Acc {
    pub fn new() -> Acc {
        Acc { bounds: Bounds::new(), inner: Mutex::new(AccInner::default()) }
    }

    fn with<R>(&self, f: impl FnOnce(&mut AccInner) -> R) -> R {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }
}

/// `map[key]`, inserted if missing, without allocating the key when it is there (the common case).
fn slot<'m, V: Default>(map: &'m mut HashMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("just inserted")
}

impl Acc {

    /// One try that got an answer (any status).
    pub fn answered(&self, target: &str, status: u16, seconds: f64, bytes_in: usize, bytes_out: usize) {
        let idx = self.bounds.index(seconds);
        self.with(|a| {
            let ewma = slot(&mut a.ewma, target);
            let d = slot(&mut a.report.targets, target);
            d.requests += 1;
            d.bytes_in += bytes_in as u64;
            if status >= 500 {
                *d.errors.entry("http_5xx").or_default() += 1;
                d.run("http_5xx");
            } else {
                d.bytes_out += bytes_out as u64;
                d.latency_sum_s += seconds;
                *d.counts.entry(idx).or_default() += 1;
                if status >= 400 {
                    d.responses_4xx += 1;
                }
                d.run("ok");
            }
            d.ewma(ewma, seconds);
        })
    }

    /// One try that failed before a whole answer came back.
    pub fn failed(&self, target: &str, kind: Kind, seconds: f64, bytes_in: usize, own_stall: bool) {
        self.with(|a| {
            let ewma = slot(&mut a.ewma, target);
            let d = slot(&mut a.report.targets, target);
            d.bytes_in += bytes_in as u64;
            if kind == Kind::TooLarge {
                return; // the answer's fault as much as the cloud's: not counted (as the Python side)
            }
            d.requests += 1;
            *d.errors.entry(kind.as_str()).or_default() += 1;
            d.ewma(ewma, seconds);
            if own_stall {
                a.report.own_stall_timeouts += 1;
            } else {
                d.run(kind.as_str());
            }
        })
    }

    pub fn retry(&self, target: &str) {
        self.with(|a| slot(&mut a.report.targets, target).retries += 1)
    }

    pub fn hedge(&self, target: &str) {
        self.with(|a| slot(&mut a.report.targets, target).hedges += 1)
    }

    pub fn client(&self, seconds: f64, bytes_out: usize) {
        let idx = self.bounds.index(seconds);
        self.with(|a| {
            let o = &mut a.report.overall;
            o.requests += 1;
            o.latency_sum_s += seconds;
            o.bytes_out += bytes_out as u64;
            *o.counts.entry(idx).or_default() += 1;
        })
    }

    pub fn client_error(&self, what: &'static str) {
        self.with(|a| *a.report.client_errors.entry(what).or_default() += 1)
    }

    pub fn ewma(&self, target: &str) -> f64 {
        self.with(|a| a.ewma.get(target).copied().unwrap_or(0.0))
    }

    /// Everything since the last call.
    pub fn take(&self) -> Report {
        self.with(|a| std::mem::take(&mut a.report))
    }
}

/// Retries and hedges may add `ratio` of the requests over a 10 s window, plus `min_per_s`
/// (`orchestrator/router/retries.py`).
pub struct Budget {
    inner: Mutex<BudgetInner>,
    started: Instant,
}

struct BudgetInner {
    requests: [u64; 10],
    retries: [u64; 10],
    second: u64,
    denied: u64,
}

impl Budget {
    pub fn new() -> Budget {
        Budget {
            inner: Mutex::new(BudgetInner { requests: [0; 10], retries: [0; 10], second: 0, denied: 0 }),
            started: Instant::now(),
        }
    }

    fn roll(&self, b: &mut BudgetInner) -> usize {
        let now = self.started.elapsed().as_secs();
        if now != b.second {
            let gap = (now - b.second).min(10);
            for k in 1..=gap {
                let slot = ((b.second + k) % 10) as usize;
                b.requests[slot] = 0;
                b.retries[slot] = 0;
            }
            b.second = now;
        }
        (now % 10) as usize
    }

    pub fn request(&self) {
        let mut b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let slot = self.roll(&mut b);
        b.requests[slot] += 1;
    }

    pub fn try_acquire(&self, ratio: f64, min_per_s: f64) -> bool {
        let mut b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let slot = self.roll(&mut b);
        let allowed = ratio * b.requests.iter().sum::<u64>() as f64 + min_per_s * 10.0;
        if (b.retries.iter().sum::<u64>() as f64) < allowed {
            b.retries[slot] += 1;
            true
        } else {
            b.denied += 1;
            false
        }
    }

    pub fn snapshot(&self, ratio: f64, min_per_s: f64) -> serde_json::Value {
        let mut b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.roll(&mut b);
        serde_json::json!({"ratio": ratio, "min_per_s": min_per_s, "window_s": 10,
                           "requests_in_window": b.requests.iter().sum::<u64>(),
                           "retries_in_window": b.retries.iter().sum::<u64>(), "denied_total": b.denied})
    }
}
