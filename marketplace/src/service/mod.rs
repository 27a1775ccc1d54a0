//! The marketplace's rules, one job per module: enrolment and liveness of nodes
//! (`registry`), the route table and its long-poll (`route_table`), auctions with deadline
//! and fallback (`placement`), re-placement off dead hosts (`healing`), provisioning,
//! cancellation and the lifetime of placements (`lifecycle`), and the client API's reads
//! (`reads`).
//!
//! Handlers call the [`Marketplace`] with already-extracted input and the current time; it
//! calls `model` for the pure logic, the repository for state and the node client for the fog
//! nodes. Signatures and tokens are checked by `authentication`, input by `validation`;
//! the answers are the read models of [`crate::views`].

mod authentication;
mod healing;
mod lifecycle;
mod market;
mod placement;
mod reads;
mod registry;
mod route_table;
mod validation;

pub use crate::error::ServiceError;
pub use authentication::MAX_SIGNATURE_SKEW;
pub use healing::HealingReport;
pub use market::{Marketplace, MarketplaceConfig};
pub use placement::PlaceRequest;
pub use registry::MISSED_HEARTBEATS;
pub use route_table::{MAX_ROUTE_WAIT_MS, ROUTES_PATH, RouteStats};
