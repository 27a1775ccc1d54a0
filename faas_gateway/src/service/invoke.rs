//! One invocation: a ready replica leased at once or after a wait in the function's bounded
//! queue, the OpenFaaS call headers (`X-Call-Id`, `X-Start-Time`, `X-Duration-Seconds`), the
//! client span, and the invocation metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::HeaderName;
use http::uri::Authority;
use http::{HeaderMap, HeaderValue, Method};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use super::Service;
use super::registry::{FunctionEntry, resolve_in};
use super::replicas::{ReplicaExit, ReplicaState};
use super::spec::{FnKey, FunctionSpec, Mode};
use crate::error::{GatewayError, GatewayResult};

const X_CALL_ID: HeaderName = HeaderName::from_static("x-call-id");
const X_START_TIME: HeaderName = HeaderName::from_static("x-start-time");
const X_DURATION_SECONDS: HeaderName = HeaderName::from_static("x-duration-seconds");

/// A request to invoke a function, as received.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    pub method: Method,
    /// The sub-path after the function name, starting with `/`.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub peer: Option<String>,
    pub host: Option<String>,
}

/// The function's answer.
#[derive(Debug, Clone)]
pub struct InvocationResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A replica chosen for one request; gives the slot back when dropped.
pub(super) struct Lease {
    pub(super) spec: Arc<FunctionSpec>,
    pub(super) instance: String,
    pub(super) authority: Option<Authority>,
    in_flight: Arc<AtomicUsize>,
    pub(super) exit: Arc<watch::Sender<Option<ReplicaExit>>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }
}

/// The ready replica of `f` with the fewest requests in flight, leased.
fn try_lease(f: &mut FunctionEntry) -> Option<Lease> {
    let r = f
        .replicas
        .iter()
        .filter(|r| r.state == ReplicaState::Ready)
        .min_by_key(|r| r.in_flight.load(Ordering::SeqCst))?;
    r.in_flight.fetch_add(1, Ordering::SeqCst);
    Some(Lease {
        spec: f.spec.clone(),
        instance: r.instance.clone(),
        authority: r.authority.clone(),
        in_flight: r.in_flight.clone(),
        exit: r.exit.clone(),
    })
}

/// One place in a function's queue, freed when dropped (served, timed out or cancelled).
struct QueueSlot(Arc<AtomicUsize>);

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Service {
    /// Invokes a function: waits (bounded queue) for a ready replica, then proxies the request
    /// (HTTP mode) or runs the process once (classic mode). Adds `X-Call-Id`, `X-Start-Time`
    /// and `X-Duration-Seconds`; records metrics.
    pub async fn invoke(
        &self,
        full_name: &str,
        mut req: Invocation,
    ) -> GatewayResult<InvocationResponse> {
        let started = Instant::now();
        let start_wall = SystemTime::now();
        let start_nanos = start_wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_string();
        // One lock: resolve, the function's handles, and a ready replica when there is one.
        let (key, fm, invocations, lease) = {
            let mut fns = self.inner.functions.lock();
            let key = resolve_in(&fns, full_name, None)?;
            let f = fns
                .get_mut(&key)
                .ok_or_else(|| GatewayError::FunctionNotFound(full_name.to_string()))?;
            let lease = try_lease(f);
            (key, f.metrics.clone(), f.invocations.clone(), lease)
        };
        let m = &self.inner.metrics;
        fm.started
            .get_or_init(|| m.invocation_started.with_label_values(&[&fm.label]))
            .inc();
        // The caller's id (as UTF-8, lossily) or a new one.
        let call_id = match req.headers.get(X_CALL_ID) {
            Some(v) if std::str::from_utf8(v.as_bytes()).is_ok() => Some(v.clone()),
            Some(v) => HeaderValue::from_str(&String::from_utf8_lossy(v.as_bytes())).ok(),
            None => HeaderValue::from_str(&new_call_id()).ok(),
        };
        let start_value = HeaderValue::from_str(&start_nanos).ok();
        set_header(&mut req.headers, X_CALL_ID, call_id.clone());
        set_header(&mut req.headers, X_START_TIME, start_value.clone());

        let result = match lease {
            Some(lease) => self.run(lease, req).await,
            None => match self.acquire(&key).await {
                Ok(lease) => self.run(lease, req).await,
                Err(e) => Err(e),
            },
        };
        let elapsed = started.elapsed().as_secs_f64();
        let status = match &result {
            Ok(r) => r.status,
            Err(e) => actix_web::ResponseError::status_code(e).as_u16(),
        };
        if status == 200 {
            let (total, seconds) = fm.ok.get_or_init(|| {
                (
                    m.invocation_total.with_label_values(&[&fm.label, "200"]),
                    m.functions_seconds.with_label_values(&[&fm.label, "200"]),
                )
            });
            total.inc();
            seconds.observe(elapsed);
        } else {
            let code = status.to_string();
            m.invocation_total
                .with_label_values(&[&fm.label, &code])
                .inc();
            m.functions_seconds
                .with_label_values(&[&fm.label, &code])
                .observe(elapsed);
        }
        invocations.fetch_add(1, Ordering::Relaxed);
        let mut resp = result?;
        set_header(&mut resp.headers, X_CALL_ID, call_id);
        set_header(&mut resp.headers, X_START_TIME, start_value);
        set_header(
            &mut resp.headers,
            X_DURATION_SECONDS,
            HeaderValue::from_str(&format!("{elapsed:.6}")).ok(),
        );
        Ok(resp)
    }

    /// Runs the invocation on the leased replica in a client span named after the function,
    /// whose context replaces the caller's `traceparent` (classic mode: `Http_Traceparent`),
    /// so the function's own span is its child.
    async fn run(&self, lease: Lease, mut req: Invocation) -> GatewayResult<InvocationResponse> {
        let span = telemetry::client_span(
            req.method.as_str(),
            &lease.spec.key,
            lease.authority.as_ref().map(|a| a.as_str()),
        );
        telemetry::inject_span(&span, &mut req.headers);
        let result = match lease.spec.mode {
            Mode::Http => self.forward(&lease, req).instrument(span.clone()).await,
            Mode::Classic => self.exec(&lease, req).instrument(span.clone()).await,
        };
        match &result {
            Ok(r) => telemetry::record_status(&span, r.status),
            Err(e) => telemetry::record_error(&span, e),
        }
        result
    }

    /// A ready replica with the fewest requests in flight, waiting in the function's bounded
    /// queue while there is none (scale from zero, restarts).
    async fn acquire(&self, key: &FnKey) -> GatewayResult<Lease> {
        let deadline = crate::process::deadline_after(self.inner.config.upstream_timeout);
        let mut slot: Option<QueueSlot> = None;
        loop {
            let mut changed = {
                let mut fns = self.inner.functions.lock();
                let f = fns
                    .get_mut(key)
                    .ok_or_else(|| GatewayError::FunctionNotFound(key.name.clone()))?;
                if let Some(lease) = try_lease(f) {
                    return Ok(lease);
                }
                if slot.is_none() {
                    let capacity = self.inner.config.queue_capacity;
                    if f.waiting.load(Ordering::SeqCst) >= capacity {
                        return Err(GatewayError::QueueFull {
                            function: key.to_string(),
                            capacity,
                            retry_after: Duration::from_secs(1),
                        });
                    }
                    f.waiting.fetch_add(1, Ordering::SeqCst);
                    slot = Some(QueueSlot(f.waiting.clone()));
                    self.inner.kick.notify_one();
                }
                f.changed.subscribe()
            };
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(_) => continue, // a change, or the function is gone: look again
                Err(_) => return Err(GatewayError::Unavailable(key.to_string())),
            }
        }
    }
}

/// Replaces every `name` header by `value` (none: removes them).
fn set_header(headers: &mut HeaderMap, name: HeaderName, value: Option<HeaderValue>) {
    match value {
        Some(v) => {
            headers.insert(name, v);
        }
        None => {
            headers.remove(name);
        }
    }
}

/// A random (version 4) call id; a per-thread generator seeded from the OS, rather than a
/// system call per request.
fn new_call_id() -> String {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<(u64, u64)> = {
            let seed = uuid::Uuid::new_v4().as_u64_pair();
            Cell::new(seed)
        };
    }
    fn splitmix(x: u64) -> u64 {
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let (a, b) = STATE.with(|s| {
        let (x, y) = s.get();
        let x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        s.set((x, y));
        (splitmix(x), splitmix(x ^ y))
    });
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_le_bytes());
    bytes[8..].copy_from_slice(&b.to_le_bytes());
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_ids_are_distinct_v4_uuids() {
        let a = uuid::Uuid::parse_str(&new_call_id()).unwrap();
        let b = uuid::Uuid::parse_str(&new_call_id()).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.get_version_num(), 4);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
    }
}
