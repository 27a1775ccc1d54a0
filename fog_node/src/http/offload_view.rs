//! The JSON view of `GET /api/offload`: the hosted functions of this node with their weights,
//! load and peers.

use crate::state::metrics::Totals;
use crate::state::offload::Offload;
use model::ids::NodeId;
use model::time::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;

/// `GET /api/offload`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OffloadView {
    pub strategy: String,
    pub data_plane: String,
    pub route_version: u64,
    pub totals: Totals,
    /// `data_plane = "haproxy"`: the HAProxy frontend serving `/function/…` here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub haproxy_url: Option<String>,
    pub functions: Vec<FunctionView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionView {
    pub service: String,
    pub name: String,
    pub weights: WeightsView,
    pub rate: f64,
    pub capacity: Option<f64>,
    pub in_flight: usize,
    pub queue_len: usize,
    pub peers: Vec<PeerView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WeightsView {
    pub local: u32,
    pub reject: u32,
    pub peers: BTreeMap<String, u32>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerView {
    pub name: String,
    pub alive: bool,
    pub rtt_ms: Option<f64>,
    pub offer: Option<OfferView>,
}

/// A capacity offer as JSON (`{rate, expiresAt}`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferView {
    pub rate: f64,
    pub expires_at: Timestamp,
}

/// The hosted functions of this node with their weights, load and peers.
pub fn offload_view(offload: &Offload, me: Option<NodeId>, now: Timestamp) -> OffloadView {
    let routes = offload.routes();
    let functions = routes
        .functions()
        .iter()
        .filter(|f| f.is_live(now) && me.is_some_and(|id| f.hosted_by(id)))
        .map(|f| {
            let s = &f.state;
            let w = s.weights();
            let out: std::sync::Arc<crate::state::function::ControlOut> = s.control_out();
            FunctionView {
                service: f.route.service.clone(),
                name: f.route.name.clone(),
                weights: WeightsView {
                    local: w.local,
                    reject: w.reject,
                    peers: w
                        .peers
                        .iter()
                        .map(|(n, w)| (routes.node_name(*n), *w))
                        .collect(),
                },
                rate: out.rate,
                capacity: out.capacity,
                in_flight: s.queue.in_flight(),
                queue_len: s.queue.len(),
                peers: out
                    .peers
                    .iter()
                    .map(|p| PeerView {
                        name: p.name.clone(),
                        alive: p.alive,
                        rtt_ms: p.rtt.map(|d| d.as_secs_f64() * 1000.0),
                        offer: p.offer.map(|o| OfferView {
                            rate: o.rate,
                            expires_at: o.expires_at,
                        }),
                    })
                    .collect(),
            }
        })
        .collect();
    OffloadView {
        strategy: offload.config.strategy.to_string(),
        data_plane: match offload.config.data_plane {
            crate::config::DataPlane::Native => "native".into(),
            crate::config::DataPlane::Haproxy => "haproxy".into(),
        },
        route_version: routes.version(),
        totals: offload.metrics.totals(),
        haproxy_url: offload.haproxy_url.get().cloned(),
        functions,
    }
}
