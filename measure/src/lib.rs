//! `measure`: what the benchmarks (`testbed`) and the IoT reports (`iot_emulation`) share to
//! present measurements: latency percentiles read from an HDR histogram ([`stats`]) and
//! markdown tables ([`markdown`]).

pub mod markdown;
pub mod stats;
