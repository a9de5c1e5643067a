//! The in-cluster server: validating admission webhook and ADS publisher.
