//! The in-cluster server: validating admission webhook and ADS publisher.

pub mod ads;
pub mod bootstrap;
