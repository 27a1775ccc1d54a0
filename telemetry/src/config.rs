//! The one setting: where spans go (`OTEL_EXPORTER_OTLP_ENDPOINT`), and how
//! (`OTEL_EXPORTER_OTLP_PROTOCOL`). Both are the standard OpenTelemetry variables.

use std::fmt;

/// Base URL of the OTLP receiver; unset or empty turns the export off.
pub const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// `http/protobuf` (default) or `grpc` (the `grpc` feature, on in every Fogmarket binary).
pub const PROTOCOL_VAR: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `http/protobuf`: `POST {endpoint}/v1/traces` (Jaeger and collectors listen on 4318).
    HttpProtobuf,
    /// `grpc`: the OTLP gRPC service at `{endpoint}` (port 4317); needs the `grpc` feature
    /// (which the workspace dependency on `telemetry` turns on).
    Grpc,
}

impl Protocol {
    /// The value of [`PROTOCOL_VAR`] naming it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::Grpc => "grpc",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where and how spans are exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    endpoint: String,
    protocol: Protocol,
}

impl Export {
    /// The base URL, without a trailing `/`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The URL spans are sent to: `{endpoint}/v1/traces` over HTTP (as the specification says
    /// for the signal-generic variable), the endpoint itself over gRPC.
    pub fn traces_url(&self) -> String {
        match self.protocol {
            Protocol::HttpProtobuf => format!("{}/v1/traces", self.endpoint),
            Protocol::Grpc => self.endpoint.clone(),
        }
    }
}

/// Telemetry settings; [`Settings::default`] exports nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `None`: spans are not exported (and the trace spans are not even created).
    pub export: Option<Export>,
}

/// A variable with a value this build cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {var}={value:?}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub var: &'static str,
    pub value: String,
    pub reason: String,
}

impl Settings {
    /// Reads [`ENDPOINT_VAR`] and [`PROTOCOL_VAR`] from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Reads the variables through `lookup` (empty values count as unset).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let protocol = match get(PROTOCOL_VAR) {
            None => Protocol::HttpProtobuf,
            Some(p) => parse_protocol(&p)?,
        };
        let Some(endpoint) = get(ENDPOINT_VAR) else {
            return Ok(Settings { export: None });
        };
        let endpoint = parse_endpoint(&endpoint, protocol)?;
        Ok(Settings {
            export: Some(Export { endpoint, protocol }),
        })
    }
}

fn parse_protocol(value: &str) -> Result<Protocol, ConfigError> {
    let err = |reason: &str| ConfigError {
        var: PROTOCOL_VAR,
        value: value.to_string(),
        reason: reason.to_string(),
    };
    match value.to_ascii_lowercase().as_str() {
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        "grpc" if cfg!(feature = "grpc") => Ok(Protocol::Grpc),
        "grpc" => Err(err(
            "this build has no gRPC exporter (the `grpc` feature of the `telemetry` crate); \
             use http/protobuf",
        )),
        "http/json" => Err(err(
            "http/json is not supported; use http/protobuf (the default)",
        )),
        _ => Err(err("expected http/protobuf (the default) or grpc")),
    }
}

/// Checks that `value` is an `http://host[:port][/path]` URL; returns it without a trailing `/`.
fn parse_endpoint(value: &str, protocol: Protocol) -> Result<String, ConfigError> {
    let err = |reason: String| ConfigError {
        var: ENDPOINT_VAR,
        value: value.to_string(),
        reason,
    };
    let example = match protocol {
        Protocol::HttpProtobuf => "http://localhost:4318",
        Protocol::Grpc => "http://localhost:4317",
    };
    let uri: http::Uri = value
        .parse()
        .map_err(|e| err(format!("not a URL ({e}); expected e.g. {example}")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(err(format!(
                "https needs TLS, which this build does not include; send to a local collector \
                 or Jaeger over http, e.g. {example}"
            )));
        }
        Some(other) => {
            return Err(err(format!(
                "unsupported scheme `{other}`; expected e.g. {example}"
            )));
        }
        None => return Err(err(format!("no scheme; expected e.g. {example}"))),
    }
    match uri.authority() {
        Some(a) if !a.host().is_empty() => {}
        _ => return Err(err(format!("no host; expected e.g. {example}"))),
    }
    if uri.query().is_some() {
        return Err(err("must not have a query string".to_string()));
    }
    if protocol == Protocol::Grpc && !matches!(uri.path(), "" | "/") {
        return Err(err(format!(
            "a gRPC endpoint has no path; expected e.g. {example}"
        )));
    }
    Ok(value.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn export_is_off_unless_the_endpoint_is_set() {
        assert_eq!(Settings::from_lookup(|_| None), Ok(Settings::default()));
        assert_eq!(Settings::default().export, None);
        let blank = Settings::from_lookup(lookup(&[(ENDPOINT_VAR, "  ")]));
        assert_eq!(blank, Ok(Settings::default()));
        let protocol_only = Settings::from_lookup(lookup(&[(PROTOCOL_VAR, "http/protobuf")]));
        assert_eq!(protocol_only, Ok(Settings::default()));
    }

    #[test]
    fn http_protobuf_is_the_default_and_traces_go_to_v1_traces() {
        let s = Settings::from_lookup(lookup(&[(ENDPOINT_VAR, "http://localhost:4318/")]))
            .expect("valid");
        let export = s.export.expect("enabled");
        assert_eq!(export.protocol(), Protocol::HttpProtobuf);
        assert_eq!(export.endpoint(), "http://localhost:4318");
        assert_eq!(export.traces_url(), "http://localhost:4318/v1/traces");

        let s = Settings::from_lookup(lookup(&[
            (ENDPOINT_VAR, "http://collector:4318/otlp"),
            (PROTOCOL_VAR, "HTTP/Protobuf"),
        ]))
        .expect("valid");
        assert_eq!(
            s.export.expect("enabled").traces_url(),
            "http://collector:4318/otlp/v1/traces"
        );
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for bad in [
            "localhost:4318",
            "not a url",
            "https://collector:4318",
            "ftp://collector",
            "http://collector:4318/?x=1",
        ] {
            let err = Settings::from_lookup(lookup(&[(ENDPOINT_VAR, bad)])).unwrap_err();
            assert_eq!(err.var, ENDPOINT_VAR, "{bad}: {err}");
            assert!(err.to_string().contains(ENDPOINT_VAR), "{err}");
        }
        for bad in ["http", "http/json", "zipkin"] {
            let err = Settings::from_lookup(lookup(&[
                (ENDPOINT_VAR, "http://localhost:4318"),
                (PROTOCOL_VAR, bad),
            ]))
            .unwrap_err();
            assert_eq!(err.var, PROTOCOL_VAR, "{bad}: {err}");
            assert!(err.to_string().contains(PROTOCOL_VAR), "{err}");
        }
    }

    #[test]
    fn grpc_needs_the_feature() {
        let s = Settings::from_lookup(lookup(&[
            (ENDPOINT_VAR, "http://localhost:4317"),
            (PROTOCOL_VAR, "grpc"),
        ]));
        if cfg!(feature = "grpc") {
            let export = s.expect("valid").export.expect("enabled");
            assert_eq!(export.traces_url(), "http://localhost:4317");
        } else {
            let err = s.unwrap_err();
            assert_eq!(err.var, PROTOCOL_VAR);
            assert!(err.reason.contains("grpc"), "{err}");
        }
    }
}
