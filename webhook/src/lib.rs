//! The in-cluster server: validating admission webhook and ADS publisher.
//!
//! - [`ads`]: the ADS publisher (state of the world and delta) and [`bootstrap`] for Envoy.
//! - [`pipeline`]: source texts to compiled snapshots for the publisher.
//! - [`admission`]: AdmissionReview in, verdict out; the [`admission::Validate`]
//!   trait is the seam the compiler plugs into.
//! - [`server`]: HTTPS routes and the hardened accept loop.
//! - [`tls`]: the serving certificate, reloaded when the mounted Secret changes.
//! - [`certs`]: self-signed CA and serving certificate for bootstrap and local use.
//! - [`validator`]: the compiler-backed [`admission::Validate`].
//! - [`view`]: the watched store of what the compiler reads, fed by a manifest
//!   directory or by the cluster; status and Events back onto objects.
//! - [`lease`]: leader election on a Lease, so one replica writes status and Events.
//! - [`metrics`], [`telemetry`]: Prometheus text metrics and structured logs.

pub mod admission;
pub mod ads;
pub mod bootstrap;
pub mod certs;
pub mod fsevents;
pub mod lease;
pub mod metrics;
pub mod pipeline;
pub mod run;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod validator;
pub mod view;
