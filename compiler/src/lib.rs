//! Ambassador configuration compiler: manifests in, checked resources, an IR and Envoy xDS out.
//!
//! The pipeline, front to back: [`front`] reads manifests and `getambassador.io/config`
//! annotations into resources that keep the exact position of every key and value in the
//! file the user edits; [`lower`] applies Ambassador's defaults, groups Mappings into routes,
//! orders them and normalises canary weights into the [`ir`]; [`check`] runs the checks that
//! need the whole configuration; [`envoy`] turns the IR into Envoy v3 resources.
//! Every pass returns its result together with [`diag::Diagnostic`]s and never fails on user
//! input. The crate does no I/O: callers hand it text.

pub mod ir;
pub mod re2;
pub mod source;
