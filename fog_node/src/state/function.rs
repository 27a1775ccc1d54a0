//! Per-function state on this node: current weights (atomic pointer swap), arrival-rate
//! window, throughput estimator, the bounded local queue, the last control-step results and
//! cached metric handles.
//!
//! Everything a request touches is either atomic or behind a per-function lock held for a
//! few instructions (never across an `.await`); no lock is shared between functions.

use crate::state::metrics::FunctionMetrics;
use arc_swap::ArcSwap;
use model::ids::NodeId;
use model::offload::{CapacityOffer, RateWindow, ThroughputEstimator, Weights};
use model::time::Timestamp;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, SemaphorePermit};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the last control step computed for a function (reported to peers and by
/// `GET /api/offload`).
#[derive(Debug, Clone, Default)]
pub struct ControlOut {
    /// Client and access requests per second arriving here.
    pub rate: f64,
    /// Configured max rate, else learned capacity.
    pub capacity: Option<f64>,
    /// What this node offers each peer.
    pub offers: Vec<(NodeId, CapacityOffer)>,
    /// node_margin: the margin shared with each co-hosting peer.
    pub margin: Option<f64>,
    /// The peers as the step saw them.
    pub peers: Vec<PeerSummary>,
}

#[derive(Debug, Clone)]
pub struct PeerSummary {
    pub node: NodeId,
    pub name: String,
    pub alive: bool,
    pub rtt: Option<Duration>,
    /// The offer the peer made this node (expiry in this node's clock).
    pub offer: Option<CapacityOffer>,
}

/// One hosted (or routed) function's state on this node.
pub struct FunctionState {
    pub service: String,
    weights: ArcSwap<Weights>,
    arrivals: Mutex<RateWindow>,
    throughput: Mutex<ThroughputEstimator>,
    pub queue: LocalQueue,
    out: ArcSwap<ControlOut>,
    pub metrics: FunctionMetrics,
}

impl FunctionState {
    pub fn new(service: &str, queue: LocalQueue) -> FunctionState {
        FunctionState {
            service: service.to_string(),
            weights: ArcSwap::from_pointee(Weights::all_local()),
            arrivals: Mutex::new(RateWindow::default()),
            throughput: Mutex::new(ThroughputEstimator::default()),
            queue,
            out: ArcSwap::from_pointee(ControlOut::default()),
            metrics: FunctionMetrics::default(),
        }
    }

    /// The current weights, without copying them.
    pub fn weights(&self) -> arc_swap::Guard<Arc<Weights>> {
        self.weights.load()
    }

    /// Installs new weights; returns the previous ones. Only [`crate::state::offload::Offload::install_weights`]
    /// calls this, so every installation goes through one place.
    pub(crate) fn swap_weights(&self, weights: Weights) -> Arc<Weights> {
        self.weights.swap(Arc::new(weights))
    }

    /// One client or access request arrived.
    pub fn record_arrival(&self, now: Timestamp) {
        lock(&self.arrivals).record(now);
    }

    pub fn arrival_rate(&self, now: Timestamp) -> f64 {
        lock(&self.arrivals).rate(now)
    }

    /// One local call completed.
    pub fn record_completion(&self, now: Timestamp) {
        lock(&self.throughput).record_completion(now);
    }

    /// Updates the throughput estimate and returns the learned capacity.
    pub fn sample_capacity(&self, now: Timestamp, saturated: bool) -> Option<f64> {
        let mut t = lock(&self.throughput);
        t.sample(now, saturated);
        t.capacity()
    }

    pub fn control_out(&self) -> Arc<ControlOut> {
        self.out.load_full()
    }

    pub fn set_control_out(&self, out: ControlOut) {
        self.out.store(Arc::new(out));
    }
}

/// Why the local queue refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueRefusal {
    /// `queue_capacity` requests already wait.
    Full,
    /// Waited `queue_timeout` without a free slot.
    Timeout,
}

impl QueueRefusal {
    pub fn reason(self) -> &'static str {
        match self {
            QueueRefusal::Full => "queue_full",
            QueueRefusal::Timeout => "queue_timeout",
        }
    }
}

/// The bounded queue in front of the FaaS backend: `max_concurrency` calls in flight (a fair
/// semaphore), at most `capacity` waiting, each for at most `timeout`.
pub struct LocalQueue {
    permits: Semaphore,
    max: usize,
    capacity: usize,
    timeout: Duration,
    waiting: AtomicUsize,
    /// Set when a request had to wait or found every slot busy; taken by the control step.
    saturated: AtomicBool,
}

/// Decrements the waiting count when a waiter leaves (served, timed out or cancelled).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl LocalQueue {
    pub fn new(max_concurrency: usize, capacity: usize, timeout: Duration) -> LocalQueue {
        LocalQueue {
            permits: Semaphore::new(max_concurrency),
            max: max_concurrency,
            capacity,
            timeout,
            waiting: AtomicUsize::new(0),
            saturated: AtomicBool::new(false),
        }
    }

    /// A slot for one local call. When the queue passes half its capacity, `wake` is
    /// notified (the control loop recomputes at once).
    pub async fn enter(&self, wake: &Notify) -> Result<SemaphorePermit<'_>, QueueRefusal> {
        if let Ok(p) = self.permits.try_acquire() {
            if self.permits.available_permits() == 0 {
                self.saturated.store(true, Ordering::Relaxed);
            }
            return Ok(p);
        }
        self.saturated.store(true, Ordering::Relaxed);
        let before = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&self.waiting);
        if before >= self.capacity {
            return Err(QueueRefusal::Full);
        }
        if (before + 1) * 2 > self.capacity {
            wake.notify_one();
        }
        match tokio::time::timeout(self.timeout, self.permits.acquire()).await {
            Ok(Ok(p)) => Ok(p),
            // The semaphore is never closed; treat it as a timeout if it ever is.
            Ok(Err(_)) | Err(_) => Err(QueueRefusal::Timeout),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.max.saturating_sub(self.permits.available_permits())
    }

    /// Requests waiting for a slot (those refused as full are not counted).
    pub fn len(&self) -> usize {
        self.waiting.load(Ordering::Acquire).min(self.capacity)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the function was saturated since the last call: every slot busy or requests
    /// waiting, then or now.
    pub fn take_saturated(&self) -> bool {
        let seen = self.saturated.swap(false, Ordering::AcqRel);
        seen || !self.is_empty() || self.permits.available_permits() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_queue_admits_max_concurrency_then_queues_then_refuses_when_full() {
        let q = LocalQueue::new(1, 1, Duration::from_millis(50));
        let wake = Notify::new();
        let first = q.enter(&wake).await.unwrap();
        assert_eq!(q.in_flight(), 1);
        // The second waits; a third finds the queue full.
        let second = q.enter(&wake);
        tokio::pin!(second);
        assert!(
            futures::poll!(second.as_mut()).is_pending(),
            "the second request waits"
        );
        assert_eq!(q.len(), 1);
        assert_eq!(q.enter(&wake).await.unwrap_err(), QueueRefusal::Full);
        drop(first);
        let _second = second.await.unwrap();
        assert_eq!(q.len(), 0);
        assert!(q.take_saturated());
    }

    #[tokio::test]
    async fn a_request_that_waits_too_long_times_out_and_leaves_the_queue() {
        let q = LocalQueue::new(1, 4, Duration::from_millis(20));
        let wake = Notify::new();
        let _busy = q.enter(&wake).await.unwrap();
        assert_eq!(q.enter(&wake).await.unwrap_err(), QueueRefusal::Timeout);
        assert_eq!(q.len(), 0);
    }
}
