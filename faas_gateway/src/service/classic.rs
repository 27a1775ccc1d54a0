//! Classic-watchdog functions: one process per request, the body on stdin, stdout as the
//! answer, the request's method, path, query and headers as `Http_*` variables.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

use super::Service;
use super::invoke::{Invocation, InvocationResponse, Lease};
use crate::error::{GatewayError, GatewayResult};
use crate::process::{self, ExecError};

impl Service {
    /// Classic watchdog: the body on stdin, stdout as the response, headers as `Http_*` env.
    pub(super) async fn exec(
        &self,
        lease: &Lease,
        req: Invocation,
    ) -> GatewayResult<InvocationResponse> {
        let mut env = vec![
            ("Http_Method".to_string(), req.method.as_str().to_string()),
            ("Http_Query".to_string(), req.query.clone()),
            ("Http_Path".to_string(), req.path.clone()),
        ];
        for (k, v) in &req.headers {
            if let Ok(v) = std::str::from_utf8(v.as_bytes()) {
                env.push((
                    format!("Http_{}", canonical_env_header(k.as_str())),
                    v.to_string(),
                ));
            }
        }
        let content_type = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("text/plain"));
        let key = &lease.spec.key;
        let out = process::run_classic(
            &lease.spec.process,
            env,
            &lease.instance,
            &self.inner.enforcement,
            req.body.to_vec(),
            self.inner.config.exec_timeout,
            self.inner.config.max_answer_bytes,
        )
        .await;
        let out = match out {
            Ok(out) => out,
            Err(ExecError::Timeout) => {
                self.inner.logs.push(
                    &key.name,
                    &key.namespace,
                    &lease.instance,
                    &format!(
                        "faas-gateway: killed after exec timeout {:?}",
                        self.inner.config.exec_timeout
                    ),
                );
                return Err(GatewayError::ExecTimeout(key.to_string()));
            }
            Err(ExecError::Spawn(message)) => {
                return Err(GatewayError::Upstream {
                    function: key.to_string(),
                    message,
                });
            }
            Err(ExecError::AnswerTooLarge(limit)) => {
                return Err(GatewayError::AnswerTooLarge {
                    function: key.to_string(),
                    limit,
                });
            }
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        for line in stderr.lines() {
            self.inner
                .logs
                .push(&key.name, &key.namespace, &lease.instance, line);
        }
        if !out.status.success()
            && let Some(detail) = self.inner.enforcement.memory_verdict(
                lease.spec.process.limits,
                out.oom_kills,
                &stderr,
            )
        {
            self.record_memory_kill(&lease.spec, &lease.instance, &detail);
            return Err(GatewayError::MemoryExceeded {
                function: key.to_string(),
                detail,
            });
        }
        if out.status.success() {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::CONTENT_TYPE, content_type);
            Ok(InvocationResponse {
                status: 200,
                headers,
                body: Bytes::from(out.stdout),
            })
        } else {
            let mut headers = HeaderMap::new();
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain"),
            );
            Ok(InvocationResponse {
                status: 500,
                headers,
                body: Bytes::from(format!("{}\n{stderr}", out.status)),
            })
        }
    }
}

/// `x-custom-header` -> `X_Custom_Header`, as the classic watchdog names `Http_*` variables.
fn canonical_env_header(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            match c.next() {
                Some(first) => {
                    first.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase()
                }
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_become_classic_watchdog_env_names() {
        assert_eq!(canonical_env_header("x-custom-header"), "X_Custom_Header");
        assert_eq!(canonical_env_header("content-type"), "Content_Type");
    }
}
