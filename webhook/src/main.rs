//! `ambassador-webhook`: serves admission and ADS from one watched view.

fn main() {}
