//! `marketplace`: Fogmarket's trusted marketplace.
//!
//! This crate owns the marketplace service: its HTTP API (actix-web, JSON camelCase,
//! GIRAFF-compatible client payloads), the orchestration of reverse auctions over the fog
//! overlay (the marketplace calls only the target node, the nodes relay), the node registry
//! (enrollment, signed heartbeats, liveness), placements and their lifetime, and persistence
//! with sqlx (an embedded SQLite file by default, PostgreSQL when the database URL says
//! `postgres://`). The auction rules themselves, the SLA and the wire messages live in `model`.
//!
//! Layering: [`routes`] (handlers: extract, convert, map errors to status codes) ->
//! [`service`] (the rules) -> [`repository`] (SQL). Calls to fog nodes go through
//! [`node_client`]. Each layer has its own error enum ([`error`] holds the service's and the
//! HTTP answer to each). The service answers with the read models of [`views`], built from
//! records without I/O; the schema and its migrations, one set for both engines, are
//! [`schema`]. Periodic work (placement expiry, node
//! liveness) is a step function taking `now` ([`service::Marketplace::finish_due_placements`],
//! [`service::Marketplace::mark_silent_nodes_dead`]) driven by a loop in [`startup`].
//!
//! Clients of the client API: tokens (made by `marketplace token create`, stored hashed),
//! ownership of placements and per-client limits live in [`clients`]; whether tokens are
//! required is [`clients::ClientAuth`] in [`Settings`].
//!
//! Observability: Prometheus metrics at `GET /metrics` ([`metrics`]) and an operator
//! dashboard at `GET /` fed by `GET /api/dashboard` ([`dashboard`]).
//!
//! Library entry point for the binary, the tests and the testbed launcher:
//! [`Settings`] -> [`Application::build`] -> [`Application::port`] ->
//! [`Application::run_until_stopped`].

pub mod clients;
pub mod dashboard;
pub mod error;
pub mod metrics;
pub mod node_client;
pub mod release_batch;
pub mod repository;
pub mod routes;
pub mod schema;
pub mod service;
pub mod settings;
pub mod startup;
pub mod views;

pub use settings::Settings;
pub use startup::Application;
