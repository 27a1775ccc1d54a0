//! The node's FaaS backend: a client of a real OpenFaaS gateway, or of the embedded gateway
//! that the node starts on first use and stops on shutdown.

use crate::config::{Config, FaasBackend};
use crate::faas::OpenFaasClient;
use std::net::SocketAddr;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// The node's FaaS backend: a client, and the embedded gateway when the node runs one.
pub struct FaasHandle {
    pub client: OpenFaasClient,
    /// The embedded gateway's service, in this process: the data plane invokes through it
    /// (the gateway leases a replica and forwards to it) instead of calling the gateway's HTTP
    /// server, so a local call crosses one hop, node -> replica, not two.
    pub local: Option<faas_gateway::Service>,
    embedded: Mutex<Option<EmbeddedGateway>>,
}

struct EmbeddedGateway {
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl FaasHandle {
    /// Stops the embedded gateway (killing its function processes), if this handle runs one.
    pub async fn shutdown(&self) {
        if let Some(gw) = self.embedded.lock().await.take() {
            let _ = gw.stop.send(());
            match gw.task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "embedded gateway stopped with an error"),
                Err(e) => tracing::warn!(error = %e, "embedded gateway task failed"),
            }
        }
    }
}

/// Starts the backend `config` names: a client of `faas.gateway_url`, or the embedded gateway.
pub async fn start_backend(config: &Config, http: reqwest::Client) -> anyhow::Result<FaasHandle> {
    let auth = config
        .faas
        .username
        .clone()
        .zip(config.faas.password.clone());
    match config.faas.backend {
        FaasBackend::Openfaas => {
            let url = config.faas.gateway_url.clone().ok_or_else(|| {
                anyhow::anyhow!("faas.gateway_url is required for backend = \"openfaas\"")
            })?;
            Ok(FaasHandle {
                client: OpenFaasClient::new(http, &url, auth)
                    .with_max_answer(config.offload.max_answer_bytes()),
                local: None,
                embedded: Mutex::new(None),
            })
        }
        FaasBackend::Embedded => {
            let catalog = config
                .faas
                .catalog_dir
                .clone()
                .unwrap_or_else(faas_gateway::default_catalog_dir);
            let mut settings =
                faas_gateway::GatewaySettings::new(SocketAddr::from(([127, 0, 0, 1], 0)), catalog);
            settings.extra_env = vec![("FOGMARKET_NODE_NAME".into(), config.name.clone())];
            settings.ready_timeout = config.faas.ready_timeout.as_duration();
            let gateway = faas_gateway::Gateway::build(settings).await?;
            let url = gateway.url();
            let local = gateway.service().clone();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(gateway.run_until_stopped(async {
                let _ = stopped.await;
            }));
            tracing::info!(%url, "embedded OpenFaaS gateway started");
            Ok(FaasHandle {
                client: OpenFaasClient::new(http, &url, None)
                    .with_max_answer(config.offload.max_answer_bytes()),
                local: Some(local),
                embedded: Mutex::new(Some(EmbeddedGateway { stop, task })),
            })
        }
    }
}
