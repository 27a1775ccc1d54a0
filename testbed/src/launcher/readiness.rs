//! Waiting until a federation is ready, each phase polled with the readiness deadline: every
//! process answers `GET /api/health`, every node is registered and alive in the marketplace's
//! `GET /api/fog`, and every node lists its overlay neighbours in `GET /api/state`. A process
//! that exits meanwhile fails the wait at once, with its log.

use super::client::MAX_ANSWER;
use super::error::{LaunchError, Result};
use super::federation::Federation;
use crate::poll::{Check, poll};
use model::NodeId;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// How often readiness is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A node as `GET /api/fog` lists it (only the fields the launcher needs).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FogEntry {
    pub id: NodeId,
    pub name: String,
    #[serde(default)]
    pub alive: bool,
    #[serde(default)]
    pub url: String,
}

/// `GET /api/fog`: a JSON array, or an object with a `nodes` array.
pub async fn list_fog(
    client: &reqwest::Client,
    marketplace_url: &str,
) -> Result<Vec<FogEntry>, String> {
    let resp = client
        .get(format!("{marketplace_url}/api/fog"))
        .send()
        .await
        .map_err(|e| format!("GET /api/fog: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("GET /api/fog: status {}", resp.status()));
    }
    let value: serde_json::Value = signed_http::read_json(resp, MAX_ANSWER)
        .await
        .map_err(|e| format!("GET /api/fog: {e}"))?;
    let list = match value {
        serde_json::Value::Object(mut m) => m.remove("nodes").unwrap_or_default(),
        v => v,
    };
    serde_json::from_value(list).map_err(|e| format!("GET /api/fog: unexpected shape: {e}"))
}

async fn is_healthy(client: &reqwest::Client, url: &str) -> bool {
    match client
        .get(format!("{url}/api/health"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
    {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

impl Federation {
    /// The marketplace answers `GET /api/health`.
    pub(super) async fn wait_healthy_marketplace(&mut self) -> Result<()> {
        let deadline = self.options.readiness_deadline;
        let url = self.marketplace_url();
        let client = self.client.clone();
        let marketplace = &mut self.marketplace;
        let log = marketplace.log.display().to_string();
        poll(
            deadline,
            POLL_INTERVAL,
            async || {
                if is_healthy(&client, &url).await {
                    return Ok(Check::Done(()));
                }
                match marketplace.exited_error("waiting for GET /api/health") {
                    Some(e) => Err(e),
                    None => Ok(Check::NotYet(())),
                }
            },
            |()| LaunchError::NotHealthy {
                process: "marketplace".to_string(),
                url: url.clone(),
                deadline,
                log,
            },
        )
        .await
    }

    /// Every node answers `GET /api/health`; the deadline names the first that does not.
    pub(super) async fn wait_healthy_nodes(&mut self) -> Result<()> {
        let deadline = self.options.readiness_deadline;
        let client = self.client.clone();
        let nodes = &mut self.nodes;
        poll(
            deadline,
            POLL_INTERVAL,
            async || {
                let waiting: Vec<(String, String)> = nodes
                    .iter()
                    .map(|(n, p)| (n.clone(), p.url.clone()))
                    .collect();
                let checks = futures::future::join_all(
                    waiting.iter().map(|(_, url)| is_healthy(&client, url)),
                )
                .await;
                let unhealthy: Vec<(String, String)> = waiting
                    .into_iter()
                    .zip(checks)
                    .filter(|(_, ok)| !ok)
                    .map(|(w, _)| w)
                    .collect();
                let Some((name, url)) = unhealthy.first().cloned() else {
                    return Ok(Check::Done(()));
                };
                for (name, _) in &unhealthy {
                    if let Some(node) = nodes.get_mut(name.as_str())
                        && let Some(e) = node.proc.exited_error("waiting for GET /api/health")
                    {
                        return Err(e);
                    }
                }
                let log = nodes
                    .get(name.as_str())
                    .map(|n| n.proc.log.display().to_string())
                    .unwrap_or_default();
                Ok(Check::NotYet((name, url, log)))
            },
            |(name, url, log)| LaunchError::NotHealthy {
                process: format!("fog node `{name}`"),
                url,
                deadline,
                log,
            },
        )
        .await
    }

    /// Done when nothing is `missing`; otherwise an error when the marketplace or a node has
    /// exited (`during` says what the wait was for), else not yet.
    fn done_unless_missing(
        &mut self,
        missing: Vec<String>,
        during: &str,
    ) -> Result<Check<(), Vec<String>>> {
        if missing.is_empty() {
            return Ok(Check::Done(()));
        }
        if let Some(e) = self.marketplace.exited_error(during) {
            return Err(e);
        }
        for node in self.nodes.values_mut() {
            if let Some(e) = node.proc.exited_error(during) {
                return Err(e);
            }
        }
        Ok(Check::NotYet(missing))
    }

    /// Every node is registered and alive at the marketplace; keeps the ids it gave them.
    pub(super) async fn wait_registered(&mut self) -> Result<()> {
        let deadline = self.options.readiness_deadline;
        poll(
            deadline,
            POLL_INTERVAL,
            async || {
                let listed = list_fog(&self.client, &self.marketplace_url()).await;
                let mut missing = Vec::new();
                match &listed {
                    Ok(entries) => {
                        for (name, node) in self.nodes.iter_mut() {
                            match entries.iter().find(|e| &e.name == name) {
                                Some(e) if e.alive => node.id = Some(e.id),
                                Some(e) => {
                                    node.id = Some(e.id);
                                    missing.push(format!(
                                        "`{name}` is registered but not alive (log {})",
                                        node.proc.log.display()
                                    ));
                                }
                                None => missing.push(format!(
                                    "`{name}` is not registered (log {})",
                                    node.proc.log.display()
                                )),
                            }
                        }
                    }
                    Err(e) => missing.push(format!(
                        "the marketplace does not list nodes: {e} (log {})",
                        self.marketplace.log.display()
                    )),
                }
                self.done_unless_missing(missing, "waiting for every node to register")
            },
            |missing| LaunchError::NotRegistered { deadline, missing },
        )
        .await
    }

    /// Every node's `GET /api/state` lists its parent and children as neighbours.
    pub(super) async fn wait_neighbours(&mut self) -> Result<()> {
        #[derive(Deserialize)]
        struct StateNeighbour {
            name: String,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct State {
            #[serde(default)]
            node_id: Option<NodeId>,
            #[serde(default)]
            neighbours: Vec<StateNeighbour>,
        }
        let expected: BTreeMap<String, Vec<String>> = self
            .topology
            .nodes()
            .iter()
            .map(|n| {
                let mut want: Vec<String> = n.parent.iter().cloned().collect();
                want.extend(self.topology.children(&n.name).map(|c| c.name.clone()));
                (n.name.clone(), want)
            })
            .collect();
        let deadline = self.options.readiness_deadline;
        poll(
            deadline,
            POLL_INTERVAL,
            async || {
                let client = self.client.clone();
                let urls: Vec<(String, String)> = self
                    .nodes
                    .iter()
                    .map(|(n, p)| (n.clone(), p.url.clone()))
                    .collect();
                let states = futures::future::join_all(urls.iter().map(|(_, url)| {
                    let client = client.clone();
                    async move {
                        let resp = client.get(format!("{url}/api/state")).send().await.ok()?;
                        signed_http::read_json::<State>(resp, MAX_ANSWER).await.ok()
                    }
                }))
                .await;
                let mut missing = Vec::new();
                for ((name, _), state) in urls.iter().zip(states) {
                    let want = expected.get(name).cloned().unwrap_or_default();
                    match state {
                        None => missing.push(format!("`{name}`: GET /api/state failed")),
                        Some(s) if s.node_id.is_none() => {
                            missing.push(format!("`{name}`: not registered yet (nodeId is null)"))
                        }
                        Some(s) => {
                            let absent: Vec<&String> = want
                                .iter()
                                .filter(|w| !s.neighbours.iter().any(|n| &n.name == *w))
                                .collect();
                            if !absent.is_empty() {
                                missing.push(format!(
                                    "`{name}` does not list {}",
                                    absent
                                        .iter()
                                        .map(|a| format!("`{a}`"))
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ));
                            }
                        }
                    }
                }
                self.done_unless_missing(missing, "waiting for nodes to learn their neighbours")
            },
            |missing| LaunchError::NeighboursUnknown { deadline, missing },
        )
        .await
    }

    /// Polls `GET /api/fog` until every node still running is listed as alive.
    pub async fn wait_until_all_alive(&mut self, deadline: Duration) -> Result<()> {
        poll(
            deadline,
            POLL_INTERVAL,
            async || {
                let mut missing = Vec::new();
                match list_fog(&self.client, &self.marketplace_url()).await {
                    Ok(entries) => {
                        for (name, node) in &self.nodes {
                            if node.proc.child.is_none() {
                                continue; // killed on purpose
                            }
                            if !entries.iter().any(|e| &e.name == name && e.alive) {
                                missing.push(format!("`{name}` (log {})", node.proc.log.display()));
                            }
                        }
                    }
                    Err(e) => missing.push(e),
                }
                self.done_unless_missing(missing, "waiting for every node to be alive")
            },
            |missing| LaunchError::NotRegistered { deadline, missing },
        )
        .await
    }
}
