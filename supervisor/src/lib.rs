//! `supervisor`: runs a service's background loops so that none of them stops in silence.
//!
//! A loop that panics or returns is logged at error level with its name and the panic
//! message, counted, and started again after an exponential backoff (100 ms doubling up to
//! 30 s; back to 100 ms once a run has lasted a minute). Dropping the [`Supervisor`], or
//! [`Supervisor::shutdown`], stops every loop it runs. The same backoff schedule serves the
//! loops that retry a call ([`delays`]).

use backon::{BackoffBuilder, ExponentialBuilder};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;

/// The first pause before a restart.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause before a restart.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run this long counts as healthy: the next restart waits [`MIN_BACKOFF`] again.
pub const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// The background loops of one service.
#[derive(Default)]
pub struct Supervisor {
    tasks: JoinSet<()>,
    restarts: BTreeMap<&'static str, Arc<AtomicU64>>,
}

impl Supervisor {
    pub fn new() -> Supervisor {
        Supervisor::default()
    }

    /// Runs `make()` as the loop `name` on the current runtime, and again each time it panics
    /// or returns.
    pub fn spawn<F, Fut>(&mut self, name: &'static str, make: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let restarts = self.restarts.entry(name).or_default().clone();
        self.tasks.spawn(supervise(name, make, restarts));
    }

    /// How often the loop `name` has been restarted (None: no such loop).
    pub fn restarts(&self, name: &str) -> Option<u64> {
        self.restarts.get(name).map(|n| n.load(Ordering::Relaxed))
    }

    /// Stops every loop and waits until they are gone.
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }
}

/// The pauses between the attempts of a loop that retries: `min`, doubling up to `max`, and
/// `max` from then on, without end. Start a new schedule after a success.
pub fn delays(min: Duration, max: Duration) -> impl Iterator<Item = Duration> + Send {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_factor(2.0)
        .without_max_times()
        .build()
}

fn backoff() -> impl Iterator<Item = Duration> + Send {
    delays(MIN_BACKOFF, MAX_BACKOFF)
}

async fn supervise<F, Fut>(name: &'static str, mut make: F, restarts: Arc<AtomicU64>)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut delays = backoff();
    loop {
        let started = Instant::now();
        // The run lives in a set of its own, so that stopping the supervisor stops it too.
        let mut run = JoinSet::new();
        run.spawn(make());
        let why = match run.join_next().await {
            Some(Err(e)) if e.is_cancelled() => return,
            Some(Err(e)) => panic_message(e),
            Some(Ok(())) | None => "it returned".to_string(),
        };
        if started.elapsed() >= HEALTHY_RUN {
            delays = backoff();
        }
        let delay = delays.next().unwrap_or(MAX_BACKOFF);
        let n = restarts.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::error!(
            task = name,
            restarts = n,
            retry_in_ms = delay.as_millis() as u64,
            "background loop `{name}` stopped ({why}); restarting it"
        );
        tokio::time::sleep(delay).await;
    }
}

fn panic_message(e: JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => {
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_string());
            format!("it panicked: {text}")
        }
        Err(e) => format!("it failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    async fn until(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if done() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        done()
    }

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_panics_is_restarted_with_growing_pauses_until_it_runs() {
        let runs = Arc::new(AtomicU64::new(0));
        let healthy = Arc::new(AtomicBool::new(false));
        let mut sup = Supervisor::new();
        let (r, h) = (runs.clone(), healthy.clone());
        sup.spawn("flaky", move || {
            let (r, h) = (r.clone(), h.clone());
            async move {
                if r.fetch_add(1, Ordering::SeqCst) < 3 {
                    panic!("boom");
                }
                h.store(true, Ordering::SeqCst);
                std::future::pending::<()>().await;
            }
        });
        let started = Instant::now();
        assert!(until(Duration::from_secs(5), || healthy.load(Ordering::SeqCst)).await);
        assert_eq!(sup.restarts("flaky"), Some(3));
        // 100 + 200 + 400 ms of backoff before the fourth run.
        assert!(started.elapsed() >= Duration::from_millis(700));
        assert_eq!(sup.restarts("other"), None);
    }

    #[test]
    fn delays_double_from_the_minimum_and_stay_at_the_maximum() {
        let d: Vec<u64> = delays(Duration::from_millis(100), Duration::from_millis(700))
            .take(6)
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(d, [100, 200, 400, 700, 700, 700]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_returns_is_started_again() {
        let runs = Arc::new(AtomicU64::new(0));
        let mut sup = Supervisor::new();
        let r = runs.clone();
        sup.spawn("short", move || {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::SeqCst);
            }
        });
        assert!(until(Duration::from_secs(5), || runs.load(Ordering::SeqCst) >= 3).await);
        assert!(sup.restarts("short").is_some_and(|n| n >= 2));
    }

    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn shutting_the_supervisor_down_stops_its_loops() {
        let stopped = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicBool::new(false));
        let mut sup = Supervisor::new();
        let (s, st) = (stopped.clone(), started.clone());
        sup.spawn("forever", move || {
            let (s, st) = (s.clone(), st.clone());
            async move {
                let _guard = SetOnDrop(s);
                st.store(true, Ordering::SeqCst);
                std::future::pending::<()>().await;
            }
        });
        assert!(until(Duration::from_secs(1), || started.load(Ordering::SeqCst)).await);
        assert!(!stopped.load(Ordering::SeqCst));
        sup.shutdown().await;
        assert!(until(Duration::from_secs(1), || stopped.load(Ordering::SeqCst)).await);
    }
}
