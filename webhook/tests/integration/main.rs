//! Integration tests: the webhook over real TLS on loopback, and the install manifests.

mod admission;
mod compiler;
mod limits;
mod load;
mod manifests;
mod rotation;
mod support;
