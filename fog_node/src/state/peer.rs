//! This node's link to another federation node: round-trip time, liveness as the control
//! plane sees it (last successful exchange, suspicion after a failed forward), and the latest
//! load report received from it.
//!
//! The data plane only reads and writes atomics here (RTT hint for ranking hosts, suspicion);
//! the control state sits behind a per-peer lock used by the control loop and the
//! `/fog/v1/load` handler.

use model::ids::NodeId;
use model::offload::CapacityOffer;
use model::protocol::{FunctionLoadReport, LoadReport};
use model::time::Timestamp;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// EWMA weight of a new RTT sample.
const RTT_ALPHA: f64 = 0.3;

/// What the control plane knows of a peer.
#[derive(Debug, Default)]
pub struct PeerControl {
    /// Highest report sequence number received.
    pub last_seq: Option<u64>,
    /// Latest report per service, offers rebased on this node's clock.
    pub reports: HashMap<String, FunctionLoadReport>,
    /// Last successful exchange (either direction).
    pub last_ok: Option<Instant>,
    /// EWMA of measured exchange round trips.
    pub rtt: Option<Duration>,
    /// Since when the peer co-hosts a function with this node (None: it does not now).
    pub co_host_since: Option<Instant>,
}

pub struct PeerLink {
    pub node: NodeId,
    /// RTT hint in microseconds for ranking hosts (0: unknown).
    rtt_us: AtomicU64,
    /// Suspect (a forward to it failed) until this many ms after the offload epoch.
    suspect_until_ms: AtomicU64,
    /// An exchange with this peer is under way (one per peer at a time).
    exchanging: AtomicBool,
    control: Mutex<PeerControl>,
}

impl PeerLink {
    pub fn new(node: NodeId) -> PeerLink {
        PeerLink {
            node,
            rtt_us: AtomicU64::new(0),
            suspect_until_ms: AtomicU64::new(0),
            exchanging: AtomicBool::new(false),
            control: Mutex::new(PeerControl::default()),
        }
    }

    pub fn control(&self) -> MutexGuard<'_, PeerControl> {
        self.control.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The RTT used for ranking and for the strategies, when known.
    pub fn rtt_hint(&self) -> Option<Duration> {
        match self.rtt_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    pub fn set_rtt_hint(&self, rtt: Option<Duration>) {
        let us = rtt.map_or(0, |d| (d.as_micros() as u64).max(1));
        self.rtt_us.store(us, Ordering::Relaxed);
    }

    /// Marks the peer suspect until `until_ms` (offload-epoch milliseconds).
    pub fn mark_suspect(&self, until_ms: u64) {
        self.suspect_until_ms.fetch_max(until_ms, Ordering::AcqRel);
    }

    pub fn clear_suspect(&self) {
        self.suspect_until_ms.store(0, Ordering::Release);
    }

    pub fn is_suspect(&self, now_ms: u64) -> bool {
        self.suspect_until_ms.load(Ordering::Acquire) > now_ms
    }

    /// Claims the right to run an exchange; false when one is already under way.
    pub fn begin_exchange(&self) -> bool {
        !self.exchanging.swap(true, Ordering::AcqRel)
    }

    pub fn end_exchange(&self) {
        self.exchanging.store(false, Ordering::Release);
    }

    /// A successful exchange: its round trip (when this node measured one) and the time.
    pub fn observe_ok(&self, rtt: Option<Duration>, at: Instant) {
        let mut c = self.control();
        c.last_ok = Some(at);
        if let Some(rtt) = rtt {
            c.rtt = Some(match c.rtt {
                Some(prev) => prev.mul_f64(1.0 - RTT_ALPHA) + rtt.mul_f64(RTT_ALPHA),
                None => rtt,
            });
        }
        drop(c);
        self.clear_suspect();
    }

    /// Keeps `report` unless an equal or newer sequence number was seen; offers are rebased
    /// from the sender's clock to this node's (`received_at` + time left at `sent_at`), so
    /// clock skew between nodes does not stretch or cut leases. Returns whether it was kept.
    pub fn receive(&self, report: LoadReport, received_at: Timestamp) -> bool {
        let mut c = self.control();
        if c.last_seq.is_some_and(|s| report.seq <= s) {
            return false;
        }
        c.last_seq = Some(report.seq);
        c.reports.clear();
        for mut f in report.functions {
            f.offer = f.offer.map(|o| CapacityOffer {
                rate: o.rate,
                expires_at: received_at.plus(o.expires_at.since(report.sent_at)),
            });
            c.reports.insert(f.service.clone(), f);
        }
        true
    }

    /// Alive for the strategies: marked alive in the table, not suspect, and heard from
    /// within `timeout` (a peer never heard from counts as alive for `timeout` after it
    /// started co-hosting, so traffic can start).
    pub fn is_alive(
        &self,
        table_alive: bool,
        now: Instant,
        now_ms: u64,
        timeout: Duration,
    ) -> bool {
        if !table_alive || self.is_suspect(now_ms) {
            return false;
        }
        let c = self.control();
        match (c.last_ok, c.co_host_since) {
            (Some(t), _) => now.saturating_duration_since(t) <= timeout,
            (None, Some(since)) => now.saturating_duration_since(since) <= timeout,
            (None, None) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(seq: u64, sent_at: u64, expires_at: u64) -> LoadReport {
        LoadReport {
            version: 1,
            from: NodeId::new(),
            seq,
            sent_at: Timestamp::from_millis(sent_at),
            functions: vec![FunctionLoadReport {
                service: "fogfn-x".into(),
                rate: 1.0,
                capacity: Some(10.0),
                queue_len: 0,
                in_flight: 0,
                offer: Some(CapacityOffer {
                    rate: 5.0,
                    expires_at: Timestamp::from_millis(expires_at),
                }),
                margin: None,
            }],
        }
    }

    #[test]
    fn older_reports_are_ignored_and_offers_are_rebased_on_the_local_clock() {
        let link = PeerLink::new(NodeId::new());
        // The sender's clock is 10 s ahead: its offer has 3 s left.
        assert!(link.receive(report(5, 20_000, 23_000), Timestamp::from_millis(10_000)));
        let offer = link.control().reports["fogfn-x"].offer.unwrap();
        assert_eq!(offer.expires_at, Timestamp::from_millis(13_000));
        assert!(!link.receive(report(4, 0, 1), Timestamp::from_millis(10_001)));
        assert!(!link.receive(report(5, 0, 1), Timestamp::from_millis(10_001)));
        assert_eq!(link.control().last_seq, Some(5));
    }

    #[test]
    fn a_peer_is_dead_after_the_timeout_or_while_suspect() {
        let link = PeerLink::new(NodeId::new());
        let t0 = Instant::now();
        let timeout = Duration::from_millis(100);
        link.control().co_host_since = Some(t0);
        assert!(link.is_alive(true, t0, 0, timeout), "new peers start alive");
        assert!(!link.is_alive(true, t0 + Duration::from_millis(150), 0, timeout));
        link.observe_ok(
            Some(Duration::from_millis(2)),
            t0 + Duration::from_millis(150),
        );
        assert!(link.is_alive(true, t0 + Duration::from_millis(200), 0, timeout));
        assert!(!link.is_alive(false, t0 + Duration::from_millis(200), 0, timeout));
        link.mark_suspect(1_000);
        assert!(!link.is_alive(true, t0 + Duration::from_millis(200), 999, timeout));
        assert!(link.is_alive(true, t0 + Duration::from_millis(200), 1_000, timeout));
    }
}
