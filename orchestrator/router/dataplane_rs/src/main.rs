//! mco-dataplane: the mco router's data plane in Rust (tokio + hyper). It forwards; the
//! Python control plane (`orchestrator/router/`) decides.
//!
//!     mco-dataplane --listen 127.0.0.1:8088 --control 127.0.0.1:PORT [--threads N]
//!
//! `$MCO_DATAPLANE_SECRET` authenticates it to the control plane, which listens on the
//! loopback `--control` address (`orchestrator/router/rust.py` starts both). Every 100 ms
//! (250 ms when idle) it POSTs `/admin/dataplane/report` there: the per-target outcomes,
//! latency histograms and client errors since the last report, and its own saturation; the
//! answer carries the routing table (`table.rs`) whenever it changed: targets, the order
//! to try them in, health, timeouts, limits and the retry allow-list. A long poll
//! (`GET /admin/dataplane/table?version=N`) brings a changed table at once.
//!
//! Modules: `server.rs` (client side, limits, shedding, the control plane's paths),
//! `guard.rs` (header size, header and idle deadlines under hyper), `forward.rs` (tries,
//! retries, hedges), `stats.rs` (what is reported, the retry budget), `overload.rs` (this
//! process's own lag), `table.rs` (the routing table).

mod forward;
mod guard;
mod overload;
mod server;
mod stats;
mod table;

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpSocket;

use crate::stats::{Acc, Budget, Report};
use crate::table::{Rng, Table, TableDoc};

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// What every connection and the control link share.
pub struct Dp {
    table: RwLock<Arc<Table>>,
    pub acc: Acc,
    pub budget: Budget,
    pub monitor: overload::Monitor,
    pub client: HttpClient,
    pub control_origin: String,
    secret: String,
    pub inflight: AtomicUsize,
    pub rng: Mutex<Rng>,
    /// A try failed: report now rather than at the next tick, so the control plane's outlier
    /// detection ejects as soon as the Python data plane's would (a 100 ms lag let a hung
    /// cloud take that many more hedges from the retry budget).
    pub urgent: tokio::sync::Notify,
}

impl Dp {
    pub fn table(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn install(&self, table: Arc<Table>) {
        use std::sync::atomic::Ordering::Relaxed;
        self.monitor.shed_lag_us.store((table.settings.shed_lag_s * 1e6) as u64, Relaxed);
        self.monitor.stall_us.store((table.settings.per_try_timeout_s * 1e6 / 4.0) as u64, Relaxed);
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = table;
    }
}

struct Args {
    listen: SocketAddr,
    control: SocketAddr,
    threads: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut listen = None;
    let mut control = None;
    let mut threads = 1;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = Some(value.parse().map_err(|e| format!("--listen {value}: {e}"))?),
            "--control" => control = Some(value.parse().map_err(|e| format!("--control {value}: {e}"))?),
            "--threads" => threads = value.parse().map_err(|e| format!("--threads {value}: {e}"))?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(Args {
        listen: listen.ok_or("--listen HOST:PORT is required")?,
        control: control.ok_or("--control HOST:PORT is required")?,
        threads,
    })
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mco-dataplane: {e}\nusage: mco-dataplane --listen HOST:PORT --control HOST:PORT [--threads N]");
            std::process::exit(2);
        }
    };
    let secret = std::env::var("MCO_DATAPLANE_SECRET").unwrap_or_default();
    if secret.is_empty() {
        eprintln!("mco-dataplane: $MCO_DATAPLANE_SECRET is not set (the control plane sets it when it starts this)");
        std::process::exit(2);
    }
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()
    }
    .expect("a tokio runtime");
    let code = runtime.block_on(run(args, secret));
    std::process::exit(code);
}

async fn run(args: Args, secret: String) -> i32 {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.enforce_http(true);
    let control_origin = format!("http://{}", args.control);
    // the first table: wait for the control plane (it starts this process once it listens)
    let started = Instant::now();
    let first = loop {
        let probe: HttpClient = Client::builder(TokioExecutor::new()).build(connector.clone());
        match post_report(&probe, &control_origin, &secret, &Report::default()).await {
            Ok(Some(doc)) => break doc,
            Ok(None) => {}
            Err(e) if started.elapsed() > Duration::from_secs(30) => {
                eprintln!("mco-dataplane: no routing table from the control plane at {control_origin}: {e}");
                return 3;
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let table = match Table::from_doc(first) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("mco-dataplane: {e}");
            return 2;
        }
    };
    connector.set_connect_timeout(Some(Duration::from_secs_f64(table.settings.connect_timeout_s)));
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(4)) // below uvicorn's 5 s keep-alive, as the Python pool
        .pool_timer(TokioTimer::new())
        .retry_canceled_requests(true)
        .build(connector);
    let max_header_bytes = table.settings.max_header_bytes;
    let max_headers = table.settings.max_headers;
    let table = Arc::new(table);
    let dp = Arc::new(Dp {
        table: RwLock::new(table.clone()),
        acc: Acc::new(),
        budget: Budget::new(),
        monitor: overload::Monitor::new(),
        client,
        control_origin,
        secret,
        inflight: AtomicUsize::new(0),
        rng: Mutex::new(Rng::new()),
        urgent: tokio::sync::Notify::new(),
    });
    dp.install(table);

    let socket = match if args.listen.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() } {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mco-dataplane: socket: {e}");
            return 1;
        }
    };
    let _ = socket.set_reuseaddr(true);
    let listener = match socket.bind(args.listen).and_then(|_| socket.listen(2048)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mco-dataplane: cannot listen on {}: {e}", args.listen);
            return 1;
        }
    };
    eprintln!("mco-dataplane: listening on {}, control plane {}", args.listen, dp.control_origin);

    let monitor = dp.clone();
    tokio::spawn(async move { monitor.monitor.run().await });
    let link = dp.clone();
    let mut control_task = tokio::spawn(async move { control_loop(link).await });
    let watcher = dp.clone();
    tokio::spawn(async move { watch_loop(watcher).await });

    let mut builder = http1::Builder::new();
    builder.auto_date_header(false).max_buf_size((max_header_bytes + 8192).max(400 * 1024));
    if max_headers != 100 {
        builder.max_headers(max_headers); // (100 is hyper's default, kept on the stack)
    }
    let builder = Arc::new(builder);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).expect("SIGHUP handler");
    let code = loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, addr)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let dp = dp.clone();
                let builder = builder.clone();
                tokio::spawn(async move {
                    let shared = Arc::new(guard::ConnShared::new());
                    let io = TokioIo::new(guard::Guarded::new(stream, shared.clone(), dp.clone()));
                    let peer: Arc<str> = Arc::from(addr.ip().to_string());
                    let svc = service_fn(move |req| {
                        shared.phase.store(guard::REQUEST, std::sync::atomic::Ordering::Relaxed);
                        server::handle(dp.clone(), shared.clone(), peer.clone(), req)
                    });
                    let _ = builder.serve_connection(io, svc).await;
                });
            }
            _ = term.recv() => break 0,
            _ = hup.recv() => {} // the control plane re-reads its config; the table follows
            _ = tokio::signal::ctrl_c() => break 0,
            _ = &mut control_task => break 3, // the control plane is gone
        }
    };
    // a last report, so nothing counted is lost
    let last = build_report(&dp);
    let _ = post_report(&dp.client, &dp.control_origin, &dp.secret, &last).await;
    code
}

fn build_report(dp: &Dp) -> Report {
    let table = dp.table();
    let s = &table.settings;
    let mut report = dp.acc.take();
    report.version = table.version;
    report.saturation = Some(serde_json::json!({
        "inflight": dp.inflight.load(std::sync::atomic::Ordering::Relaxed),
        "max_concurrency": s.max_concurrency,
        "loop_lag_ms": dp.monitor.current_lag_us() as f64 / 1000.0,
        "max_loop_lag_ms": dp.monitor.max_lag_us() as f64 / 1000.0,
    }));
    report.retry_budget = Some(dp.budget.snapshot(s.budget_ratio, s.budget_min_per_s));
    report
}

/// How often outcomes go to the control plane (and a changed table comes back): while
/// requests flow, and while nothing happens. Ejections take effect within one report.
const REPORT_BUSY_MS: u64 = 100;
const REPORT_IDLE_MS: u64 = 250;
const REPORT_URGENT_MS: u64 = 10;

/// Report now and take the table if it changed: after an admin call passed through (a hot
/// reload, new weights), so the next request routes by it.
pub async fn sync_now(dp: &Dp) {
    let report = build_report(dp);
    if let Ok(Some(doc)) = post_report(&dp.client, &dp.control_origin, &dp.secret, &report).await {
        match Table::from_doc(doc) {
            Ok(table) if table.version >= dp.table().version => dp.install(Arc::new(table)),
            Ok(_) => {}
            Err(e) => eprintln!("mco-dataplane: routing table refused: {e}"),
        }
    }
}

/// Report to the control plane until it cannot be reached for 5 s (then this process ends:
/// a data plane nobody decides for must not go on routing on a stale table).
async fn control_loop(dp: Arc<Dp>) {
    let mut lost_since: Option<Instant> = None;
    loop {
        let report = build_report(&dp);
        let busy = !report.is_empty();
        match post_report(&dp.client, &dp.control_origin, &dp.secret, &report).await {
            Ok(Some(doc)) => {
                lost_since = None;
                match Table::from_doc(doc) {
                    Ok(table) if table.version >= dp.table().version => dp.install(Arc::new(table)),
                    Ok(_) => {}
                    Err(e) => eprintln!("mco-dataplane: routing table refused: {e}"),
                }
            }
            Ok(None) => lost_since = None,
            Err(e) => {
                let since = *lost_since.get_or_insert_with(Instant::now);
                eprintln!("mco-dataplane: report to the control plane failed: {e}");
                if since.elapsed() > Duration::from_secs(5) {
                    eprintln!("mco-dataplane: the control plane is gone; stopping");
                    return;
                }
            }
        }
        let tick = tokio::time::sleep(Duration::from_millis(if busy { REPORT_BUSY_MS } else { REPORT_IDLE_MS }));
        tokio::select! {
            _ = tick => {}
            _ = dp.urgent.notified() => {
                // the failures of the next few ms go in the same report: a storm of them costs
                // the control plane at most one report per REPORT_URGENT_MS
                tokio::time::sleep(Duration::from_millis(REPORT_URGENT_MS)).await;
            }
        }
    }
}

/// The long poll: the control plane answers as soon as the table changes (or after 5 s), so
/// a failover or failback takes effect here within milliseconds, not at the next report.
async fn watch_loop(dp: Arc<Dp>) {
    loop {
        let have = dp.table().version;
        let request = Request::get(format!("{}/admin/dataplane/table?version={have}", dp.control_origin))
            .header("x-mco-dataplane-secret", dp.secret.as_str())
            .body(Full::new(Bytes::new()));
        let Ok(request) = request else { return };
        let call = async {
            let resp = dp.client.request(request).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
            if !status.is_success() {
                return Err(format!("HTTP {status}"));
            }
            #[derive(serde::Deserialize)]
            struct Answer {
                table: Option<TableDoc>,
            }
            serde_json::from_slice::<Answer>(&body).map(|a| a.table).map_err(|e| format!("bad answer: {e}"))
        };
        match tokio::time::timeout(Duration::from_secs(15), call).await {
            Ok(Ok(Some(doc))) => match Table::from_doc(doc) {
                Ok(table) if table.version > dp.table().version => dp.install(Arc::new(table)),
                Ok(_) => {}
                Err(e) => {
                    eprintln!("mco-dataplane: routing table refused: {e}");
                    tokio::time::sleep(Duration::from_millis(REPORT_IDLE_MS)).await;
                }
            },
            Ok(Ok(None)) => {}
            // (the report loop notices a lost control plane; this one only retries)
            _ => tokio::time::sleep(Duration::from_millis(REPORT_IDLE_MS)).await,
        }
    }
}

async fn post_report(client: &HttpClient, origin: &str, secret: &str, report: &Report)
                     -> Result<Option<TableDoc>, String> {
    let body = serde_json::to_vec(report).map_err(|e| e.to_string())?;
    let request = Request::post(format!("{origin}/admin/dataplane/report"))
        .header("content-type", "application/json")
        .header("x-mco-dataplane-secret", secret)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let call = async {
        let resp = client.request(request).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        if !status.is_success() {
            return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(300)])));
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            table: Option<TableDoc>,
        }
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| format!("bad answer: {e}"))?;
        Ok(answer.table)
    };
    tokio::time::timeout(Duration::from_secs(2), call).await.map_err(|_| "no answer within 2 s".to_string())?
}
