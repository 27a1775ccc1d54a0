//! The global subscriber: log lines on stderr (as every binary always had) plus, when
//! [`crate::ENDPOINT_VAR`] is set, an OpenTelemetry layer exporting spans over OTLP.

use crate::config::{Protocol, Settings};
use crate::propagation::TRACE_TARGET;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::io::IsTerminal;
use std::time::Duration;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// How long dropping the [`Guard`] waits for the last spans to be sent.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// How the log output is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// Log filter when `RUST_LOG` is unset or invalid (e.g. `info,actix_server=warn`).
    pub default_log_filter: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            default_log_filter: "info".to_string(),
        }
    }
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot set up the OTLP {protocol} exporter to {endpoint}: {reason}")]
    Exporter {
        endpoint: String,
        protocol: Protocol,
        reason: String,
    },
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Keeps the exporter running; dropping it sends the spans still queued (waiting at most
/// [`SHUTDOWN_TIMEOUT`]) and stops the export. Keep it until the process exits (after the
/// server stopped, on the SIGTERM/Ctrl-C path too).
#[must_use = "dropping the guard stops the span export"]
pub struct Guard {
    provider: Option<SdkTracerProvider>,
    #[cfg(feature = "grpc")]
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("exporting", &self.is_exporting())
            .finish()
    }
}

impl Guard {
    /// Starts the span export `settings` describe, as `service_name`: a tracer provider (batch
    /// span processor over the OTLP exporter), or a disabled guard when `settings` export
    /// nothing. Installs nothing: [`init_with`] adds [`Guard::layer`] to the global
    /// subscriber; a test or an embedder can add it to a subscriber of its own. Fails when the
    /// exporter cannot be built (e.g. [`Protocol::Grpc`] without the `grpc` feature).
    pub fn new(service_name: &str, settings: &Settings) -> Result<Guard, InitError> {
        exporter_guard(service_name, settings)
    }

    /// The OpenTelemetry layer sending spans to this guard's exporter ([`layer_for`] over its
    /// provider); `None` when nothing is exported.
    pub fn layer<S>(&self) -> Option<impl Layer<S> + use<S>>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        self.provider.as_ref().map(layer_for)
    }

    /// A guard exporting nothing.
    pub fn disabled() -> Guard {
        Guard {
            provider: None,
            #[cfg(feature = "grpc")]
            runtime: None,
        }
    }

    /// Whether spans are exported.
    pub fn is_exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans queued so far (blocks until sent or timed out).
    pub fn flush(&self) {
        if let Some(p) = &self.provider
            && let Err(e) = p.force_flush()
        {
            tracing::warn!(error = %e, "flushing the trace export failed");
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
        {
            tracing::warn!(error = %e, "stopping the trace export failed; spans may be lost");
        }
        #[cfg(feature = "grpc")]
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// [`init_with`] with the default [`Options`] (`RUST_LOG`, else `info`).
pub fn init(service_name: &str) -> Result<Guard, InitError> {
    init_with(service_name, &Options::default())
}

/// Installs the global subscriber: the log output on stderr filtered by `RUST_LOG` (else
/// `options.default_log_filter`), and the OTLP export of spans as `service_name` when
/// [`crate::ENDPOINT_VAR`] is set. Fails on invalid telemetry variables (naming the
/// variable), an exporter that cannot be built, or a subscriber already installed.
pub fn init_with(service_name: &str, options: &Options) -> Result<Guard, InitError> {
    let settings = Settings::from_env()?;
    let guard = Guard::new(service_name, &settings)?;
    Registry::default()
        .with(log_layer(options))
        .with(guard.layer())
        .try_init()
        .map_err(|_| InitError::AlreadyInstalled)?;
    if let Some(export) = &settings.export {
        tracing::info!(
            endpoint = %export.traces_url(),
            protocol = %export.protocol(),
            service = service_name,
            "exporting traces over OTLP"
        );
    }
    Ok(guard)
}

/// The stderr log output: today's format, never showing the trace spans.
fn log_layer<S>(options: &Options) -> impl Layer<S> + use<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let mut filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(&options.default_log_filter));
    if let Ok(off) = format!("{TRACE_TARGET}=off").parse() {
        filter = filter.add_directive(off);
    }
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(filter)
}

/// What the OpenTelemetry layer sees: spans and events at `info` and above, except the
/// exporter's own machinery (which would trace itself).
pub(crate) fn otel_filter() -> Targets {
    Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("opentelemetry", LevelFilter::OFF)
        .with_target("h2", LevelFilter::OFF)
        .with_target("hyper", LevelFilter::OFF)
        .with_target("hyper_util", LevelFilter::OFF)
        .with_target("reqwest", LevelFilter::OFF)
        .with_target("tonic", LevelFilter::OFF)
        .with_target("tower", LevelFilter::OFF)
}

/// The OpenTelemetry layer over `provider`.
pub fn layer_for<S>(provider: &SdkTracerProvider) -> impl Layer<S> + use<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("fogmarket"))
        .with_filter(otel_filter())
}

/// The tracer provider (batch span processor over the OTLP exporter), or a disabled guard.
fn exporter_guard(service_name: &str, settings: &Settings) -> Result<Guard, InitError> {
    let Some(export) = &settings.export else {
        return Ok(Guard::disabled());
    };
    let fail = |reason: String| InitError::Exporter {
        endpoint: export.traces_url(),
        protocol: export.protocol(),
        reason,
    };
    #[cfg(feature = "grpc")]
    let mut runtime = None;
    let exporter = match export.protocol() {
        Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(export.traces_url())
            .build()
            .map_err(|e| fail(e.to_string()))?,
        #[cfg(feature = "grpc")]
        Protocol::Grpc => {
            // tonic needs a tokio runtime for its connection; the batch processor exports
            // from its own thread, so the exporter gets a small runtime of its own.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("otlp-grpc")
                .enable_all()
                .build()
                .map_err(|e| fail(format!("starting its runtime: {e}")))?;
            let exporter = {
                let _entered = rt.enter();
                opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(export.traces_url())
                    .build()
                    .map_err(|e| fail(e.to_string()))?
            };
            runtime = Some(rt);
            exporter
        }
        #[cfg(not(feature = "grpc"))]
        Protocol::Grpc => return Err(fail("this build has no gRPC exporter".to_string())),
    };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource(service_name))
        .build();
    Ok(Guard {
        provider: Some(provider),
        #[cfg(feature = "grpc")]
        runtime,
    })
}

/// `service.name` is `service_name` unless `OTEL_SERVICE_NAME` says otherwise;
/// `OTEL_RESOURCE_ATTRIBUTES` adds attributes (the standard variables).
fn resource(service_name: &str) -> Resource {
    let builder = Resource::builder();
    let named_by_env = std::env::var_os("OTEL_SERVICE_NAME").is_some_and(|v| !v.is_empty());
    if named_by_env {
        builder.build()
    } else {
        builder.with_service_name(service_name.to_string()).build()
    }
}
