//! This process's own saturation (as `orchestrator/router/dataplane/overload.py`).
//!
//! A timer ticks every 50 ms; how late it fires is the runtime's lag. Once every tick for
//! 0.5 s has been over `shed_lag_s` late while this process kept its CPU busy (a quarter of
//! the wall time or more), new requests are shed with 503 + Retry-After until a tick is on
//! time again. A try that timed out while the runtime stalled for a quarter of the per-try
//! timeout or more is this process's fault, not the cloud's: reported as an own stall,
//! never as a failure of the target.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(50);
const SUSTAIN: Duration = Duration::from_millis(500);
const BUSY_SHARE: f64 = 0.25;

pub struct Monitor {
    origin: Instant,
    due_us: AtomicU64,
    lag_us: AtomicU64,
    max_lag_us: AtomicU64,
    stall_ended_us: AtomicU64, // 0: never
    late_since_us: AtomicU64,  // 0: not late
    pub shed_lag_us: AtomicU64,
    pub stall_us: AtomicU64,
}

impl Monitor {
    pub fn new() -> Monitor {
        Monitor {
            origin: Instant::now(),
            due_us: AtomicU64::new(0),
            lag_us: AtomicU64::new(0),
            max_lag_us: AtomicU64::new(0),
            stall_ended_us: AtomicU64::new(0),
            late_since_us: AtomicU64::new(0),
            shed_lag_us: AtomicU64::new(100_000),
            stall_us: AtomicU64::new(125_000),
        }
    }

    pub fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64 + 1
    }

    pub async fn run(&self) {
        let mut cpu = thread_cpu_ns();
        let mut wall = self.now_us();
        loop {
            let due = self.now_us() + TICK.as_micros() as u64;
            self.due_us.store(due, Ordering::Relaxed);
            tokio::time::sleep(TICK).await;
            let now = self.now_us();
            let lag = now.saturating_sub(due);
            self.lag_us.store(lag, Ordering::Relaxed);
            self.max_lag_us.fetch_max(lag, Ordering::Relaxed);
            if lag >= self.stall_us.load(Ordering::Relaxed) {
                self.stall_ended_us.store(now, Ordering::Relaxed);
            }
            let c = thread_cpu_ns();
            let busy = (c.saturating_sub(cpu)) as f64 / 1000.0 / (now.saturating_sub(wall)).max(1) as f64;
            cpu = c;
            wall = now;
            if lag > self.shed_lag_us.load(Ordering::Relaxed) && busy >= BUSY_SHARE {
                if self.late_since_us.load(Ordering::Relaxed) == 0 {
                    self.late_since_us.store(now - lag, Ordering::Relaxed);
                }
            } else {
                self.late_since_us.store(0, Ordering::Relaxed);
            }
        }
    }

    /// The last tick's lateness, or the due tick's if later still (a stall in progress).
    pub fn current_lag_us(&self) -> u64 {
        let due = self.due_us.load(Ordering::Relaxed);
        let pending = if due == 0 { 0 } else { self.now_us().saturating_sub(due) };
        self.lag_us.load(Ordering::Relaxed).max(pending)
    }

    pub fn max_lag_us(&self) -> u64 {
        self.max_lag_us.load(Ordering::Relaxed)
    }

    pub fn saturated(&self) -> bool {
        let since = self.late_since_us.load(Ordering::Relaxed);
        since != 0 && self.now_us().saturating_sub(since) >= SUSTAIN.as_micros() as u64
    }

    /// Did the runtime stall (for `stall_us` or more) after `started_us`?
    pub fn stalled_since(&self, started_us: u64) -> bool {
        self.stall_ended_us.load(Ordering::Relaxed) >= started_us
            || self.current_lag_us() >= self.stall_us.load(Ordering::Relaxed)
    }
}

/// CPU time of the calling thread (the runtime's, with one thread) in ns; 0 if unknown.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}
