//! Prometheus metrics with OpenFaaS's names (`function_name` is `name.namespace`).

use prometheus::{
    CounterVec, Encoder, GaugeVec, HistogramOpts, HistogramVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub invocation_total: CounterVec,
    pub functions_seconds: HistogramVec,
    pub invocation_started: CounterVec,
    pub service_count: GaugeVec,
    pub queue_length: GaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        let invocation_total = CounterVec::new(
            Opts::new("gateway_function_invocation_total", "Function metrics"),
            &["function_name", "code"],
        )
        .unwrap();
        let functions_seconds = HistogramVec::new(
            HistogramOpts::new("gateway_functions_seconds", "Function time taken"),
            &["function_name", "code"],
        )
        .unwrap();
        let invocation_started = CounterVec::new(
            Opts::new(
                "gateway_function_invocation_started",
                "The total number of function HTTP requests started.",
            ),
            &["function_name"],
        )
        .unwrap();
        let service_count = GaugeVec::new(
            Opts::new(
                "gateway_service_count",
                "Current count of replicas for function",
            ),
            &["function_name"],
        )
        .unwrap();
        let queue_length = GaugeVec::new(
            Opts::new(
                "gateway_function_queue_length",
                "Requests waiting for a ready replica (embedded gateway)",
            ),
            &["function_name"],
        )
        .unwrap();
        for c in [
            Box::new(invocation_total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(functions_seconds.clone()),
            Box::new(invocation_started.clone()),
            Box::new(service_count.clone()),
            Box::new(queue_length.clone()),
        ] {
            registry.register(c).unwrap();
        }
        Metrics {
            registry,
            invocation_total,
            functions_seconds,
            invocation_started,
            service_count,
            queue_length,
        }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Gathered families are never empty nor nameless, and a Vec takes every write.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    pub fn forget(&self, function_name: &str) {
        let _ = self.service_count.remove_label_values(&[function_name]);
        let _ = self.queue_length.remove_label_values(&[function_name]);
    }
}
