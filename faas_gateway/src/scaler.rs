//! The autoscaling rule, pure: how many replicas a function wants given its demand (requests in
//! flight plus requests queued), its bounds and how long it has been over-provisioned.
//! [`crate::service::Service::scale_step`] applies it to every function at a chosen `now`.

use std::time::Duration;

use tokio::time::Instant;

/// Scaling bounds and target of one function, from its labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScalePolicy {
    /// `com.openfaas.scale.min` (default 1; 0 allows scale to zero).
    pub min: u64,
    /// `com.openfaas.scale.max` (default [`DEFAULT_MAX_REPLICAS`]; no Community Edition cap of 5).
    pub max: u64,
    /// `com.openfaas.scale.target`: requests in flight per replica before scaling up (default 8).
    pub target: u64,
}

pub const DEFAULT_MIN_REPLICAS: u64 = 1;
pub const DEFAULT_MAX_REPLICAS: u64 = 20;
pub const DEFAULT_TARGET_IN_FLIGHT: u64 = 8;
/// A function must have been over-provisioned this long before replicas are removed.
pub const SCALE_DOWN_AFTER: Duration = Duration::from_secs(3);

impl Default for ScalePolicy {
    fn default() -> Self {
        ScalePolicy {
            min: DEFAULT_MIN_REPLICAS,
            max: DEFAULT_MAX_REPLICAS,
            target: DEFAULT_TARGET_IN_FLIGHT,
        }
    }
}

/// What the scaler sees of one function at one instant.
#[derive(Debug, Clone, Copy)]
pub struct ScaleInput {
    /// Replicas wanted now (starting and ready ones count).
    pub desired: u64,
    /// Requests being served plus requests queued.
    pub demand: u64,
    /// The floor set by `/system/scale-function`, if any; replaces `min`.
    pub manual_floor: Option<u64>,
    /// Last instant at which demand needed at least `desired` replicas.
    pub busy_at: Instant,
}

/// The decision: new desired count, and the new `busy_at`.
pub fn decide(policy: &ScalePolicy, input: &ScaleInput, now: Instant) -> (u64, Instant) {
    let floor = input.manual_floor.unwrap_or(policy.min).min(policy.max);
    let needed = input.demand.div_ceil(policy.target.max(1));
    let want = needed.clamp(floor, policy.max.max(floor));
    if want >= input.desired || now.duration_since(input.busy_at) >= SCALE_DOWN_AFTER {
        (want, now)
    } else {
        (input.desired, input.busy_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(desired: u64, demand: u64, busy_at: Instant) -> ScaleInput {
        ScaleInput {
            desired,
            demand,
            manual_floor: None,
            busy_at,
        }
    }

    #[test]
    fn demand_scales_up_at_once_by_target_in_flight_per_replica() {
        let p = ScalePolicy {
            min: 1,
            max: 10,
            target: 8,
        };
        let t0 = Instant::now();
        assert_eq!(decide(&p, &input(1, 20, t0), t0).0, 3);
        assert_eq!(decide(&p, &input(1, 1000, t0), t0).0, 10);
    }

    #[test]
    fn a_waiting_request_wakes_a_function_scaled_to_zero() {
        let p = ScalePolicy {
            min: 0,
            max: 5,
            target: 8,
        };
        let t0 = Instant::now();
        assert_eq!(decide(&p, &input(0, 1, t0), t0).0, 1);
        assert_eq!(decide(&p, &input(0, 0, t0), t0).0, 0);
    }

    #[test]
    fn idle_replicas_go_only_after_the_scale_down_delay_and_never_below_min() {
        let p = ScalePolicy {
            min: 2,
            max: 10,
            target: 8,
        };
        let t0 = Instant::now();
        let (d, busy) = decide(&p, &input(5, 0, t0), t0 + Duration::from_secs(1));
        assert_eq!((d, busy), (5, t0));
        let (d, _) = decide(&p, &input(5, 0, t0), t0 + SCALE_DOWN_AFTER);
        assert_eq!(d, 2);
    }

    #[test]
    fn a_manual_scale_is_a_floor_and_may_be_zero() {
        let p = ScalePolicy {
            min: 1,
            max: 10,
            target: 8,
        };
        let t0 = Instant::now();
        let later = t0 + SCALE_DOWN_AFTER * 2;
        let mut i = input(3, 0, t0);
        i.manual_floor = Some(3);
        assert_eq!(decide(&p, &i, later).0, 3);
        i.manual_floor = Some(0);
        assert_eq!(decide(&p, &i, later).0, 0);
        i.manual_floor = Some(50);
        assert_eq!(decide(&p, &i, later).0, 10);
    }
}
