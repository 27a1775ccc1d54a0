//! One row per request, written to and read back from CSV (`requests.csv`).

use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::Path;

/// How a request ended, from the client's point of view.
pub mod outcome {
    /// A 2xx answer.
    pub const OK: &str = "ok";
    /// An answer with another status (rejections, errors).
    pub const HTTP_ERROR: &str = "http_error";
    /// No complete answer within the request timeout.
    pub const TIMEOUT: &str = "timeout";
    /// Connection refused or reset, or the body could not be read.
    pub const TRANSPORT_ERROR: &str = "transport_error";
    /// Not sent: the in-flight limit was reached when it was due.
    pub const DROPPED: &str = "dropped";
    /// Not sent: the function could not be placed.
    pub const NOT_PLACED: &str = "not_placed";
}

/// One request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Planned send time, ms from the start of sending.
    pub scheduled_ms: f64,
    /// Actual send time, ms from the start of sending (empty if not sent).
    pub sent_ms: Option<f64>,
    pub function: String,
    pub sla_id: String,
    pub latency_class: String,
    pub latency_max_ms: f64,
    /// The node the request was sent to (the function's target).
    pub access_node: String,
    /// `X-Fogmarket-Served-By` (or the function's `X-Served-By-Node`).
    pub served_by: Option<String>,
    /// Forwards between nodes: path length - 1.
    pub hops: Option<u32>,
    /// `X-Fogmarket-Path`: nodes crossed, access node first, joined with `>`.
    pub path: Option<String>,
    /// `X-Fogmarket-Decision`: local, forwarded or rejected.
    pub decision: Option<String>,
    /// `X-Fogmarket-Reject-Reason`.
    pub reject_reason: Option<String>,
    /// HTTP status; 0 when there was no answer.
    pub status: u16,
    /// See [`outcome`].
    pub outcome: String,
    /// From send to the last byte of the answer.
    pub latency_ms: Option<f64>,
    /// Execution time the request asked for (`spin`'s ms), excluded when judging the SLA.
    pub exec_ms: Option<u64>,
    /// 2xx and `latency_ms - exec_ms <= latency_max_ms`.
    pub sla_met: bool,
    pub error: Option<String>,
}

impl Record {
    /// Whether the answer was a success (2xx).
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The SLA judgement: a 2xx answer whose latency, minus the execution time the request
    /// itself asked for, is within the SLA's `latencyMax`.
    pub fn judge(
        status: u16,
        latency_ms: Option<f64>,
        exec_ms: Option<u64>,
        latency_max_ms: f64,
    ) -> bool {
        (200..300).contains(&status)
            && latency_ms.is_some_and(|l| l - exec_ms.unwrap_or(0) as f64 <= latency_max_ms)
    }

    /// The nodes of `path`, in order.
    pub fn path_nodes(&self) -> Vec<&str> {
        self.path
            .as_deref()
            .map(|p| p.split('>').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    }
}

/// Splits an `X-Fogmarket-Path` header value (names separated by commas and/or spaces, or `>`).
pub fn parse_path_header(value: &str) -> Vec<String> {
    value
        .split(|c: char| c == ',' || c == '>' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Writes records as CSV with a header.
pub fn write_csv(records: &[Record], out: impl Write) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_writer(out);
    for r in records {
        w.serialize(r)?;
    }
    w.flush()?;
    Ok(())
}

/// Reads records written by [`write_csv`].
pub fn read_csv(input: impl Read) -> Result<Vec<Record>, csv::Error> {
    csv::Reader::from_reader(input).deserialize().collect()
}

pub fn write_csv_file(records: &[Record], path: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    write_csv(records, std::io::BufWriter::new(f))
        .with_context(|| format!("writing {}", path.display()))
}

pub fn read_csv_file(path: &Path) -> anyhow::Result<Vec<Record>> {
    use anyhow::Context;
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    read_csv(std::io::BufReader::new(f))
        .with_context(|| format!("reading records from {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Vec<Record> {
        vec![
            Record {
                scheduled_ms: 0.0,
                sent_ms: Some(0.4),
                function: "ping".into(),
                sla_id: "11111111-1111-1111-1111-111111111111".into(),
                latency_class: "normal".into(),
                latency_max_ms: 150.0,
                access_node: "edge-farm".into(),
                served_by: Some("regional-south".into()),
                hops: Some(1),
                path: Some("edge-farm>regional-south".into()),
                decision: Some("forwarded".into()),
                reject_reason: None,
                status: 200,
                outcome: outcome::OK.into(),
                latency_ms: Some(12.25),
                exec_ms: None,
                sla_met: true,
                error: None,
            },
            Record {
                scheduled_ms: 10.5,
                sent_ms: None,
                function: "spin, with \"quotes\"".into(),
                sla_id: String::new(),
                latency_class: "50 ms".into(),
                latency_max_ms: 50.0,
                access_node: "edge-1".into(),
                served_by: None,
                hops: None,
                path: None,
                decision: None,
                reject_reason: Some("queue_full".into()),
                status: 0,
                outcome: outcome::DROPPED.into(),
                latency_ms: None,
                exec_ms: Some(300),
                sla_met: false,
                error: Some("in-flight limit (512) reached".into()),
            },
        ]
    }

    #[test]
    fn records_survive_a_csv_round_trip() {
        let records = sample();
        let mut buf = Vec::new();
        write_csv(&records, &mut buf).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(
            text.starts_with("scheduled_ms,sent_ms,function,sla_id,latency_class,"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 3);
        assert_eq!(read_csv(&buf[..]).unwrap(), records);
    }

    #[test]
    fn the_sla_is_met_by_a_2xx_answer_within_latency_max_after_removing_execution_time() {
        assert!(Record::judge(200, Some(150.0), None, 150.0));
        assert!(!Record::judge(200, Some(150.1), None, 150.0));
        assert!(Record::judge(200, Some(340.0), Some(300), 50.0));
        assert!(!Record::judge(200, Some(360.0), Some(300), 50.0));
        assert!(!Record::judge(429, Some(1.0), None, 150.0));
        assert!(!Record::judge(0, None, None, 150.0));
    }

    #[test]
    fn path_headers_split_on_commas_spaces_or_arrows() {
        assert_eq!(
            parse_path_header("edge-a, regional, cloud"),
            ["edge-a", "regional", "cloud"]
        );
        assert_eq!(parse_path_header("edge-a>cloud"), ["edge-a", "cloud"]);
        assert_eq!(parse_path_header("edge-a"), ["edge-a"]);
        assert!(parse_path_header(" ").is_empty());
        assert_eq!(sample()[0].path_nodes(), ["edge-farm", "regional-south"]);
    }
}
