//! Units with GIRAFF-compatible string forms: memory and sizes (`"256 MB"`, `"48 KiB"`,
//! `"0.5 gigabytes"`), CPU (`"500 millicpu"`, `"500 m"`, `"1 cpu"`, `"0.31 cpu"`), durations and
//! latencies (`"50 ms"`, `"0.05 s"`), and prices.
//!
//! Parse, don't validate: a value of these types is always valid. Each serializes back to a
//! string that parses to the same value (round-trip), and deserializes from a string or a
//! plain number (bytes, millicpu, milliseconds, price units).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::ops::{Add, Mul, Sub};
use std::str::FromStr;
use std::time::Duration;

/// Why a unit string was refused. `Display` says what was expected, so the field-level
/// error of an SLA reads as a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("empty value, expected {expected}")]
    Empty { expected: &'static str },
    #[error("`{input}` is not a number followed by a unit, expected {expected}")]
    Malformed {
        input: String,
        expected: &'static str,
    },
    #[error("unknown unit `{unit}`, expected {expected}")]
    UnknownUnit {
        unit: String,
        expected: &'static str,
    },
    #[error("`{input}` must be a finite, non-negative number")]
    OutOfRange { input: String },
    #[error("`{input}` is too large")]
    TooLarge { input: String },
}

/// Splits `"0.5 gigabytes"` / `"500m"` / `"1e3 ms"` into (number, unit).
fn split_number(input: &str, expected: &'static str) -> Result<(f64, String), UnitError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(UnitError::Empty { expected });
    }
    let end = s
        .char_indices()
        .find(|&(i, c)| {
            !(c.is_ascii_digit()
                || c == '.'
                || c == '+'
                || c == '-'
                || ((c == 'e' || c == 'E')
                    && s[i + 1..]
                        .starts_with(|n: char| n.is_ascii_digit() || n == '-' || n == '+')))
        })
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    let number: f64 = s[..end].parse().map_err(|_| UnitError::Malformed {
        input: input.to_string(),
        expected,
    })?;
    if !number.is_finite() || number < 0.0 {
        return Err(UnitError::OutOfRange {
            input: input.to_string(),
        });
    }
    Ok((number, s[end..].trim().to_string()))
}

fn to_u64(value: f64, input: &str) -> Result<u64, UnitError> {
    if value > u64::MAX as f64 / 2.0 {
        return Err(UnitError::TooLarge {
            input: input.to_string(),
        });
    }
    Ok(value.round() as u64)
}

// ---------------------------------------------------------------------------------------------
// Bytes

/// A number of bytes: memory per replica, request payload size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bytes(u64);

const BYTES_EXPECTED: &str = "a size like \"256 MB\", \"48 KiB\" or \"0.5 gigabytes\"";

impl Bytes {
    pub const ZERO: Bytes = Bytes(0);
    pub const fn new(bytes: u64) -> Self {
        Self(bytes)
    }
    pub const fn from_mib(mib: u64) -> Self {
        Self(mib * 1024 * 1024)
    }
    pub const fn from_mb(mb: u64) -> Self {
        Self(mb * 1_000_000)
    }
    pub const fn as_u64(self) -> u64 {
        self.0
    }
    pub fn as_f64(self) -> f64 {
        self.0 as f64
    }
    pub fn saturating_sub(self, other: Bytes) -> Bytes {
        Bytes(self.0.saturating_sub(other.0))
    }
    pub fn checked_mul(self, n: u64) -> Option<Bytes> {
        self.0.checked_mul(n).map(Bytes)
    }

    fn multiplier(unit: &str) -> Option<u64> {
        let u = unit.to_ascii_lowercase();
        Some(match u.as_str() {
            "" | "b" | "byte" | "bytes" => 1,
            "k" | "kb" | "kilobyte" | "kilobytes" => 1_000,
            "ki" | "kib" | "kibibyte" | "kibibytes" => 1 << 10,
            "m" | "mb" | "megabyte" | "megabytes" => 1_000_000,
            "mi" | "mib" | "mebibyte" | "mebibytes" => 1 << 20,
            "g" | "gb" | "gigabyte" | "gigabytes" => 1_000_000_000,
            "gi" | "gib" | "gibibyte" | "gibibytes" => 1 << 30,
            "t" | "tb" | "terabyte" | "terabytes" => 1_000_000_000_000,
            "ti" | "tib" | "tebibyte" | "tebibytes" => 1 << 40,
            _ => return None,
        })
    }
}

impl FromStr for Bytes {
    type Err = UnitError;
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let (n, unit) = split_number(input, BYTES_EXPECTED)?;
        let m = Self::multiplier(&unit).ok_or_else(|| UnitError::UnknownUnit {
            unit: unit.clone(),
            expected: BYTES_EXPECTED,
        })?;
        to_u64(n * m as f64, input).map(Bytes)
    }
}

impl fmt::Display for Bytes {
    /// The largest unit that divides the value exactly, so that display and parse round-trip.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 8] = [
            (1 << 40, "TiB"),
            (1_000_000_000_000, "TB"),
            (1 << 30, "GiB"),
            (1_000_000_000, "GB"),
            (1 << 20, "MiB"),
            (1_000_000, "MB"),
            (1 << 10, "KiB"),
            (1_000, "KB"),
        ];
        if self.0 > 0 {
            for (m, name) in UNITS {
                if self.0.is_multiple_of(m) {
                    return write!(f, "{} {name}", self.0 / m);
                }
            }
        }
        write!(f, "{} B", self.0)
    }
}

impl Add for Bytes {
    type Output = Bytes;
    fn add(self, o: Bytes) -> Bytes {
        Bytes(self.0.saturating_add(o.0))
    }
}
impl Sub for Bytes {
    type Output = Bytes;
    fn sub(self, o: Bytes) -> Bytes {
        Bytes(self.0.saturating_sub(o.0))
    }
}
impl Mul<u32> for Bytes {
    type Output = Bytes;
    fn mul(self, n: u32) -> Bytes {
        Bytes(self.0.saturating_mul(n as u64))
    }
}
impl std::iter::Sum for Bytes {
    fn sum<I: Iterator<Item = Bytes>>(iter: I) -> Bytes {
        iter.fold(Bytes::ZERO, Add::add)
    }
}

// ---------------------------------------------------------------------------------------------
// Cpu

/// CPU in millicpu (1000 = one core), like Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cpu(u64);

const CPU_EXPECTED: &str =
    "a CPU amount like \"500 m\", \"500 millicpu\", \"1 cpu\" or \"0.31 cpu\"";

impl Cpu {
    pub const ZERO: Cpu = Cpu(0);
    pub const fn from_millis(m: u64) -> Self {
        Self(m)
    }
    pub const fn from_cores(c: u64) -> Self {
        Self(c * 1000)
    }
    pub const fn millis(self) -> u64 {
        self.0
    }
    pub fn cores(self) -> f64 {
        self.0 as f64 / 1000.0
    }
    pub fn saturating_sub(self, other: Cpu) -> Cpu {
        Cpu(self.0.saturating_sub(other.0))
    }
    pub fn checked_mul(self, n: u64) -> Option<Cpu> {
        self.0.checked_mul(n).map(Cpu)
    }
}

impl FromStr for Cpu {
    type Err = UnitError;
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let (n, unit) = split_number(input, CPU_EXPECTED)?;
        let per_unit = match unit.to_ascii_lowercase().as_str() {
            "m" | "millicpu" | "millicpus" | "millicore" | "millicores" | "mcpu" => 1.0,
            "" | "cpu" | "cpus" | "core" | "cores" | "vcpu" | "vcpus" => 1000.0,
            _ => {
                return Err(UnitError::UnknownUnit {
                    unit,
                    expected: CPU_EXPECTED,
                });
            }
        };
        to_u64(n * per_unit, input).map(Cpu)
    }
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 > 0 && self.0.is_multiple_of(1000) {
            write!(f, "{} cpu", self.0 / 1000)
        } else {
            write!(f, "{} millicpu", self.0)
        }
    }
}

impl Add for Cpu {
    type Output = Cpu;
    fn add(self, o: Cpu) -> Cpu {
        Cpu(self.0.saturating_add(o.0))
    }
}
impl Sub for Cpu {
    type Output = Cpu;
    fn sub(self, o: Cpu) -> Cpu {
        Cpu(self.0.saturating_sub(o.0))
    }
}
impl Mul<u32> for Cpu {
    type Output = Cpu;
    fn mul(self, n: u32) -> Cpu {
        Cpu(self.0.saturating_mul(n as u64))
    }
}
impl std::iter::Sum for Cpu {
    fn sum<I: Iterator<Item = Cpu>>(iter: I) -> Cpu {
        iter.fold(Cpu::ZERO, Add::add)
    }
}

// ---------------------------------------------------------------------------------------------
// Durations and latencies

const DURATION_EXPECTED: &str = "a duration like \"50 ms\", \"0.05 s\", \"250 us\" or \"5 min\"";

/// Parses a duration string with microsecond resolution (GIRAFF truncated to whole ms).
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    let (n, unit) = split_number(input, DURATION_EXPECTED)?;
    let nanos_per_unit: f64 = match unit.to_ascii_lowercase().as_str() {
        "ns" | "nanosecond" | "nanoseconds" => 1.0,
        "us" | "µs" | "microsecond" | "microseconds" => 1e3,
        "" | "ms" | "millisecond" | "milliseconds" => 1e6,
        "s" | "sec" | "secs" | "second" | "seconds" => 1e9,
        "m" | "min" | "mins" | "minute" | "minutes" => 60e9,
        "h" | "hour" | "hours" => 3600e9,
        "d" | "day" | "days" => 86400e9,
        _ => {
            return Err(UnitError::UnknownUnit {
                unit,
                expected: DURATION_EXPECTED,
            });
        }
    };
    let nanos = n * nanos_per_unit;
    if nanos > 1e18 {
        return Err(UnitError::TooLarge {
            input: input.to_string(),
        });
    }
    Ok(Duration::from_nanos(nanos.round() as u64))
}

/// Formats a duration so that [`parse_duration`] gives it back exactly.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0 ms".to_string();
    }
    if nanos.is_multiple_of(1_000_000_000) {
        format!("{} s", nanos / 1_000_000_000)
    } else if nanos.is_multiple_of(1_000_000) {
        format!("{} ms", nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        format!("{} us", nanos / 1_000)
    } else {
        format!("{nanos} ns")
    }
}

macro_rules! duration_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(Duration);

        impl $name {
            pub const fn new(d: Duration) -> Self {
                Self(d)
            }
            pub const fn from_millis(ms: u64) -> Self {
                Self(Duration::from_millis(ms))
            }
            pub fn from_millis_f64(ms: f64) -> Self {
                Self(Duration::from_secs_f64(ms.max(0.0) / 1000.0))
            }
            pub const fn as_duration(self) -> Duration {
                self.0
            }
            pub fn as_millis_f64(self) -> f64 {
                self.0.as_secs_f64() * 1000.0
            }
        }

        impl FromStr for $name {
            type Err = UnitError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_duration(s).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&format_duration(self.0))
            }
        }

        impl From<Duration> for $name {
            fn from(d: Duration) -> Self {
                Self(d)
            }
        }
    };
}

duration_newtype!(
    /// A network latency (one-way), e.g. an SLA's `latencyMax` or a link's delay.
    Latency
);
duration_newtype!(
    /// How long something lasts, e.g. an SLA's `duration`.
    Lifetime
);

// ---------------------------------------------------------------------------------------------
// Price

/// A price in the federation's currency unit: finite and non-negative.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Price(f64);

impl Price {
    pub const ZERO: Price = Price(0.0);
    /// `None` for NaN, infinities and negative values.
    pub fn new(value: f64) -> Option<Price> {
        (value.is_finite() && value >= 0.0).then_some(Price(value + 0.0))
    }
    /// Clamps NaN and negatives to zero and infinities to `f64::MAX`; for prices computed by
    /// formulas whose inputs are already valid.
    pub fn saturating(value: f64) -> Price {
        if value.is_nan() || value <= 0.0 {
            Price(0.0)
        } else {
            Price(value.min(f64::MAX))
        }
    }
    pub fn value(self) -> f64 {
        self.0
    }
    /// Total order (prices are never NaN).
    pub fn total_cmp(&self, other: &Price) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl Eq for Price {}
impl PartialOrd for Price {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Price {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.total_cmp(other)
    }
}

impl FromStr for Price {
    type Err = UnitError;
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let (n, unit) = split_number(input, "a price (a non-negative number)")?;
        if !unit.is_empty() {
            return Err(UnitError::UnknownUnit {
                unit,
                expected: "a price (a non-negative number, no unit)",
            });
        }
        Ok(Price(n + 0.0))
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Price {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for Price {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Price::from_value(&v).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------------
// JSON values: string or number

/// Parsing from a JSON value (string with unit, or a bare number in the type's base unit).
pub trait FromJsonValue: Sized {
    /// What a bare number means, e.g. "bytes".
    const NUMBER_MEANS: &'static str;
    fn from_number(n: f64) -> Result<Self, UnitError>;
    fn from_str_value(s: &str) -> Result<Self, UnitError>;

    fn from_value(v: &serde_json::Value) -> Result<Self, UnitError> {
        match v {
            serde_json::Value::String(s) => Self::from_str_value(s),
            serde_json::Value::Number(n) => {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if !f.is_finite() || f < 0.0 {
                    return Err(UnitError::OutOfRange {
                        input: n.to_string(),
                    });
                }
                Self::from_number(f)
            }
            other => Err(UnitError::Malformed {
                input: other.to_string(),
                expected: Self::NUMBER_MEANS,
            }),
        }
    }
}

impl FromJsonValue for Bytes {
    const NUMBER_MEANS: &'static str = "a size string or a number of bytes";
    fn from_number(n: f64) -> Result<Self, UnitError> {
        to_u64(n, &n.to_string()).map(Bytes)
    }
    fn from_str_value(s: &str) -> Result<Self, UnitError> {
        s.parse()
    }
}
impl FromJsonValue for Cpu {
    const NUMBER_MEANS: &'static str = "a CPU string or a number of millicpu";
    fn from_number(n: f64) -> Result<Self, UnitError> {
        to_u64(n, &n.to_string()).map(Cpu)
    }
    fn from_str_value(s: &str) -> Result<Self, UnitError> {
        s.parse()
    }
}
impl FromJsonValue for Latency {
    const NUMBER_MEANS: &'static str = "a duration string or a number of milliseconds";
    fn from_number(n: f64) -> Result<Self, UnitError> {
        Ok(Latency::from_millis_f64(n))
    }
    fn from_str_value(s: &str) -> Result<Self, UnitError> {
        s.parse()
    }
}
impl FromJsonValue for Lifetime {
    const NUMBER_MEANS: &'static str = "a duration string or a number of milliseconds";
    fn from_number(n: f64) -> Result<Self, UnitError> {
        Ok(Lifetime::from_millis_f64(n))
    }
    fn from_str_value(s: &str) -> Result<Self, UnitError> {
        s.parse()
    }
}
impl FromJsonValue for Price {
    const NUMBER_MEANS: &'static str = "a non-negative number";
    fn from_number(n: f64) -> Result<Self, UnitError> {
        Price::new(n).ok_or(UnitError::OutOfRange {
            input: n.to_string(),
        })
    }
    fn from_str_value(s: &str) -> Result<Self, UnitError> {
        s.parse()
    }
}

macro_rules! string_serde {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = serde_json::Value::deserialize(d)?;
                <$t>::from_value(&v).map_err(serde::de::Error::custom)
            }
        }
    )*};
}
string_serde!(Bytes, Cpu, Latency, Lifetime);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn giraff_memory_formats_parse() {
        assert_eq!("256 MB".parse::<Bytes>().unwrap(), Bytes::new(256_000_000));
        assert_eq!("48 KiB".parse::<Bytes>().unwrap(), Bytes::new(48 * 1024));
        assert_eq!(
            "0.5 gigabytes".parse::<Bytes>().unwrap(),
            Bytes::new(500_000_000)
        );
        assert_eq!("1 KB".parse::<Bytes>().unwrap(), Bytes::new(1000));
        assert_eq!("512Mi".parse::<Bytes>().unwrap(), Bytes::from_mib(512));
    }

    #[test]
    fn giraff_cpu_formats_parse() {
        assert_eq!(
            "500 millicpu".parse::<Cpu>().unwrap(),
            Cpu::from_millis(500)
        );
        assert_eq!("500 m".parse::<Cpu>().unwrap(), Cpu::from_millis(500));
        assert_eq!("500m".parse::<Cpu>().unwrap(), Cpu::from_millis(500));
        assert_eq!("1 cpu".parse::<Cpu>().unwrap(), Cpu::from_cores(1));
        assert_eq!("0.31 cpu".parse::<Cpu>().unwrap(), Cpu::from_millis(310));
    }

    #[test]
    fn giraff_latency_formats_parse_without_truncating_to_whole_milliseconds() {
        assert_eq!(
            "50 ms".parse::<Latency>().unwrap(),
            Latency::from_millis(50)
        );
        assert_eq!(
            "0.05 s".parse::<Latency>().unwrap(),
            Latency::from_millis(50)
        );
        let l: Latency = "1.5 ms".parse().unwrap();
        assert_eq!(l.as_duration(), Duration::from_micros(1500));
        assert_eq!(
            "30 s".parse::<Lifetime>().unwrap().as_duration(),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn malformed_units_are_refused_with_the_expected_form() {
        let err = "lots".parse::<Bytes>().unwrap_err();
        assert!(err.to_string().contains("256 MB"), "{err}");
        let err = "5 parsecs".parse::<Latency>().unwrap_err();
        assert!(matches!(err, UnitError::UnknownUnit { .. }), "{err}");
        assert!("-1 cpu".parse::<Cpu>().is_err());
        assert!("".parse::<Cpu>().is_err());
        assert!("NaN".parse::<Price>().is_err());
        assert!("1e400 MB".parse::<Bytes>().is_err());
    }

    #[test]
    fn bare_json_numbers_are_read_in_the_base_unit() {
        let v = serde_json::json!(1024);
        assert_eq!(Bytes::from_value(&v).unwrap(), Bytes::new(1024));
        assert_eq!(
            Cpu::from_value(&serde_json::json!(250)).unwrap(),
            Cpu::from_millis(250)
        );
        assert_eq!(
            Latency::from_value(&serde_json::json!(12.5))
                .unwrap()
                .as_duration(),
            Duration::from_micros(12_500)
        );
        assert!(Price::from_value(&serde_json::json!(-3)).is_err());
        assert!(Price::from_value(&serde_json::json!(true)).is_err());
    }

    proptest! {
        #[test]
        fn bytes_display_parses_back(n in 0u64..(1u64 << 50)) {
            let b = Bytes::new(n);
            prop_assert_eq!(b.to_string().parse::<Bytes>().unwrap(), b);
        }

        #[test]
        fn cpu_display_parses_back(n in 0u64..10_000_000) {
            let c = Cpu::from_millis(n);
            prop_assert_eq!(c.to_string().parse::<Cpu>().unwrap(), c);
        }

        #[test]
        fn durations_display_parses_back(n in 0u64..1_000_000_000_000u64) {
            let d = Latency::new(Duration::from_nanos(n));
            prop_assert_eq!(d.to_string().parse::<Latency>().unwrap(), d);
        }

        #[test]
        fn serde_round_trips_every_unit(b in 0u64..(1u64<<40), c in 0u64..100_000, ms in 0u64..10_000_000) {
            let v = (Bytes::new(b), Cpu::from_millis(c), Lifetime::from_millis(ms));
            let json = serde_json::to_string(&v).unwrap();
            let back: (Bytes, Cpu, Lifetime) = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, v);
        }
    }
}
