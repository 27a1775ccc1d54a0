//! An open-loop load generator for the fog nodes' data plane.
//!
//! Each [`Stream`] sends requests to one URL (e.g. one access node's `invokeUrl`) at a
//! [`Schedule`]: a constant rate, or one rate per second. Requests leave at their scheduled
//! times whatever the answers do: every request is a spawned task, so a slow or stuck answer
//! never delays the next send (no coordinated omission). The tasks in flight are bounded by
//! [`LoadOptions::max_in_flight`] over all streams; a send skipped at that bound is recorded as
//! [`Outcome::Lost`], never silently dropped.
//!
//! Every request becomes a [`RequestRecord`]: scheduled and actual send time, outcome (status,
//! timeout, transport error or lost), latency, and the data plane's headers
//! (`X-Fogmarket-Served-By`, `X-Fogmarket-Path`, `X-Fogmarket-Decision`,
//! `X-Fogmarket-Reject-Reason`). [`summarise`] turns records into a [`LoadSummary`]: success
//! overall, after a settling time and per second, requests served per node, outcomes, reject
//! reasons and latency percentiles.

use anyhow::Context;
use measure::stats::Latencies;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Header naming the node that ran the function.
pub const SERVED_BY_HEADER: &str = "x-fogmarket-served-by";
/// Header listing the nodes a request crossed, access node first.
pub const PATH_HEADER: &str = "x-fogmarket-path";
/// Header with the answering node's decision: `local`, `forwarded` or `rejected`.
pub const DECISION_HEADER: &str = "x-fogmarket-decision";
/// Header with the reason of a reject (`overloaded`, `queue_full`, …).
pub const REJECT_REASON_HEADER: &str = "x-fogmarket-reject-reason";

/// When a stream's requests leave, relative to the start of the load.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// `rate` requests per second, evenly spaced, for `duration`.
    Constant { rate: f64, duration: Duration },
    /// Second `i` of the load sends `rates[i]` requests per second, evenly spaced; a fractional
    /// rate carries over to the next second (2.5 then 2.5 sends 5 requests in two seconds).
    PerSecond(Vec<f64>),
}

impl Schedule {
    /// The send offsets, ascending. The first request leaves at 0. Negative, NaN or infinite
    /// rates count as 0.
    pub fn offsets(&self) -> Vec<Duration> {
        match self {
            Schedule::Constant { rate, duration } => {
                let rate = sane_rate(*rate);
                if rate == 0.0 {
                    return Vec::new();
                }
                let end = duration.as_secs_f64();
                let mut out = Vec::new();
                let mut k = 0u64;
                loop {
                    let t = k as f64 / rate;
                    if t >= end - 1e-9 {
                        break;
                    }
                    out.push(Duration::from_secs_f64(t));
                    k += 1;
                }
                out
            }
            // Request k leaves when the integral of the rate reaches k (the simulator spaces
            // its arrivals with the same function).
            Schedule::PerSecond(rates) => model::offload::scenario::per_second_offsets(rates),
        }
    }

    /// How long the schedule lasts.
    pub fn duration(&self) -> Duration {
        match self {
            Schedule::Constant { duration, .. } => *duration,
            Schedule::PerSecond(rates) => Duration::from_secs(rates.len() as u64),
        }
    }
}

fn sane_rate(rate: f64) -> f64 {
    if rate.is_finite() && rate > 0.0 {
        rate
    } else {
        0.0
    }
}

/// One source of requests: a URL, what to send, and when.
#[derive(Debug, Clone)]
pub struct Stream {
    /// A name for reports (e.g. the access node).
    pub label: String,
    pub url: String,
    pub method: reqwest::Method,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub schedule: Schedule,
}

impl Stream {
    /// POSTs of `body` to `url` at `schedule`.
    pub fn post(
        label: impl Into<String>,
        url: impl Into<String>,
        body: impl Into<Vec<u8>>,
        schedule: Schedule,
    ) -> Self {
        Self {
            label: label.into(),
            url: url.into(),
            method: reqwest::Method::POST,
            body: body.into(),
            headers: Vec::new(),
            schedule,
        }
    }
}

/// How the load runs.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Requests in flight over all streams; a send beyond it is recorded as lost.
    pub max_in_flight: usize,
    /// A request not answered (body included) within this is a timeout.
    pub request_timeout: Duration,
    /// Time zero of the schedules; `None` is when [`run`] is called. Lets a caller line up
    /// its own actions (killing a node at second 5) with the records.
    pub start: Option<Instant>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            max_in_flight: 4096,
            request_timeout: Duration::from_secs(15),
            start: None,
        }
    }
}

/// What happened to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// An answer with this status (body read).
    Status(u16),
    /// No complete answer within the request timeout.
    Timeout,
    /// The connection failed or broke (the message says how).
    Transport(String),
    /// Never sent: `max_in_flight` requests were already in flight at its scheduled time.
    Lost,
}

impl Outcome {
    /// A 2xx answer.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Status(s) if (200..300).contains(s))
    }

    /// `200`, `429`, `timeout`, `transport` or `lost`: the key in [`LoadSummary::outcomes`].
    pub fn label(&self) -> String {
        match self {
            Outcome::Status(s) => s.to_string(),
            Outcome::Timeout => "timeout".to_string(),
            Outcome::Transport(_) => "transport".to_string(),
            Outcome::Lost => "lost".to_string(),
        }
    }
}

/// One request of the load.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    /// Index of its [`Stream`].
    pub stream: usize,
    /// When it was due, since the start of the load.
    pub scheduled: Duration,
    /// When it actually left (`None`: lost).
    pub sent: Option<Duration>,
    pub outcome: Outcome,
    /// Send to the end of the answer's body (`None`: lost, or no answer).
    pub latency: Option<Duration>,
    pub served_by: Option<String>,
    pub path: Option<String>,
    pub decision: Option<String>,
    pub reject_reason: Option<String>,
}

impl RequestRecord {
    fn lost(stream: usize, scheduled: Duration) -> Self {
        Self {
            stream,
            scheduled,
            sent: None,
            outcome: Outcome::Lost,
            latency: None,
            served_by: None,
            path: None,
            decision: None,
            reject_reason: None,
        }
    }

    /// Nodes named in `X-Fogmarket-Path`, access node first.
    pub fn path_nodes(&self) -> Vec<&str> {
        self.path
            .as_deref()
            .map(|p| {
                p.split([',', ' '])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Every record of a load, ordered by scheduled time.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub records: Vec<RequestRecord>,
    /// Labels of the streams, by index.
    pub streams: Vec<String>,
    /// Time zero of the schedules.
    pub start: Instant,
    /// From time zero to the last answer.
    pub elapsed: Duration,
}

impl LoadResult {
    /// The summary of every record; requests due before `settle` count overall but not in
    /// the settled figures.
    pub fn summary(&self, settle: Duration) -> LoadSummary {
        summarise(&self.records, settle)
    }

    /// Records due in `[from, to)`.
    pub fn between(&self, from: Duration, to: Duration) -> Vec<RequestRecord> {
        self.records
            .iter()
            .filter(|r| r.scheduled >= from && r.scheduled < to)
            .cloned()
            .collect()
    }

    /// Records of one stream.
    pub fn of_stream(&self, stream: usize) -> Vec<RequestRecord> {
        self.records
            .iter()
            .filter(|r| r.stream == stream)
            .cloned()
            .collect()
    }
}

/// One second of the load (by scheduled time).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecondSummary {
    /// Seconds since the start of the load.
    pub second: u64,
    pub scheduled: u64,
    pub ok: u64,
    pub success_rate: f64,
    /// Successful requests by serving node.
    pub served_by: BTreeMap<String, u64>,
}

/// Latency of the successful requests, milliseconds (send to end of body).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadLatency {
    pub samples: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl LoadLatency {
    /// The figures of `latencies` (all 0 when there are none).
    pub fn of(latencies: &Latencies) -> Self {
        let summary = crate::bench::LatencySummary::of(latencies);
        Self {
            samples: summary.requests,
            p50_ms: summary.p50_ms,
            p90_ms: summary.p90_ms,
            p95_ms: latencies.quantile_ms(0.95),
            p99_ms: summary.p99_ms,
            max_ms: summary.max_ms,
            mean_ms: summary.mean_ms,
        }
    }
}

/// What a load did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadSummary {
    /// Requests due (sent or lost).
    pub scheduled: u64,
    /// 2xx answers.
    pub ok: u64,
    /// Sent but not successful (non-2xx, timeout, transport error).
    pub failed: u64,
    /// Never sent (in-flight bound reached).
    pub lost: u64,
    /// ok / scheduled (0 when nothing was due).
    pub success_rate: f64,
    /// The settling time the settled figures leave out, seconds.
    pub settle_s: f64,
    /// ok / scheduled over the requests due from `settle` on; `None` when none were.
    pub settled_success_rate: Option<f64>,
    /// The worst second starting at or after `settle`; `None` when there is none.
    pub settled_min_second_success: Option<f64>,
    /// Every second with requests due, in order.
    pub per_second: Vec<SecondSummary>,
    /// Successful requests by `X-Fogmarket-Served-By` (`unknown` without the header).
    pub served_by: BTreeMap<String, u64>,
    /// Requests by [`Outcome::label`].
    pub outcomes: BTreeMap<String, u64>,
    /// Answers by `X-Fogmarket-Decision` of the answering node.
    pub decisions: BTreeMap<String, u64>,
    /// Rejects by `X-Fogmarket-Reject-Reason`.
    pub reject_reasons: BTreeMap<String, u64>,
    /// Transport errors by message (at most 200 characters each).
    pub transport_errors: BTreeMap<String, u64>,
    /// Successful requests whose `X-Fogmarket-Path` crossed more than one node.
    pub ok_forwarded: u64,
    pub latency: LoadLatency,
    /// Latency of the successful requests due from `settle` on.
    pub settled_latency: LoadLatency,
    /// Largest delay between a request's scheduled and actual send, milliseconds (the
    /// generator keeping up).
    pub max_send_lag_ms: f64,
}

fn rate(ok: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        ok as f64 / total as f64
    }
}

/// Summarises `records` (any order). Seconds are counted from the start of the load, by
/// scheduled time; requests due before `settle` are left out of the settled figures (a second
/// counts as settled when it starts at or after `settle`).
pub fn summarise(records: &[RequestRecord], settle: Duration) -> LoadSummary {
    let mut per_second: BTreeMap<u64, SecondSummary> = BTreeMap::new();
    let mut served_by = BTreeMap::new();
    let mut outcomes = BTreeMap::new();
    let mut decisions = BTreeMap::new();
    let mut reject_reasons = BTreeMap::new();
    let mut transport_errors = BTreeMap::new();
    let (mut ok, mut lost, mut settled, mut settled_ok, mut ok_forwarded) = (0, 0, 0, 0, 0);
    let mut max_lag = Duration::ZERO;
    let mut latencies = Latencies::new();
    let mut settled_latencies = Latencies::new();
    for r in records {
        let second = r.scheduled.as_secs();
        let s = per_second.entry(second).or_insert_with(|| SecondSummary {
            second,
            scheduled: 0,
            ok: 0,
            success_rate: 0.0,
            served_by: BTreeMap::new(),
        });
        s.scheduled += 1;
        let success = r.outcome.is_success();
        if r.scheduled >= settle {
            settled += 1;
        }
        *outcomes.entry(r.outcome.label()).or_insert(0) += 1;
        match &r.outcome {
            Outcome::Lost => lost += 1,
            Outcome::Transport(message) => {
                let short: String = message.chars().take(200).collect();
                *transport_errors.entry(short).or_insert(0) += 1;
            }
            _ => {}
        }
        if let Some(d) = &r.decision {
            *decisions.entry(d.clone()).or_insert(0) += 1;
        }
        if let Some(reason) = &r.reject_reason {
            *reject_reasons.entry(reason.clone()).or_insert(0) += 1;
        }
        if let Some(sent) = r.sent {
            max_lag = max_lag.max(sent.saturating_sub(r.scheduled));
        }
        if success {
            ok += 1;
            s.ok += 1;
            if r.scheduled >= settle {
                settled_ok += 1;
            }
            let node = r.served_by.clone().unwrap_or_else(|| "unknown".to_string());
            *s.served_by.entry(node.clone()).or_insert(0) += 1;
            *served_by.entry(node).or_insert(0) += 1;
            if r.path_nodes().len() > 1 {
                ok_forwarded += 1;
            }
            if let Some(l) = r.latency {
                latencies.record(l);
                if r.scheduled >= settle {
                    settled_latencies.record(l);
                }
            }
        }
    }
    let mut per_second: Vec<SecondSummary> = per_second.into_values().collect();
    for s in &mut per_second {
        s.success_rate = rate(s.ok, s.scheduled);
    }
    let settled_min_second_success = per_second
        .iter()
        .filter(|s| Duration::from_secs(s.second) >= settle)
        .map(|s| s.success_rate)
        .min_by(f64::total_cmp);
    let scheduled = records.len() as u64;
    LoadSummary {
        scheduled,
        ok,
        failed: scheduled - ok - lost,
        lost,
        success_rate: rate(ok, scheduled),
        settle_s: settle.as_secs_f64(),
        settled_success_rate: (settled > 0).then(|| rate(settled_ok, settled)),
        settled_min_second_success,
        per_second,
        served_by,
        outcomes,
        decisions,
        reject_reasons,
        transport_errors,
        ok_forwarded,
        latency: LoadLatency::of(&latencies),
        settled_latency: LoadLatency::of(&settled_latencies),
        max_send_lag_ms: max_lag.as_secs_f64() * 1000.0,
    }
}

/// An HTTP client for load: no proxy, many idle connections kept per host, no overall timeout
/// (each request has its own). Idle connections are dropped after 2 s, before a server's
/// keep-alive timeout (actix: 5 s) closes them: reusing a connection the server is closing at
/// that moment fails the request with "connection closed before message completed", an
/// artefact of the client, not of the system under test.
pub fn load_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(1024)
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .context("cannot build the load generator's HTTP client")
}

/// Runs every stream at once from `options.start` (or now) and returns every request's record,
/// once every request is answered, timed out or lost.
pub async fn run(
    client: &reqwest::Client,
    streams: Vec<Stream>,
    options: &LoadOptions,
) -> anyhow::Result<LoadResult> {
    let start = options.start.unwrap_or_else(Instant::now);
    let in_flight = Arc::new(Semaphore::new(options.max_in_flight.max(1)));
    let labels: Vec<String> = streams.iter().map(|s| s.label.clone()).collect();
    let mut dispatchers = Vec::with_capacity(streams.len());
    for (index, stream) in streams.into_iter().enumerate() {
        dispatchers.push(tokio::spawn(dispatch(
            index,
            stream,
            start,
            in_flight.clone(),
            options.request_timeout,
            client.clone(),
        )));
    }
    let mut records = Vec::new();
    for d in dispatchers {
        records.extend(d.await.context("a load dispatcher panicked")??);
    }
    records.sort_by_key(|r| (r.scheduled, r.stream));
    Ok(LoadResult {
        records,
        streams: labels,
        start,
        elapsed: start.elapsed(),
    })
}

/// Sends one stream's requests at their times; never waits for an answer before a send.
async fn dispatch(
    index: usize,
    stream: Stream,
    start: Instant,
    in_flight: Arc<Semaphore>,
    timeout: Duration,
    client: reqwest::Client,
) -> anyhow::Result<Vec<RequestRecord>> {
    let offsets = stream.schedule.offsets();
    let mut records = Vec::with_capacity(offsets.len());
    let mut tasks = JoinSet::new();
    let stream = Arc::new(stream);
    for scheduled in offsets {
        tokio::time::sleep_until(start + scheduled).await;
        match in_flight.clone().try_acquire_owned() {
            Ok(permit) => {
                let client = client.clone();
                let stream = stream.clone();
                tasks.spawn(async move {
                    let record = send_one(&client, &stream, index, scheduled, start, timeout).await;
                    drop(permit);
                    record
                });
            }
            Err(_) => records.push(RequestRecord::lost(index, scheduled)),
        }
        // Collect finished requests as we go, so memory follows what is in flight.
        while let Some(done) = tasks.try_join_next() {
            records.push(done.context("a load request task panicked")?);
        }
    }
    while let Some(done) = tasks.join_next().await {
        records.push(done.context("a load request task panicked")?);
    }
    Ok(records)
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn send_one(
    client: &reqwest::Client,
    stream: &Stream,
    index: usize,
    scheduled: Duration,
    start: Instant,
    timeout: Duration,
) -> RequestRecord {
    let sent_at = Instant::now();
    let mut record = RequestRecord {
        stream: index,
        scheduled,
        sent: Some(sent_at.saturating_duration_since(start)),
        outcome: Outcome::Lost,
        latency: None,
        served_by: None,
        path: None,
        decision: None,
        reject_reason: None,
    };
    let mut req = client
        .request(stream.method.clone(), &stream.url)
        .timeout(timeout)
        .body(stream.body.clone());
    for (k, v) in &stream.headers {
        req = req.header(k, v);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            record.outcome = transport_outcome(&e);
            return record;
        }
    };
    record.served_by = header(&resp, SERVED_BY_HEADER);
    record.path = header(&resp, PATH_HEADER);
    record.decision = header(&resp, DECISION_HEADER);
    record.reject_reason = header(&resp, REJECT_REASON_HEADER);
    let status = resp.status().as_u16();
    // Function answers are capped like the fog node's own reads of them.
    record.outcome = match signed_http::read_capped(resp, ANSWER_CAP).await {
        Ok(_) => {
            record.latency = Some(sent_at.elapsed());
            Outcome::Status(status)
        }
        Err(signed_http::ReadError::Transport(e)) => transport_outcome(&e),
        Err(e @ signed_http::ReadError::TooLarge(_)) => Outcome::Transport(e.to_string()),
    };
    record
}

/// Largest function answer the load generator reads (the embedded gateway's own cap).
const ANSWER_CAP: usize = 32 * 1024 * 1024;

fn transport_outcome(e: &reqwest::Error) -> Outcome {
    if e.is_timeout() {
        Outcome::Timeout
    } else {
        // The whole chain: reqwest's top message alone rarely says what broke.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Outcome::Transport(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn record(scheduled_ms: u64, outcome: Outcome, served_by: Option<&str>) -> RequestRecord {
        RequestRecord {
            stream: 0,
            scheduled: ms(scheduled_ms),
            sent: (outcome != Outcome::Lost).then(|| ms(scheduled_ms + 2)),
            latency: outcome.is_success().then(|| ms(10)),
            served_by: served_by.map(str::to_string),
            path: served_by.map(|s| {
                if s == "n1" {
                    "n1".to_string()
                } else {
                    format!("n1,{s}")
                }
            }),
            decision: None,
            reject_reason: None,
            outcome,
        }
    }

    #[test]
    fn a_constant_schedule_spaces_requests_evenly_and_stops_at_its_duration() {
        let o = Schedule::Constant {
            rate: 4.0,
            duration: ms(1000),
        }
        .offsets();
        assert_eq!(o, vec![ms(0), ms(250), ms(500), ms(750)]);
        let o = Schedule::Constant {
            rate: 50.0,
            duration: Duration::from_secs(30),
        }
        .offsets();
        assert_eq!(o.len(), 1500);
        assert!(o.windows(2).all(|w| w[0] < w[1]));
        for bad in [0.0, -3.0, f64::NAN, f64::INFINITY] {
            let s = Schedule::Constant {
                rate: bad,
                duration: ms(1000),
            };
            assert!(s.offsets().is_empty(), "{bad}");
        }
    }

    #[test]
    fn a_per_second_schedule_follows_each_seconds_rate_and_carries_fractions() {
        let o = Schedule::PerSecond(vec![2.0, 0.0, 4.0]).offsets();
        assert_eq!(
            o,
            vec![ms(0), ms(500), ms(2000), ms(2250), ms(2500), ms(2750)]
        );
        let o = Schedule::PerSecond(vec![2.5, 2.5]).offsets();
        assert_eq!(o.len(), 5);
        assert_eq!(o[..3], [ms(0), ms(400), ms(800)]);
        assert_eq!(o[3], ms(1200));
        assert_eq!(Schedule::PerSecond(vec![1.0; 7]).duration(), ms(7000));
        let counts: Vec<usize> = (0..3)
            .map(|s| {
                Schedule::PerSecond(vec![10.0, 110.0, 50.0])
                    .offsets()
                    .iter()
                    .filter(|o| o.as_secs() == s)
                    .count()
            })
            .collect();
        assert_eq!(counts, [10, 110, 50]);
    }

    #[test]
    fn the_summary_counts_success_per_second_and_after_settling() {
        // Second 0: 2 of 4 ok (one 429, one lost). Second 1: 3 of 3. Second 2: 3 of 4.
        let mut records = vec![
            record(0, Outcome::Status(200), Some("n1")),
            record(250, Outcome::Status(429), None),
            record(500, Outcome::Lost, None),
            record(750, Outcome::Status(200), Some("n2")),
            record(1000, Outcome::Status(200), Some("n2")),
            record(1300, Outcome::Status(204), Some("n3")),
            record(1600, Outcome::Status(200), Some("n1")),
            record(2000, Outcome::Status(200), None),
            record(2100, Outcome::Timeout, None),
            record(2200, Outcome::Status(200), Some("n2")),
            record(2300, Outcome::Transport("reset".into()), None),
        ];
        records[1].decision = Some("rejected".into());
        records[1].reject_reason = Some("overloaded".into());
        records[3].sent = Some(ms(790));
        records[10].outcome = Outcome::Status(200);
        records[10].served_by = Some("n1".into());
        records[10].latency = Some(ms(40));
        let s = summarise(&records, Duration::from_secs(1));
        assert_eq!((s.scheduled, s.ok, s.failed, s.lost), (11, 8, 2, 1));
        assert!((s.success_rate - 8.0 / 11.0).abs() < 1e-12);
        assert_eq!(s.per_second.len(), 3);
        assert_eq!(
            s.per_second
                .iter()
                .map(|p| (p.second, p.scheduled, p.ok))
                .collect::<Vec<_>>(),
            [(0, 4, 2), (1, 3, 3), (2, 4, 3)]
        );
        assert_eq!(s.per_second[0].success_rate, 0.5);
        assert_eq!(s.settled_success_rate, Some(6.0 / 7.0));
        assert_eq!(s.settled_min_second_success, Some(0.75));
        assert_eq!(
            s.served_by,
            BTreeMap::from([
                ("n1".to_string(), 3),
                ("n2".to_string(), 3),
                ("n3".to_string(), 1),
                ("unknown".to_string(), 1),
            ])
        );
        assert_eq!(s.per_second[1].served_by["n2"], 1);
        assert_eq!(s.outcomes["200"], 7);
        assert_eq!(s.outcomes["204"], 1);
        assert_eq!(s.outcomes["429"], 1);
        assert_eq!(s.outcomes["lost"], 1);
        assert_eq!(s.outcomes["timeout"], 1);
        assert!(s.transport_errors.is_empty(), "{:?}", s.transport_errors);
        assert_eq!(s.reject_reasons["overloaded"], 1);
        assert_eq!(s.decisions["rejected"], 1);
        // Served by n2/n3 via n1 are forwarded; n1 itself and the header-less one are not.
        assert_eq!(s.ok_forwarded, 4);
        assert!((s.max_send_lag_ms - 40.0).abs() < 1e-9);
        assert_eq!(s.latency.samples, 8);
        assert!((s.latency.p50_ms - 10.0).abs() < 0.05, "{:?}", s.latency);
        assert!((s.latency.max_ms - 40.0).abs() < 0.05, "{:?}", s.latency);
        // Nearest rank: the 95th percentile of eight is the eighth, the 90th the eighth too.
        assert!((s.latency.p95_ms - 40.0).abs() < 0.05, "{:?}", s.latency);
        assert!((s.latency.p90_ms - 40.0).abs() < 0.05, "{:?}", s.latency);
        // From second 1 on: records 4, 5, 6, 7, 9 (10 ms) and 10 (40 ms).
        assert_eq!(s.settled_latency.samples, 6);
        assert!((s.settled_latency.max_ms - 40.0).abs() < 0.05);
        assert!((s.settled_latency.p95_ms - 40.0).abs() < 0.05);
        assert!((s.settled_latency.p50_ms - 10.0).abs() < 0.05);
        // Without settling, the worst second is second 0.
        let all = summarise(&records, Duration::ZERO);
        assert_eq!(all.settled_min_second_success, Some(0.5));
        assert_eq!(all.settled_success_rate, Some(8.0 / 11.0));
    }

    #[test]
    fn an_empty_load_summarises_to_zeroes_and_no_settled_figures() {
        let s = summarise(&[], Duration::from_secs(1));
        assert_eq!((s.scheduled, s.ok, s.failed, s.lost), (0, 0, 0, 0));
        assert_eq!(s.success_rate, 0.0);
        assert_eq!(s.settled_success_rate, None);
        assert_eq!(s.settled_min_second_success, None);
        assert_eq!(s.latency.samples, 0);
        let early = summarise(
            &[record(100, Outcome::Status(200), Some("a"))],
            Duration::from_secs(1),
        );
        assert_eq!(early.settled_success_rate, None);
        assert_eq!(early.settled_min_second_success, None);
        assert_eq!(early.success_rate, 1.0);
    }

    #[test]
    fn the_path_header_splits_into_node_names() {
        let mut r = record(0, Outcome::Status(200), Some("n2"));
        assert_eq!(r.path_nodes(), ["n1", "n2"]);
        r.path = Some("a, b ,c".into());
        assert_eq!(r.path_nodes(), ["a", "b", "c"]);
        r.path = None;
        assert!(r.path_nodes().is_empty());
    }

    /// A server that answers after `delay`, with data-plane headers.
    async fn slow_server(delay: Duration) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = Vec::new();
                    let mut chunk = vec![0u8; 4096];
                    loop {
                        // One request: headers up to the blank line, then content-length bytes.
                        let request_len = loop {
                            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                                let body: usize = head
                                    .lines()
                                    .find_map(|l| l.strip_prefix("content-length:"))
                                    .and_then(|v| v.trim().parse().ok())
                                    .unwrap_or(0);
                                if buf.len() >= end + 4 + body {
                                    break end + 4 + body;
                                }
                            }
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        buf.drain(..request_len);
                        tokio::time::sleep(delay).await;
                        let resp = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\
                                    x-fogmarket-served-by: n9\r\n\
                                    x-fogmarket-path: n1,n9\r\n\
                                    x-fogmarket-decision: forwarded\r\n\r\nok";
                        if sock.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        format!("http://{addr}/function/f")
    }

    #[tokio::test]
    async fn slow_answers_never_delay_the_next_send() {
        // 20 req/s for 1 s against a server taking 300 ms: a closed loop of one would manage 4.
        let url = slow_server(ms(300)).await;
        let client = load_client().unwrap();
        let result = run(
            &client,
            vec![Stream::post(
                "n1",
                url,
                "x",
                Schedule::Constant {
                    rate: 20.0,
                    duration: ms(1000),
                },
            )],
            &LoadOptions::default(),
        )
        .await
        .unwrap();
        let s = result.summary(Duration::ZERO);
        assert_eq!(s.scheduled, 20);
        assert_eq!(s.ok, 20, "{:?}", s.outcomes);
        assert!(s.max_send_lag_ms < 100.0, "sends lagged: {s:?}");
        assert_eq!(s.served_by["n9"], 20);
        assert_eq!(s.ok_forwarded, 20);
        assert_eq!(s.decisions["forwarded"], 20);
        assert!(s.latency.p50_ms >= 290.0, "{:?}", s.latency);
        // Everything was sent within the first second, long before the last answers.
        let last_sent = result.records.iter().filter_map(|r| r.sent).max().unwrap();
        assert!(last_sent < ms(1000), "{last_sent:?}");
        assert!(result.elapsed >= ms(1200), "{:?}", result.elapsed);
    }

    #[tokio::test]
    async fn sends_beyond_the_in_flight_bound_are_counted_as_lost() {
        let url = slow_server(ms(500)).await;
        let client = load_client().unwrap();
        let options = LoadOptions {
            max_in_flight: 3,
            ..LoadOptions::default()
        };
        let result = run(
            &client,
            vec![Stream::post(
                "n1",
                url,
                "x",
                Schedule::PerSecond(vec![10.0]),
            )],
            &options,
        )
        .await
        .unwrap();
        let s = result.summary(Duration::ZERO);
        assert_eq!(s.scheduled, 10);
        // 3 in flight at t=0..500 ms; at 500 ms and after, answers free slots again.
        assert!(s.lost >= 4, "{s:?}");
        assert_eq!(s.ok + s.lost, 10, "{s:?}");
        assert_eq!(s.outcomes["lost"], s.lost);
    }

    #[tokio::test]
    async fn a_refused_connection_and_a_timeout_are_recorded_as_failures() {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let slow = slow_server(ms(2000)).await;
        let client = load_client().unwrap();
        let options = LoadOptions {
            request_timeout: ms(200),
            ..LoadOptions::default()
        };
        let once = Schedule::PerSecond(vec![1.0]);
        let result = run(
            &client,
            vec![
                Stream::post("closed", format!("http://{closed}/"), "", once.clone()),
                Stream::post("slow", slow, "", once),
            ],
            &options,
        )
        .await
        .unwrap();
        assert_eq!(result.streams, ["closed", "slow"]);
        let closed = &result.of_stream(0)[0];
        assert!(
            matches!(closed.outcome, Outcome::Transport(_)),
            "{closed:?}"
        );
        let slow = &result.of_stream(1)[0];
        assert_eq!(slow.outcome, Outcome::Timeout);
        let s = result.summary(Duration::ZERO);
        assert_eq!((s.ok, s.failed, s.lost), (0, 2, 0));
        assert_eq!(s.transport_errors.values().sum::<u64>(), 1, "{s:?}");
    }
}
