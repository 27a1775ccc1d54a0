//! Waiting for a state with a deadline: poll, never sleep and hope. [`poll`] is the one loop
//! every wait of the crate goes through (the launcher's readiness phases, the benchmarks'
//! waits for a gateway, a proxy or a placement); [`poll_until`] is its form for tests, which
//! panics at the deadline.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// How often [`poll_until`] checks.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// What one check of a [`poll`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check<T, S> {
    /// The state is reached, with its value.
    Done(T),
    /// Not yet, and what was seen (the deadline's error says it).
    NotYet(S),
}

/// Calls `check` every `interval` until it is done (its value) or fails (its error, at once).
/// When a check is still not done once `deadline` has passed since the first, the error is
/// `timed_out` of what that last check saw.
pub async fn poll<T, S, E>(
    deadline: Duration,
    interval: Duration,
    mut check: impl AsyncFnMut() -> Result<Check<T, S>, E>,
    timed_out: impl FnOnce(S) -> E,
) -> Result<T, E> {
    let until = Instant::now() + deadline;
    loop {
        match check().await? {
            Check::Done(value) => return Ok(value),
            Check::NotYet(seen) if Instant::now() >= until => return Err(timed_out(seen)),
            Check::NotYet(_) => tokio::time::sleep(interval).await,
        }
    }
}

/// One poll's outcome: done with a value, or not yet, perhaps saying what it saw.
pub trait PollOutcome<T> {
    /// `Ok(value)` when done; `Err(what was seen)` otherwise.
    fn into_outcome(self) -> Result<T, Option<String>>;
}

/// `Some(value)` is done, `None` is not yet.
impl<T> PollOutcome<T> for Option<T> {
    fn into_outcome(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

/// `Ok(value)` is done, `Err(seen)` is not yet; the last `seen` goes into the timeout panic.
impl<T> PollOutcome<T> for Result<T, String> {
    fn into_outcome(self) -> Result<T, Option<String>> {
        self.map_err(Some)
    }
}

/// [`poll`] for tests: calls `check` every [`POLL_INTERVAL`] until it is done and returns its
/// value; panics naming `what` (and the last thing `check` saw, when it says) once `deadline`
/// has passed.
pub async fn poll_until<T, P, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = P>,
    P: PollOutcome<T>,
{
    let outcome = poll(
        deadline,
        POLL_INTERVAL,
        async || {
            Ok(match check().await.into_outcome() {
                Ok(value) => Check::Done(value),
                Err(seen) => Check::NotYet(seen),
            })
        },
        |seen| -> Infallible {
            match seen {
                Some(seen) => {
                    panic!("timed out after {deadline:?} waiting for {what}; last: {seen}")
                }
                None => panic!("timed out after {deadline:?} waiting for {what}"),
            }
        },
    )
    .await;
    match outcome {
        Ok(value) => value,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_poll_returns_the_value_once_the_check_is_done() {
        let mut calls = 0;
        let v = poll_until(Duration::from_secs(5), "the third call", || {
            calls += 1;
            let n = calls;
            async move { (n >= 3).then_some(n) }
        })
        .await;
        assert_eq!(v, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for never; last: still 0")]
    async fn a_poll_past_its_deadline_panics_with_what_it_last_saw() {
        poll_until(Duration::from_millis(50), "never", || async {
            Err::<(), _>("still 0".to_string())
        })
        .await;
    }

    /// Polls every millisecond; the deadline's error says the last thing seen.
    async fn poll_fast(
        deadline: Duration,
        check: impl AsyncFnMut() -> Result<Check<(), u32>, String>,
    ) -> Result<(), String> {
        poll(deadline, Duration::from_millis(1), check, |last| {
            format!("timed out, last saw {last}")
        })
        .await
    }

    #[tokio::test]
    async fn a_failing_check_stops_the_poll_at_once() {
        let mut calls = 0;
        let failed = poll_fast(Duration::from_secs(5), async || {
            calls += 1;
            if calls == 2 {
                Err("broken".to_string())
            } else {
                Ok(Check::NotYet(calls))
            }
        })
        .await;
        assert_eq!(failed, Err("broken".to_string()));
        assert_eq!(calls, 2);
    }

    #[tokio::test]
    async fn a_check_never_done_times_out_with_what_it_last_saw() {
        let mut calls = 0;
        let late = poll_fast(Duration::from_millis(20), async || {
            calls += 1;
            Ok(Check::NotYet(calls))
        })
        .await;
        assert_eq!(late, Err(format!("timed out, last saw {calls}")));
    }
}
