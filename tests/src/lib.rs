//! End-to-end test support: real Envoy, the publisher and loopback backends.
//!
//! - [`apiserver`]: an in-process stand-in for the Kubernetes API server (lists, watches,
//!   status patches, Events) and a kubeconfig writer pointing at it.

pub mod apiserver;
