//! A fog node's resource ledger: what is held for pending bids and reserved for placements.
//!
//! GIRAFF reserved nothing when bidding, so two concurrent auctions could both win the same
//! free CPU and the second accept failed; and it counted one replica where the capacity check
//! counted all of them. Here a bid places a **hold** that expires (at the auction deadline plus
//! a grace period), an accept turns the hold into a **reservation** that ends with the SLA's
//! lifetime, and every check counts holds and reservations together, all replicas included
//! (callers pass `Resources::for_sla`). Whatever the interleaving of bids, accepts, releases
//! and expiries, the live entries never exceed the capacity.
//!
//! The ledger is pure: every operation takes `now`. Expired holds and ended reservations stop
//! counting at once; [`Ledger::tick`] only removes them and reports what went, so the node can
//! log it and tear down finished placements. Time is clamped to the latest `now` a mutating
//! call has seen, so a clock stepping backwards cannot revive expired holds and overcommit.

use crate::ids::{BidId, SlaId};
use crate::pricing::Commitment;
use crate::protocol::Resources;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;

/// What an entry is doing with its resources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum EntryState {
    /// Offered in a bid; lapses at `expires_at` unless the bid is accepted.
    #[serde(rename_all = "camelCase")]
    Held { expires_at: Timestamp },
    /// Accepted: the placement of `sla_id` owns the resources until `ends_at`.
    #[serde(rename_all = "camelCase")]
    Reserved { sla_id: SlaId, ends_at: Timestamp },
}

/// One hold or reservation, keyed by the bid that created it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub bid_id: BidId,
    pub resources: Resources,
    pub state: EntryState,
}

impl Entry {
    /// True while the entry still counts against capacity.
    fn is_live(&self, now: Timestamp) -> bool {
        match self.state {
            EntryState::Held { expires_at } => expires_at > now,
            EntryState::Reserved { ends_at, .. } => ends_at > now,
        }
    }
    fn sla_id(&self) -> Option<SlaId> {
        match self.state {
            EntryState::Reserved { sla_id, .. } => Some(sla_id),
            EntryState::Held { .. } => None,
        }
    }
}

/// Why the ledger refused an operation. Nothing here is a bug of the caller's peer: each maps
/// to a refusal or a 409 at the HTTP layer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LedgerError {
    #[error(
        "out of capacity: needs {} and {}, has {} and {} free",
        .needed.cpu, .needed.memory, .free.cpu, .free.memory
    )]
    OutOfCapacity { needed: Resources, free: Resources },
    #[error("no hold for bid {0}")]
    UnknownHold(BidId),
    #[error(
        "the hold expired and the resources are gone: needs {} and {}, has {} and {} free",
        .needed.cpu, .needed.memory, .free.cpu, .free.memory
    )]
    HoldExpiredAndNoRoom { needed: Resources, free: Resources },
    #[error("bid {0} already has a hold or reservation")]
    AlreadyExists(BidId),
    #[error("SLA {0} is already reserved on this node")]
    SlaAlreadyReserved(SlaId),
}

/// What [`Ledger::tick`] removed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tick {
    /// Holds whose bid was never accepted in time.
    pub expired_holds: Vec<BidId>,
    /// Reservations whose placement reached the end of its lifetime.
    pub ended: Vec<(SlaId, BidId)>,
}

/// A node's holds and reservations against its fixed capacity.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    capacity: Resources,
    #[serde(serialize_with = "entries_as_list")]
    entries: BTreeMap<BidId, Entry>,
    /// The latest `now` seen by a mutating call; earlier times are read as this one.
    #[serde(skip)]
    clock: Timestamp,
}

fn entries_as_list<S: Serializer>(
    entries: &BTreeMap<BidId, Entry>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(entries.values())
}

impl Ledger {
    pub fn new(capacity: Resources) -> Self {
        Ledger {
            capacity,
            entries: BTreeMap::new(),
            clock: Timestamp::default(),
        }
    }

    pub fn capacity(&self) -> Resources {
        self.capacity
    }

    /// `now`, never earlier than a time already acted upon.
    fn at(&self, now: Timestamp) -> Timestamp {
        now.max(self.clock)
    }

    fn advance(&mut self, now: Timestamp) -> Timestamp {
        self.clock = self.at(now);
        self.clock
    }

    fn sum<'a>(entries: impl Iterator<Item = &'a Entry>) -> Resources {
        entries.fold(Resources::ZERO, |acc, e| acc.add(&e.resources))
    }

    /// Holds not yet expired plus reservations not yet ended.
    pub fn used(&self, now: Timestamp) -> Resources {
        let now = self.at(now);
        Self::sum(self.entries.values().filter(|e| e.is_live(now)))
    }

    pub fn free(&self, now: Timestamp) -> Resources {
        self.capacity.saturating_sub(&self.used(now))
    }

    /// Reservations not yet ended (what the node reports in heartbeats).
    pub fn reserved(&self, now: Timestamp) -> Resources {
        let now = self.at(now);
        Self::sum(
            self.entries
                .values()
                .filter(|e| e.sla_id().is_some() && e.is_live(now)),
        )
    }

    /// Holds `resources` for bid `id` until `expires_at`, if they fit next to everything live.
    pub fn try_hold(
        &mut self,
        id: BidId,
        resources: Resources,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        let now = self.advance(now);
        if self.entries.contains_key(&id) {
            return Err(LedgerError::AlreadyExists(id));
        }
        let used = self.used(now);
        if !used.add(&resources).fits_in(&self.capacity) {
            return Err(LedgerError::OutOfCapacity {
                needed: resources,
                free: self.capacity.saturating_sub(&used),
            });
        }
        self.entries.insert(
            id,
            Entry {
                bid_id: id,
                resources,
                state: EntryState::Held { expires_at },
            },
        );
        Ok(())
    }

    /// Turns the hold of bid `id` into the reservation of `sla_id`, ending at `ends_at`, and
    /// returns the reserved resources.
    ///
    /// A hold that expired but was not yet removed by [`Ledger::tick`] is re-admitted only if
    /// its resources still fit. A second confirm for an SLA already reserved here is refused
    /// with [`LedgerError::SlaAlreadyReserved`]; a caller that wants an idempotent accept
    /// looks the SLA up with [`Ledger::reservation`] first.
    pub fn confirm(
        &mut self,
        id: BidId,
        sla_id: SlaId,
        ends_at: Timestamp,
        now: Timestamp,
    ) -> Result<Resources, LedgerError> {
        let now = self.advance(now);
        if self.reservation(sla_id).is_some() {
            return Err(LedgerError::SlaAlreadyReserved(sla_id));
        }
        let (resources, expires_at) = match self.entries.get(&id) {
            Some(Entry {
                resources,
                state: EntryState::Held { expires_at },
                ..
            }) => (*resources, *expires_at),
            _ => return Err(LedgerError::UnknownHold(id)),
        };
        if expires_at <= now {
            // The hold no longer counts in `used`, so this checks it as a fresh request.
            let used = self.used(now);
            if !used.add(&resources).fits_in(&self.capacity) {
                return Err(LedgerError::HoldExpiredAndNoRoom {
                    needed: resources,
                    free: self.capacity.saturating_sub(&used),
                });
            }
        }
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.state = EntryState::Reserved { sla_id, ends_at };
        }
        Ok(resources)
    }

    /// The reservation of `sla_id`, if any (ended but not yet ticked included).
    pub fn reservation(&self, sla_id: SlaId) -> Option<&Entry> {
        self.entries.values().find(|e| e.sla_id() == Some(sla_id))
    }

    /// Frees the hold or reservation of bid `id` (a losing bid, or a cancelled placement).
    pub fn release(&mut self, id: BidId) -> Option<Entry> {
        self.entries.remove(&id)
    }

    /// Frees the reservation of `sla_id` (a cancelled placement).
    pub fn release_sla(&mut self, sla_id: SlaId) -> Option<Entry> {
        let id = self.reservation(sla_id)?.bid_id;
        self.entries.remove(&id)
    }

    /// Removes expired holds and ended reservations, and says which.
    pub fn tick(&mut self, now: Timestamp) -> Tick {
        let now = self.advance(now);
        let mut tick = Tick::default();
        self.entries.retain(|_, e| {
            if e.is_live(now) {
                return true;
            }
            match e.state {
                EntryState::Held { .. } => tick.expired_holds.push(e.bid_id),
                EntryState::Reserved { sla_id, .. } => tick.ended.push((sla_id, e.bid_id)),
            }
            false
        });
        tick
    }

    /// The running reservations and their remaining time, for the quadratic pricing model.
    pub fn commitments(&self, now: Timestamp) -> Vec<Commitment> {
        let now = self.at(now);
        self.entries
            .values()
            .filter_map(|e| match e.state {
                EntryState::Reserved { ends_at, .. } if ends_at > now => Some(Commitment {
                    cpu: e.resources.cpu,
                    remaining: ends_at.since(now),
                }),
                _ => None,
            })
            .collect()
    }

    /// CPU in use (holds and reservations) as a fraction of capacity, in [0, 1]; 0 for a node
    /// without CPU.
    pub fn utilisation(&self, now: Timestamp) -> f64 {
        self.utilisation_with(Resources::ZERO, now)
    }

    /// The utilisation the node would have with `extra` on top, clamped to [0, 1]; what a bid
    /// reports to consolidation strategies.
    pub fn utilisation_with(&self, extra: Resources, now: Timestamp) -> f64 {
        let cap = self.capacity.cpu.millis();
        if cap == 0 {
            return 0.0;
        }
        let used = self.used(now).add(&extra).cpu.millis();
        (used as f64 / cap as f64).clamp(0.0, 1.0)
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::{Bytes, Cpu};
    use proptest::prelude::*;

    fn res(cpu_millis: u64, mib: u64) -> Resources {
        Resources::new(Cpu::from_millis(cpu_millis), Bytes::from_mib(mib))
    }

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn ledger() -> Ledger {
        Ledger::new(res(4000, 4096))
    }

    #[test]
    fn a_hold_counts_until_it_expires_then_frees_capacity() {
        let mut l = ledger();
        let id = BidId::new();
        l.try_hold(id, res(3000, 1024), t(100), t(0)).unwrap();
        assert_eq!(l.used(t(99)), res(3000, 1024));
        let err = l
            .try_hold(BidId::new(), res(2000, 10), t(200), t(50))
            .unwrap_err();
        assert_eq!(
            err,
            LedgerError::OutOfCapacity {
                needed: res(2000, 10),
                free: res(1000, 3072)
            }
        );
        assert_eq!(l.used(t(100)), Resources::ZERO);
        assert_eq!(l.free(t(100)), res(4000, 4096));
        l.try_hold(BidId::new(), res(2000, 10), t(200), t(100))
            .unwrap();
        let tick = l.tick(t(150));
        assert_eq!(tick.expired_holds, vec![id]);
        assert!(tick.ended.is_empty());
    }

    #[test]
    fn confirm_turns_a_hold_into_a_reservation() {
        let mut l = ledger();
        let (id, sla) = (BidId::new(), SlaId::new());
        l.try_hold(id, res(1000, 512), t(100), t(0)).unwrap();
        assert_eq!(l.reserved(t(10)), Resources::ZERO);
        assert_eq!(l.confirm(id, sla, t(5000), t(10)), Ok(res(1000, 512)));
        assert_eq!(l.reserved(t(10)), res(1000, 512));
        // The reservation outlives the hold's expiry.
        assert_eq!(l.used(t(4000)), res(1000, 512));
        assert_eq!(l.reservation(sla).map(|e| e.bid_id), Some(id));
    }

    #[test]
    fn confirm_after_expiry_succeeds_when_the_resources_still_fit() {
        let mut l = ledger();
        let (id, sla) = (BidId::new(), SlaId::new());
        l.try_hold(id, res(3000, 512), t(100), t(0)).unwrap();
        assert_eq!(l.confirm(id, sla, t(1000), t(150)), Ok(res(3000, 512)));
        assert_eq!(l.reserved(t(150)), res(3000, 512));
    }

    #[test]
    fn confirm_after_expiry_fails_when_another_bid_took_the_room() {
        let mut l = ledger();
        let (id, sla) = (BidId::new(), SlaId::new());
        l.try_hold(id, res(3000, 512), t(100), t(0)).unwrap();
        l.try_hold(BidId::new(), res(2000, 512), t(500), t(120))
            .unwrap();
        let err = l.confirm(id, sla, t(1000), t(150)).unwrap_err();
        assert_eq!(
            err,
            LedgerError::HoldExpiredAndNoRoom {
                needed: res(3000, 512),
                free: res(2000, 3584)
            }
        );
        assert!(l.reservation(sla).is_none());
    }

    #[test]
    fn confirming_an_sla_twice_is_refused_and_unknown_bids_are_reported() {
        let mut l = ledger();
        let (a, b, sla) = (BidId::new(), BidId::new(), SlaId::new());
        l.try_hold(a, res(100, 1), t(100), t(0)).unwrap();
        l.try_hold(b, res(100, 1), t(100), t(0)).unwrap();
        l.confirm(a, sla, t(1000), t(1)).unwrap();
        assert_eq!(
            l.confirm(b, sla, t(1000), t(2)),
            Err(LedgerError::SlaAlreadyReserved(sla))
        );
        assert_eq!(
            l.confirm(a, SlaId::new(), t(1000), t(2)),
            Err(LedgerError::UnknownHold(a))
        );
        let ghost = BidId::new();
        assert_eq!(
            l.confirm(ghost, SlaId::new(), t(1000), t(2)),
            Err(LedgerError::UnknownHold(ghost))
        );
        assert_eq!(
            l.try_hold(a, res(1, 1), t(100), t(3)),
            Err(LedgerError::AlreadyExists(a))
        );
    }

    #[test]
    fn tick_reports_ended_reservations_and_removes_them() {
        let mut l = ledger();
        let (id, sla) = (BidId::new(), SlaId::new());
        l.try_hold(id, res(1000, 512), t(100), t(0)).unwrap();
        l.confirm(id, sla, t(1000), t(10)).unwrap();
        assert_eq!(l.tick(t(999)), Tick::default());
        let tick = l.tick(t(1000));
        assert_eq!(tick.ended, vec![(sla, id)]);
        assert_eq!(l.entries().count(), 0);
    }

    #[test]
    fn release_frees_holds_and_reservations() {
        let mut l = ledger();
        let (a, b, sla) = (BidId::new(), BidId::new(), SlaId::new());
        l.try_hold(a, res(1000, 1), t(100), t(0)).unwrap();
        l.try_hold(b, res(1000, 1), t(100), t(0)).unwrap();
        l.confirm(b, sla, t(1000), t(1)).unwrap();
        assert_eq!(l.release(a).map(|e| e.bid_id), Some(a));
        assert_eq!(l.release(a), None);
        assert_eq!(l.release_sla(sla).map(|e| e.bid_id), Some(b));
        assert_eq!(l.used(t(2)), Resources::ZERO);
    }

    #[test]
    fn commitments_list_running_reservations_with_their_remaining_time() {
        let mut l = ledger();
        let (a, b) = (BidId::new(), BidId::new());
        l.try_hold(a, res(1000, 1), t(100), t(0)).unwrap();
        l.try_hold(b, res(500, 1), t(100), t(0)).unwrap();
        l.confirm(a, SlaId::new(), t(10_000), t(0)).unwrap();
        let c = l.commitments(t(4000));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].cpu, Cpu::from_millis(1000));
        assert_eq!(c[0].remaining, std::time::Duration::from_secs(6));
    }

    #[test]
    fn utilisation_counts_holds_and_is_zero_without_capacity() {
        let mut l = ledger();
        l.try_hold(BidId::new(), res(1000, 1), t(100), t(0))
            .unwrap();
        assert_eq!(l.utilisation(t(1)), 0.25);
        assert_eq!(l.utilisation_with(res(1000, 0), t(1)), 0.5);
        assert_eq!(l.utilisation_with(res(9000, 0), t(1)), 1.0);
        assert_eq!(Ledger::new(Resources::ZERO).utilisation(t(1)), 0.0);
    }

    #[test]
    fn a_clock_stepping_back_does_not_revive_expired_holds() {
        let mut l = ledger();
        l.try_hold(BidId::new(), res(3000, 1), t(100), t(0))
            .unwrap();
        l.try_hold(BidId::new(), res(3000, 1), t(300), t(200))
            .unwrap();
        assert!(l.used(t(50)).fits_in(&l.capacity()));
        assert_eq!(l.used(t(50)), res(3000, 1));
    }

    #[test]
    fn the_ledger_serializes_its_entries_as_a_list() {
        let mut l = ledger();
        l.try_hold(BidId::new(), res(1000, 1), t(100), t(0))
            .unwrap();
        let v = serde_json::to_value(&l).unwrap();
        assert_eq!(v["entries"].as_array().map(Vec::len), Some(1));
        assert_eq!(v["entries"][0]["state"]["state"], "held");
        assert_eq!(v["entries"][0]["state"]["expiresAt"], 100);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Hold { cpu: u64, mem: u64, ttl: u64 },
        Confirm { pick: usize, life: u64 },
        ConfirmSameSla { pick: usize },
        Release { pick: usize },
        ReleaseSla { pick: usize },
        Tick,
        Advance(u64),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..3000, 0u64..3000, 0u64..200)
                .prop_map(|(cpu, mem, ttl)| Op::Hold { cpu, mem, ttl }),
            3 => (any::<usize>(), 0u64..500).prop_map(|(pick, life)| Op::Confirm { pick, life }),
            1 => any::<usize>().prop_map(|pick| Op::ConfirmSameSla { pick }),
            1 => any::<usize>().prop_map(|pick| Op::Release { pick }),
            1 => any::<usize>().prop_map(|pick| Op::ReleaseSla { pick }),
            1 => Just(Op::Tick),
            3 => (0u64..100).prop_map(Op::Advance),
        ]
    }

    proptest! {
        #[test]
        fn no_node_is_ever_overcommitted_whatever_the_interleaving(
            ops in proptest::collection::vec(arb_op(), 1..80),
        ) {
            let capacity = res(4000, 4000);
            let mut l = Ledger::new(capacity);
            let mut now = 0u64;
            let mut bids: Vec<BidId> = Vec::new();
            let mut slas: Vec<SlaId> = Vec::new();
            for op in ops {
                match op {
                    Op::Hold { cpu, mem, ttl } => {
                        let id = BidId::new();
                        let r = res(cpu, mem);
                        let before = l.used(t(now));
                        let fits = before.add(&r).fits_in(&capacity);
                        let got = l.try_hold(id, r, t(now + ttl), t(now));
                        prop_assert_eq!(got.is_ok(), fits);
                        bids.push(id);
                    }
                    Op::Confirm { pick, life } if !bids.is_empty() => {
                        let sla = SlaId::new();
                        if l.confirm(bids[pick % bids.len()], sla, t(now + life), t(now)).is_ok() {
                            slas.push(sla);
                        }
                    }
                    Op::ConfirmSameSla { pick } if !bids.is_empty() && !slas.is_empty() => {
                        let sla = slas[pick % slas.len()];
                        let already = l.reservation(sla).is_some();
                        let got = l.confirm(bids[pick % bids.len()], sla, t(now + 50), t(now));
                        if already {
                            prop_assert_eq!(got, Err(LedgerError::SlaAlreadyReserved(sla)));
                        }
                    }
                    Op::Release { pick } if !bids.is_empty() => {
                        l.release(bids[pick % bids.len()]);
                    }
                    Op::ReleaseSla { pick } if !slas.is_empty() => {
                        l.release_sla(slas[pick % slas.len()]);
                    }
                    Op::Tick => {
                        let tick = l.tick(t(now));
                        for id in tick.expired_holds.iter().chain(tick.ended.iter().map(|(_, b)| b)) {
                            prop_assert!(l.entries().all(|e| e.bid_id != *id));
                        }
                    }
                    Op::Advance(ms) => now += ms,
                    _ => {}
                }
                let used = l.used(t(now));
                prop_assert!(used.fits_in(&capacity), "overcommitted: {:?}", used);
                let live: Resources = l
                    .entries()
                    .filter(|e| e.is_live(t(now)))
                    .fold(Resources::ZERO, |acc, e| acc.add(&e.resources));
                prop_assert_eq!(used, live);
                prop_assert_eq!(l.free(t(now)).add(&used), capacity);
                prop_assert!(l.reserved(t(now)).fits_in(&used));
            }
        }
    }
}
