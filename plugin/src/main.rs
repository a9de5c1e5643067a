//! `kubectl ambassador`: lint, routes, trace and preview.

fn main() {}
