//! Wire messages between the marketplace and fog nodes, and between neighbouring fog nodes.
//! JSON, camelCase, compatible with GIRAFF's shapes where GIRAFF has them
//! (`POST /api/bid` -> `{bids: [{nodeId, id, bid}]}`).

use crate::auth::{self, PublicKey, SecretKey};
use crate::ids::{AuctionId, BidId, NodeId, SlaId};
use crate::latency::{OverBudget, PathLatency};
use crate::sla::Sla;
use crate::time::Timestamp;
use crate::units::{Bytes, Cpu, Price};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Version of these messages; a node refuses messages of another major version.
pub const PROTOCOL_VERSION: u32 = 2;

/// A quantity of node resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    pub cpu: Cpu,
    pub memory: Bytes,
}

impl Resources {
    pub const ZERO: Resources = Resources {
        cpu: Cpu::ZERO,
        memory: Bytes::ZERO,
    };
    pub fn new(cpu: Cpu, memory: Bytes) -> Self {
        Self { cpu, memory }
    }
    /// True when `self` fits in `other` on every dimension.
    pub fn fits_in(&self, other: &Resources) -> bool {
        self.cpu <= other.cpu && self.memory <= other.memory
    }
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        Resources::new(self.cpu - other.cpu, self.memory - other.memory)
    }
    pub fn add(&self, other: &Resources) -> Resources {
        Resources::new(self.cpu + other.cpu, self.memory + other.memory)
    }
    /// The resources an SLA needs on one hosting node (all replicas).
    pub fn for_sla(sla: &Sla) -> Resources {
        Resources::new(sla.total_cpu(), sla.total_memory())
    }
}

/// Marketplace -> target node, and node -> neighbour (relay). `POST /api/bid`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BidRequest {
    pub auction_id: AuctionId,
    pub sla: Sla,
    /// The node that relayed this request; `None` when it comes from the marketplace.
    #[serde(default)]
    pub node_origin: Option<NodeId>,
    /// Latency from the data source (target node) to the receiving node's sender.
    #[serde(default)]
    pub accumulated_latency: PathLatency,
    /// Milliseconds the receiver has to answer, including its whole subtree.
    pub timeout_ms: u64,
    /// Nodes the request already visited, target first (loop guard; the tree is an overlay).
    #[serde(default)]
    pub path: Vec<NodeId>,
    /// The marketplace's authority for this auction of this SLA; relays pass it on unchanged.
    pub ticket: AuctionTicket,
}

/// The marketplace's signature over an auction id, the SLA it auctions and a deadline
/// ([`auth::ticket_message`]). A node holds resources for a relayed bid request only when its
/// ticket verifies with the marketplace key it pinned, for that auction and that SLA, in time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuctionTicket {
    pub deadline: Timestamp,
    pub signature: String,
}

/// Why a ticket does not authorize a bid request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("ticket: the auction's deadline has passed")]
    Expired,
    #[error("ticket: {0}")]
    Signature(auth::AuthError),
    #[error("ticket: cannot encode the SLA: {0}")]
    Encode(String),
}

impl AuctionTicket {
    fn message(
        auction_id: AuctionId,
        sla: &Sla,
        deadline: Timestamp,
    ) -> Result<Vec<u8>, TicketError> {
        let canonical = serde_json::to_vec(sla).map_err(|e| TicketError::Encode(e.to_string()))?;
        Ok(auth::ticket_message(
            &auction_id.to_string(),
            &auth::digest(&canonical),
            deadline,
        ))
    }

    /// The marketplace's ticket for `auction_id` of `sla`, valid until `deadline`.
    pub fn issue(
        key: &SecretKey,
        auction_id: AuctionId,
        sla: &Sla,
        deadline: Timestamp,
    ) -> Result<AuctionTicket, TicketError> {
        let message = Self::message(auction_id, sla, deadline)?;
        Ok(AuctionTicket {
            deadline,
            signature: auth::sign_ticket(key, &message),
        })
    }

    /// Checks that the marketplace (`key`) issued this ticket for this auction of this SLA
    /// and that its deadline is still ahead of `now`.
    pub fn check(
        &self,
        key: &PublicKey,
        auction_id: AuctionId,
        sla: &Sla,
        now: Timestamp,
    ) -> Result<(), TicketError> {
        if self.deadline <= now {
            return Err(TicketError::Expired);
        }
        let message = Self::message(auction_id, sla, self.deadline)?;
        auth::verify_ticket(key, &message, &self.signature).map_err(TicketError::Signature)
    }
}

/// One node's offer. `bid` is the asking price (GIRAFF field name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bid {
    pub node_id: NodeId,
    /// The bid id; the node's resource hold has the same id.
    pub id: BidId,
    pub bid: Price,
    #[serde(default)]
    pub node_name: String,
    /// Where the marketplace reaches the node to accept the bid.
    #[serde(default)]
    pub node_url: String,
    /// Estimated latency from the data source to this node.
    #[serde(default)]
    pub latency: PathLatency,
    /// CPU utilisation of the node if it wins, in [0, 1] (used by consolidation strategies).
    #[serde(default)]
    pub utilisation: f64,
    /// When the node's hold on the offered resources lapses unless accepted.
    #[serde(default)]
    pub hold_expires_at: Timestamp,
}

/// Why a node did not bid. Collected so that "no node can host this" can say why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum RefusalReason {
    /// Not enough free CPU or memory for all replicas.
    #[serde(rename_all = "camelCase")]
    OutOfCapacity { needed: Resources, free: Resources },
    /// The estimated latency from the data source exceeds `latencyMax`.
    #[serde(rename_all = "camelCase")]
    LatencyBudget { estimated_ms: f64, max_ms: f64 },
    /// The node's price is above the SLA's `maxPrice`.
    #[serde(rename_all = "camelCase")]
    OverMaxPrice { bid: Price, max_price: Price },
    /// The node's placement strategy chose not to bid (e.g. `cloud_only` on an edge node).
    #[serde(rename_all = "camelCase")]
    Declined { why: String },
    /// Too many auctions in flight on this node.
    Busy,
    /// A neighbour did not answer within the deadline, or answered with an error.
    #[serde(rename_all = "camelCase")]
    Unreachable { error: String },
}

impl From<OverBudget> for RefusalReason {
    fn from(o: OverBudget) -> RefusalReason {
        RefusalReason::LatencyBudget {
            estimated_ms: o.estimated_ms,
            max_ms: o.max_ms,
        }
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefusalReason::OutOfCapacity { needed, free } => write!(
                f,
                "out of capacity: needs {} and {}, has {} and {} free",
                needed.cpu, needed.memory, free.cpu, free.memory
            ),
            RefusalReason::LatencyBudget {
                estimated_ms,
                max_ms,
            } => write!(
                f,
                "latency budget: estimated {estimated_ms:.3} ms from the data source, max {max_ms:.3} ms"
            ),
            RefusalReason::OverMaxPrice { bid, max_price } => {
                write!(f, "over maxPrice: bid {bid} > maxPrice {max_price}")
            }
            RefusalReason::Declined { why } => write!(f, "declined: {why}"),
            RefusalReason::Busy => write!(f, "busy: too many auctions in flight"),
            RefusalReason::Unreachable { error } => write!(f, "unreachable: {error}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    pub node_id: NodeId,
    #[serde(default)]
    pub node_name: String,
    pub reason: RefusalReason,
}

/// Answer to `POST /api/bid`: the bids of the node and of its relayed subtree.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BidResponse {
    pub bids: Vec<Bid>,
    #[serde(default)]
    pub refusals: Vec<Refusal>,
    /// Bids of other nodes a relay's consolidation filter dropped (GIRAFF's `maxcpu`, ...):
    /// their holds are released by the marketplace, the only member that may release holds on
    /// a node. A bid that also reached the marketplace is never released this way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<DroppedBid>,
}

/// A bid a relay dropped: which node holds resources for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DroppedBid {
    pub node_id: NodeId,
    pub bid_id: BidId,
}

/// Marketplace -> winning node. `POST /api/accept/{slaId}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceptRequest {
    pub bid_id: BidId,
    pub sla: Sla,
    /// The price the marketplace pays (Vickrey: not necessarily the bid).
    pub price: Price,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceptResponse {
    pub sla_id: SlaId,
    pub node_id: NodeId,
    /// When the placement ends on the node.
    pub ends_at: Timestamp,
}

/// Marketplace -> losing nodes: free these holds now instead of waiting for expiry.
/// `POST /api/release`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRequest {
    pub bid_ids: Vec<BidId>,
}

/// Fog node -> marketplace. `POST /api/register`, authenticated with the enrollment secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    /// The id the node had before (kept in its state file), so a restart keeps its identity.
    #[serde(default)]
    pub node_id: Option<NodeId>,
    pub name: String,
    /// The node's own Ed25519 public key; the marketplace pins it to the node's id and name.
    pub public_key: PublicKey,
    pub owner: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The parent's name; `None` for a root (cloud) node.
    #[serde(default)]
    pub parent: Option<String>,
    pub url: String,
    pub capacity: Resources,
    #[serde(default)]
    pub protocol_version: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterResponse {
    pub node_id: NodeId,
    /// The marketplace's public key; the node pins it and accepts marketplace calls only
    /// when signed with it.
    pub marketplace_key: PublicKey,
    /// The marketplace's proof, made with the enrollment secret, that `marketplace_key` is its
    /// key and `node_id` the id it pinned the node's key to ([`auth::enrollment::ack_proof`]).
    pub proof: String,
    pub heartbeat_interval_ms: u64,
}

/// Fog node -> marketplace. `POST /api/heartbeat/{nodeId}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatRequest {
    pub reserved: Resources,
    #[serde(default)]
    pub url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Relation {
    Parent,
    Child,
}

/// An overlay neighbour as the marketplace knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Neighbour {
    pub node_id: NodeId,
    pub name: String,
    pub url: String,
    /// The key the marketplace pinned to this node.
    pub public_key: PublicKey,
    pub relation: Relation,
    pub alive: bool,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatResponse {
    pub neighbours: Vec<Neighbour>,
    /// Placements this node must no longer serve: they moved to other nodes while it was
    /// taken for dead. The node releases them (idempotent: unknown ones are ignored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<SlaId>,
}

/// State of one placement (one SLA on one hosting node), the same at the node and at the
/// marketplace; the node reports it in its answer to provisioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementState {
    /// Accepted by the node: resources reserved, not deployed yet.
    Reserved,
    /// Deployed to the FaaS gateway, waiting for a ready replica.
    Provisioning,
    /// Deployed and ready.
    Live,
    /// The deployment failed or never became ready; rolled back, resources freed.
    Failed,
    /// The lifetime (`duration`) ended.
    Finished,
    Cancelled,
    /// The host died and the placement continues on another node (the marketplace's record
    /// of the old host; a node never reports it).
    Moved,
}

impl PlacementState {
    pub const ACTIVE: [PlacementState; 3] = [
        PlacementState::Reserved,
        PlacementState::Provisioning,
        PlacementState::Live,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            PlacementState::Reserved => "reserved",
            PlacementState::Provisioning => "provisioning",
            PlacementState::Live => "live",
            PlacementState::Failed => "failed",
            PlacementState::Finished => "finished",
            PlacementState::Cancelled => "cancelled",
            PlacementState::Moved => "moved",
        }
    }
    /// Still holding resources on its node.
    pub fn is_active(self) -> bool {
        Self::ACTIVE.contains(&self)
    }
}

impl fmt::Display for PlacementState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PlacementState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "reserved" => PlacementState::Reserved,
            "provisioning" => PlacementState::Provisioning,
            "live" => PlacementState::Live,
            "failed" => PlacementState::Failed,
            "finished" => PlacementState::Finished,
            "cancelled" => PlacementState::Cancelled,
            "moved" => PlacementState::Moved,
            other => return Err(format!("unknown placement state `{other}`")),
        })
    }
}

/// The JSON body of every error answer, from the marketplace and from fog nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// A stable machine-readable code, e.g. `invalid_sla`, `no_feasible_node`.
    pub error: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refusals: Vec<Refusal>,
}

/// The marketplace's routing table: every federation node and, for every live placement,
/// the nodes hosting it. Fog nodes long-poll it (`GET /api/routes?after=<version>&waitMs=…`)
/// and route `/function/{name}` invocations from it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteTable {
    /// Increases on every change of a live placement or of a node's liveness.
    pub version: u64,
    pub generated_at: Timestamp,
    pub nodes: Vec<RouteNode>,
    pub functions: Vec<FunctionRoute>,
}

/// A federation node as the data plane needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteNode {
    pub node_id: NodeId,
    pub name: String,
    pub url: String,
    /// The key the marketplace pinned to this node.
    pub public_key: PublicKey,
    /// Heartbeating, by the marketplace's view.
    pub alive: bool,
}

/// One live placement (one SLA) and where it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionRoute {
    pub sla_id: SlaId,
    /// The OpenFaaS service name on every hosting node's gateway (`fogfn-<slaId>`); also the
    /// name clients use in `/function/{service}`.
    pub service: String,
    /// The SLA's `functionLiveName`; `/function/{name}` also resolves by it (the newest live
    /// placement of that name wins when several share it).
    pub name: String,
    pub image: String,
    /// The node the client named as the data source (devices attach there).
    pub target_node: NodeId,
    /// The SLA's latency budget in milliseconds (forward only within it).
    pub latency_max_ms: f64,
    /// When the SLA's lifetime ends; nodes stop routing to it then, without waiting for
    /// the next table.
    pub expires_at: Timestamp,
    /// Nodes hosting the function (state `live`).
    pub hosts: Vec<NodeId>,
}

/// Per-function load a fog node reports to one peer in a [`LoadReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionLoadReport {
    /// OpenFaaS service name (`fogfn-<slaId>`).
    pub service: String,
    /// User requests per second arriving at the sender (sliding window).
    pub rate: f64,
    /// Requests per second the sender sustains for this function, when known.
    #[serde(default)]
    pub capacity: Option<f64>,
    #[serde(default)]
    pub queue_len: u32,
    #[serde(default)]
    pub in_flight: u32,
    /// Capacity the sender offers (leases to) the receiver for this function.
    #[serde(default)]
    pub offer: Option<crate::offload::CapacityOffer>,
    /// node_margin: the sender's margin shared with the receiver (usage percent).
    #[serde(default)]
    pub margin: Option<f64>,
}

/// Control message between fog nodes: `POST /fog/v1/load`, signed like every federation
/// call; the answer is the receiver's own report for the sender (push-pull), so one exchange
/// refreshes both sides and measures the round-trip time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadReport {
    /// Must equal [`PROTOCOL_VERSION`]'s major; receivers refuse other versions with 400.
    pub version: u32,
    pub from: NodeId,
    /// Increases with every report the sender makes; a receiver ignores older ones.
    pub seq: u64,
    pub sent_at: Timestamp,
    pub functions: Vec<FunctionLoadReport>,
}
