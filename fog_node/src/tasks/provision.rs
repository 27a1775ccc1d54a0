//! Provisioning: deploying a won placement to the node's OpenFaaS gateway, waiting until it is
//! ready (rolling back when it never is), and removing it when the SLA ends or is cancelled.
//!
//! The backend ([`crate::backend`]) is either the embedded gateway or a real OpenFaaS gateway;
//! the same client talks to both.

use crate::error::ApiError;
use crate::faas::{FunctionDeployment, FunctionResources, OpenFaasClient};
use crate::state::node::{Node, Placement, PlacementState};
use model::time::Timestamp;
use model::{Sla, SlaId};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The OpenFaaS deployment of an SLA: its image, cpu/memory as both requests and limits, its
/// replicas as scale labels, and the SLA and ids in env vars.
pub fn deployment_for(sla: &Sla, service: &str, node_name: &str) -> FunctionDeployment {
    let mut env_vars = sla.env_vars.clone();
    env_vars.insert("FOGMARKET_SLA_ID".into(), sla.id.to_string());
    env_vars.insert("FOGMARKET_NODE_NAME".into(), node_name.to_string());
    env_vars.insert(
        "FOGMARKET_SLA".into(),
        serde_json::to_string(sla).unwrap_or_default(),
    );
    let replicas = sla.replicas.to_string();
    let labels = BTreeMap::from([
        ("com.openfaas.scale.min".to_string(), replicas.clone()),
        ("com.openfaas.scale.max".to_string(), replicas),
        ("fogmarket.sla-id".to_string(), sla.id.to_string()),
        (
            "fogmarket.function".to_string(),
            sla.function_live_name.clone(),
        ),
    ]);
    let resources = FunctionResources {
        memory: Some(sla.memory.as_u64().to_string()),
        cpu: Some(format!("{}m", sla.cpu.millis())),
    };
    FunctionDeployment {
        service: service.to_string(),
        image: sla.function_image.clone(),
        namespace: None,
        env_process: sla.env_process.clone(),
        env_vars,
        labels,
        annotations: BTreeMap::new(),
        limits: Some(resources.clone()),
        requests: Some(resources),
        ..Default::default()
    }
}

/// Polls the gateway until the function has a ready replica, or the deadline passes.
async fn wait_ready(
    client: &OpenFaasClient,
    service: &str,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        match client.status(service).await {
            Ok(Some(s)) if s.available_replicas > 0 => return Ok(()),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "status while waiting for readiness"),
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "function {service} did not become ready within {timeout:?}"
            ));
        }
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Deploys a reserved placement and waits until it is ready. Idempotent: a placement that is
/// already live (or being provisioned) is returned as it is. A deployment that fails or never
/// becomes ready is removed and the placement is `failed` (resources freed); the answer is
/// still 200 with that state, so the marketplace records why.
pub async fn provision(node: &Arc<Node>, sla_id: SlaId) -> Result<Placement, ApiError> {
    let current = node.update_placement(sla_id, |p| {
        if p.state == PlacementState::Reserved {
            p.state = PlacementState::Provisioning;
            None
        } else {
            Some(p.clone())
        }
    })?;
    if let Some(p) = current {
        return Ok(p);
    }
    let sla = node.update_placement(sla_id, |p| p.sla.clone())?;
    let service = sla_id.service_name();
    let faas = match node.faas().await {
        Ok(f) => f,
        Err(e) => return failed(node, sla_id, e.to_string()),
    };
    let deployment = deployment_for(&sla, &service, node.name());
    if let Err(e) = faas.client.deploy(&deployment).await {
        return failed(node, sla_id, e.to_string());
    }
    let _ = node.update_placement(sla_id, |p| p.deployed_as = Some(service.clone()));
    let timeout = node.config.faas.ready_timeout.as_duration();
    if let Err(e) = wait_ready(&faas.client, &service, timeout).await {
        remove(&faas.client, &service).await;
        return failed(node, sla_id, e);
    }
    let url = faas.client.function_url(&service);
    let live = node.update_placement(sla_id, |p| {
        p.state = PlacementState::Live;
        p.invoke_url = Some(url.clone());
        p.clone()
    });
    match live {
        Ok(p) => {
            tracing::info!(%sla_id, %url, "function live");
            Ok(p)
        }
        Err(e) => {
            // Cancelled or ended while it was being deployed: take it down again.
            remove(&faas.client, &service).await;
            Err(e)
        }
    }
}

fn failed(node: &Node, sla_id: SlaId, error: String) -> Result<Placement, ApiError> {
    tracing::warn!(%sla_id, %error, "provisioning failed; placement rolled back");
    node.fail(sla_id, error, Timestamp::now())
}

async fn remove(client: &OpenFaasClient, service: &str) {
    match client.delete(service).await {
        Ok(_) => tracing::info!(%service, "function removed"),
        Err(e) => tracing::warn!(%service, error = %e, "cannot remove function"),
    }
}

/// Removes the deployed functions of placements that ended or were cancelled.
pub async fn remove_deployed(node: &Node, placements: &[Placement]) {
    let deployed: Vec<&String> = placements
        .iter()
        .filter_map(|p| p.deployed_as.as_ref())
        .collect();
    if deployed.is_empty() {
        return;
    }
    let Ok(faas) = node.faas().await else {
        return;
    };
    for service in deployed {
        remove(&faas.client, service).await;
    }
}
