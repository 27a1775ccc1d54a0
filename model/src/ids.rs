//! Typed identifiers. Every id is a UUID on the wire (a string), so GIRAFF clients keep working,
//! but the types keep a node id from being passed where an SLA id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random (v4) id.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s.trim()).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }
    };
}

id_type!(
    /// A client of the marketplace's client API (the holder of an API token); kept when its
    /// token is rotated or re-created after a revocation.
    ClientId
);

id_type!(
    /// A fog node, assigned by the marketplace at enrollment (or chosen by the node and kept across restarts).
    NodeId
);
id_type!(
    /// An SLA, i.e. one placement request; the placement is known by the same id.
    SlaId
);
/// The prefix of the OpenFaaS service a placement is deployed as.
pub const SERVICE_PREFIX: &str = "fogfn-";

impl SlaId {
    /// The OpenFaaS service name a placement is deployed and routed as: `fogfn-<slaId>`.
    pub fn service_name(self) -> String {
        format!("{SERVICE_PREFIX}{self}")
    }
}

id_type!(
    /// One bid of one node in one auction. The node's resource hold carries the same id.
    BidId
);
id_type!(
    /// One auction run by the marketplace.
    AuctionId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placement_is_deployed_as_fogfn_and_its_sla_id() {
        let id = SlaId::new();
        assert_eq!(id.service_name(), format!("fogfn-{id}"));
    }

    #[test]
    fn ids_round_trip_through_their_string_form() {
        let id = NodeId::new();
        let back: NodeId = id.to_string().parse().unwrap();
        assert_eq!(id, back);
    }

    #[test]
    fn ids_serialize_as_plain_uuid_strings() {
        let id = SlaId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
    }
}
