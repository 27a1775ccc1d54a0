//! The scaler loop: one step at a chosen `now` applies the pure rule of [`crate::scaler`] to
//! every function (adding replica slots, stopping idle surplus ones), and manual scaling sets
//! the floor it keeps.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::Service;
use super::replicas::{Replica, ReplicaState};
use super::spec::Mode;
use crate::error::{GatewayError, GatewayResult};
use crate::scaler::{self, ScaleInput};

/// What one [`Service::scale_step`] did (instance names).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StepReport {
    pub started: Vec<String>,
    pub stopped: Vec<String>,
}

impl Service {
    /// `POST /system/scale-function/{name}`: a floor the autoscaler keeps (0 allowed: scale to
    /// zero, woken by the next request), capped at the function's max.
    pub fn scale(&self, name: &str, namespace: Option<&str>, replicas: u64) -> GatewayResult<()> {
        let key = self.resolve(name, namespace)?;
        {
            let mut fns = self.inner.functions.lock();
            let f = fns
                .get_mut(&key)
                .ok_or_else(|| GatewayError::FunctionNotFound(name.to_string()))?;
            f.manual_floor = Some(replicas.min(f.spec.policy.max));
            f.desired = replicas.min(f.spec.policy.max);
            f.busy_at = Instant::now();
        }
        self.inner.kick.notify_one();
        Ok(())
    }

    /// Runs the scaler until its task is stopped: one [`Service::scale_step`] every 200 ms, or at
    /// once when something asks for it (a queued request, a deploy, a scale, a crash).
    pub async fn run_scaler(self) {
        loop {
            self.scale_step(Instant::now());
            tokio::select! {
                _ = self.inner.kick.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    /// One scaling decision for every function at `now`: starts missing replicas (honouring the
    /// restart backoff), stops idle surplus ones.
    pub fn scale_step(&self, now: Instant) -> StepReport {
        let mut report = StepReport::default();
        if self.inner.shutting_down.load(Ordering::SeqCst) {
            return report;
        }
        let mut starts = Vec::new();
        let mut stopped = Vec::new();
        {
            let mut fns = self.inner.functions.lock();
            for (key, f) in fns.iter_mut() {
                let in_flight: usize = f
                    .replicas
                    .iter()
                    .map(|r| r.in_flight.load(Ordering::SeqCst))
                    .sum();
                let waiting = f.waiting.load(Ordering::SeqCst);
                let input = ScaleInput {
                    desired: f.desired,
                    demand: (in_flight + waiting) as u64,
                    manual_floor: f.manual_floor,
                    busy_at: f.busy_at,
                };
                let (desired, busy_at) = scaler::decide(&f.spec.policy, &input, now);
                f.desired = desired;
                f.busy_at = busy_at;
                let current = f.replicas.len() as u64;
                if current < desired && now >= f.next_start_at {
                    for _ in current..desired {
                        let id = self.inner.next_id.fetch_add(1, Ordering::SeqCst);
                        let instance = format!("{}-{id}", key.name);
                        let classic = f.spec.mode == Mode::Classic;
                        let replica = Replica::slot(id, instance.clone(), classic, now);
                        if !classic {
                            starts.push((
                                f.spec.clone(),
                                id,
                                instance.clone(),
                                replica.exit.clone(),
                            ));
                        }
                        f.replicas.push(replica);
                        report.started.push(instance);
                    }
                    f.notify();
                } else if current > desired {
                    let mut excess = (current - desired) as usize;
                    // Replicas still starting go first, then idle ready ones, newest first.
                    for want_state in [ReplicaState::Starting, ReplicaState::Ready] {
                        let mut i = f.replicas.len();
                        while excess > 0 && i > 0 {
                            i -= 1;
                            let r = &f.replicas[i];
                            if r.state == want_state && r.in_flight.load(Ordering::SeqCst) == 0 {
                                let r = f.replicas.remove(i);
                                report.stopped.push(r.instance.clone());
                                stopped.push(r);
                                excess -= 1;
                            }
                        }
                    }
                    f.notify();
                }
                let label = key.to_string();
                self.inner
                    .metrics
                    .service_count
                    .with_label_values(&[&label])
                    .set(f.replicas.len() as f64);
                self.inner
                    .metrics
                    .queue_length
                    .with_label_values(&[&label])
                    .set(waiting as f64);
            }
        }
        drop(stopped); // kills their process groups
        for (spec, id, instance, exit) in starts {
            self.spawn_replica(spec, id, instance, exit);
        }
        if !report.started.is_empty() || !report.stopped.is_empty() {
            tracing::debug!(?report, "scale step");
        }
        report
    }
}
