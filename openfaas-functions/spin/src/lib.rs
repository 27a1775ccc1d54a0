//! `fn-spin`: busy-spins (really burns one CPU, it does not sleep) for a requested duration,
//! the workload model of the Azure Functions trace, where each invocation is replayed as a
//! function that spins for its recorded execution time.
//!
//! The duration comes from query `ms=N`, else from a JSON body `{"ms": N}`; at most 60 000.
//! Missing or invalid -> 400 naming `ms`. The answer is JSON
//! `{"spunMs": N, "elapsedMs": <wall time actually spent, ≥ N>, "iterations": <loop turns>}`.
//! The handler runs on the blocking pool (see `fn_common::run`), so spinning never stalls the
//! accept loop or health checks.

use std::hint::black_box;
use std::time::{Duration, Instant};

use fn_common::{FnError, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

/// Longest accepted spin.
pub const MAX_MS: u64 = 60_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpinBody {
    ms: u64,
}

/// What the function answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpinReport {
    pub spun_ms: u64,
    pub elapsed_ms: f64,
    pub iterations: u64,
}

/// The requested duration in ms: query `ms`, else the JSON body's `ms`.
pub fn requested_ms(req: &Request) -> Result<u64, FnError> {
    let ms = match req.parse_query::<u64>("ms")? {
        Some(ms) => ms,
        None if req.body.iter().all(u8::is_ascii_whitespace) => {
            return Err(FnError::invalid_param(
                "ms",
                "missing: pass ?ms=N or a JSON body {\"ms\": N}",
            ));
        }
        None => {
            serde_json::from_slice::<SpinBody>(&req.body)
                .map_err(|e| {
                    FnError::invalid_param(
                        "ms",
                        format!("the body is not JSON of the form {{\"ms\": N}}: {e}"),
                    )
                })?
                .ms
        }
    };
    if ms > MAX_MS {
        return Err(FnError::invalid_param(
            "ms",
            format!("{ms} ms is more than the maximum of {MAX_MS} ms"),
        ));
    }
    Ok(ms)
}

/// Burns the calling thread's CPU for `duration`; returns how many loop turns it made.
pub fn spin(duration: Duration) -> u64 {
    let start = Instant::now();
    let mut iterations: u64 = 0;
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    loop {
        // A little integer work per turn (xorshift), kept alive by black_box; the clock is read
        // once every 1024 turns so the loop is mostly computation.
        for _ in 0..1024 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            black_box(state);
        }
        iterations += 1024;
        if start.elapsed() >= duration {
            return iterations;
        }
    }
}

/// The handler.
pub fn handle(req: Request) -> Response {
    let ms = match requested_ms(&req) {
        Ok(ms) => ms,
        Err(e) => return e.into(),
    };
    let start = Instant::now();
    let iterations = spin(Duration::from_millis(ms));
    let report = SpinReport {
        spun_ms: ms,
        elapsed_ms: start.elapsed().as_secs_f64() * 1000.0,
        iterations,
    };
    Response::json(StatusCode::OK, &report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fn_common::Method;

    fn thread_cpu_time() -> Duration {
        let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap();
        Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
    }

    #[test]
    fn duration_comes_from_the_query_first_then_the_json_body() {
        assert_eq!(
            requested_ms(&Request::new(Method::POST, "/?ms=7", r#"{"ms": 9}"#)),
            Ok(7)
        );
        assert_eq!(
            requested_ms(&Request::new(Method::POST, "/", r#"{"ms": 9}"#)),
            Ok(9)
        );
    }

    #[test]
    fn missing_invalid_or_excessive_durations_answer_400_naming_ms() {
        for (target, body) in [
            ("/", ""),
            ("/?ms=fast", ""),
            ("/?ms=-3", ""),
            ("/", "ms=5"),
            ("/", r#"{"ms": "5"}"#),
            ("/", r#"{"ms": 60001}"#),
            ("/?ms=60001", ""),
        ] {
            let err = requested_ms(&Request::new(Method::POST, target, body)).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{target} {body}");
            assert!(
                err.message.contains("`ms`"),
                "{target} {body}: {}",
                err.message
            );
        }
    }

    #[test]
    fn spinning_burns_cpu_rather_than_sleeping() {
        // The same 100 ms slept and spun, measured in this thread's CPU time. A loaded machine
        // may deschedule the spinning thread for a good part of its 100 ms (CI shares 2 cores
        // between many test processes), so the bar is "far more than a sleep", not "most of
        // the wall time".
        let before = thread_cpu_time();
        std::thread::sleep(Duration::from_millis(100));
        let slept = thread_cpu_time() - before;

        let before = thread_cpu_time();
        let wall = Instant::now();
        let iterations = spin(Duration::from_millis(100));
        let spun = thread_cpu_time() - before;
        assert!(wall.elapsed() >= Duration::from_millis(100));
        assert!(iterations > 0);
        assert!(
            slept < Duration::from_millis(5),
            "a sleep used {slept:?} of CPU"
        );
        assert!(
            spun >= Duration::from_millis(10) && spun > slept * 10,
            "spinning used only {spun:?} of CPU in 100 ms (sleeping: {slept:?})"
        );
    }

    #[test]
    fn the_handler_reports_the_requested_and_elapsed_time() {
        let resp = handle(Request::new(Method::POST, "/", r#"{"ms": 30}"#));
        assert_eq!(resp.status, StatusCode::OK);
        let report: SpinReport = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(report.spun_ms, 30);
        assert!(report.elapsed_ms >= 30.0, "{report:?}");
        assert!(report.iterations > 0);
    }

    #[test]
    fn zero_ms_answers_immediately() {
        let resp = handle(Request::new(Method::GET, "/?ms=0", ""));
        assert_eq!(resp.status, StatusCode::OK);
        let report: SpinReport = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(report.spun_ms, 0);
    }
}
