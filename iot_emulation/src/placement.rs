//! Placing the scenario's functions through the marketplace.
//!
//! Functions are placed one at a time in [`placement_order`]: a function with
//! `chain_after = "x"` is placed after `x` and targets the node that won `x` (GIRAFF's chains:
//! the next function's data source is where the previous one runs). Each placement is one
//! `PUT /api/function?provision=true` with `{sla, targetNode}`; its answer gives the winners,
//! what each is paid (spending and earnings), and the URL to invoke: `invokeUrl`, the access
//! node's data plane (`<target node>/function/fogfn-<slaId>`), or, from a marketplace that does
//! not give it yet, the winner's `chosen.invokeUrl`.
//!
//! [`placement_order`]: crate::scenario::placement_order

use crate::scenario::FunctionSpec;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Instant;

/// One winner of an auction and what it is paid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Winner {
    pub node: String,
    pub price: f64,
}

/// The outcome of placing one function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub function: String,
    pub image: String,
    /// The access node: where the function's devices send their requests.
    pub access_node: String,
    pub latency_class: String,
    pub latency_max_ms: f64,
    pub sla_id: Option<String>,
    pub invoke_url: Option<String>,
    /// `invokeUrl` (access node) or `chosen.invokeUrl` (winner's gateway, direct).
    pub invoke_via: Option<String>,
    pub winners: Vec<Winner>,
    /// Bids the auction received.
    pub bids: usize,
    /// Wall time of the placing call: auction, accept and provisioning.
    pub time_to_place_ms: f64,
    /// Why the function could not be placed.
    pub error: Option<String>,
}

impl Placement {
    /// What the client pays for this function: the sum of its winners' prices.
    pub fn spending(&self) -> f64 {
        self.winners.iter().map(|w| w.price).sum()
    }

    /// The node hosting the function (the cheapest winner), the target of chained functions.
    pub fn host(&self) -> Option<&str> {
        self.winners.first().map(|w| w.node.as_str())
    }

    /// A placement that was never attempted or failed.
    pub fn failed(
        spec: &FunctionSpec,
        access_node: &str,
        class: &str,
        latency_max_ms: f64,
        error: String,
    ) -> Placement {
        Placement {
            function: spec.name.clone(),
            image: spec.image.clone(),
            access_node: access_node.to_string(),
            latency_class: class.to_string(),
            latency_max_ms,
            sla_id: None,
            invoke_url: None,
            invoke_via: None,
            winners: Vec::new(),
            bids: 0,
            time_to_place_ms: 0.0,
            error: Some(error),
        }
    }
}

/// What a `PUT /api/function` answer says.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub sla_id: String,
    pub winners: Vec<Winner>,
    pub invoke_url: Option<String>,
    pub invoke_via: Option<&'static str>,
    pub bids: usize,
}

fn winner_of(v: &Value) -> Option<Winner> {
    let node = v
        .get("nodeName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| v.pointer("/bid/nodeName").and_then(Value::as_str))
        .or_else(|| v.get("nodeId").and_then(Value::as_str))
        .or_else(|| v.pointer("/bid/nodeId").and_then(Value::as_str))?;
    let price = v.get("price").and_then(Value::as_f64).or_else(|| {
        v.get("price")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
    })?;
    Some(Winner {
        node: node.to_string(),
        price,
    })
}

/// Reads a successful placement answer: `sla.id`, `winners[]` (else `chosen`) with
/// `nodeName` and `price`, the invoke URL and the number of bids.
pub fn parse_answer(body: &Value) -> Result<Answer, String> {
    let sla_id = body
        .pointer("/sla/id")
        .and_then(Value::as_str)
        .ok_or("the answer has no sla.id")?
        .to_string();
    let mut winners: Vec<Winner> = body
        .get("winners")
        .and_then(Value::as_array)
        .map(|ws| ws.iter().filter_map(winner_of).collect())
        .unwrap_or_default();
    if winners.is_empty()
        && let Some(chosen) = body.get("chosen").and_then(winner_of)
    {
        winners.push(chosen);
    }
    if winners.is_empty() {
        return Err("the answer names no winner (chosen/winners)".into());
    }
    // The cheapest winner first (GIRAFF's `chosen`).
    if let Some(chosen) = body.get("chosen").and_then(winner_of)
        && let Some(pos) = winners.iter().position(|w| *w == chosen)
    {
        winners.swap(0, pos);
    }
    let top = body.get("invokeUrl").and_then(Value::as_str);
    let chosen = body.pointer("/chosen/invokeUrl").and_then(Value::as_str);
    let (invoke_url, invoke_via) = match (top, chosen) {
        (Some(u), _) => (Some(u.to_string()), Some("access_node")),
        (None, Some(u)) => (Some(u.to_string()), Some("winner_gateway")),
        (None, None) => (None, None),
    };
    let bids = body
        .pointer("/proposals/bids")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    Ok(Answer {
        sla_id,
        winners,
        invoke_url,
        invoke_via,
        bids,
    })
}

/// A refused placement as one line: status, `error` and `message`/`refusals` of the body.
fn describe_refusal(status: u16, body: &Value) -> String {
    let mut s = format!("HTTP {status}");
    if let Some(e) = body.get("error").and_then(Value::as_str) {
        s.push_str(&format!(" {e}"));
    }
    if let Some(f) = body.get("field").and_then(Value::as_str) {
        s.push_str(&format!(" (field {f})"));
    }
    if let Some(m) = body.get("message").and_then(Value::as_str) {
        s.push_str(&format!(": {m}"));
    }
    if let Some(r) = body.get("refusals").and_then(Value::as_array)
        && !r.is_empty()
    {
        let reasons: Vec<String> = r
            .iter()
            .take(8)
            .map(|r| {
                let node = r
                    .get("nodeName")
                    .or_else(|| r.get("node"))
                    .or_else(|| r.get("nodeId"))
                    .and_then(Value::as_str)
                    .unwrap_or("?");
                let why = r
                    .get("reason")
                    .map(|v| v.as_str().map(str::to_string).unwrap_or(v.to_string()))
                    .unwrap_or_default();
                format!("{node}: {why}")
            })
            .collect();
        s.push_str(&format!(" [{}]", reasons.join("; ")));
    }
    s
}

/// Largest marketplace answer read (a placement lists every bid and refusal of its auction).
const MAX_MARKETPLACE_ANSWER: usize = signed_http::DEFAULT_MAX_ANSWER;

/// `req` with the client API token, when there is one.
fn with_token(req: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(t) => req.bearer_auth(t),
        None => req,
    }
}

/// Places one function: `PUT {marketplace}/api/function?provision=true`.
pub async fn place(
    client: &reqwest::Client,
    marketplace_url: &str,
    token: Option<&str>,
    spec: &FunctionSpec,
    access_node: &str,
    class: &str,
    latency_max: model::units::Latency,
) -> Placement {
    let latency_max_ms = latency_max.as_millis_f64();
    let started = Instant::now();
    let sent = with_token(
        client.put(format!("{marketplace_url}/api/function?provision=true")),
        token,
    )
    .json(&json!({"sla": spec.sla_json(latency_max), "targetNode": access_node}))
    .send()
    .await;
    let outcome: Result<Answer, String> = match sent {
        Err(e) => Err(format!("marketplace unreachable at {marketplace_url}: {e}")),
        Ok(resp) => {
            let status = resp.status();
            let body: Value = signed_http::read_json(resp, MAX_MARKETPLACE_ANSWER)
                .await
                .unwrap_or(Value::Null);
            if status.is_success() {
                parse_answer(&body)
            } else {
                Err(describe_refusal(status.as_u16(), &body))
            }
        }
    };
    let time_to_place_ms = started.elapsed().as_secs_f64() * 1000.0;
    match outcome {
        Ok(a) => Placement {
            function: spec.name.clone(),
            image: spec.image.clone(),
            access_node: access_node.to_string(),
            latency_class: class.to_string(),
            latency_max_ms,
            sla_id: Some(a.sla_id),
            error: a
                .invoke_url
                .is_none()
                .then(|| "placed but the answer has no invokeUrl (not live?)".to_string()),
            invoke_url: a.invoke_url,
            invoke_via: a.invoke_via.map(str::to_string),
            winners: a.winners,
            bids: a.bids,
            time_to_place_ms,
        },
        Err(e) => Placement {
            time_to_place_ms,
            ..Placement::failed(spec, access_node, class, latency_max_ms, e)
        },
    }
}

/// Cancels a placement (`DELETE /api/function/{id}`); best effort.
pub async fn cancel(
    client: &reqwest::Client,
    marketplace_url: &str,
    token: Option<&str>,
    sla_id: &str,
) -> Result<(), String> {
    let resp = with_token(
        client.delete(format!("{marketplace_url}/api/function/{sla_id}")),
        token,
    )
    .send()
    .await
    .map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", resp.status().as_u16()))
    }
}

/// Names of every node of the federation (`GET /api/fog`).
pub async fn fog_nodes(
    client: &reqwest::Client,
    marketplace_url: &str,
) -> Result<Vec<String>, String> {
    let resp = client
        .get(format!("{marketplace_url}/api/fog"))
        .send()
        .await
        .map_err(|e| format!("marketplace unreachable at {marketplace_url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!(
            "GET /api/fog answered HTTP {}",
            resp.status().as_u16()
        ));
    }
    let body: Value = signed_http::read_json(resp, MAX_MARKETPLACE_ANSWER).await?;
    let nodes = body
        .as_array()
        .or_else(|| body.get("nodes").and_then(Value::as_array))
        .ok_or("GET /api/fog did not answer a list")?;
    Ok(nodes
        .iter()
        .filter_map(|n| n.get("name").and_then(Value::as_str).map(str::to_string))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_gives_winners_cheapest_first_their_prices_and_the_access_node_url() {
        let body = json!({
            "sla": {"id": "11111111-1111-1111-1111-111111111111"},
            "chosen": {"nodeName": "edge-b", "price": 2.5, "invokeUrl": "http://b/function/fogfn-1"},
            "winners": [
                {"nodeName": "edge-a", "price": 2.5},
                {"nodeName": "edge-b", "price": 2.5, "invokeUrl": "http://b/function/fogfn-1"}
            ],
            "proposals": {"bids": [{}, {}, {}]},
            "invokeUrl": "http://access/function/fogfn-1"
        });
        let a = parse_answer(&body).unwrap();
        assert_eq!(a.sla_id, "11111111-1111-1111-1111-111111111111");
        assert_eq!(a.winners.len(), 2);
        assert_eq!(a.winners[0].node, "edge-b");
        assert_eq!(
            a.invoke_url.as_deref(),
            Some("http://access/function/fogfn-1")
        );
        assert_eq!(a.invoke_via, Some("access_node"));
        assert_eq!(a.bids, 3);
    }

    #[test]
    fn an_answer_without_a_top_level_invoke_url_falls_back_to_the_winners_gateway() {
        let body = json!({
            "sla": {"id": "x"},
            "chosen": {"bid": {"nodeId": "n1"}, "price": 1.0, "invokeUrl": "http://gw/function/f"},
        });
        let a = parse_answer(&body).unwrap();
        assert_eq!(
            a.winners,
            vec![Winner {
                node: "n1".into(),
                price: 1.0
            }]
        );
        assert_eq!(a.invoke_via, Some("winner_gateway"));
        assert!(parse_answer(&json!({"sla": {"id": "x"}})).is_err());
        assert!(parse_answer(&json!({})).is_err());
    }

    #[test]
    fn refusals_are_described_with_their_reasons() {
        let s = describe_refusal(
            422,
            &json!({"error": "no_feasible_node", "message": "nobody", "refusals": [
                {"nodeName": "edge-1", "reason": "capacity"}]}),
        );
        assert_eq!(s, "HTTP 422 no_feasible_node: nobody [edge-1: capacity]");
    }
}
