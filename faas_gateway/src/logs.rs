//! Function logs: every line a function process writes (stdout after its listening line, and
//! stderr) is kept in a bounded ring per function and broadcast to `follow` readers.

use std::collections::{HashMap, VecDeque};
use std::time::SystemTime;

use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::api::LogEntry;

/// Lines kept per function.
const LINES_PER_FUNCTION: usize = 2000;

#[derive(Debug, Clone)]
pub struct StoredLine {
    pub at: SystemTime,
    pub entry: LogEntry,
}

pub struct LogStore {
    lines: Mutex<HashMap<(String, String), VecDeque<StoredLine>>>,
    live: broadcast::Sender<StoredLine>,
    /// Set at shutdown, so `follow` streams end and the server can stop.
    closed: tokio::sync::watch::Sender<bool>,
}

/// What `/system/logs` asks for.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub name: String,
    pub namespace: String,
    pub instance: Option<String>,
    pub since: Option<SystemTime>,
    /// At most this many of the latest lines; `None` for all.
    pub tail: Option<usize>,
}

impl LogQuery {
    pub fn matches(&self, line: &StoredLine) -> bool {
        line.entry.name == self.name
            && line.entry.namespace == self.namespace
            && self
                .instance
                .as_ref()
                .is_none_or(|i| *i == line.entry.instance)
            && self.since.is_none_or(|s| line.at >= s)
    }
}

impl Default for LogStore {
    fn default() -> Self {
        LogStore {
            lines: Mutex::new(HashMap::new()),
            live: broadcast::channel(1024).0,
            closed: tokio::sync::watch::channel(false).0,
        }
    }
}

impl LogStore {
    pub fn push(&self, name: &str, namespace: &str, instance: &str, text: &str) {
        let at = SystemTime::now();
        let line = StoredLine {
            at,
            entry: LogEntry {
                name: name.to_string(),
                namespace: namespace.to_string(),
                instance: instance.to_string(),
                timestamp: humantime::format_rfc3339_nanos(at).to_string(),
                text: text.to_string(),
            },
        };
        let mut lines = self.lines.lock();
        let ring = lines
            .entry((name.to_string(), namespace.to_string()))
            .or_default();
        if ring.len() == LINES_PER_FUNCTION {
            ring.pop_front();
        }
        ring.push_back(line.clone());
        let _ = self.live.send(line);
    }

    /// The stored lines matching `q`, oldest first.
    pub fn query(&self, q: &LogQuery) -> Vec<LogEntry> {
        let lines = self.lines.lock();
        Self::select(&lines, q)
    }

    fn select(
        lines: &HashMap<(String, String), VecDeque<StoredLine>>,
        q: &LogQuery,
    ) -> Vec<LogEntry> {
        let matching: Vec<LogEntry> = lines
            .get(&(q.name.clone(), q.namespace.clone()))
            .into_iter()
            .flatten()
            .filter(|l| q.matches(l))
            .map(|l| l.entry.clone())
            .collect();
        let skip = q.tail.map_or(0, |t| matching.len().saturating_sub(t));
        matching.into_iter().skip(skip).collect()
    }

    /// Stored lines and a receiver of the lines that follow, taken atomically.
    pub fn query_and_follow(
        &self,
        q: &LogQuery,
    ) -> (Vec<LogEntry>, broadcast::Receiver<StoredLine>) {
        // Under the lock, so no line is both stored and followed, nor missed.
        let lines = self.lines.lock();
        (Self::select(&lines, q), self.live.subscribe())
    }

    /// Ends every `follow` stream.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Resolves once [`LogStore::close`] was called.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + use<> {
        let mut rx = self.closed.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }

    pub fn forget(&self, name: &str, namespace: &str) {
        self.lines
            .lock()
            .remove(&(name.to_string(), namespace.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_latest_lines_of_one_function() {
        let store = LogStore::default();
        for i in 0..5 {
            store.push("echo", "openfaas-fn", "echo-1", &format!("line {i}"));
        }
        store.push("other", "openfaas-fn", "other-1", "x");
        let q = LogQuery {
            name: "echo".into(),
            namespace: "openfaas-fn".into(),
            tail: Some(2),
            ..Default::default()
        };
        let got: Vec<String> = store.query(&q).into_iter().map(|e| e.text).collect();
        assert_eq!(got, vec!["line 3", "line 4"]);
    }
}
