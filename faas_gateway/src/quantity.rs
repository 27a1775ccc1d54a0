//! Kubernetes resource quantities as OpenFaaS carries them in `limits` and `requests`
//! (`"128Mi"`, `"1G"`, `"500m"`, `"0.5"`). Parse, don't validate: a [`MemoryQuantity`] or
//! [`CpuQuantity`] that exists is a positive, finite amount.

use std::fmt;

/// An amount of memory in bytes, parsed from a Kubernetes quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemoryQuantity(u64);

/// An amount of CPU in millicores, parsed from a Kubernetes quantity (`"500m"`, `"1"`, `"0.25"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CpuQuantity(u64);

/// Why a quantity did not parse; the caller names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QuantityError(String);

impl MemoryQuantity {
    /// Parses `"128Mi"`, `"1G"`, `"1e9"`, `"134217728"`, `"512k"`; a fraction of a byte rounds up.
    pub fn parse(s: &str) -> Result<Self, QuantityError> {
        let (number, suffix) = split_quantity(s)?;
        let multiplier: f64 = match suffix {
            "" => 1.0,
            "k" => 1e3,
            "M" => 1e6,
            "G" => 1e9,
            "T" => 1e12,
            "P" => 1e15,
            "E" => 1e18,
            "Ki" => 1024.0,
            "Mi" => 1024.0 * 1024.0,
            "Gi" => 1024.0 * 1024.0 * 1024.0,
            "Ti" => 1024f64.powi(4),
            "Pi" => 1024f64.powi(5),
            "Ei" => 1024f64.powi(6),
            "m" => 1e-3,
            other => {
                return Err(QuantityError(format!(
                    "unknown memory suffix {other:?} in {s:?} (use Ki, Mi, Gi, k, M, G, ...)"
                )));
            }
        };
        let bytes = (number * multiplier).ceil();
        if !(1.0..=u64::MAX as f64).contains(&bytes) {
            return Err(QuantityError(format!(
                "{s:?} is not a positive amount of memory"
            )));
        }
        Ok(MemoryQuantity(bytes as u64))
    }

    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl CpuQuantity {
    /// Parses `"500m"`, `"1"`, `"0.25"`, `"2"`; less than one millicore is refused.
    pub fn parse(s: &str) -> Result<Self, QuantityError> {
        let (number, suffix) = split_quantity(s)?;
        let millis = match suffix {
            "" => number * 1000.0,
            "m" => number,
            "k" => number * 1e6,
            other => {
                return Err(QuantityError(format!(
                    "unknown cpu suffix {other:?} in {s:?} (use \"500m\" or \"0.5\")"
                )));
            }
        }
        .ceil();
        if !(1.0..=1e12).contains(&millis) {
            return Err(QuantityError(format!(
                "{s:?} is not a positive amount of cpu"
            )));
        }
        Ok(CpuQuantity(millis as u64))
    }

    pub fn millis(self) -> u64 {
        self.0
    }
}

impl fmt::Display for MemoryQuantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} B", self.0)
    }
}

impl fmt::Display for CpuQuantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}m", self.0)
    }
}

/// Splits `"1.5Gi"` into `(1.5, "Gi")`, accepting a decimal exponent (`"1e3"`, `"2E6"` is
/// ambiguous with the exa suffix in Kubernetes; like Kubernetes we read `E` followed by digits as
/// an exponent).
fn split_quantity(s: &str) -> Result<(f64, &str), QuantityError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(QuantityError("is empty".into()));
    }
    let bytes = t.as_bytes();
    let mut end = 0;
    while end < bytes.len() && (bytes[end].is_ascii_digit() || bytes[end] == b'.') {
        end += 1;
    }
    // Decimal exponent: e/E followed by an optional sign and digits.
    if end < bytes.len() && (bytes[end] == b'e' || bytes[end] == b'E') {
        let mut j = end + 1;
        if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
            j += 1;
        }
        let digits_start = j;
        while j < bytes.len() && bytes[j].is_ascii_digit() {
            j += 1;
        }
        if j > digits_start && j == bytes.len() {
            end = j;
        }
    }
    let (num, suffix) = t.split_at(end);
    if num.is_empty() || num.starts_with('.') && num.len() == 1 {
        return Err(QuantityError(format!("{s:?} is not a quantity")));
    }
    let number: f64 = num
        .parse()
        .map_err(|_| QuantityError(format!("{s:?} is not a quantity")))?;
    if !number.is_finite() {
        return Err(QuantityError(format!("{s:?} is not a quantity")));
    }
    Ok((number, suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_decimal_memory_suffixes_parse() {
        assert_eq!(
            MemoryQuantity::parse("128Mi").unwrap().bytes(),
            128 * 1024 * 1024
        );
        assert_eq!(MemoryQuantity::parse("1Gi").unwrap().bytes(), 1 << 30);
        assert_eq!(MemoryQuantity::parse("1G").unwrap().bytes(), 1_000_000_000);
        assert_eq!(MemoryQuantity::parse("512k").unwrap().bytes(), 512_000);
        assert_eq!(MemoryQuantity::parse("1.5Gi").unwrap().bytes(), 3 << 29);
        assert_eq!(
            MemoryQuantity::parse("134217728").unwrap().bytes(),
            134_217_728
        );
        assert_eq!(MemoryQuantity::parse("1e9").unwrap().bytes(), 1_000_000_000);
        assert_eq!(MemoryQuantity::parse(" 64Mi ").unwrap().bytes(), 64 << 20);
    }

    #[test]
    fn garbage_memory_is_refused() {
        for bad in [
            "", "Mi", "12XB", "-5Mi", "0", "abc", "1.2.3Mi", "12 Mi", "1e999",
        ] {
            assert!(
                MemoryQuantity::parse(bad).is_err(),
                "{bad:?} should not parse"
            );
        }
    }

    #[test]
    fn cpu_in_millicores_or_cores_parses() {
        assert_eq!(CpuQuantity::parse("500m").unwrap().millis(), 500);
        assert_eq!(CpuQuantity::parse("1").unwrap().millis(), 1000);
        assert_eq!(CpuQuantity::parse("0.25").unwrap().millis(), 250);
        assert_eq!(CpuQuantity::parse("2.5").unwrap().millis(), 2500);
    }

    #[test]
    fn garbage_cpu_is_refused() {
        for bad in ["", "m", "1Gi", "-1", "0m", "lots", "."] {
            assert!(CpuQuantity::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
