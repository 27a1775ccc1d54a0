//! Enrollment with the marketplace, heartbeats (which bring back the overlay neighbours),
//! neighbour latency probes and the lifetime loop. Each loop only sleeps and calls one step.

use crate::client::{Call, Signer};
use crate::state::node::{Identity, Node};
use model::auth::{MARKETPLACE, enrollment};
use model::protocol::{
    HeartbeatRequest, HeartbeatResponse, PROTOCOL_VERSION, RegisterRequest, RegisterResponse,
};
use model::time::Timestamp;
use reqwest::StatusCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CALL_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Registers (or re-registers) with the marketplace; returns the identity and the heartbeat
/// interval the marketplace asks for.
pub async fn register(
    node: &Node,
    saved_id: Option<model::NodeId>,
) -> anyhow::Result<(Identity, Duration)> {
    let body = RegisterRequest {
        node_id: node.node_id().or(saved_id),
        name: node.config.name.clone(),
        public_key: node.public_key(),
        owner: node.config.owner.clone(),
        tags: node.config.tags.clone(),
        parent: node.config.parent.clone(),
        url: node.url.clone(),
        capacity: node.config.capacity(),
        protocol_version: Some(PROTOCOL_VERSION),
    };
    let secret = node.config.enrollment_secret.as_bytes();
    let call = Call::post(&node.config.marketplace_url, "/api/register")
        .json(&body)?
        .timeout(CALL_TIMEOUT);
    let signer = Signer::Enrollment {
        secret,
        name: &node.config.name,
    };
    let resp: RegisterResponse = node.client.call(call, signer).await?;
    // Only a holder of the enrollment secret can prove this pairing: a machine in the middle
    // cannot slip its own key in as the marketplace's.
    enrollment::verify_ack(
        secret,
        &resp.node_id.to_string(),
        &node.public_key(),
        &resp.marketplace_key,
        &resp.proof,
    )
    .map_err(|e| {
        anyhow::anyhow!("the marketplace's enrollment answer does not prove its key: {e}")
    })?;
    if let Some(pinned) = node.identity()
        && pinned.marketplace_key != resp.marketplace_key
    {
        tracing::warn!(
            was = %pinned.marketplace_key,
            now = %resp.marketplace_key,
            "the marketplace answers with another key (proven with the enrollment secret); pinning it"
        );
    }
    let identity = Identity::new(resp.node_id, resp.marketplace_key);
    node.set_identity(identity.clone());
    tracing::info!(node_id = %identity.node_id, "enrolled with the marketplace");
    let interval = Duration::from_millis(resp.heartbeat_interval_ms.clamp(50, 60_000));
    // The installed identity: its guard also accepts the pair MACs of peers.
    Ok((node.identity().unwrap_or(identity), interval))
}

/// One heartbeat; updates the neighbour list. `Err(true)` means the marketplace no longer
/// knows or trusts this node and it must enroll again.
pub async fn heartbeat(node: &Node, identity: &Identity) -> Result<(), (bool, String)> {
    let reserved = node.book().ledger.reserved(Timestamp::now());
    let body = HeartbeatRequest {
        reserved,
        url: Some(node.url.clone()),
    };
    let path = format!("/api/heartbeat/{}", identity.node_id);
    let call = match Call::post(&node.config.marketplace_url, path).json(&body) {
        Ok(c) => c.route("/api/heartbeat/{node_id}").timeout(CALL_TIMEOUT),
        Err(e) => return Err((false, e.to_string())),
    };
    let result: Result<HeartbeatResponse, _> = node
        .client
        .call(call, node.signer(identity, MARKETPLACE))
        .await;
    match result {
        Ok(resp) => {
            node.set_neighbours(resp.neighbours);
            release_moved(node, &resp.released).await;
            Ok(())
        }
        Err(e) => {
            let reenroll = matches!(
                e.status(),
                Some(StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND | StatusCode::FORBIDDEN)
            );
            Err((reenroll, e.to_string()))
        }
    }
}

/// Releases the placements the marketplace moved to other nodes while this one was taken for
/// dead: it must not serve a stale copy. Placements it does not hold are ignored.
async fn release_moved(node: &Node, released: &[model::SlaId]) {
    for &sla in released {
        if let Ok(placement) = node.cancel(sla, Timestamp::now()) {
            tracing::warn!(sla_id = %sla, "placement moved to another node while this one was taken for dead; releasing it");
            crate::tasks::provision::remove_deployed(node, std::slice::from_ref(&placement)).await;
        }
    }
}

/// Enrolls, then heartbeats every `interval` (as told by the marketplace), forever.
pub async fn membership_loop(node: Arc<Node>, saved_id: Option<model::NodeId>) {
    let first = Duration::from_millis(100);
    let mut delays = supervisor::delays(first, MAX_BACKOFF);
    let mut interval = Duration::from_secs(1);
    loop {
        let identity = match node.identity() {
            Some(i) => i,
            None => match register(&node, saved_id).await {
                Ok((i, every)) => {
                    delays = supervisor::delays(first, MAX_BACKOFF);
                    interval = every;
                    i
                }
                Err(e) => {
                    let pause = delays.next().unwrap_or(MAX_BACKOFF);
                    tracing::warn!(error = %e, retry_in = ?pause, "enrollment failed");
                    tokio::time::sleep(pause).await;
                    continue;
                }
            },
        };
        match heartbeat(&node, &identity).await {
            Ok(()) => {}
            Err((true, e)) => {
                tracing::warn!(error = %e, "marketplace refused the heartbeat; enrolling again");
                match register(&node, Some(identity.node_id)).await {
                    Ok((_, every)) => interval = every,
                    Err(e) => tracing::warn!(error = %e, "re-enrollment failed"),
                }
            }
            Err((false, e)) => tracing::warn!(error = %e, "heartbeat failed"),
        }
        tokio::time::sleep(interval).await;
    }
}

/// One HTTP round trip to `url/api/health`; `None` on failure or timeout.
pub async fn probe(node: &Node, url: &str, timeout: Duration) -> Option<Duration> {
    let target = format!("{}/api/health", url.trim_end_matches('/'));
    let start = Instant::now();
    let mut req = node.client.http().get(&target).timeout(timeout);
    // Unsigned: says who probes, so an emulated link delays the probe like any other call.
    if let Some(id) = node.node_id() {
        req = req.header(crate::client::FROM_HEADER, id.to_string());
    }
    let resp = req.send().await.ok()?;
    resp.status().is_success().then(|| start.elapsed())
}

/// One round of probes to every neighbour, concurrently.
pub async fn probe_step(node: &Node) {
    let neighbours = node.neighbours();
    let interval = node.config.latency.probe_interval.as_duration();
    let timeout = interval.min(Duration::from_secs(2));
    let probes = neighbours.iter().map(|n| async move {
        let rtt = probe(node, &n.info.url, timeout).await;
        (n.info.node_id, rtt)
    });
    for (id, rtt) in futures::future::join_all(probes).await {
        node.observe_probe(id, rtt);
    }
}

pub async fn probe_loop(node: Arc<Node>) {
    let interval = node.config.latency.probe_interval.as_duration();
    loop {
        probe_step(&node).await;
        tokio::time::sleep(interval).await;
    }
}

/// Expires holds and ends placements every 200 ms, removing their functions.
pub async fn lifetime_loop(node: Arc<Node>) {
    loop {
        let ended = node.tick(Timestamp::now());
        crate::tasks::provision::remove_deployed(&node, &ended).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
