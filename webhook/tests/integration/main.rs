//! Integration tests: the webhook over real TLS on loopback, and the install manifests.

mod admission;
mod compiler;
mod limits;
mod manifests;
mod rotation;
mod support;
