//! `model`: Fogmarket's shared domain types and all pure logic.
//!
//! Units ([`units`]), ids ([`ids`]), the SLA ([`sla`]), the sealed-execution rules for
//! `envProcess` and `envVars` ([`exec`]), wire messages ([`protocol`]), request
//! signing ([`auth`]), auction rules ([`auction`]), a node's assessment of an SLA (its price and
//! refusals, [`bid`]), pricing models ([`pricing`]), the latency
//! model ([`latency`]), placement strategies ([`strategy`]), the per-node resource ledger
//! ([`ledger`]), run-time offloading weights ([`offload`]), and topology files and the
//! GIRAFF-like generator ([`topology`]: parsed from and written to text; reading files is the
//! caller's). Nothing here does I/O or reads the clock: time is a parameter
//! ([`time::Timestamp`]), so the services and a simulator run the same code.

pub mod auction;
pub mod auth;
pub mod bid;
pub mod exec;
pub mod ids;
pub mod latency;
pub mod ledger;
pub mod offload;
pub mod pricing;
pub mod protocol;
pub mod sla;
pub mod strategy;
pub mod time;
pub mod topology;
pub mod units;

pub use auction::{AuctionRule, run_auction};
pub use ids::{AuctionId, BidId, NodeId, SlaId};
pub use ledger::Ledger;
pub use pricing::PricingConfig;
pub use sla::{FieldError, LatencyKind, Sla, SlaRequest};
pub use strategy::Strategy;
pub use time::Timestamp;
pub use units::{Bytes, Cpu, Latency, Lifetime, Price};
