//! Scenario files (TOML): the experiment, and the functions its devices call. The format is
//! documented in `iot_emulation/README.md`.
//!
//! Parsing walks the TOML tree by hand so that every error names the field's full path
//! (`function[2].arrival.rate: must be more than 0`), unknown fields are refused with the list
//! of expected ones, and SLAs are validated by `model` exactly as the marketplace will.
//! [`placement_order`] orders chained functions (`chain_after`) and refuses unknown
//! predecessors and cycles.

use crate::arrival::Arrival;
use crate::payload::{PayloadKind, PayloadSpec};
use crate::workload::{AzureExecTime, ClassChoice};
use model::sla::image_function_name;
use model::units::{Bytes as Size, Latency, parse_duration};
use model::{FieldError, Sla, SlaId};
use serde_json::{Map, Value as Json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Value;

/// Why a scenario was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("scenario is not valid TOML: {0}")]
    Syntax(String),
    #[error("scenario field {0}")]
    Field(FieldError),
}

impl From<FieldError> for ScenarioError {
    fn from(e: FieldError) -> Self {
        ScenarioError::Field(e)
    }
}

/// The default marketplace (the local federation of `just run`).
pub const DEFAULT_MARKETPLACE_URL: &str = "http://127.0.0.1:8000";
/// Longest duration `fn-spin` accepts.
pub const SPIN_MAX: Duration = Duration::from_secs(60);

/// A whole scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub experiment: Experiment,
    pub functions: Vec<FunctionSpec>,
}

/// `[experiment]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    pub name: String,
    /// How long requests are sent.
    pub duration: Duration,
    pub seed: u64,
    pub marketplace_url: String,
    /// Requests waiting for an answer at once; beyond it a due request is recorded as `dropped`.
    pub max_in_flight: usize,
    /// A request without a complete answer by then is recorded as `timeout`.
    pub request_timeout: Duration,
    /// Leave the functions placed after the run (by default they are cancelled).
    pub keep_functions: bool,
}

/// Where a function's latency requirement comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LatencyChoice {
    /// `sla.latencyMax` given explicitly; its class label is the latency itself.
    Explicit(Latency),
    /// `latency_class`: a named class or a draw.
    Class(ClassChoice),
}

/// Which node the function's devices attach to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A node name.
    Node(String),
    /// The winner of another function (by name): GIRAFF's chains.
    ChainAfter(String),
}

/// Execution time a request asks `fn-spin` for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExecTime {
    Fixed(Duration),
    Azure(AzureExecTime),
}

/// One `[[function]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    pub name: String,
    /// Catalog name or image reference (`echo`, `ghcr.io/x/echo:1`).
    pub image: String,
    /// The SLA's wire fields (GIRAFF camelCase) with defaults filled in, except `latencyMax`.
    pub sla: Map<String, Json>,
    pub latency: LatencyChoice,
    pub target: Target,
    pub payload: PayloadSpec,
    pub arrival: Arrival,
    /// Only for `spin`.
    pub exec: Option<ExecTime>,
    /// Query string appended to every request (`width=64&height=64`).
    pub query: Option<String>,
}

impl FunctionSpec {
    /// The SLA to send, with the resolved `latencyMax`.
    pub fn sla_json(&self, latency_max: Latency) -> Json {
        let mut sla = self.sla.clone();
        sla.insert("latencyMax".into(), Json::String(latency_max.to_string()));
        Json::Object(sla)
    }

    /// The function's name in the FaaS catalog (`ghcr.io/x/spin:1` -> `spin`).
    pub fn catalog_name(&self) -> &str {
        image_function_name(&self.image)
    }
}

// ---------------------------------------------------------------------------------------------
// A TOML table walked field by field.

fn err(path: &str, reason: impl std::fmt::Display) -> FieldError {
    FieldError::new(path, reason)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A table whose fields are taken one by one; [`Obj::finish`] refuses what is left.
struct Obj {
    map: toml::Table,
    path: String,
}

impl Obj {
    fn new(value: Value, path: String) -> Result<Obj, FieldError> {
        match value {
            Value::Table(map) => Ok(Obj { map, path }),
            other => Err(err(
                &path,
                format!("must be a table, found {}", other.type_str()),
            )),
        }
    }

    fn at(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn take(&mut self, key: &str) -> Option<(Value, String)> {
        self.map.remove(key).map(|v| (v, self.at(key)))
    }

    fn required(&mut self, key: &str) -> Result<(Value, String), FieldError> {
        self.take(key)
            .ok_or_else(|| err(&self.at(key), "is required"))
    }

    fn string(&mut self, key: &str) -> Result<Option<String>, FieldError> {
        self.take(key).map(|(v, p)| as_string(v, &p)).transpose()
    }

    fn f64(&mut self, key: &str) -> Result<Option<f64>, FieldError> {
        self.take(key).map(|(v, p)| as_f64(v, &p)).transpose()
    }

    fn u64(&mut self, key: &str) -> Result<Option<u64>, FieldError> {
        self.take(key)
            .map(|(v, p)| match v {
                Value::Integer(i) if i >= 0 => Ok(i as u64),
                _ => Err(err(&p, "must be a non-negative whole number")),
            })
            .transpose()
    }

    fn bool(&mut self, key: &str) -> Result<Option<bool>, FieldError> {
        self.take(key)
            .map(|(v, p)| match v {
                Value::Boolean(b) => Ok(b),
                _ => Err(err(&p, "must be true or false")),
            })
            .transpose()
    }

    fn duration(&mut self, key: &str) -> Result<Option<Duration>, FieldError> {
        self.take(key).map(|(v, p)| as_duration(v, &p)).transpose()
    }

    fn positive_rate(&mut self, key: &str, allow_zero: bool) -> Result<f64, FieldError> {
        let (v, p) = self.required(key)?;
        let rate = as_f64(v, &p)?;
        if !rate.is_finite() || rate < 0.0 || (!allow_zero && rate == 0.0) {
            let what = if allow_zero {
                "must be a finite number of requests per second, 0 or more"
            } else {
                "must be a finite number of requests per second, more than 0"
            };
            return Err(err(&p, what));
        }
        Ok(rate)
    }

    fn positive_duration(&mut self, key: &str) -> Result<Duration, FieldError> {
        let (v, p) = self.required(key)?;
        let d = as_duration(v, &p)?;
        if d.is_zero() {
            return Err(err(&p, "must be more than 0"));
        }
        Ok(d)
    }

    fn finish(self, expected: &[&str]) -> Result<(), FieldError> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(k) => Err(err(
                &join(&self.path, k),
                format!("unknown field, expected one of: {}", expected.join(", ")),
            )),
        }
    }
}

fn as_string(v: Value, path: &str) -> Result<String, FieldError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(err(
            path,
            format!("must be a string, found {}", other.type_str()),
        )),
    }
}

fn as_f64(v: Value, path: &str) -> Result<f64, FieldError> {
    match v {
        Value::Float(f) => Ok(f),
        Value::Integer(i) => Ok(i as f64),
        other => Err(err(
            path,
            format!("must be a number, found {}", other.type_str()),
        )),
    }
}

fn as_duration(v: Value, path: &str) -> Result<Duration, FieldError> {
    let s = as_string(v, path)?;
    parse_duration(&s).map_err(|e| err(path, e))
}

fn as_size(v: Value, path: &str) -> Result<Size, FieldError> {
    match v {
        Value::Integer(i) if i >= 0 => Ok(Size::new(i as u64)),
        Value::String(s) => s.parse().map_err(|e| err(path, e)),
        _ => Err(err(path, "must be a size like \"4 KB\"")),
    }
}

/// A DNS-1123 label (the function's live name in OpenFaaS).
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

// ---------------------------------------------------------------------------------------------
// The scenario

const ROOT_FIELDS: &[&str] = &["experiment", "function"];
const EXPERIMENT_FIELDS: &[&str] = &[
    "name",
    "duration",
    "seed",
    "marketplace_url",
    "max_in_flight",
    "request_timeout",
    "keep_functions",
];
const FUNCTION_FIELDS: &[&str] = &[
    "name",
    "image",
    "sla",
    "latency_class",
    "target",
    "chain_after",
    "payload",
    "arrival",
    "spin",
    "query",
];
/// The SLA fields a scenario may give (GIRAFF's wire names).
const SLA_FIELDS: &[&str] = &[
    "memory",
    "cpu",
    "latencyMax",
    "latencyKind",
    "duration",
    "replicas",
    "functionImage",
    "functionLiveName",
    "dataFlow",
    "envVars",
    "envProcess",
    "inputMaxSize",
    "maxPrice",
    "nodes",
];

/// Defaults of an SLA's resources when the scenario does not give them.
pub const DEFAULT_MEMORY: &str = "64 MB";
pub const DEFAULT_CPU: &str = "100 millicpu";
/// The SLA lasts the experiment plus this margin (placing takes time; functions are cancelled
/// at the end of the run unless `keep_functions`).
pub const SLA_DURATION_MARGIN: Duration = Duration::from_secs(120);

impl Scenario {
    /// Reads and validates a scenario file; trace files are relative to its directory and the
    /// experiment's name defaults to the file's stem.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scenario".into());
        Scenario::parse(&text, dir, &stem)
    }

    /// Parses a scenario's text; `base_dir` resolves trace files, `default_name` names an
    /// experiment without `name`.
    pub fn parse(
        text: &str,
        base_dir: &Path,
        default_name: &str,
    ) -> Result<Scenario, ScenarioError> {
        let root: toml::Table =
            toml::from_str(text).map_err(|e| ScenarioError::Syntax(e.to_string()))?;
        let mut root = Obj {
            map: root,
            path: String::new(),
        };
        let (exp, exp_path) = root.required("experiment")?;
        let experiment = parse_experiment(Obj::new(exp, exp_path)?, default_name)?;
        let (functions, fpath) = root.required("function")?;
        let Value::Array(functions) = functions else {
            return Err(err(&fpath, "must be an array of tables ([[function]])").into());
        };
        if functions.is_empty() {
            return Err(err(&fpath, "needs at least one function").into());
        }
        root.finish(ROOT_FIELDS)?;
        let mut parsed: Vec<FunctionSpec> = Vec::with_capacity(functions.len());
        for (i, f) in functions.into_iter().enumerate() {
            let path = format!("function[{i}]");
            let spec = parse_function(Obj::new(f, path.clone())?, &experiment, base_dir)?;
            if parsed.iter().any(|p| p.name == spec.name) {
                return Err(err(
                    &format!("{path}.name"),
                    format!("`{}` is used by another function", spec.name),
                )
                .into());
            }
            parsed.push(spec);
        }
        placement_order(&parsed)?;
        Ok(Scenario {
            experiment,
            functions: parsed,
        })
    }

    /// Index of a function by name.
    pub fn function_index(&self, name: &str) -> Option<usize> {
        self.functions.iter().position(|f| f.name == name)
    }
}

fn parse_experiment(mut o: Obj, default_name: &str) -> Result<Experiment, FieldError> {
    let name = o
        .string("name")?
        .unwrap_or_else(|| default_name.to_string());
    let duration = o.positive_duration("duration")?;
    let seed = o.u64("seed")?.unwrap_or(1);
    let marketplace_url = o
        .string("marketplace_url")?
        .unwrap_or_else(|| DEFAULT_MARKETPLACE_URL.to_string())
        .trim_end_matches('/')
        .to_string();
    if !(marketplace_url.starts_with("http://") || marketplace_url.starts_with("https://")) {
        return Err(err(
            &o.at("marketplace_url"),
            "must be an http:// or https:// URL",
        ));
    }
    let max_in_flight = match o.u64("max_in_flight")? {
        None => 1024,
        Some(0) => return Err(err(&o.at("max_in_flight"), "must be at least 1")),
        Some(n) => n as usize,
    };
    let request_timeout = o
        .duration("request_timeout")?
        .unwrap_or(Duration::from_secs(30));
    if request_timeout.is_zero() {
        return Err(err(&o.at("request_timeout"), "must be more than 0"));
    }
    let keep_functions = o.bool("keep_functions")?.unwrap_or(false);
    o.finish(EXPERIMENT_FIELDS)?;
    Ok(Experiment {
        name,
        duration,
        seed,
        marketplace_url,
        max_in_flight,
        request_timeout,
        keep_functions,
    })
}

fn parse_function(
    mut o: Obj,
    experiment: &Experiment,
    base_dir: &Path,
) -> Result<FunctionSpec, FieldError> {
    let (v, p) = o.required("name")?;
    let name = as_string(v, &p)?;
    if !is_dns_label(&name) {
        return Err(err(
            &p,
            "must be 1-63 lowercase letters, digits or '-', not starting or ending with '-' (it is the function's live name)",
        ));
    }
    let (v, p) = o.required("image")?;
    let image = as_string(v, &p)?;
    if image.trim().is_empty() {
        return Err(err(&p, "must not be empty"));
    }

    let target = match (o.string("target")?, o.string("chain_after")?) {
        (Some(t), None) if !t.trim().is_empty() => Target::Node(t),
        (None, Some(c)) if !c.trim().is_empty() => Target::ChainAfter(c),
        (Some(_), Some(_)) => {
            return Err(err(
                &o.at("chain_after"),
                "give either `target` or `chain_after`, not both",
            ));
        }
        (None, None) => {
            return Err(err(
                &o.at("target"),
                "is required (or `chain_after` = another function's name)",
            ));
        }
        (Some(_), None) => return Err(err(&o.at("target"), "must not be empty")),
        (None, Some(_)) => return Err(err(&o.at("chain_after"), "must not be empty")),
    };

    let payload = match o.take("payload") {
        None => PayloadSpec::PING,
        Some((v, p)) => parse_payload(Obj::new(v, p)?)?,
    };

    let (v, p) = o.required("arrival")?;
    let arrival = parse_arrival(Obj::new(v, p)?, &name, base_dir)?;

    let class = match o.take("latency_class") {
        None => None,
        Some((v, p)) => {
            let s = as_string(v, &p)?;
            Some(ClassChoice::parse(&s).ok_or_else(|| {
                err(
                    &p,
                    format!("unknown class `{s}`, expected {}", ClassChoice::expected()),
                )
            })?)
        }
    };

    let mut sla = match o.take("sla") {
        None => Map::new(),
        Some((v, p)) => {
            let Value::Table(t) = v else {
                return Err(err(&p, "must be a table of GIRAFF SLA fields"));
            };
            if let Some(k) = t.keys().find(|k| !SLA_FIELDS.contains(&k.as_str())) {
                return Err(err(
                    &join(&p, k),
                    format!(
                        "unknown SLA field, expected one of: {}",
                        SLA_FIELDS.join(", ")
                    ),
                ));
            }
            if let Some(kind) = t.get("latencyKind")
                && kind.as_str().and_then(model::LatencyKind::parse).is_none()
            {
                return Err(err(
                    &join(&p, "latencyKind"),
                    "must be \"oneWay\" (the default) or \"roundTrip\"",
                ));
            }
            match serde_json::to_value(&t) {
                Ok(Json::Object(m)) => m,
                _ => return Err(err(&p, "cannot be converted to JSON")),
            }
        }
    };
    let sla_path = o.at("sla");
    let latency = match (class, sla.remove("latencyMax")) {
        (Some(_), Some(_)) => {
            return Err(err(
                &o.at("latency_class"),
                "give either `latency_class` or `sla.latencyMax`, not both",
            ));
        }
        (Some(c), None) => LatencyChoice::Class(c),
        (None, Some(v)) => {
            let lat_path = join(&sla_path, "latencyMax");
            let l: Latency = match &v {
                Json::String(s) => s.parse().map_err(|e| err(&lat_path, e))?,
                _ => return Err(err(&lat_path, "must be a latency like \"50 ms\"")),
            };
            LatencyChoice::Explicit(l)
        }
        (None, None) => {
            return Err(err(
                &o.at("latency_class"),
                format!(
                    "is required unless sla.latencyMax is given: {}",
                    ClassChoice::expected()
                ),
            ));
        }
    };
    if sla.contains_key("functionImage") {
        return Err(err(
            &join(&sla_path, "functionImage"),
            "is set from the function's `image`; remove it",
        ));
    }
    sla.insert("functionImage".into(), Json::String(image.clone()));
    sla.entry("functionLiveName")
        .or_insert_with(|| Json::String(name.clone()));
    sla.entry("memory")
        .or_insert_with(|| Json::String(DEFAULT_MEMORY.into()));
    sla.entry("cpu")
        .or_insert_with(|| Json::String(DEFAULT_CPU.into()));
    sla.entry("duration").or_insert_with(|| {
        Json::String(model::units::format_duration(
            experiment.duration + SLA_DURATION_MARGIN,
        ))
    });
    sla.entry("inputMaxSize")
        .or_insert_with(|| Json::String(payload.approximate_size().to_string()));
    // Validate now, as the marketplace will (with any latency: the class is drawn later).
    let mut probe = sla.clone();
    probe.insert("latencyMax".into(), Json::String("1 s".into()));
    Sla::from_json(&Json::Object(probe), SlaId::new(), &sla_path)?;

    let catalog = image_function_name(&image).to_string();
    let exec = match o.take("spin") {
        None if catalog == "spin" => {
            return Err(err(
                &o.at("spin"),
                "the spin function needs a duration: spin = { azure = true, cap = \"1 s\" } or spin = { ms = 50 }",
            ));
        }
        None => None,
        Some((_, p)) if catalog != "spin" => {
            return Err(err(
                &p,
                format!("only the `spin` function takes a duration (image is `{image}`)"),
            ));
        }
        Some((v, p)) => Some(parse_spin(Obj::new(v, p)?)?),
    };

    let query = o
        .string("query")?
        .map(|q| q.trim_start_matches('?').to_string());
    o.finish(FUNCTION_FIELDS)?;
    Ok(FunctionSpec {
        name,
        image,
        sla,
        latency,
        target,
        payload,
        arrival,
        exec,
        query,
    })
}

fn parse_payload(mut o: Obj) -> Result<PayloadSpec, FieldError> {
    let kind = match o.string("kind")? {
        None => PayloadKind::Ping,
        Some(k) => PayloadKind::parse(&k).ok_or_else(|| {
            err(
                &o.at("kind"),
                format!("unknown kind `{k}`, expected ping, text, image or binary"),
            )
        })?,
    };
    let size = match o.take("size") {
        None => None,
        Some((_, p)) if kind == PayloadKind::Ping => {
            return Err(err(
                &p,
                "a ping payload has no size (it is GIRAFF's small JSON)",
            ));
        }
        Some((v, p)) => {
            let s = as_size(v, &p)?;
            if s == Size::ZERO || s.as_u64() > 8_000_000 {
                return Err(err(&p, "must be more than 0 and at most 8 MB"));
            }
            Some(s)
        }
    };
    let size = match (kind, size) {
        (PayloadKind::Ping, _) => None,
        (PayloadKind::Image, None) => Some(Size::new(16_000)),
        (_, None) => Some(Size::new(1_000)),
        (_, s) => s,
    };
    o.finish(&["kind", "size"])?;
    Ok(PayloadSpec { kind, size })
}

fn parse_spin(mut o: Obj) -> Result<ExecTime, FieldError> {
    let azure = o.bool("azure")?.unwrap_or(false);
    let cap_path = o.at("cap");
    let cap = o.duration("cap")?;
    let ms = o.u64("ms")?;
    let ms_path = o.at("ms");
    o.finish(&["azure", "cap", "ms"])?;
    let max_ms = SPIN_MAX.as_millis() as u64;
    match (azure, ms) {
        (true, Some(_)) => Err(err(
            &ms_path,
            "give either `azure = true` or `ms`, not both",
        )),
        (true, None) => {
            let cap = cap.unwrap_or(Duration::from_secs(1));
            if cap.is_zero() || cap > SPIN_MAX {
                return Err(err(
                    &cap_path,
                    "must be more than 0 and at most 60 s (fn-spin's limit)",
                ));
            }
            Ok(ExecTime::Azure(AzureExecTime { cap }))
        }
        (false, Some(ms)) if ms <= max_ms => {
            if cap.is_some() {
                return Err(err(&cap_path, "only applies with `azure = true`"));
            }
            Ok(ExecTime::Fixed(Duration::from_millis(ms)))
        }
        (false, Some(_)) => Err(err(&ms_path, "must be at most 60000 (fn-spin's limit)")),
        (false, None) => Err(err(&ms_path, "is required unless `azure = true`")),
    }
}

fn parse_arrival(mut o: Obj, function: &str, base_dir: &Path) -> Result<Arrival, FieldError> {
    let (v, p) = o.required("process")?;
    let process = as_string(v, &p)?;
    let arrival = match process.as_str() {
        "poisson" => {
            let rate = o.positive_rate("rate", false)?;
            o.finish(&["process", "rate"])?;
            Arrival::Poisson { rate }
        }
        "constant" => {
            let rate = o.positive_rate("rate", false)?;
            o.finish(&["process", "rate"])?;
            Arrival::Constant { rate }
        }
        "diurnal" => {
            let mean = o.positive_rate("mean", false)?;
            let amplitude = o.positive_rate("amplitude", true)?;
            if amplitude > mean {
                return Err(err(
                    &o.at("amplitude"),
                    format!("must be at most the mean ({mean}) so the rate never goes negative"),
                ));
            }
            let period = o.positive_duration("period")?;
            let phase = o.duration("phase")?.unwrap_or(Duration::ZERO);
            o.finish(&["process", "mean", "amplitude", "period", "phase"])?;
            Arrival::Diurnal {
                mean,
                amplitude,
                period,
                phase,
            }
        }
        "bursts" => {
            let rate = o.positive_rate("rate", true)?;
            let burst_rate = o.positive_rate("burst_rate", false)?;
            let every = o.positive_duration("every")?;
            let length = o.positive_duration("length")?;
            if length > every {
                return Err(err(&o.at("length"), "must be at most `every`"));
            }
            let start = o.duration("start")?.unwrap_or(Duration::ZERO);
            o.finish(&["process", "rate", "burst_rate", "every", "length", "start"])?;
            Arrival::Bursts {
                rate,
                burst_rate,
                every,
                length,
                start,
            }
        }
        "trace" => {
            let (v, fp) = o.required("file")?;
            let file = as_string(v, &fp)?;
            let name = o
                .string("function")?
                .unwrap_or_else(|| function.to_string());
            let speed = o.f64("speed")?.unwrap_or(1.0);
            if !speed.is_finite() || speed <= 0.0 {
                return Err(err(&o.at("speed"), "must be more than 0"));
            }
            o.finish(&["process", "file", "function", "speed"])?;
            let path = resolve(base_dir, &file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| err(&fp, format!("cannot read {}: {e}", path.display())))?;
            let rows =
                parse_trace(&text).map_err(|e| err(&fp, format!("{}: {e}", path.display())))?;
            Arrival::Trace {
                offsets: trace_offsets(&rows, &name, speed),
            }
        }
        other => {
            return Err(err(
                &p,
                format!(
                    "unknown process `{other}`, expected poisson, constant, diurnal, bursts or trace"
                ),
            ));
        }
    };
    Ok(arrival)
}

/// The order in which functions are placed: file order, except that a chained function comes
/// right after the function it follows (depth first). Errors name `function[i].chain_after`
/// for an unknown function or a cycle.
pub fn placement_order(functions: &[FunctionSpec]) -> Result<Vec<usize>, FieldError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Visiting,
        Done,
    }
    fn visit(
        i: usize,
        functions: &[FunctionSpec],
        marks: &mut [Mark],
        order: &mut Vec<usize>,
    ) -> Result<(), FieldError> {
        match marks[i] {
            Mark::Done => return Ok(()),
            Mark::Visiting => {
                return Err(FieldError::new(
                    format!("function[{i}].chain_after"),
                    format!("`{}` is part of a chain cycle", functions[i].name),
                ));
            }
            Mark::New => {}
        }
        marks[i] = Mark::Visiting;
        if let Target::ChainAfter(prev) = &functions[i].target {
            let j = functions
                .iter()
                .position(|f| &f.name == prev)
                .ok_or_else(|| {
                    FieldError::new(
                        format!("function[{i}].chain_after"),
                        format!("no function is named `{prev}`"),
                    )
                })?;
            visit(j, functions, marks, order)?;
        }
        marks[i] = Mark::Done;
        order.push(i);
        Ok(())
    }
    let mut marks = vec![Mark::New; functions.len()];
    let mut order = Vec::with_capacity(functions.len());
    for i in 0..functions.len() {
        visit(i, functions, &mut marks, &mut order)?;
    }
    Ok(order)
}

fn resolve(base: &Path, file: &str) -> PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Rows of a trace file: `timestamp_ms,function`, one per request, with or without a header.
pub fn parse_trace(text: &str) -> Result<Vec<(f64, String)>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("line {}: {e}", i + 1))?;
        if record.len() != 2 {
            return Err(format!(
                "line {}: expected 2 columns `timestamp_ms,function`, found {}",
                i + 1,
                record.len()
            ));
        }
        let ts = match record[0].parse::<f64>() {
            Ok(ts) if ts.is_finite() && ts >= 0.0 => ts,
            _ if i == 0 => continue, // a header
            _ => {
                return Err(format!(
                    "line {}: `{}` is not a timestamp in ms",
                    i + 1,
                    &record[0]
                ));
            }
        };
        rows.push((ts, record[1].to_string()));
    }
    if rows.is_empty() {
        return Err("the trace has no rows".into());
    }
    Ok(rows)
}

/// The offsets of `function`'s requests: timestamps relative to the first timestamp of the
/// whole trace (so epoch milliseconds work and functions keep their relative timing), divided
/// by `speed`, sorted stably (rows with the same time keep the file's order).
pub fn trace_offsets(rows: &[(f64, String)], function: &str, speed: f64) -> Vec<Duration> {
    let origin = rows.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
    let mut offsets: Vec<Duration> = rows
        .iter()
        .filter(|r| r.1 == function)
        .map(|r| Duration::from_secs_f64((r.0 - origin) / 1000.0 / speed))
        .collect();
    offsets.sort();
    offsets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{AZURE_CLASSES, GIRAFF_CLASSES};

    const BASE: &str = r#"
[experiment]
name = "t"
duration = "10 s"
seed = 7

[[function]]
name = "ping"
image = "echo"
latency_class = "normal"
target = "edge-1"
arrival = { process = "poisson", rate = 5.0 }
"#;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(text, Path::new("."), "default")
    }

    fn field_error(text: &str) -> FieldError {
        match parse(text) {
            Err(ScenarioError::Field(e)) => e,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn a_minimal_scenario_gets_its_defaults() {
        let s = parse(BASE).unwrap();
        assert_eq!(s.experiment.name, "t");
        assert_eq!(s.experiment.duration, Duration::from_secs(10));
        assert_eq!(s.experiment.seed, 7);
        assert_eq!(s.experiment.marketplace_url, DEFAULT_MARKETPLACE_URL);
        assert!(!s.experiment.keep_functions);
        let f = &s.functions[0];
        assert_eq!(f.target, Target::Node("edge-1".into()));
        assert_eq!(f.payload, PayloadSpec::PING);
        assert_eq!(f.arrival, Arrival::Poisson { rate: 5.0 });
        assert_eq!(
            f.latency,
            LatencyChoice::Class(ClassChoice::Fixed(AZURE_CLASSES[1]))
        );
        assert_eq!(f.sla["functionImage"], "echo");
        assert_eq!(f.sla["functionLiveName"], "ping");
        assert_eq!(f.sla["memory"], DEFAULT_MEMORY);
        assert_eq!(f.sla["duration"], "130 s");
        let sla = f.sla_json(Latency::from_millis(150));
        assert_eq!(sla["latencyMax"], "150 ms");
    }

    #[test]
    fn a_full_scenario_parses_every_payload_arrival_and_spin_form() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("trace.csv"),
            "timestamp_ms,function\n1000,replay\n1500,other\n1250,replay\n",
        )
        .unwrap();
        let text = r#"
[experiment]
duration = "1 min"
marketplace_url = "http://10.0.0.1:8000/"
max_in_flight = 64
request_timeout = "5 s"
keep_functions = true

[[function]]
name = "a"
image = "image-resize"
sla = { latencyMax = "50 ms", memory = "128 MB", cpu = "200 m" }
target = "edge-1"
payload = { kind = "image", size = "8 KB" }
arrival = { process = "diurnal", mean = 4.0, amplitude = 2.0, period = "30 s" }
query = "?width=32&height=32"

[[function]]
name = "b"
image = "spin"
latency_class = "azure"
chain_after = "a"
payload = { kind = "binary", size = 512 }
arrival = { process = "bursts", rate = 0.5, burst_rate = 20.0, every = "20 s", length = "2 s" }
spin = { azure = true, cap = "2 s" }

[[function]]
name = "replay"
image = "ghcr.io/fogmarket/spin:latest"
latency_class = "giraff"
target = "edge-2"
payload = { kind = "text", size = "300 B" }
arrival = { process = "trace", file = "trace.csv", speed = 2.0 }
spin = { ms = 25 }

[[function]]
name = "c"
image = "figlet"
latency_class = "giraff_super_no"
target = "edge-2"
payload = { kind = "text" }
arrival = { process = "constant", rate = 2 }
"#;
        let s = Scenario::parse(text, dir.path(), "file-stem").unwrap();
        assert_eq!(s.experiment.name, "file-stem");
        assert_eq!(s.experiment.marketplace_url, "http://10.0.0.1:8000");
        assert_eq!(s.experiment.max_in_flight, 64);
        assert!(s.experiment.keep_functions);
        let [a, b, replay, c] = &s.functions[..] else {
            panic!("four functions")
        };
        assert_eq!(a.latency, LatencyChoice::Explicit(Latency::from_millis(50)));
        assert_eq!(a.sla["memory"], "128 MB");
        assert_eq!(a.sla["inputMaxSize"], "8 KB");
        assert!(!a.sla.contains_key("latencyMax"));
        assert_eq!(a.query.as_deref(), Some("width=32&height=32"));
        assert_eq!(b.target, Target::ChainAfter("a".into()));
        assert_eq!(b.latency, LatencyChoice::Class(ClassChoice::DrawAzure));
        assert_eq!(
            b.exec,
            Some(ExecTime::Azure(AzureExecTime {
                cap: Duration::from_secs(2)
            }))
        );
        assert_eq!(b.payload.size, Some(Size::new(512)));
        assert_eq!(replay.catalog_name(), "spin");
        assert_eq!(
            replay.exec,
            Some(ExecTime::Fixed(Duration::from_millis(25)))
        );
        // Relative to the first timestamp of the file (1000 ms), at double speed.
        assert_eq!(
            replay.arrival,
            Arrival::Trace {
                offsets: vec![Duration::ZERO, Duration::from_millis(125)]
            }
        );
        assert_eq!(c.payload.size, Some(Size::new(1000)));
        assert_eq!(
            c.latency,
            LatencyChoice::Class(ClassChoice::Fixed(GIRAFF_CLASSES[4]))
        );
    }

    #[test]
    fn scenario_errors_name_the_field_path() {
        let cases: &[(&str, &str, &str)] = &[
            ("rate = 5.0", "rate = -1.0", "function[0].arrival.rate"),
            ("rate = 5.0", "rat = 5.0", "function[0].arrival.rate"),
            (
                "rate = 5.0",
                "rate = 5.0, burst = 1",
                "function[0].arrival.burst",
            ),
            (
                "process = \"poisson\"",
                "process = \"weibull\"",
                "function[0].arrival.process",
            ),
            (
                "duration = \"10 s\"",
                "duration = \"ten\"",
                "experiment.duration",
            ),
            ("seed = 7", "seed = 7\nsede = 1", "experiment.sede"),
            (
                "latency_class = \"normal\"",
                "latency_class = \"fast\"",
                "function[0].latency_class",
            ),
            (
                "latency_class = \"normal\"",
                "",
                "function[0].latency_class",
            ),
            (
                "latency_class = \"normal\"",
                "latency_class = \"normal\"\nsla = { latencyMax = \"5 ms\" }",
                "function[0].latency_class",
            ),
            (
                "latency_class = \"normal\"",
                "latency_class = \"normal\"\nsla = { memory = \"lots\" }",
                "function[0].sla.memory",
            ),
            (
                "latency_class = \"normal\"",
                "latency_class = \"normal\"\nsla = { latencyKind = \"sideways\" }",
                "function[0].sla.latencyKind",
            ),
            (
                "latency_class = \"normal\"",
                "latency_class = \"normal\"\nsla = { memroy = \"1 MB\" }",
                "function[0].sla.memroy",
            ),
            ("name = \"ping\"", "name = \"Ping!\"", "function[0].name"),
            ("target = \"edge-1\"", "", "function[0].target"),
            (
                "target = \"edge-1\"",
                "target = \"edge-1\"\nchain_after = \"x\"",
                "function[0].chain_after",
            ),
            (
                "target = \"edge-1\"",
                "chain_after = \"nobody\"",
                "function[0].chain_after",
            ),
            (
                "target = \"edge-1\"",
                "target = \"edge-1\"\npayload = { kind = \"video\" }",
                "function[0].payload.kind",
            ),
            (
                "target = \"edge-1\"",
                "target = \"edge-1\"\npayload = { kind = \"ping\", size = \"1 KB\" }",
                "function[0].payload.size",
            ),
            (
                "target = \"edge-1\"",
                "target = \"edge-1\"\nspin = { ms = 5 }",
                "function[0].spin",
            ),
            ("image = \"echo\"", "image = \"spin\"", "function[0].spin"),
        ];
        for (from, to, field) in cases {
            assert!(BASE.contains(from), "{from}");
            let e = field_error(&BASE.replacen(from, to, 1));
            assert_eq!(&e.field, field, "{from} -> {to}: {e}");
        }
        let e = field_error(&format!(
            "{BASE}\n{}",
            &BASE[BASE.find("[[function]]").unwrap()..]
        ));
        assert_eq!(e.field, "function[1].name");
        assert!(e.reason.contains("another function"), "{e}");
    }

    #[test]
    fn spin_durations_are_checked_against_fn_spin_limits() {
        let spin =
            |s: &str| BASE.replace("image = \"echo\"", &format!("image = \"spin\"\nspin = {s}"));
        assert_eq!(
            field_error(&spin("{ azure = true, cap = \"2 min\" }")).field,
            "function[0].spin.cap"
        );
        assert_eq!(
            field_error(&spin("{ ms = 60001 }")).field,
            "function[0].spin.ms"
        );
        assert_eq!(field_error(&spin("{ }")).field, "function[0].spin.ms");
        assert_eq!(
            field_error(&spin("{ azure = true, ms = 5 }")).field,
            "function[0].spin.ms"
        );
        let ok = parse(&spin("{ azure = true }")).unwrap();
        assert_eq!(
            ok.functions[0].exec,
            Some(ExecTime::Azure(AzureExecTime {
                cap: Duration::from_secs(1)
            }))
        );
    }

    #[test]
    fn a_missing_trace_file_or_a_bad_row_is_reported_against_the_file_field() {
        let dir = tempfile::tempdir().unwrap();
        let text = BASE.replace(
            "{ process = \"poisson\", rate = 5.0 }",
            "{ process = \"trace\", file = \"t.csv\" }",
        );
        let e = match Scenario::parse(&text, dir.path(), "x") {
            Err(ScenarioError::Field(e)) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(e.field, "function[0].arrival.file");
        std::fs::write(dir.path().join("t.csv"), "0,ping\nsoon,ping\n").unwrap();
        let e = match Scenario::parse(&text, dir.path(), "x") {
            Err(ScenarioError::Field(e)) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(e.field, "function[0].arrival.file");
        assert!(e.reason.contains("line 2"), "{e}");
    }

    #[test]
    fn invalid_toml_and_missing_sections_are_refused() {
        assert!(matches!(
            parse("[experiment"),
            Err(ScenarioError::Syntax(_))
        ));
        assert_eq!(
            field_error("[experiment]\nduration = \"1 s\"\n").field,
            "function"
        );
        assert_eq!(
            field_error("[[function]]\nname = \"x\"\n").field,
            "experiment"
        );
    }

    #[test]
    fn the_shipped_demo_scenario_is_valid_lasts_a_minute_and_uses_every_edge_node_and_a_chain() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/demo.toml");
        let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.experiment.name, "demo");
        assert_eq!(s.experiment.duration, Duration::from_secs(60));
        let targets: Vec<&str> = s
            .functions
            .iter()
            .filter_map(|f| match &f.target {
                Target::Node(n) => Some(n.as_str()),
                Target::ChainAfter(_) => None,
            })
            .collect();
        for edge in ["edge-factory", "edge-campus", "edge-harbour", "edge-farm"] {
            assert!(targets.contains(&edge), "{edge} has no devices");
        }
        assert!(
            s.functions
                .iter()
                .any(|f| matches!(f.target, Target::ChainAfter(_)))
        );
        // Devices wait for answers, and the report judges round trips: so do the SLAs.
        for f in &s.functions {
            assert_eq!(
                f.sla.get("latencyKind"),
                Some(&Json::from("roundTrip")),
                "{}",
                f.name
            );
        }
    }

    #[test]
    fn trace_rows_replay_in_time_order_relative_to_the_first_timestamp() {
        let rows = parse_trace(
            "# comment\n1700000000300,a\n1700000000100,b\n1700000000200,a\n1700000000200,a\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(
            trace_offsets(&rows, "a", 1.0),
            vec![
                Duration::from_millis(100),
                Duration::from_millis(100),
                Duration::from_millis(200)
            ]
        );
        assert_eq!(trace_offsets(&rows, "b", 1.0), vec![Duration::ZERO]);
        assert!(parse_trace("timestamp_ms,function\n").is_err());
        assert!(
            parse_trace("1,a,extra\n")
                .unwrap_err()
                .contains("2 columns")
        );
    }

    fn chained(functions: &[(&str, &str)]) -> Result<Vec<FunctionSpec>, FieldError> {
        let mut text = "[experiment]\nduration = \"1 s\"\n".to_string();
        for (name, target) in functions {
            let target = if let Some(prev) = target.strip_prefix("after:") {
                format!("chain_after = \"{prev}\"")
            } else {
                format!("target = \"{target}\"")
            };
            text.push_str(&format!(
                "[[function]]\nname = \"{name}\"\nimage = \"echo\"\nlatency_class = \"normal\"\n{target}\narrival = {{ process = \"constant\", rate = 1 }}\n"
            ));
        }
        match Scenario::parse(&text, Path::new("."), "t") {
            Ok(s) => Ok(s.functions),
            Err(ScenarioError::Field(e)) => Err(e),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn chained_functions_are_placed_right_after_the_function_they_follow() {
        let fs = chained(&[
            ("c", "after:b"),
            ("a", "edge-1"),
            ("b", "after:a"),
            ("d", "edge-2"),
            ("e", "after:a"),
        ])
        .unwrap();
        let order: Vec<&str> = placement_order(&fs)
            .unwrap()
            .into_iter()
            .map(|i| fs[i].name.as_str())
            .collect();
        assert_eq!(order, ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn a_chain_cycle_or_an_unknown_predecessor_is_refused_naming_chain_after() {
        let e = chained(&[("a", "after:b"), ("b", "after:a")]).unwrap_err();
        assert!(e.field.ends_with(".chain_after"), "{e}");
        assert!(e.reason.contains("cycle"), "{e}");
        let e = chained(&[("a", "after:a")]).unwrap_err();
        assert_eq!(e.field, "function[0].chain_after");
        let e = chained(&[("a", "edge-1"), ("b", "after:zz")]).unwrap_err();
        assert_eq!(e.field, "function[1].chain_after");
        assert!(e.reason.contains("`zz`"), "{e}");
    }
}
