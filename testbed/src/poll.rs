//! Waiting for a federation to reach a state: poll with a deadline, never sleep and hope.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`poll_until`] checks.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

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

/// Calls `check` every [`POLL_INTERVAL`] until it is done and returns its value; panics naming
/// `what` (and the last thing `check` saw, when it says) once `deadline` has passed.
pub async fn poll_until<T, P, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = P>,
    P: PollOutcome<T>,
{
    let until = Instant::now() + deadline;
    loop {
        match check().await.into_outcome() {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= until => match seen {
                Some(seen) => {
                    panic!("timed out after {deadline:?} waiting for {what}; last: {seen}")
                }
                None => panic!("timed out after {deadline:?} waiting for {what}"),
            },
            Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
        }
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
}
