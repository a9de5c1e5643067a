//! Ambassador configuration compiler: manifests in, checked resources, an IR and Envoy xDS out.
//!
//! The pipeline, front to back: [`front`] reads manifests and `getambassador.io/config`
//! annotations into resources that keep the exact position of every key and value in the
//! file the user edits; [`lower`] applies Ambassador's defaults, groups Mappings into routes,
//! orders them and normalises canary weights into the [`ir`]; [`check`] runs the checks that
//! need the whole configuration; [`envoy`] turns the IR into Envoy v3 resources.
//! Every pass returns its result together with [`diag::Diagnostic`]s and never fails on user
//! input. The crate does no I/O: callers hand it text.

pub mod check;
pub mod diag;
pub mod envoy;
pub mod front;
pub mod ir;
pub mod lower;
pub mod re2;
pub mod source;

use diag::Diagnostic;
use front::{Manifests, Options};
use ir::Ir;
use lower::LowerOptions;
use source::Sources;

/// The result of compiling a set of sources.
#[derive(Debug)]
pub struct Compilation {
    pub manifests: Manifests,
    pub ir: Ir,
    /// Every finding, sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads, lowers and checks every file of `sources`.
pub fn compile(sources: &Sources, opts: &Options, lower_opts: &LowerOptions) -> Compilation {
    compile_files(sources, &[], opts, lower_opts)
}

/// Like [`compile`], leaving out the files in `skip` (e.g. files that are not text).
pub fn compile_files(
    sources: &Sources,
    skip: &[source::FileId],
    opts: &Options,
    lower_opts: &LowerOptions,
) -> Compilation {
    let mut manifests = Manifests::default();
    for (id, _) in sources.iter() {
        if !skip.contains(&id) {
            front::read_file(sources, id, opts, &mut manifests);
        }
    }
    let (ir, mut diags) = lower::lower(&manifests, lower_opts);
    check::check(&ir, &mut diags);
    let mut diagnostics = std::mem::take(&mut manifests.diagnostics);
    diagnostics.append(&mut diags);
    diag::sort(&mut diagnostics);
    Compilation {
        manifests,
        ir,
        diagnostics,
    }
}

/// Compiles one file with default options (tests and examples).
pub fn compile_one(name: &str, text: &str) -> Compilation {
    let mut sources = Sources::new();
    sources.add(name, text);
    compile(&sources, &Options::default(), &LowerOptions::default())
}
