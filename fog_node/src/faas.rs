//! OpenFaaS gateway client: deploy (PUT, falling back to POST like faas-cli), status, list,
//! scale, delete (DELETE with a JSON body), invoke. Basic auth, timeouts, bounded retries on
//! transport errors and 5xx for idempotent calls, and tolerant of the zero fields the real
//! gateway omits. The same client talks to a real OpenFaaS or to the embedded gateway, with
//! the same wire types ([`faas_gateway::api`]).

use faas_gateway::api::{DeleteFunctionRequest, ScaleServiceRequest};
use reqwest::{Client, Method, StatusCode};
use std::time::Duration;
use telemetry::reqwest::RequestTracing;
use tracing::Instrument;

pub use faas_gateway::api::{FunctionDeployment, FunctionResources, FunctionStatus};

#[derive(Debug, thiserror::Error)]
pub enum FaasError {
    #[error("OpenFaaS gateway {url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("OpenFaaS gateway answered {status} to {method} {url}: {body}")]
    Status {
        method: String,
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("OpenFaaS gateway {url}: unreadable answer: {reason}")]
    Decode { url: String, reason: String },
    /// The gateway answered more than the client's cap; the rest was not read.
    #[error("OpenFaaS gateway {url}: answer larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
}

impl FaasError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            FaasError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
    fn retryable(&self) -> bool {
        match self {
            FaasError::Transport { .. } => true,
            FaasError::Status { status, .. } => status.is_server_error(),
            FaasError::Decode { .. } | FaasError::TooLarge { .. } => false,
        }
    }
}

/// `/system/functions`, as path and route.
const FUNCTIONS: (&str, &str) = ("/system/functions", "/system/functions");

/// Default cap on a gateway's answer: the embedded gateway's own cap on a function's answer.
pub const DEFAULT_MAX_ANSWER: usize = faas_gateway::DEFAULT_MAX_ANSWER_BYTES;

/// Client of one OpenFaaS gateway.
#[derive(Clone)]
pub struct OpenFaasClient {
    http: Client,
    base: String,
    auth: Option<(String, String)>,
    timeout: Duration,
    retries: u32,
    /// Largest answer read (the `/system` API's and a function's).
    max_answer: usize,
}

/// What an invocation returned.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl OpenFaasClient {
    /// `base` is the gateway URL (`http://127.0.0.1:8080`); `auth` the Basic credentials of
    /// `/system/*`, if the gateway requires them.
    pub fn new(http: Client, base: &str, auth: Option<(String, String)>) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            auth,
            timeout: Duration::from_secs(10),
            retries: 2,
            max_answer: DEFAULT_MAX_ANSWER,
        }
    }

    /// Reads answers up to `max_answer` bytes; a bigger one is [`FaasError::TooLarge`].
    pub fn with_max_answer(mut self, max_answer: usize) -> Self {
        self.max_answer = max_answer;
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The URL that invokes `name`.
    pub fn function_url(&self, name: &str) -> String {
        format!("{}/function/{name}", self.base)
    }

    /// One attempt, in a client span named `METHOD route` (`route`: the gateway's pattern).
    async fn send_once(
        &self,
        method: &Method,
        (path, route): (&str, &'static str),
        body: Option<&[u8]>,
    ) -> Result<(StatusCode, String), FaasError> {
        let url = format!("{}{path}", self.base);
        let span = telemetry::client_span(method.as_str(), route, Some(&url));
        let result = self
            .send_traced(method, url, body, &span)
            .instrument(span.clone())
            .await;
        match &result {
            Ok((status, _)) => telemetry::record_status(&span, status.as_u16()),
            Err(FaasError::Status { status, .. }) => {
                telemetry::record_status(&span, status.as_u16())
            }
            Err(e) => telemetry::record_error(&span, e),
        }
        result
    }

    async fn send_traced(
        &self,
        method: &Method,
        url: String,
        body: Option<&[u8]>,
        span: &tracing::Span,
    ) -> Result<(StatusCode, String), FaasError> {
        let mut req = self
            .http
            .request(method.clone(), &url)
            .timeout(self.timeout)
            .with_trace_context_of(span);
        if let Some((user, password)) = &self.auth {
            req = req.basic_auth(user, Some(password));
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_vec());
        }
        let resp = req.send().await.map_err(|e| FaasError::Transport {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let status = resp.status();
        let body = self.read(resp, &url).await?;
        let text = String::from_utf8_lossy(&body).into_owned();
        if status.is_success() {
            Ok((status, text))
        } else {
            Err(FaasError::Status {
                method: method.to_string(),
                url,
                status,
                body: text.trim().chars().take(1000).collect(),
            })
        }
    }

    /// Sends with bounded retries (backoff 200 ms, 400 ms, ...) when `idempotent`.
    async fn send(
        &self,
        method: Method,
        path: (&str, &'static str),
        body: Option<&[u8]>,
        idempotent: bool,
    ) -> Result<(StatusCode, String), FaasError> {
        use backon::{ExponentialBuilder, Retryable};
        let once = || self.send_once(&method, path, body);
        if !idempotent {
            return once().await;
        }
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_factor(2.0)
            .with_max_times(self.retries as usize);
        once.retry(backoff)
            .when(FaasError::retryable)
            .notify(|e, pause| tracing::debug!(error = %e, ?pause, "retrying OpenFaaS call"))
            .await
    }

    /// Deploys or updates: `PUT` first, `POST` when the function does not exist (404), as
    /// faas-cli does.
    pub async fn deploy(&self, d: &FunctionDeployment) -> Result<(), FaasError> {
        let body = self.encode(d)?;
        match self.send(Method::PUT, FUNCTIONS, Some(&body), true).await {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => self
                .send(Method::POST, FUNCTIONS, Some(&body), false)
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        }
    }

    /// `None` when the function does not exist.
    pub async fn status(&self, name: &str) -> Result<Option<FunctionStatus>, FaasError> {
        let path = format!("/system/function/{name}");
        let path = (path.as_str(), "/system/function/{name}");
        match self.send(Method::GET, path, None, true).await {
            Ok((_, text)) => decode(&self.base, &text).map(Some),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn list(&self) -> Result<Vec<FunctionStatus>, FaasError> {
        let (_, text) = self.send(Method::GET, FUNCTIONS, None, true).await?;
        // A gateway may answer `null` for an empty list.
        let list: Option<Vec<FunctionStatus>> = decode(&self.base, &text)?;
        Ok(list.unwrap_or_default())
    }

    pub async fn scale(&self, name: &str, replicas: u64) -> Result<(), FaasError> {
        let body = self.encode(&ScaleServiceRequest {
            service_name: Some(name.to_string()),
            replicas,
            namespace: None,
        })?;
        let path = format!("/system/scale-function/{name}");
        let path = (path.as_str(), "/system/scale-function/{name}");
        self.send(Method::POST, path, Some(&body), true)
            .await
            .map(|_| ())
    }

    /// Removes a function; `Ok(false)` when it did not exist.
    pub async fn delete(&self, name: &str) -> Result<bool, FaasError> {
        let body = self.encode(&DeleteFunctionRequest {
            function_name: name.to_string(),
            namespace: None,
        })?;
        match self
            .send(Method::DELETE, FUNCTIONS, Some(&body), true)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Invokes `name` (with an optional sub-path and query, e.g. `"sub/path?x=1"`).
    pub async fn invoke(
        &self,
        name: &str,
        sub_path: &str,
        method: Method,
        body: Vec<u8>,
    ) -> Result<Invocation, FaasError> {
        let url = format!(
            "{}/{}",
            self.function_url(name),
            sub_path.trim_start_matches('/')
        );
        let span = telemetry::client_span(method.as_str(), "/function/{name}", Some(&url));
        let call = async {
            let resp = self
                .http
                .request(method, &url)
                .timeout(self.timeout)
                .with_trace_context_of(&span)
                .body(body)
                .send()
                .await
                .map_err(|e| FaasError::Transport {
                    url: url.clone(),
                    reason: e.to_string(),
                })?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = self.read(resp, &url).await?;
            Ok(Invocation {
                status,
                headers,
                body: body.to_vec(),
            })
        };
        let result = call.instrument(span.clone()).await;
        match &result {
            Ok(inv) => telemetry::record_status(&span, inv.status.as_u16()),
            Err(e) => telemetry::record_error(&span, e),
        }
        result
    }
}

impl OpenFaasClient {
    /// A request body as JSON.
    fn encode<T: serde::Serialize>(&self, body: &T) -> Result<Vec<u8>, FaasError> {
        serde_json::to_vec(body).map_err(|e| FaasError::Decode {
            url: self.base.clone(),
            reason: e.to_string(),
        })
    }

    /// Reads an answer up to the cap.
    async fn read(&self, resp: reqwest::Response, url: &str) -> Result<bytes::Bytes, FaasError> {
        signed_http::read_capped(resp, self.max_answer)
            .await
            .map_err(|e| match e {
                signed_http::ReadError::TooLarge(limit) => FaasError::TooLarge {
                    url: url.to_string(),
                    limit,
                },
                signed_http::ReadError::Transport(e) => FaasError::Transport {
                    url: url.to_string(),
                    reason: e.to_string(),
                },
            })
    }
}

fn decode<T: serde::de::DeserializeOwned>(url: &str, text: &str) -> Result<T, FaasError> {
    serde_json::from_str(text).map_err(|e| FaasError::Decode {
        url: url.to_string(),
        reason: e.to_string(),
    })
}
