//! The discrete-event engine: simulated time ([`SimTime`]), the event queue ([`Engine`]) and
//! the run's one seeded RNG.
//!
//! Determinism is the point: events pop in `(time, insertion sequence)` order, so two events
//! scheduled for the same instant pop in the order they were scheduled, and every random draw
//! comes from one `StdRng` seeded by the caller. The same inputs and seed give the same run,
//! bit for bit. Nothing here reads the wall clock, sleeps or allocates per event beyond the
//! heap slot of the event itself.
//!
//! Components (such as [`crate::faas::FaasSystem`]) do not name the engine's event type: they
//! schedule through [`Scheduler<TheirEvent>`], which `Engine<E>` implements for every `E:
//! From<TheirEvent>`. An outer simulator therefore declares `enum Event { Faas(FaasEvent), .. }`
//! with `impl From<FaasEvent> for Event`, owns one `Engine<Event>` and hands it to each
//! component; a component used alone runs on `Engine<ItsEvent>`.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::time::Duration;

use model::time::Timestamp;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

/// A point in simulated time: microseconds since the start of the run.
///
/// Microseconds keep sub-millisecond link latencies and execution times exact while a `u64`
/// still spans 584,000 years. Arithmetic saturates at [`SimTime::MAX`] instead of wrapping.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct SimTime(u64);

impl SimTime {
    pub const ZERO: SimTime = SimTime(0);
    pub const MAX: SimTime = SimTime(u64::MAX);

    pub const fn from_micros(us: u64) -> Self {
        Self(us)
    }
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms.saturating_mul(1_000))
    }
    pub const fn from_secs(s: u64) -> Self {
        Self(s.saturating_mul(1_000_000))
    }
    /// A duration since the start of the run; sub-microsecond parts are truncated and
    /// durations beyond [`SimTime::MAX`] saturate.
    pub const fn from_duration(d: Duration) -> Self {
        let us = d.as_micros();
        if us > u64::MAX as u128 {
            Self::MAX
        } else {
            Self(us as u64)
        }
    }
    pub const fn as_micros(self) -> u64 {
        self.0
    }
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
    pub const fn as_duration(self) -> Duration {
        Duration::from_micros(self.0)
    }
    /// `self + d`, saturating at [`SimTime::MAX`].
    pub const fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(Self::from_duration(d).0))
    }
    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub const fn since(self, earlier: SimTime) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
    /// This instant as a `model` timestamp, taking the start of the run as the Unix epoch
    /// (milliseconds, truncated). Use [`SimTime::to_timestamp_from`] to start elsewhere.
    pub const fn to_timestamp(self) -> Timestamp {
        Timestamp::from_millis(self.as_millis())
    }
    /// This instant as a `model` timestamp when the run started at `epoch`.
    pub fn to_timestamp_from(self, epoch: Timestamp) -> Timestamp {
        epoch.plus(self.as_duration())
    }
    /// A `model` timestamp as simulated time, taking the Unix epoch as the start of the run.
    pub const fn from_timestamp(ts: Timestamp) -> Self {
        Self::from_millis(ts.as_millis())
    }
}

impl fmt::Display for SimTime {
    /// Seconds with microsecond precision: `12.000345s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

impl From<Duration> for SimTime {
    fn from(d: Duration) -> Self {
        Self::from_duration(d)
    }
}

impl From<SimTime> for Duration {
    fn from(t: SimTime) -> Self {
        t.as_duration()
    }
}

impl From<SimTime> for Timestamp {
    fn from(t: SimTime) -> Self {
        t.to_timestamp()
    }
}

impl std::ops::Add<Duration> for SimTime {
    type Output = SimTime;
    fn add(self, d: Duration) -> SimTime {
        self.saturating_add(d)
    }
}

/// What the engine refuses to do: time never goes backwards.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("{op}: time {at} is before now ({now})")]
    InThePast {
        op: &'static str,
        at: SimTime,
        now: SimTime,
    },
    #[error("advance_to: {to} is after the next pending event at {next}; pop it first")]
    WouldSkipEvents { to: SimTime, next: SimTime },
}

/// One heap slot. Ordered so that `BinaryHeap` (a max-heap) pops the smallest
/// `(time, seq)` first.
struct Entry<E> {
    time: SimTime,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.time == other.time && self.seq == other.seq
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: the earliest time, then the earliest insertion, is the "greatest".
        (other.time, other.seq).cmp(&(self.time, self.seq))
    }
}

/// The event queue and clock of one run, with the run's seeded RNG.
///
/// `pop` returns events in `(time, insertion order)` and moves [`Engine::now`] to the popped
/// event's time; scheduling before `now` is refused, so `now` never decreases.
pub struct Engine<E> {
    now: SimTime,
    next_seq: u64,
    queue: BinaryHeap<Entry<E>>,
    rng: StdRng,
    seed: u64,
    processed: u64,
}

impl<E> Engine<E> {
    /// An empty engine at time zero whose RNG is `StdRng::seed_from_u64(seed)`.
    pub fn new(seed: u64) -> Self {
        Self::with_capacity(seed, 0)
    }

    /// Like [`Engine::new`], with room for `capacity` pending events before the heap grows.
    pub fn with_capacity(seed: u64, capacity: usize) -> Self {
        Self {
            now: SimTime::ZERO,
            next_seq: 0,
            queue: BinaryHeap::with_capacity(capacity),
            rng: StdRng::seed_from_u64(seed),
            seed,
            processed: 0,
        }
    }

    /// The seed this engine's RNG started from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The current simulated time: the time of the last popped event (or of `advance_to`).
    #[inline]
    pub fn now(&self) -> SimTime {
        self.now
    }

    /// Pending events.
    #[inline]
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Events popped so far.
    pub fn processed(&self) -> u64 {
        self.processed
    }

    /// The run's RNG. Every random draw of a run should come from here (in a fixed order) so
    /// that the seed alone decides the outcome.
    #[inline]
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// Schedules `event` at `at`, after every event already scheduled for `at`.
    pub fn schedule_at(&mut self, at: SimTime, event: E) -> Result<(), EngineError> {
        if at < self.now {
            return Err(EngineError::InThePast {
                op: "schedule_at",
                at,
                now: self.now,
            });
        }
        self.push(at, event);
        Ok(())
    }

    /// Schedules `event` `delay` after now (saturating; sub-microsecond parts truncated).
    #[inline]
    pub fn schedule_in(&mut self, delay: Duration, event: E) {
        let at = self.now.saturating_add(delay);
        self.push(at, event);
    }

    #[inline]
    fn push(&mut self, time: SimTime, event: E) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Entry { time, seq, event });
    }

    /// The time of the next event, if any.
    #[inline]
    pub fn peek_time(&self) -> Option<SimTime> {
        self.queue.peek().map(|e| e.time)
    }

    /// Removes the next event and moves `now` to its time.
    #[inline]
    pub fn pop(&mut self) -> Option<(SimTime, E)> {
        let Entry { time, event, .. } = self.queue.pop()?;
        self.now = time;
        self.processed += 1;
        Some((time, event))
    }

    /// Like [`Engine::pop`], but only if the next event is at or before `limit`.
    #[inline]
    pub fn pop_until(&mut self, limit: SimTime) -> Option<(SimTime, E)> {
        match self.peek_time() {
            Some(t) if t <= limit => self.pop(),
            _ => None,
        }
    }

    /// Moves `now` forward to `to` with no event, e.g. to inject work at `to` from outside.
    /// Refused if `to` is in the past or a pending event comes before `to`.
    pub fn advance_to(&mut self, to: SimTime) -> Result<(), EngineError> {
        if to < self.now {
            return Err(EngineError::InThePast {
                op: "advance_to",
                at: to,
                now: self.now,
            });
        }
        if let Some(next) = self.peek_time()
            && next < to
        {
            return Err(EngineError::WouldSkipEvents { to, next });
        }
        self.now = to;
        Ok(())
    }
}

/// How a component schedules its events without knowing the engine's event type.
///
/// `Engine<E>` implements `Scheduler<C>` for every component event `C` with `E: From<C>`, so a
/// component takes `&mut impl Scheduler<ComponentEvent>` and works both on its own engine and
/// embedded in an outer simulator's event enum.
pub trait Scheduler<C> {
    /// The current simulated time.
    fn now(&self) -> SimTime;
    /// Schedules `event` `delay` after now, after every event already scheduled for that time.
    fn schedule_in(&mut self, delay: Duration, event: C);
    /// The run's seeded RNG.
    fn rng(&mut self) -> &mut StdRng;
}

impl<C, E: From<C>> Scheduler<C> for Engine<E> {
    #[inline]
    fn now(&self) -> SimTime {
        self.now
    }
    #[inline]
    fn schedule_in(&mut self, delay: Duration, event: C) {
        Engine::<E>::schedule_in(self, delay, E::from(event));
    }
    #[inline]
    fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }
}

/// The engine as seen by one of several components of the same kind, each owning the events it
/// schedules (one FaaS system per fog node): an event `C` scheduled through it comes back as
/// the outer event `E::from((owner, event))`.
pub struct Owned<'a, E> {
    pub engine: &'a mut Engine<E>,
    pub owner: u32,
}

impl<C, E: From<(u32, C)>> Scheduler<C> for Owned<'_, E> {
    fn now(&self) -> SimTime {
        self.engine.now()
    }
    fn schedule_in(&mut self, delay: Duration, event: C) {
        let owner = self.owner;
        self.engine.schedule_in(delay, E::from((owner, event)));
    }
    fn rng(&mut self) -> &mut StdRng {
        self.engine.rng()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn equal_time_events_pop_in_insertion_order() {
        let mut engine = Engine::new(1);
        let t = SimTime::from_millis(5);
        for i in 0..100u32 {
            engine.schedule_at(t, i).unwrap();
        }
        engine.schedule_at(SimTime::from_millis(1), 1000).unwrap();
        assert_eq!(engine.pop(), Some((SimTime::from_millis(1), 1000)));
        let order: Vec<u32> = std::iter::from_fn(|| engine.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn pop_returns_events_in_time_order_and_advances_now() {
        let mut engine = Engine::new(1);
        engine.schedule_in(Duration::from_millis(30), 'c');
        engine.schedule_in(Duration::from_millis(10), 'a');
        engine.schedule_in(Duration::from_millis(20), 'b');
        assert_eq!(engine.len(), 3);
        assert_eq!(engine.pop(), Some((SimTime::from_millis(10), 'a')));
        assert_eq!(engine.now(), SimTime::from_millis(10));
        // Relative to the new now.
        engine.schedule_in(Duration::from_millis(5), 'x');
        assert_eq!(engine.pop(), Some((SimTime::from_millis(15), 'x')));
        assert_eq!(engine.pop(), Some((SimTime::from_millis(20), 'b')));
        assert_eq!(engine.pop(), Some((SimTime::from_millis(30), 'c')));
        assert_eq!(engine.pop(), None);
        assert!(engine.is_empty());
        assert_eq!(engine.processed(), 4);
        assert_eq!(engine.now(), SimTime::from_millis(30));
    }

    #[test]
    fn scheduling_before_now_is_refused() {
        let mut engine = Engine::new(1);
        engine.schedule_in(Duration::from_secs(2), ());
        engine.pop();
        let err = engine.schedule_at(SimTime::from_secs(1), ()).unwrap_err();
        assert_eq!(
            err,
            EngineError::InThePast {
                op: "schedule_at",
                at: SimTime::from_secs(1),
                now: SimTime::from_secs(2)
            }
        );
        assert!(err.to_string().starts_with("schedule_at:"));
        assert!(engine.schedule_at(SimTime::from_secs(2), ()).is_ok());
    }

    #[test]
    fn advance_to_refuses_to_skip_pending_events_or_go_back() {
        let mut engine = Engine::new(1);
        engine.schedule_at(SimTime::from_secs(3), ()).unwrap();
        assert!(engine.advance_to(SimTime::from_secs(3)).is_ok());
        assert_eq!(
            engine.advance_to(SimTime::from_secs(4)),
            Err(EngineError::WouldSkipEvents {
                to: SimTime::from_secs(4),
                next: SimTime::from_secs(3)
            })
        );
        assert!(matches!(
            engine.advance_to(SimTime::from_secs(1)),
            Err(EngineError::InThePast { .. })
        ));
        assert_eq!(engine.pop_until(SimTime::from_secs(2)), None);
        assert!(engine.pop_until(SimTime::from_secs(3)).is_some());
    }

    #[test]
    fn same_seed_gives_the_same_random_draws() {
        let draws = |seed| {
            let mut engine = Engine::<()>::new(seed);
            (0..8)
                .map(|_| engine.rng().random::<u64>())
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
    }

    #[test]
    fn a_component_schedules_into_an_outer_event_enum() {
        #[derive(Debug, PartialEq)]
        enum Inner {
            Ping,
        }
        #[derive(Debug, PartialEq)]
        enum Outer {
            Inner(Inner),
            Other,
        }
        impl From<Inner> for Outer {
            fn from(e: Inner) -> Self {
                Outer::Inner(e)
            }
        }
        fn component(s: &mut impl Scheduler<Inner>) {
            let _ = s.now();
            s.schedule_in(Duration::from_millis(1), Inner::Ping);
        }
        let mut engine = Engine::<Outer>::new(1);
        engine.schedule_in(Duration::from_millis(1), Outer::Other);
        component(&mut engine);
        assert_eq!(engine.pop().map(|(_, e)| e), Some(Outer::Other));
        assert_eq!(
            engine.pop().map(|(_, e)| e),
            Some(Outer::Inner(Inner::Ping))
        );
    }

    #[test]
    fn sim_time_converts_to_durations_timestamps_and_text() {
        let t = SimTime::from(Duration::from_micros(12_000_345));
        assert_eq!(t.as_micros(), 12_000_345);
        assert_eq!(Duration::from(t), Duration::from_micros(12_000_345));
        assert_eq!(t.to_string(), "12.000345s");
        assert_eq!(t.to_timestamp(), Timestamp::from_millis(12_000));
        assert_eq!(Timestamp::from(t), Timestamp::from_millis(12_000));
        assert_eq!(
            t.to_timestamp_from(Timestamp::from_millis(1_000_000)),
            Timestamp::from_millis(1_012_000)
        );
        assert_eq!(
            SimTime::from_timestamp(Timestamp::from_millis(3)),
            SimTime::from_micros(3_000)
        );
        assert_eq!(SimTime::from_duration(Duration::MAX), SimTime::MAX);
        assert_eq!(SimTime::MAX + Duration::from_secs(1), SimTime::MAX);
        assert_eq!(
            SimTime::from_secs(1).since(SimTime::from_secs(3)),
            Duration::ZERO
        );
    }

    #[test]
    fn a_million_events_push_and_pop_in_order() {
        const N: u64 = 1_000_000;
        let mut engine = Engine::with_capacity(42, 1024);
        // Keep ~1000 events pending, like a busy simulation, with pseudo-random delays.
        let mut pushed = 0u64;
        let mut popped = 0u64;
        let mut last = SimTime::ZERO;
        while pushed < 1_000 {
            let d = engine.rng().random_range(0..10_000u64);
            engine.schedule_in(Duration::from_micros(d), pushed as u32);
            pushed += 1;
        }
        while let Some((t, _)) = engine.pop() {
            assert!(t >= last);
            last = t;
            popped += 1;
            if pushed < N {
                let d = engine.rng().random_range(0..10_000u64);
                engine.schedule_in(Duration::from_micros(d), pushed as u32);
                pushed += 1;
            }
        }
        assert_eq!(popped, N);
        assert_eq!(engine.processed(), N);
    }
}
