//! Pricing: how a fog node turns an SLA into an asking price.
//!
//! Each owner configures its nodes' pricing (`[pricing]` in the node's TOML). The two models
//! are GIRAFF's:
//!
//! - **linear**: `bid = (mem / cap_mem) * price_memory + (cpu / cap_cpu) * price_cpu`, the share
//!   of the node the SLA takes, weighted per resource.
//! - **quadratic** (used in GIRAFF's paper): with `s = cpu / cap_cpu`, `D` the SLA's duration in
//!   seconds and `U = sum_i (cpu_i / cap_cpu) * remaining_i` over the reservations already
//!   committed, `bid = electricity * s * (2 * aa * U + (aa * s + bb) * D)`. This is the marginal
//!   cost of adding the SLA to a node whose running cost grows quadratically with load, so a
//!   busy node asks more and load spreads without central coordination.
//!
//! Either result is multiplied by `locality_discount` when the node is one of the SLA's data
//! sources, so that placing the function next to its data wins ties in its favour.
//!
//! Unlike GIRAFF, `request` covers all replicas (`Resources::for_sla`), matching what the
//! ledger reserves.

use crate::protocol::Resources;
use crate::sla::FieldError;
use crate::units::Price;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The cost curve of a node. Tagged by `model` so the TOML reads `model = "quadratic"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum PricingModel {
    /// Price per whole node's worth of CPU and of memory.
    Linear { price_cpu: f64, price_memory: f64 },
    /// GIRAFF's marginal cost of a quadratic cost curve.
    Quadratic { aa: f64, bb: f64, electricity: f64 },
}

/// A node's pricing: the model plus the data-locality discount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PricingConfig {
    #[serde(flatten)]
    pub model: PricingModel,
    /// Bid multiplier when this node is a data source of the SLA (GIRAFF: 0.75).
    #[serde(default = "default_locality_discount")]
    pub locality_discount: f64,
}

/// GIRAFF's data-locality discount.
pub fn default_locality_discount() -> f64 {
    0.75
}

impl Default for PricingConfig {
    /// GIRAFF's edge-tier defaults.
    fn default() -> Self {
        PricingConfig {
            model: PricingModel::Quadratic {
                aa: 0.1,
                bb: 0.4,
                electricity: 1.0,
            },
            locality_discount: default_locality_discount(),
        }
    }
}

/// A reservation already running on the node, as the quadratic model sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Commitment {
    pub cpu: crate::units::Cpu,
    /// Time left until the reservation ends.
    pub remaining: Duration,
}

/// Everything a price depends on. Built by the fog node from its ledger and the SLA.
#[derive(Debug, Clone, Copy)]
pub struct PricingInput<'a> {
    /// The SLA's resources on this node, all replicas.
    pub request: Resources,
    /// The node's total capacity.
    pub capacity: Resources,
    /// Reservations still running (see `Ledger::commitments`).
    pub committed: &'a [Commitment],
    /// The SLA's lifetime.
    pub duration: Duration,
    /// The node is one of the SLA's data sources.
    pub is_data_source: bool,
}

/// The price returned when the node has no capacity at all: it cannot host anything, and a
/// very large finite price keeps arithmetic and JSON well-defined.
fn unaffordable() -> Price {
    Price::saturating(f64::MAX)
}

fn check(field: &str, value: f64) -> Result<(), FieldError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(FieldError::new(
            format!("pricing.{field}"),
            "must be a finite number >= 0",
        ))
    }
}

impl PricingConfig {
    /// Refuses parameters that would make prices NaN, negative or infinite; the node checks
    /// its config at start-up, so a typo is an error message and not a free (or absurd) bid.
    pub fn validate(&self) -> Result<(), FieldError> {
        match self.model {
            PricingModel::Linear {
                price_cpu,
                price_memory,
            } => {
                check("price_cpu", price_cpu)?;
                check("price_memory", price_memory)?;
            }
            PricingModel::Quadratic {
                aa,
                bb,
                electricity,
            } => {
                check("aa", aa)?;
                check("bb", bb)?;
                check("electricity", electricity)?;
            }
        }
        let d = self.locality_discount;
        if !(d.is_finite() && d > 0.0 && d <= 1.0) {
            return Err(FieldError::new(
                "pricing.locality_discount",
                "must be a number in (0, 1]",
            ));
        }
        Ok(())
    }

    /// The node's asking price for `input`. Always a valid [`Price`]: a node without capacity
    /// asks a huge finite price, and an unvalidated config that yields NaN is priced the same
    /// way, never for free.
    pub fn price(&self, input: &PricingInput) -> Price {
        let cap_cpu = input.capacity.cpu.millis() as f64;
        let cap_mem = input.capacity.memory.as_f64();
        let s = input.request.cpu.millis() as f64 / cap_cpu;
        let raw = match self.model {
            PricingModel::Linear {
                price_cpu,
                price_memory,
            } => {
                if cap_cpu == 0.0 || cap_mem == 0.0 {
                    return unaffordable();
                }
                (input.request.memory.as_f64() / cap_mem) * price_memory + s * price_cpu
            }
            PricingModel::Quadratic {
                aa,
                bb,
                electricity,
            } => {
                if cap_cpu == 0.0 {
                    return unaffordable();
                }
                let d = input.duration.as_secs_f64();
                let u: f64 = input
                    .committed
                    .iter()
                    .map(|c| (c.cpu.millis() as f64 / cap_cpu) * c.remaining.as_secs_f64())
                    .sum();
                electricity * s * (2.0 * aa * u + (aa * s + bb) * d)
            }
        };
        let discounted = if input.is_data_source {
            raw * self.locality_discount
        } else {
            raw
        };
        if discounted.is_nan() {
            unaffordable()
        } else {
            Price::saturating(discounted)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::{Bytes, Cpu};
    use serde_json::json;

    fn quadratic(aa: f64, bb: f64, electricity: f64) -> PricingConfig {
        PricingConfig {
            model: PricingModel::Quadratic {
                aa,
                bb,
                electricity,
            },
            locality_discount: 0.75,
        }
    }

    fn input<'a>(cpu_millis: u64, committed: &'a [Commitment], secs: u64) -> PricingInput<'a> {
        PricingInput {
            request: Resources::new(Cpu::from_millis(cpu_millis), Bytes::from_mib(256)),
            capacity: Resources::new(Cpu::from_cores(4), Bytes::from_mib(4096)),
            committed,
            duration: Duration::from_secs(secs),
            is_data_source: false,
        }
    }

    fn close(a: Price, b: f64) -> bool {
        (a.value() - b).abs() < 1e-9
    }

    #[test]
    fn linear_price_is_the_weighted_share_of_the_node() {
        let cfg = PricingConfig {
            model: PricingModel::Linear {
                price_cpu: 10.0,
                price_memory: 4.0,
            },
            locality_discount: 0.75,
        };
        // 1 of 4 cores -> 0.25 * 10; 256 of 4096 MiB -> 1/16 * 4
        let p = cfg.price(&input(1000, &[], 30));
        assert!(close(p, 2.5 + 0.25), "{p}");
    }

    #[test]
    fn quadratic_price_on_an_idle_node_matches_the_hand_computed_value() {
        // s = 0.25, U = 0, D = 30: 1.0 * 0.25 * ((0.1 * 0.25 + 0.4) * 30) = 3.1875
        let p = PricingConfig::default().price(&input(1000, &[], 30));
        assert!(close(p, 3.1875), "{p}");
    }

    #[test]
    fn quadratic_price_counts_committed_load_weighted_by_remaining_time() {
        // U = (2000/4000) * 10 + (1000/4000) * 40 = 5 + 10 = 15
        // bid = 0.9 * 0.25 * (2 * 0.1 * 15 + (0.1 * 0.25 + 0.4) * 30) = 0.9 * 0.25 * 15.75
        let committed = [
            Commitment {
                cpu: Cpu::from_millis(2000),
                remaining: Duration::from_secs(10),
            },
            Commitment {
                cpu: Cpu::from_millis(1000),
                remaining: Duration::from_secs(40),
            },
        ];
        let p = quadratic(0.1, 0.4, 0.9).price(&input(1000, &committed, 30));
        assert!(close(p, 0.9 * 0.25 * 15.75), "{p}");
    }

    #[test]
    fn more_committed_load_makes_the_quadratic_price_higher() {
        let cfg = PricingConfig::default();
        let mut committed = Vec::new();
        let mut last = cfg.price(&input(500, &committed, 60));
        for i in 1..10 {
            committed.push(Commitment {
                cpu: Cpu::from_millis(300),
                remaining: Duration::from_secs(5 * i),
            });
            let p = cfg.price(&input(500, &committed, 60));
            assert!(p > last, "{p} should exceed {last}");
            last = p;
        }
    }

    #[test]
    fn a_data_source_node_gets_the_locality_discount() {
        let cfg = PricingConfig::default();
        let plain = cfg.price(&input(1000, &[], 30));
        let local = cfg.price(&PricingInput {
            is_data_source: true,
            ..input(1000, &[], 30)
        });
        assert!(close(local, plain.value() * 0.75), "{local} vs {plain}");
    }

    #[test]
    fn zero_capacity_is_priced_as_unaffordable_not_divided_by_zero() {
        for cfg in [
            PricingConfig::default(),
            PricingConfig {
                model: PricingModel::Linear {
                    price_cpu: 1.0,
                    price_memory: 1.0,
                },
                locality_discount: 1.0,
            },
        ] {
            let p = cfg.price(&PricingInput {
                capacity: Resources::ZERO,
                ..input(1000, &[], 30)
            });
            assert!(p.value().is_finite());
            assert_eq!(p.value(), f64::MAX);
        }
    }

    #[test]
    fn an_unvalidated_config_yielding_nan_is_never_free() {
        let p = quadratic(f64::NAN, 0.4, 1.0).price(&input(1000, &[], 30));
        assert_eq!(p.value(), f64::MAX);
        let p = quadratic(f64::INFINITY, 0.4, 1.0).price(&input(1000, &[], 30));
        assert!(p.value().is_finite());
    }

    #[test]
    fn validation_names_the_bad_parameter() {
        assert_eq!(PricingConfig::default().validate(), Ok(()));
        let err = quadratic(-0.1, 0.4, 1.0).validate().unwrap_err();
        assert_eq!(err.field, "pricing.aa");
        let err = quadratic(0.1, f64::NAN, 1.0).validate().unwrap_err();
        assert_eq!(err.field, "pricing.bb");
        let err = quadratic(0.1, 0.4, f64::INFINITY).validate().unwrap_err();
        assert_eq!(err.field, "pricing.electricity");
        let linear = PricingConfig {
            model: PricingModel::Linear {
                price_cpu: 1.0,
                price_memory: -1.0,
            },
            locality_discount: 0.75,
        };
        assert_eq!(linear.validate().unwrap_err().field, "pricing.price_memory");
        for d in [0.0, 1.5, f64::NAN] {
            let cfg = PricingConfig {
                locality_discount: d,
                ..PricingConfig::default()
            };
            assert_eq!(
                cfg.validate().unwrap_err().field,
                "pricing.locality_discount"
            );
        }
    }

    #[test]
    fn pricing_config_reads_the_toml_shape_with_a_default_discount() {
        let cfg: PricingConfig = serde_json::from_value(
            json!({"model": "quadratic", "aa": 0.1, "bb": 0.4, "electricity": 1.0}),
        )
        .unwrap();
        assert_eq!(cfg, PricingConfig::default());
        let back: PricingConfig =
            serde_json::from_value(serde_json::to_value(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);

        let linear: PricingConfig = serde_json::from_value(json!({
            "model": "linear", "price_cpu": 2.0, "price_memory": 1.0, "locality_discount": 0.5
        }))
        .unwrap();
        assert_eq!(
            linear.model,
            PricingModel::Linear {
                price_cpu: 2.0,
                price_memory: 1.0
            }
        );
        assert_eq!(linear.locality_discount, 0.5);
        assert!(serde_json::from_value::<PricingConfig>(json!({"model": "cubic"})).is_err());
    }
}
