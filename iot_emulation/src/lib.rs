//! `iot_emulation`: the IoT workload emulator of Fogmarket.
//!
//! It reads a [`scenario`] (functions with their SLAs or latency classes, the access node their
//! devices attach to, request payloads and arrival processes), places the functions through the
//! marketplace ([`placement`], honouring chains: a chained function targets the previous
//! function's winner, as GIRAFF does), precomputes a seeded request schedule ([`plan`]), sends
//! it open-loop to the access nodes ([`dispatch`]: a slow answer never delays the next send),
//! records every request ([`record`], CSV), and writes a report ([`report`]: SLA-respected and
//! success ratios, latency percentiles per class and per function, spending, earnings and
//! Jain's fairness index, time to place) with SVG plots ([`plots`]). [`cron`] is a server mode
//! with GIRAFF's `PUT /api/cron` so GIRAFF-style experiment drivers work; [`run`] ties a whole
//! experiment together for the `iot-emulation` binary.
//!
//! Pure logic is kept apart from I/O and takes time as a parameter, so a simulator can reuse it:
//! [`arrival`] (Poisson, constant, diurnal, bursts, trace replay), [`workload`] (latency classes,
//! the Azure log-normal execution time), [`plan`], [`scenario::placement_order`] and
//! [`report::Report::compute`].

pub mod arrival;
pub mod cron;
pub mod dispatch;
pub mod payload;
pub mod placement;
pub mod plan;
pub mod plots;
pub mod record;
pub mod report;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod workload;

pub use record::Record;
pub use report::Report;
pub use scenario::{Scenario, ScenarioError};
