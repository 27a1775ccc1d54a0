//! Server mode: GIRAFF's `PUT /api/cron`, so GIRAFF-style experiment drivers can start request
//! streams against Fogmarket.
//!
//! A cron job is `{functionId, iotUrl, nodeUrl, tags, initialWaitMs, intervalMs, durationMs,
//! firstNodeIp, content}` (GIRAFF's own drivers spell it `intialWaitMs`; both are accepted).
//! As in GIRAFF, after `initialWaitMs` the job POSTs `content` to `nodeUrl` for `durationMs`,
//! with Poisson arrivals, and headers `GIRAFF-Sla-Id: <functionId>` and `GIRAFF-Tags: <tags>`.
//! Differences, all documented in the README:
//! - the mean interval between requests is `intervalMs` (GIRAFF's generator computed
//!   `10 s * Exp(1) / intervalSeconds`, a known oddity marked "TODO remove arbitrary stuff");
//! - requests go straight to `nodeUrl` (Fogmarket's access node routes them); GIRAFF sent them
//!   through an HTTP proxy on `firstNodeIp`. A relative `nodeUrl` (`/function/x`) is sent to
//!   `http://<firstNodeIp><nodeUrl>`;
//! - `iotUrl` (where GIRAFF's functions reported back) is kept and listed but nothing is sent
//!   to it: Fogmarket answers synchronously and the answer is recorded;
//! - `content` is `ping`, `image`, `audio` (random bytes), `text` or `binary`; optional
//!   extensions: `contentSize` (`"16 KB"`), `arrival` (`poisson` | `constant`) and
//!   `latencyMax` (`"150 ms"`, for the SLA judgement; default 10 s).
//!
//! Every request is recorded like in a scenario run: `GET /api/records` answers them as CSV,
//! and the binary writes them (with a report and plots) to `--out` when it stops.

use crate::arrival::Arrival;
use crate::dispatch::{DispatchOptions, Target, device_client, dispatch_into};
use crate::payload::{PayloadKind, PayloadSpec, prepare};
use crate::plan::PlannedRequest;
use crate::record::{Record, write_csv};
use crate::rng::{Stream, stream};
use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};
use model::FieldError;
use model::units::{Bytes as Size, Latency};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

/// How a cron job spaces its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CronArrival {
    Poisson,
    Constant,
}

/// A validated `PUT /api/cron` body.
#[derive(Debug, Clone, PartialEq)]
pub struct CronConfig {
    pub function_id: String,
    pub iot_url: Option<String>,
    pub node_url: String,
    pub tags: String,
    pub initial_wait: Duration,
    pub interval: Duration,
    pub duration: Duration,
    pub first_node_ip: Option<String>,
    pub content: PayloadSpec,
    pub arrival: CronArrival,
    pub latency_max: Latency,
}

impl CronConfig {
    /// Where requests go: `nodeUrl`, or `http://<firstNodeIp><nodeUrl>` for a relative one.
    pub fn target_url(&self) -> String {
        if self.node_url.starts_with("http://") || self.node_url.starts_with("https://") {
            self.node_url.clone()
        } else {
            format!(
                "http://{}{}",
                self.first_node_ip.as_deref().unwrap_or_default(),
                self.node_url
            )
        }
    }

    /// The request times: after `initialWaitMs`, for `durationMs`, one every `intervalMs` on
    /// average (pure; seeded).
    pub fn schedule(&self, rng: &mut impl rand::Rng) -> Vec<Duration> {
        let rate = 1.0 / self.interval.as_secs_f64();
        let arrival = match self.arrival {
            CronArrival::Poisson => Arrival::Poisson { rate },
            CronArrival::Constant => Arrival::Constant { rate },
        };
        arrival
            .arrivals(Duration::ZERO, self.duration, rng)
            .into_iter()
            .map(|t| t + self.initial_wait)
            .collect()
    }
}

fn opt_string(body: &Value, field: &str) -> Result<Option<String>, FieldError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(FieldError::new(field, "must be a string")),
    }
}

fn millis(body: &Value, field: &str, min: u64) -> Result<Option<u64>, FieldError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n >= min => Ok(Some(n)),
            _ => Err(FieldError::new(
                field,
                format!("must be a whole number of milliseconds, at least {min}"),
            )),
        },
    }
}

/// Validates a `PUT /api/cron` body; errors name the field.
pub fn parse_cron(body: &Value) -> Result<CronConfig, FieldError> {
    let Some(obj) = body.as_object() else {
        return Err(FieldError::new("body", "must be a JSON object"));
    };
    // Unknown fields are ignored, as GIRAFF's decoder does.
    let function_id = opt_string(body, "functionId")?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| FieldError::new("functionId", "is required (the SLA id)"))?;
    let node_url = opt_string(body, "nodeUrl")?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| FieldError::new("nodeUrl", "is required (where to send requests)"))?;
    let first_node_ip = opt_string(body, "firstNodeIp")?.filter(|s| !s.trim().is_empty());
    let absolute = node_url.starts_with("http://") || node_url.starts_with("https://");
    let relative_ok = node_url.starts_with('/') && first_node_ip.is_some();
    if !(absolute || relative_ok) {
        return Err(FieldError::new(
            "nodeUrl",
            "must be an http:// URL, or a path (/function/…) with firstNodeIp set",
        ));
    }
    let initial_wait = match (
        millis(body, "initialWaitMs", 0)?,
        millis(body, "intialWaitMs", 0)?,
    ) {
        (Some(ms), _) | (None, Some(ms)) => ms,
        (None, None) => 0,
    };
    let interval = millis(body, "intervalMs", 1)?
        .ok_or_else(|| FieldError::new("intervalMs", "is required"))?;
    let duration = millis(body, "durationMs", 1)?
        .ok_or_else(|| FieldError::new("durationMs", "is required"))?;
    let kind = match opt_string(body, "content")?.as_deref() {
        None | Some("ping") => PayloadKind::Ping,
        Some("image") => PayloadKind::Image,
        Some("audio") | Some("binary") => PayloadKind::Binary,
        Some("text") => PayloadKind::Text,
        Some(other) => {
            return Err(FieldError::new(
                "content",
                format!("unknown content `{other}`, expected ping, image, audio, text or binary"),
            ));
        }
    };
    let size = match opt_string(body, "contentSize")? {
        None => None,
        Some(_) if kind == PayloadKind::Ping => {
            return Err(FieldError::new("contentSize", "a ping has no size"));
        }
        Some(s) => {
            let size: Size = s.parse().map_err(|e| FieldError::new("contentSize", e))?;
            if size == Size::ZERO || size.as_u64() > 8_000_000 {
                return Err(FieldError::new(
                    "contentSize",
                    "must be more than 0 and at most 8 MB",
                ));
            }
            Some(size)
        }
    };
    let size = match kind {
        PayloadKind::Ping => None,
        PayloadKind::Image => size.or(Some(Size::new(16_000))),
        PayloadKind::Binary => size.or(Some(Size::new(64_000))),
        PayloadKind::Text => size.or(Some(Size::new(1_000))),
    };
    let arrival = match opt_string(body, "arrival")?.as_deref() {
        None | Some("poisson") => CronArrival::Poisson,
        Some("constant") => CronArrival::Constant,
        Some(other) => {
            return Err(FieldError::new(
                "arrival",
                format!("unknown arrival `{other}`, expected poisson or constant"),
            ));
        }
    };
    let latency_max = match opt_string(body, "latencyMax")? {
        None => Latency::from_millis(10_000),
        Some(s) => s.parse().map_err(|e| FieldError::new("latencyMax", e))?,
    };
    let tags = match obj.get("tags") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(FieldError::new("tags", "must be a string")),
    };
    Ok(CronConfig {
        function_id,
        iot_url: opt_string(body, "iotUrl")?,
        node_url,
        tags,
        initial_wait: Duration::from_millis(initial_wait),
        interval: Duration::from_millis(interval),
        duration: Duration::from_millis(duration),
        first_node_ip,
        content: PayloadSpec { kind, size },
        arrival,
        latency_max,
    })
}

/// Live counters of one job.
#[derive(Debug, Default)]
struct Counters {
    ended: AtomicUsize,
    ok: AtomicUsize,
    done: AtomicBool,
}

struct Job {
    config: CronConfig,
    planned: usize,
    counters: Arc<Counters>,
    task: tokio::task::AbortHandle,
}

/// A job as listed by `GET /api/cron`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub id: Uuid,
    pub function_id: String,
    pub node_url: String,
    pub iot_url: Option<String>,
    pub tags: String,
    pub planned: usize,
    pub ended: usize,
    pub ok: usize,
    pub done: bool,
}

impl Job {
    fn view(&self, id: Uuid) -> JobView {
        JobView {
            id,
            function_id: self.config.function_id.clone(),
            node_url: self.config.target_url(),
            iot_url: self.config.iot_url.clone(),
            tags: self.config.tags.clone(),
            planned: self.planned,
            ended: self.counters.ended.load(Ordering::Relaxed),
            ok: self.counters.ok.load(Ordering::Relaxed),
            done: self.counters.done.load(Ordering::Relaxed),
        }
    }
}

/// Settings of the cron server.
#[derive(Debug, Clone, Copy)]
pub struct CronSettings {
    pub seed: u64,
    pub dispatch: DispatchOptions,
}

impl Default for CronSettings {
    fn default() -> Self {
        Self {
            seed: 1,
            dispatch: DispatchOptions {
                max_in_flight: 1024,
                request_timeout: Duration::from_secs(30),
            },
        }
    }
}

/// The server's state: jobs and every record so far.
pub struct CronState {
    settings: CronSettings,
    client: reqwest::Client,
    jobs: Mutex<BTreeMap<Uuid, Job>>,
    records: Arc<Mutex<Vec<Record>>>,
    next_job: AtomicU64,
    /// Record times are relative to this (the server's start), so jobs share one time axis.
    started: std::time::Instant,
}

impl CronState {
    pub fn new(settings: CronSettings) -> Arc<CronState> {
        Self::with_client(settings, device_client())
    }

    /// With the given device client (e.g. one trusting a federation's CA).
    pub fn with_client(settings: CronSettings, client: reqwest::Client) -> Arc<CronState> {
        Arc::new(CronState {
            settings,
            client,
            jobs: Mutex::new(BTreeMap::new()),
            records: Arc::new(Mutex::new(Vec::new())),
            next_job: AtomicU64::new(0),
            started: std::time::Instant::now(),
        })
    }

    /// Every record so far, in scheduled order per job.
    pub fn records(&self) -> Vec<Record> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Starts a job; returns its id and how many requests it plans.
    pub fn start(self: &Arc<Self>, config: CronConfig) -> (Uuid, usize) {
        let id = Uuid::new_v4();
        let index = self.next_job.fetch_add(1, Ordering::Relaxed);
        let seed = self.settings.seed;
        let times = config.schedule(&mut stream(seed, Stream::Arrivals, index));
        let plan: Vec<PlannedRequest> = times
            .into_iter()
            .enumerate()
            .map(|(seq, at)| PlannedRequest {
                at,
                function: 0,
                seq: seq as u64,
                exec_ms: None,
            })
            .collect();
        let planned = plan.len();
        let target = Target {
            // GIRAFF's tags name the function; the SLA id when there are none.
            function: if config.tags.is_empty() {
                config.function_id.clone()
            } else {
                config.tags.clone()
            },
            sla_id: config.function_id.clone(),
            latency_class: "cron".into(),
            latency_max_ms: config.latency_max.as_millis_f64(),
            access_node: config
                .first_node_ip
                .clone()
                .unwrap_or_else(|| host_of(&config.target_url())),
            url: Some(config.target_url()),
            query: None,
            payload: prepare(&config.content, &mut stream(seed, Stream::Payload, index)),
            tags: config.tags.clone(),
            not_placed: None,
        };
        let counters = Arc::new(Counters::default());
        let offset_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let (tx, mut rx) = mpsc::unbounded_channel::<Record>();
        let dispatcher = dispatch_into(
            self.client.clone(),
            Arc::new(vec![target]),
            plan,
            self.settings.dispatch,
            tx,
        );
        let collector = {
            let counters = counters.clone();
            let records = self.records.clone();
            async move {
                while let Some(mut r) = rx.recv().await {
                    r.scheduled_ms += offset_ms;
                    r.sent_ms = r.sent_ms.map(|t| t + offset_ms);
                    counters.ended.fetch_add(1, Ordering::Relaxed);
                    counters
                        .ok
                        .fetch_add(usize::from(r.is_success()), Ordering::Relaxed);
                    if let Ok(mut all) = records.lock() {
                        all.push(r);
                    }
                }
                counters.done.store(true, Ordering::Relaxed);
            }
        };
        tokio::spawn(collector);
        let task = tokio::spawn(dispatcher).abort_handle();
        tracing::info!(%id, function_id = %config.function_id, planned, url = %config.target_url(), "cron job registered");
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.insert(
                id,
                Job {
                    config,
                    planned,
                    counters,
                    task,
                },
            );
        }
        (id, planned)
    }

    pub fn list(&self) -> Vec<JobView> {
        self.jobs
            .lock()
            .map(|jobs| jobs.iter().map(|(id, j)| j.view(*id)).collect())
            .unwrap_or_default()
    }

    pub fn get(&self, id: Uuid) -> Option<JobView> {
        self.jobs.lock().ok()?.get(&id).map(|j| j.view(id))
    }

    /// Stops sending a job's remaining requests (in-flight ones still end and are recorded).
    pub fn stop(&self, id: Uuid) -> bool {
        match self
            .jobs
            .lock()
            .ok()
            .and_then(|j| j.get(&id).map(|j| j.task.clone()))
        {
            Some(task) => {
                task.abort();
                true
            }
            None => false,
        }
    }
}

fn host_of(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    rest.split('/').next().unwrap_or(rest).to_string()
}

fn bad_request(e: FieldError) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({
        "error": "invalid_cron",
        "field": e.field,
        "message": e.to_string(),
    }))
}

async fn put_cron(state: web::Data<Arc<CronState>>, body: web::Bytes) -> HttpResponse {
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(FieldError::new("body", format!("not JSON: {e}"))),
    };
    match parse_cron(&value) {
        Err(e) => bad_request(e),
        Ok(config) => {
            let (id, planned) = state.start(config);
            HttpResponse::Ok().json(json!({"id": id, "planned": planned}))
        }
    }
}

async fn list_cron(state: web::Data<Arc<CronState>>) -> HttpResponse {
    HttpResponse::Ok().json(state.list())
}

fn parse_id(id: &str) -> Option<Uuid> {
    id.parse().ok()
}

fn bad_id() -> HttpResponse {
    HttpResponse::BadRequest()
        .json(json!({"error": "invalid_id", "field": "id", "message": "not a UUID"}))
}

async fn get_cron(state: web::Data<Arc<CronState>>, id: web::Path<String>) -> HttpResponse {
    let Some(id) = parse_id(&id) else {
        return bad_id();
    };
    match state.get(id) {
        Some(v) => HttpResponse::Ok().json(v),
        None => HttpResponse::NotFound()
            .json(json!({"error": "not_found", "message": format!("no cron job {id}")})),
    }
}

async fn delete_cron(state: web::Data<Arc<CronState>>, id: web::Path<String>) -> HttpResponse {
    let Some(id) = parse_id(&id) else {
        return bad_id();
    };
    if state.stop(id) {
        HttpResponse::Ok().json(json!({"id": id, "stopped": true}))
    } else {
        HttpResponse::NotFound()
            .json(json!({"error": "not_found", "message": format!("no cron job {id}")}))
    }
}

async fn get_records(state: web::Data<Arc<CronState>>) -> HttpResponse {
    let mut buf = Vec::new();
    match write_csv(&state.records(), &mut buf) {
        Ok(()) => HttpResponse::Ok().content_type("text/csv").body(buf),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// A bound cron server.
pub struct CronServer {
    addr: SocketAddr,
    server: Server,
    state: Arc<CronState>,
}

impl CronServer {
    /// Binds `listen` (port 0 picks a free port).
    pub fn build(listen: SocketAddr, settings: CronSettings) -> anyhow::Result<CronServer> {
        Self::build_with_client(listen, settings, device_client())
    }

    /// [`CronServer::build`] with the given device client (e.g. one trusting a CA).
    pub fn build_with_client(
        listen: SocketAddr,
        settings: CronSettings,
        client: reqwest::Client,
    ) -> anyhow::Result<CronServer> {
        use anyhow::Context;
        let listener = TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let state = CronState::with_client(settings, client);
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(1 << 20))
                .route("/api/cron", web::put().to(put_cron))
                .route("/api/cron", web::get().to(list_cron))
                .route("/api/cron/{id}", web::get().to(get_cron))
                .route("/api/cron/{id}", web::delete().to(delete_cron))
                .route("/api/records", web::get().to(get_records))
                .route("/api/health", web::get().to(health))
        })
        .workers(2)
        .listen(listener)
        .context("listening")?
        .shutdown_timeout(2)
        .run();
        Ok(CronServer {
            addr,
            server,
            state,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn state(&self) -> Arc<CronState> {
        self.state.clone()
    }

    /// A handle to stop the server.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped through [`CronServer::handle`].
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> Value {
        json!({
            "functionId": "5f0e7c52-8f0c-4cfa-9c1b-6d2f3f5b1a10",
            "iotUrl": "http://iot:3003/api/print",
            "nodeUrl": "http://127.0.0.1:9/function/fogfn-x",
            "tags": "echo-1",
            "initialWaitMs": 200,
            "intervalMs": 100,
            "durationMs": 1000,
            "firstNodeIp": "127.0.0.1",
            "content": "ping"
        })
    }

    #[test]
    fn a_giraff_cron_body_parses_with_its_defaults() {
        let c = parse_cron(&body()).unwrap();
        assert_eq!(c.function_id, "5f0e7c52-8f0c-4cfa-9c1b-6d2f3f5b1a10");
        assert_eq!(c.initial_wait, Duration::from_millis(200));
        assert_eq!(c.interval, Duration::from_millis(100));
        assert_eq!(c.duration, Duration::from_secs(1));
        assert_eq!(c.content, PayloadSpec::PING);
        assert_eq!(c.arrival, CronArrival::Poisson);
        assert_eq!(c.target_url(), "http://127.0.0.1:9/function/fogfn-x");
        assert_eq!(c.iot_url.as_deref(), Some("http://iot:3003/api/print"));
        // GIRAFF's misspelling is accepted too.
        let mut b = body();
        b.as_object_mut().unwrap().remove("initialWaitMs");
        b["intialWaitMs"] = json!(300);
        assert_eq!(
            parse_cron(&b).unwrap().initial_wait,
            Duration::from_millis(300)
        );
        // A relative node URL goes to the first node.
        b["nodeUrl"] = json!("/function/fogfn-x");
        b["firstNodeIp"] = json!("10.0.0.5:8080");
        assert_eq!(
            parse_cron(&b).unwrap().target_url(),
            "http://10.0.0.5:8080/function/fogfn-x"
        );
        b["content"] = json!("audio");
        let c = parse_cron(&b).unwrap();
        assert_eq!(c.content.kind, PayloadKind::Binary);
        assert_eq!(c.content.size, Some(Size::new(64_000)));
    }

    #[test]
    fn bad_cron_bodies_are_refused_naming_the_field() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("intervalMs", json!(0), "intervalMs"),
            ("intervalMs", Value::Null, "intervalMs"),
            ("durationMs", json!("1000"), "durationMs"),
            ("functionId", json!(""), "functionId"),
            ("nodeUrl", json!("node-1"), "nodeUrl"),
            ("content", json!("video"), "content"),
            ("tags", json!(["a"]), "tags"),
            ("initialWaitMs", json!(-5), "initialWaitMs"),
            ("arrival", json!("weibull"), "arrival"),
            ("latencyMax", json!("soon"), "latencyMax"),
        ];
        for (field, value, named) in cases {
            let mut b = body();
            b[field] = value.clone();
            let e = parse_cron(&b).unwrap_err();
            assert_eq!(e.field, named, "{field} = {value}: {e}");
        }
        assert_eq!(parse_cron(&json!([1])).unwrap_err().field, "body");
    }

    #[test]
    fn a_constant_cron_schedule_starts_after_the_initial_wait_at_the_interval() {
        let mut b = body();
        b["arrival"] = json!("constant");
        let c = parse_cron(&b).unwrap();
        let times = c.schedule(&mut stream(1, Stream::Arrivals, 0));
        let expected: Vec<Duration> = (0..10)
            .map(|i| Duration::from_millis(200 + 100 * i))
            .collect();
        assert_eq!(times, expected);
    }

    #[test]
    fn a_poisson_cron_schedule_has_the_interval_as_its_mean_gap() {
        let mut b = body();
        b["durationMs"] = json!(1_000_000);
        let c = parse_cron(&b).unwrap();
        let times = c.schedule(&mut stream(1, Stream::Arrivals, 0));
        // 10 000 expected, sd 100.
        assert!(
            (times.len() as f64 - 10_000.0).abs() < 500.0,
            "{}",
            times.len()
        );
        assert!(times[0] >= Duration::from_millis(200));
    }
}
