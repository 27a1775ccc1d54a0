//! The node's CPU usage and the usage model learned from it: the inputs of the offloading
//! strategies' node margin.

use crate::state::cpu::CpuSampler;
use model::offload::UsageModel;

/// node_margin's inputs: the node's CPU and the usage model learned from it.
#[derive(Debug, Default)]
pub struct UsageState {
    pub cpu: CpuSampler,
    pub model: UsageModel,
}
