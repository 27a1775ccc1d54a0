//! Who this node is to the federation once enrolled ([`Identity`]), and who sent a verified
//! control-plane request ([`Sender`]).

use model::auth::{Guard, PublicKey};
use model::ids::NodeId;

/// What enrollment settled: the id the marketplace pinned this node's key to, the
/// marketplace's own key (pinned here), and the check of signatures addressed to this id.
#[derive(Debug, Clone)]
pub struct Identity {
    pub node_id: NodeId,
    /// `node_id` as text: the sender of this node's signatures, the recipient of its peers'.
    pub sender: String,
    pub marketplace_key: PublicKey,
    pub guard: std::sync::Arc<Guard>,
}

impl Identity {
    pub fn new(node_id: NodeId, marketplace_key: PublicKey) -> Identity {
        let sender = node_id.to_string();
        Identity {
            node_id,
            guard: std::sync::Arc::new(Guard::new(sender.clone())),
            sender,
            marketplace_key,
        }
    }
}

/// Who sent a verified control-plane request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Marketplace,
    Node(NodeId),
}
