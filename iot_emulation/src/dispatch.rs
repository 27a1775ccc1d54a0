//! The open-loop dispatcher: every planned request is started at its scheduled time in its own
//! task, whatever earlier requests are doing, so a slow answer never delays the next send.
//! At most `max_in_flight` requests wait for an answer at once; a request due while the limit
//! is reached is not sent and is recorded as `dropped` (never silently lost).

use crate::payload::{PING_CONTENT_TYPE, Prepared, ping_body};
use crate::plan::PlannedRequest;
use crate::record::{Record, outcome, parse_path_header};
use indicatif::ProgressBar;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

/// Where one function's requests go and what they carry.
#[derive(Debug, Clone)]
pub struct Target {
    pub function: String,
    pub sla_id: String,
    pub latency_class: String,
    pub latency_max_ms: f64,
    pub access_node: String,
    /// The URL to POST to; `None` when the function is not placed.
    pub url: Option<String>,
    /// Extra query string (without `?`).
    pub query: Option<String>,
    pub payload: Prepared,
    /// Sent as `GIRAFF-Tags` (and the ping's `tag`).
    pub tags: String,
    /// Why the function is not placed (recorded with `not_placed` requests).
    pub not_placed: Option<String>,
}

impl Target {
    /// The URL of one request: the invoke URL, the scenario's query and, for `spin`, `ms=N`.
    pub fn request_url(&self, exec_ms: Option<u64>) -> Option<String> {
        let mut url = self.url.clone()?;
        let mut params: Vec<String> = Vec::new();
        if let Some(q) = self.query.as_deref().filter(|q| !q.is_empty()) {
            params.push(q.to_string());
        }
        if let Some(ms) = exec_ms {
            params.push(format!("ms={ms}"));
        }
        if !params.is_empty() {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&params.join("&"));
        }
        Some(url)
    }

    fn record(&self, req: &PlannedRequest, outcome: &str, error: Option<String>) -> Record {
        Record {
            scheduled_ms: ms(req.at),
            sent_ms: None,
            function: self.function.clone(),
            sla_id: self.sla_id.clone(),
            latency_class: self.latency_class.clone(),
            latency_max_ms: self.latency_max_ms,
            access_node: self.access_node.clone(),
            served_by: None,
            hops: None,
            path: None,
            decision: None,
            reject_reason: None,
            status: 0,
            outcome: outcome.to_string(),
            latency_ms: None,
            exec_ms: req.exec_ms,
            sla_met: false,
            error,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct DispatchOptions {
    pub max_in_flight: usize,
    pub request_timeout: Duration,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Largest answer a device reads (a function's answer, the marketplace's): the embedded
/// gateway's own cap on a function's answer.
pub const MAX_ANSWER: usize = 32 * 1024 * 1024;

/// An HTTP client for the emulated devices: no proxy (loopback federations), no global
/// timeout (each request has its own), a short connect timeout.
pub fn device_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

/// [`device_client`] that also trusts the CA in the PEM file `ca` (and only it) for
/// `https://` URLs: for a federation served over TLS (`testbed run --tls`).
pub fn device_client_trusting(ca: Option<&std::path::Path>) -> anyhow::Result<reqwest::Client> {
    let Some(path) = ca else {
        return Ok(device_client());
    };
    let pem =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("--tls-ca {}: {e}", path.display()))?;
    let options = signed_http::ClientOptions {
        tls_ca: Some(pem),
        ..signed_http::ClientOptions::default()
    };
    let client = signed_http::builder(&options)
        .map_err(|e| anyhow::anyhow!("--tls-ca {}: {e}", path.display()))?
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| anyhow::anyhow!("HTTP client: {}", signed_http::error_chain(&e)))?;
    Ok(client)
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Sends one request and records how it went.
async fn send_one(
    client: &reqwest::Client,
    target: &Target,
    req: &PlannedRequest,
    start: Instant,
    timeout: Duration,
) -> Record {
    let mut record = target.record(req, outcome::OK, None);
    let Some(url) = target.request_url(req.exec_ms) else {
        record.outcome = outcome::NOT_PLACED.into();
        record.error = target.not_placed.clone();
        return record;
    };
    let (body, content_type) = match &target.payload {
        Prepared::Ping => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64);
            (
                ping_body(&target.tags, now, &url, req.seq),
                PING_CONTENT_TYPE,
            )
        }
        Prepared::Fixed { body, content_type } => (body.clone(), *content_type),
    };
    let sent = Instant::now();
    record.sent_ms = Some(ms(sent - start));
    let exchange = async {
        let resp = client
            .post(&url)
            .header(CONTENT_TYPE, content_type)
            .header("GIRAFF-Sla-Id", &target.sla_id)
            .header("GIRAFF-Tags", &target.tags)
            .body(body)
            .send()
            .await
            .map_err(signed_http::ReadError::Transport)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = signed_http::read_capped(resp, MAX_ANSWER).await?;
        Ok::<_, signed_http::ReadError>((status, headers, body))
    };
    let answer = tokio::time::timeout(timeout, exchange).await;
    let latency = ms(sent.elapsed());
    match answer {
        Err(_) => {
            record.outcome = outcome::TIMEOUT.into();
            record.error = Some(format!("no complete answer within {timeout:?}"));
        }
        Ok(Err(e)) => {
            record.outcome = outcome::TRANSPORT_ERROR.into();
            record.error = Some(e.to_string());
        }
        Ok(Ok((status, headers, body))) => {
            record.status = status;
            record.latency_ms = Some(latency);
            record.served_by = header(&headers, "x-fogmarket-served-by")
                .or_else(|| header(&headers, "x-served-by-node"));
            if let Some(p) = header(&headers, "x-fogmarket-path") {
                let nodes = parse_path_header(&p);
                if !nodes.is_empty() {
                    record.hops = Some(nodes.len() as u32 - 1);
                    record.path = Some(nodes.join(">"));
                }
            }
            record.decision = header(&headers, "x-fogmarket-decision");
            record.reject_reason = header(&headers, "x-fogmarket-reject-reason");
            if (200..300).contains(&status) {
                record.outcome = outcome::OK.into();
            } else {
                record.outcome = outcome::HTTP_ERROR.into();
                let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                record.error = Some(text.trim().to_string()).filter(|s| !s.is_empty());
            }
            record.sla_met =
                Record::judge(status, Some(latency), req.exec_ms, target.latency_max_ms);
        }
    }
    record
}

/// Sends `plan` open-loop; each record goes to `sink` as soon as its request ends. Returns when
/// the last request is due and started (answers may still be arriving; the sink's channel
/// closes when the last one is recorded).
pub async fn dispatch_into(
    client: reqwest::Client,
    targets: Arc<Vec<Target>>,
    plan: Vec<PlannedRequest>,
    options: DispatchOptions,
    sink: mpsc::UnboundedSender<Record>,
) {
    let start = Instant::now();
    let slots = Arc::new(Semaphore::new(options.max_in_flight.max(1)));
    for req in plan {
        tokio::time::sleep_until(start + req.at).await;
        let target = &targets[req.function];
        if target.url.is_none() {
            let _ = sink.send(target.record(&req, outcome::NOT_PLACED, target.not_placed.clone()));
            continue;
        }
        match slots.clone().try_acquire_owned() {
            Err(_) => {
                let mut r = target.record(
                    &req,
                    outcome::DROPPED,
                    Some(format!(
                        "in-flight limit ({}) reached",
                        options.max_in_flight
                    )),
                );
                r.sent_ms = None;
                let _ = sink.send(r);
            }
            Ok(permit) => {
                let client = client.clone();
                let targets = targets.clone();
                let sink = sink.clone();
                tokio::spawn(async move {
                    let target = &targets[req.function];
                    let r = send_one(&client, target, &req, start, options.request_timeout).await;
                    drop(permit);
                    let _ = sink.send(r);
                });
            }
        }
    }
}

/// Sends `plan` open-loop and returns every record, in scheduled order, once every request has
/// ended. `progress` counts ended requests.
pub async fn dispatch(
    client: reqwest::Client,
    targets: Arc<Vec<Target>>,
    plan: Vec<PlannedRequest>,
    options: DispatchOptions,
    progress: ProgressBar,
) -> Vec<Record> {
    let total = plan.len();
    progress.set_length(total as u64);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sender = tokio::spawn(dispatch_into(client, targets, plan, options, tx));
    let mut records = Vec::with_capacity(total);
    let (mut ok, mut met) = (0usize, 0usize);
    while let Some(r) = rx.recv().await {
        ok += usize::from(r.is_success());
        met += usize::from(r.sla_met);
        records.push(r);
        progress.inc(1);
        if records.len().is_multiple_of(16) || records.len() == total {
            progress.set_message(format!("ok {ok}, SLA met {met}"));
        }
    }
    let _ = sender.await;
    progress.finish_with_message(format!("ok {ok}, SLA met {met}"));
    records.sort_by(|a, b| a.scheduled_ms.total_cmp(&b.scheduled_ms));
    records
}

/// A progress bar for `total` requests on stderr (hidden when stderr is not a terminal).
pub fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40.cyan/blue}] {pos}/{len} requests ({per_sec}) {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{App, HttpResponse, HttpServer, web};
    use bytes::Bytes;
    use std::net::TcpListener;
    use std::sync::Mutex;

    /// A local function: answers after `delay_ms` (query), with Fogmarket headers; notes when
    /// each request arrived.
    async fn start_server(arrivals: Arc<Mutex<Vec<std::time::Instant>>>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = HttpServer::new(move || {
            let arrivals = arrivals.clone();
            App::new().route(
                "/function/{name}",
                web::post().to(
                    move |q: web::Query<std::collections::HashMap<String, String>>, body: Bytes| {
                        let arrivals = arrivals.clone();
                        async move {
                            arrivals.lock().unwrap().push(std::time::Instant::now());
                            let delay: u64 =
                                q.get("delay_ms").and_then(|d| d.parse().ok()).unwrap_or(0);
                            tokio::time::sleep(Duration::from_millis(delay)).await;
                            if q.get("reject").is_some() {
                                return HttpResponse::TooManyRequests()
                                    .insert_header(("X-Fogmarket-Decision", "rejected"))
                                    .insert_header(("X-Fogmarket-Reject-Reason", "queue_full"))
                                    .insert_header(("X-Fogmarket-Path", "edge-1"))
                                    .body("{\"error\":\"queue_full\"}");
                            }
                            HttpResponse::Ok()
                                .insert_header(("X-Fogmarket-Served-By", "cloud"))
                                .insert_header(("X-Fogmarket-Path", "edge-1, regional, cloud"))
                                .insert_header(("X-Fogmarket-Decision", "forwarded"))
                                .body(body)
                        }
                    },
                ),
            )
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        format!("http://{addr}")
    }

    fn target(url: Option<String>, query: &str) -> Target {
        Target {
            function: "f".into(),
            sla_id: "sla-1".into(),
            latency_class: "normal".into(),
            latency_max_ms: 150.0,
            access_node: "edge-1".into(),
            url,
            query: Some(query.into()),
            payload: Prepared::Ping,
            tags: "f".into(),
            not_placed: Some("no feasible node".into()),
        }
    }

    fn plan(times_ms: &[u64]) -> Vec<PlannedRequest> {
        times_ms
            .iter()
            .enumerate()
            .map(|(i, t)| PlannedRequest {
                at: Duration::from_millis(*t),
                function: 0,
                seq: i as u64,
                exec_ms: None,
            })
            .collect()
    }

    const OPTIONS: DispatchOptions = DispatchOptions {
        max_in_flight: 100,
        request_timeout: Duration::from_secs(10),
    };

    #[tokio::test]
    async fn a_slow_answer_does_not_delay_the_next_send() {
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let base = start_server(arrivals.clone()).await;
        let t = target(Some(format!("{base}/function/f")), "delay_ms=800");
        let started = std::time::Instant::now();
        let records = dispatch(
            device_client(),
            Arc::new(vec![t]),
            plan(&[0, 100, 200, 300]),
            OPTIONS,
            ProgressBar::hidden(),
        )
        .await;
        assert_eq!(records.len(), 4);
        // All four were sent on schedule although each answer takes 800 ms.
        for r in &records {
            let late = r.sent_ms.unwrap() - r.scheduled_ms;
            // Closed loop would send each one at least 800 ms after the previous one.
            assert!((0.0..400.0).contains(&late), "sent {late} ms late: {r:?}");
            assert!(r.latency_ms.unwrap() >= 800.0, "{r:?}");
        }
        let arrived = arrivals.lock().unwrap().clone();
        assert_eq!(arrived.len(), 4);
        let last_arrival = arrived.iter().max().unwrap().duration_since(started);
        assert!(
            last_arrival < Duration::from_millis(1500),
            "{last_arrival:?}"
        );
        // Headers are recorded.
        let r = &records[0];
        assert_eq!(r.status, 200);
        assert_eq!(r.outcome, outcome::OK);
        assert_eq!(r.served_by.as_deref(), Some("cloud"));
        assert_eq!(r.path.as_deref(), Some("edge-1>regional>cloud"));
        assert_eq!(r.hops, Some(2));
        assert_eq!(r.decision.as_deref(), Some("forwarded"));
        // 800 ms > 150 ms: the SLA is not met.
        assert!(!r.sla_met);
    }

    #[tokio::test]
    async fn requests_beyond_the_in_flight_limit_are_recorded_as_dropped() {
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let base = start_server(arrivals.clone()).await;
        let t = target(Some(format!("{base}/function/f")), "delay_ms=500");
        let records = dispatch(
            device_client(),
            Arc::new(vec![t]),
            plan(&[0, 10, 20, 30, 40]),
            DispatchOptions {
                max_in_flight: 2,
                ..OPTIONS
            },
            ProgressBar::hidden(),
        )
        .await;
        assert_eq!(records.len(), 5);
        let dropped: Vec<&Record> = records
            .iter()
            .filter(|r| r.outcome == outcome::DROPPED)
            .collect();
        assert_eq!(dropped.len(), 3, "{records:#?}");
        assert!(
            dropped
                .iter()
                .all(|r| r.sent_ms.is_none() && r.status == 0 && !r.sla_met)
        );
        assert_eq!(arrivals.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn rejections_unplaced_functions_and_refused_connections_are_recorded() {
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let base = start_server(arrivals).await;
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let a = l.local_addr().unwrap();
            drop(l);
            format!("http://{a}/function/f")
        };
        let targets = vec![
            target(Some(format!("{base}/function/f")), "reject=1"),
            target(None, ""),
            target(Some(closed), ""),
        ];
        let mut p = plan(&[0]);
        p.push(PlannedRequest {
            at: Duration::from_millis(1),
            function: 1,
            seq: 0,
            exec_ms: None,
        });
        p.push(PlannedRequest {
            at: Duration::from_millis(2),
            function: 2,
            seq: 0,
            exec_ms: None,
        });
        let records = dispatch(
            device_client(),
            Arc::new(targets),
            p,
            OPTIONS,
            ProgressBar::hidden(),
        )
        .await;
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].status, 429);
        assert_eq!(records[0].outcome, outcome::HTTP_ERROR);
        assert_eq!(records[0].decision.as_deref(), Some("rejected"));
        assert_eq!(records[0].reject_reason.as_deref(), Some("queue_full"));
        assert_eq!(records[0].hops, Some(0));
        assert!(records[0].error.as_deref().unwrap().contains("queue_full"));
        assert_eq!(records[1].outcome, outcome::NOT_PLACED);
        assert_eq!(records[1].error.as_deref(), Some("no feasible node"));
        assert_eq!(records[2].outcome, outcome::TRANSPORT_ERROR);
        assert!(records.iter().all(|r| !r.sla_met));
    }

    #[test]
    fn request_urls_carry_the_query_and_the_spin_duration() {
        let t = target(Some("http://n/function/f".into()), "width=5");
        assert_eq!(
            t.request_url(Some(40)).unwrap(),
            "http://n/function/f?width=5&ms=40"
        );
        let t = target(Some("http://n/function/f?x=1".into()), "");
        assert_eq!(
            t.request_url(Some(40)).unwrap(),
            "http://n/function/f?x=1&ms=40"
        );
        assert_eq!(t.request_url(None).unwrap(), "http://n/function/f?x=1");
        assert_eq!(target(None, "").request_url(None), None);
    }
}
