//! The routing table the Python control plane hands over, and what the hot path reads from it.
//!
//! The control plane sends it as JSON (`orchestrator/router/rust.py`, `dataplane_table`): the
//! settings (timeouts, limits, retry allow-list), the targets, and the order to try them in.
//! The order is the policy's, computed in Python; the only choice left to this side is the
//! first target when the policy draws one (`pick`: by weight, or power of two choices on
//! this side's own latency EWMA).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::Method;
use serde::Deserialize;

#[derive(Deserialize, Clone, Debug)]
pub struct Settings {
    pub per_try_timeout_s: f64,
    pub connect_timeout_s: f64,
    pub attempts: u32,
    pub budget_ratio: f64,
    pub budget_min_per_s: f64,
    pub backoff_base_s: f64,
    pub backoff_max_s: f64,
    pub hedge: bool,
    pub hedge_min_delay_s: f64,
    pub deadline_s: f64,
    pub retry_allow: Vec<String>,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub header_timeout_s: f64,
    pub body_timeout_s: f64,
    pub idle_timeout_s: f64,
    pub max_concurrency: usize,
    pub max_response_bytes: usize,
    pub max_body_bytes: usize,
    pub shed_lag_s: f64,
}

impl Settings {
    pub fn per_try(&self) -> Duration {
        Duration::from_secs_f64(self.per_try_timeout_s)
    }
}

#[derive(Deserialize, Debug)]
pub struct TargetDoc {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub weight: u32,
    #[serde(default)]
    pub recent_p95_s: Option<f64>,
}

#[derive(Deserialize, Debug)]
pub struct TableDoc {
    pub version: u64,
    pub router: String,
    pub settings: Settings,
    pub targets: Vec<TargetDoc>,
    pub all_down: bool,
    /// target names in the order to try them (the healthy ones; every one when all are down)
    pub order: Vec<String>,
    /// "first": `order` as it is; "weighted": the first drawn by weight among `among`;
    /// "p2c": the first is the lower-EWMA of two drawn from `among`
    pub pick: String,
    #[serde(default)]
    pub among: Vec<String>,
}

pub struct Target {
    pub name: String,
    pub cloud_header: HeaderValue,
    /// "http://host:port" and the URL's path prefix (no trailing slash)
    pub origin: String,
    pub prefix: String,
    pub weight: u32,
    pub recent_p95_s: Option<f64>,
}

#[derive(PartialEq)]
pub enum Pick {
    First,
    Weighted,
    P2c,
}

pub struct Table {
    pub version: u64,
    pub router_name: HeaderValue,
    pub settings: Settings,
    pub order: Vec<Arc<Target>>,
    pub among: Vec<Arc<Target>>,
    pub pick: Pick,
    pub all_down: bool,
    allow_exact: HashSet<(Method, String)>,
    allow_patterns: Vec<(Method, Vec<String>)>,
}

impl Table {
    pub fn from_doc(doc: TableDoc) -> Result<Table, String> {
        let mut targets: Vec<Arc<Target>> = Vec::new();
        for t in &doc.targets {
            let rest = t
                .url
                .strip_prefix("http://")
                .ok_or_else(|| format!("target '{}': only http:// URLs are forwarded by this data plane", t.name))?;
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
                None => (rest, ""),
            };
            targets.push(Arc::new(Target {
                name: t.name.clone(),
                cloud_header: HeaderValue::from_str(&t.name).map_err(|e| e.to_string())?,
                origin: format!("http://{authority}"),
                prefix: path.to_string(),
                weight: t.weight,
                recent_p95_s: t.recent_p95_s,
            }));
        }
        let find = |name: &String| targets.iter().find(|t| &t.name == name).cloned();
        let order: Vec<Arc<Target>> = doc.order.iter().filter_map(find).collect();
        let among: Vec<Arc<Target>> = doc.among.iter().filter_map(find).collect();
        let pick = match doc.pick.as_str() {
            "weighted" if among.len() > 1 => Pick::Weighted,
            "p2c" if among.len() > 1 => Pick::P2c,
            _ => Pick::First,
        };
        let mut allow_exact = HashSet::new();
        let mut allow_patterns = Vec::new();
        for entry in &doc.settings.retry_allow {
            let Some((m, p)) = entry.split_once(' ') else { continue };
            let Ok(method) = Method::from_bytes(m.as_bytes()) else { continue };
            if p.contains('*') {
                allow_patterns.push((method, p.split('/').map(str::to_string).collect()));
            } else {
                allow_exact.insert((method, p.to_string()));
            }
        }
        Ok(Table {
            version: doc.version,
            router_name: HeaderValue::from_str(&doc.router).unwrap_or(HeaderValue::from_static("mco-router")),
            settings: doc.settings,
            order,
            among,
            pick,
            all_down: doc.all_down,
            allow_exact,
            allow_patterns,
        })
    }

    /// GET, HEAD, or `METHOD /path` on the allow-list (`*` standing for one path segment).
    pub fn repeatable(&self, method: &Method, path: &str) -> bool {
        if *method == Method::GET || *method == Method::HEAD {
            return true;
        }
        if self.allow_exact.contains(&(method.clone(), path.to_string())) {
            return true;
        }
        self.allow_patterns.iter().any(|(m, segments)| {
            m == method && {
                let parts: Vec<&str> = path.split('/').collect();
                parts.len() == segments.len()
                    && parts.iter().zip(segments).all(|(p, s)| if s == "*" { !p.is_empty() } else { p == s })
            }
        })
    }

    /// The targets to try for one request, best first.
    pub fn candidates(&self, rng: &mut Rng, ewma: impl Fn(&str) -> f64) -> Vec<Arc<Target>> {
        let first = match self.pick {
            Pick::First => return self.order.clone(),
            Pick::Weighted => {
                let total: u64 = self.among.iter().map(|t| t.weight as u64).sum();
                if total == 0 {
                    self.among[0].clone()
                } else {
                    let mut x = rng.below(total);
                    let mut chosen = self.among[self.among.len() - 1].clone();
                    for t in &self.among {
                        if x < t.weight as u64 {
                            chosen = t.clone();
                            break;
                        }
                        x -= t.weight as u64;
                    }
                    chosen
                }
            }
            Pick::P2c => {
                let n = self.among.len() as u64;
                let a = rng.below(n) as usize;
                let mut b = rng.below(n - 1) as usize;
                if b >= a {
                    b += 1;
                }
                let (ta, tb) = (&self.among[a], &self.among[b]);
                if ewma(&ta.name) <= ewma(&tb.name) { ta.clone() } else { tb.clone() }
            }
        };
        let mut out = Vec::with_capacity(self.order.len());
        out.push(first.clone());
        out.extend(self.order.iter().filter(|t| !Arc::ptr_eq(t, &first)).cloned());
        out
    }
}

/// xorshift64*: draws for weights, p2c and backoff jitter (nothing secret).
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E3779B97F4A7C15);
        Rng(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545F4914F6CDD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
