//! The machine's CPU usage from `/proc/stat` (Linux), for node_margin's usage model. Where it
//! is unavailable, the strategy falls back to `100 × rate / capacity` per function.

/// Busy and total jiffies of all CPUs.
fn parse_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    if fields.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    let total: u64 = fields.iter().take(8).sum();
    Some((total.saturating_sub(idle), total))
}

/// Usage between consecutive samples.
#[derive(Debug, Default)]
pub struct CpuSampler {
    prev: Option<(u64, u64)>,
}

impl CpuSampler {
    /// CPU usage in percent since the previous call; `None` on the first call or when
    /// `/proc/stat` cannot be read.
    pub fn sample(&mut self) -> Option<f64> {
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        self.observe(&text)
    }

    fn observe(&mut self, text: &str) -> Option<f64> {
        let (busy, total) = parse_stat(text)?;
        let prev = self.prev.replace((busy, total));
        let (pb, pt) = prev?;
        let dt = total.checked_sub(pt).filter(|d| *d > 0)?;
        let db = busy.saturating_sub(pb);
        Some((100.0 * db as f64 / dt as f64).clamp(0.0, 100.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_busy_time_over_total_time_between_samples() {
        let mut s = CpuSampler::default();
        assert_eq!(
            s.observe("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3 4\n"),
            None
        );
        // +300 busy, +100 idle.
        let u = s
            .observe("cpu  300 0 200 900 0 0 0 0 0 0\ncpu0 1 2 3 4\n")
            .unwrap();
        assert!((u - 75.0).abs() < 1e-9, "{u}");
        assert_eq!(s.observe("garbage"), None);
    }
}
