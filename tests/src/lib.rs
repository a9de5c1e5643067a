//! End-to-end test support: real Envoy, the publisher and loopback backends.
