//! Ambassador configuration compiler: manifests in, checked resources, an IR and Envoy xDS out.
//!
//! The pipeline, front to back: [`front`] reads manifests and `getambassador.io/config`
//! annotations into resources that keep the exact position of every key and value in the
//! file the user edits; [`lower`] applies Ambassador's defaults, groups Mappings into routes,
//! orders them and normalises canary weights into the [`ir`]; [`check`] runs the checks that
//! need the whole configuration; [`envoy`] turns the IR into Envoy v3 resources.
//! Every pass returns its result together with [`diag::Diagnostic`]s and never fails on user
//! input. The crate does no I/O: callers hand it text.

pub mod admission;
pub mod base64;
pub mod check;
pub mod context;
pub mod diag;
pub mod envoy;
mod fnv;
pub mod front;
pub mod incremental;
pub mod ir;
pub mod lower;
pub mod matcher;
pub mod par;
pub mod re2;
pub mod source;
pub mod trace;

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
    compile_manifests(read_files(sources, skip, opts), lower_opts)
}

/// The first half of [`compile_files`]: reads the objects of every file but those in
/// `skip`. Nothing after it reads the text of the files (positions are lines and columns from
/// the start), so a caller may release it ([`Sources::release_text`]) before
/// [`compile_manifests`], or have [`read_files_releasing`] do it.
pub fn read_files(sources: &Sources, skip: &[source::FileId], opts: &Options) -> Manifests {
    let mut manifests = Manifests::default();
    for (id, _) in sources.iter() {
        if !skip.contains(&id) {
            front::read_file(sources, id, opts, &mut manifests);
        }
    }
    manifests
}

/// [`read_files`] for callers that read the objects only through [`compile_manifests`] or
/// [`compile_findings`] with [`LowerOptions::release_mapping_fields`] (`lint`, `preview`):
/// releases the text of each file `release` accepts as soon as its objects are parsed,
/// before they are gathered with the other files' (a copy of the objects' list, which then
/// does not share the peak with the text), and leaves out of each annotation Mapping's spec
/// the keys read into its id (see [`front::parse_file`]).
pub fn read_files_releasing(
    sources: &mut Sources,
    skip: &[source::FileId],
    opts: &Options,
    release: impl Fn(source::FileId) -> bool,
) -> Manifests {
    let mut manifests = Manifests::default();
    let ids: Vec<source::FileId> = sources.iter().map(|(id, _)| id).collect();
    for id in ids {
        if skip.contains(&id) {
            continue;
        }
        let parts = front::parse_file(sources, id, opts, true);
        if release(id) {
            sources.release_text(id);
        }
        front::gather(parts, &mut manifests);
    }
    manifests
}

/// The second half of [`compile_files`]: lowers and checks what [`read_files`] read.
pub fn compile_manifests(mut manifests: Manifests, lower_opts: &LowerOptions) -> Compilation {
    let (ir, mut diags) = if lower_opts.release_mapping_fields {
        lower::lower_releasing(&mut manifests, lower_opts)
    } else {
        lower::lower(&manifests, lower_opts)
    };
    check::check(&ir, &mut diags);
    let diagnostics = all_findings(std::mem::take(&mut manifests.diagnostics), diags);
    Compilation {
        manifests,
        ir,
        diagnostics,
    }
}

/// What [`compile_findings`] keeps of a compilation.
#[derive(Debug)]
pub struct Findings {
    /// Every finding, sorted by file and position: those of [`compile_manifests`].
    pub diagnostics: Vec<Diagnostic>,
    /// The number of Kubernetes objects read ([`Manifests::objects`]).
    pub objects: usize,
}

/// [`compile_manifests`] for a caller that wants only the findings (`lint`): the
/// diagnostics are the same, and what they no longer need goes as soon as it can, so the
/// three phases do not hold each other's data. Each Mapping's tree goes once it is read
/// (as with [`LowerOptions::release_mapping_fields`]), the Services once the Mappings are
/// read, and the objects and the clusters before the routes are checked.
pub fn compile_findings(mut manifests: Manifests, lower_opts: &LowerOptions) -> Findings {
    let (mut ir, mut diags) = lower::lower_for_findings(&mut manifests, lower_opts);
    let diagnostics = std::mem::take(&mut manifests.diagnostics);
    let objects = manifests.objects;
    // The check reads the listeners and the routes. (Taking fields out of `manifests` with a
    // pattern would keep the rest until the function returns: the objects were a fifth of
    // the check's peak.)
    drop(manifests);
    drop(std::mem::take(&mut ir.clusters));
    lower::after_freeing(lower_opts.freed);
    check::check(&ir, &mut diags);
    if lower_opts.exits_after {
        std::mem::forget(ir);
    } else {
        drop(ir);
    }
    Findings {
        diagnostics: all_findings(diagnostics, diags),
        objects,
    }
}

/// The findings of reading and those of lowering and checking, in one sorted list.
fn all_findings(mut diagnostics: Vec<Diagnostic>, mut later: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diagnostics.append(&mut later);
    diag::sort(&mut diagnostics);
    // A Mapping in several virtual hosts is checked in each: say each finding once.
    diagnostics.dedup_by(|a, b| a.code == b.code && a.span == b.span && a.message == b.message);
    diagnostics
}

/// Compiles one file with default options (tests and examples).
pub fn compile_one(name: &str, text: &str) -> Compilation {
    let mut sources = Sources::new();
    sources.add(name, text);
    compile(&sources, &Options::default(), &LowerOptions::default())
}

/// The ready addresses of a Kubernetes Service's port, from the Endpoints and EndpointSlices
/// in `m`: the Service port is mapped to its endpoint port by name (or, for a one-port
/// Service, directly), as kube-proxy does.
pub fn endpoints_of(
    m: &Manifests,
    namespace: &str,
    service: &str,
    port: u16,
) -> Vec<(String, u16)> {
    endpoints_among(
        m.services.iter(),
        m.endpoints.iter(),
        namespace,
        service,
        port,
    )
}

/// [`endpoints_of`] over Services and endpoints from anywhere (e.g. file by file).
pub fn endpoints_among<'a>(
    services: impl Iterator<Item = &'a front::ServiceInfo>,
    endpoints: impl Iterator<Item = &'a front::EndpointsInfo>,
    namespace: &str,
    service: &str,
    port: u16,
) -> Vec<(String, u16)> {
    // As kube-proxy does: the Service port's name picks the endpoint port (an unnamed
    // Service port pairs with the unnamed endpoint port), and the endpoints carry the port to
    // connect to, whatever the Service's `targetPort` says.
    let mut services = services;
    let name = services
        .find(|s| s.namespace == namespace && s.name == service)
        .and_then(|s| s.ports.iter().find(|p| p.port == port))
        .and_then(|p| p.name.as_deref().map(str::to_string));
    let mut out = Vec::new();
    for e in endpoints.filter(|e| e.namespace == namespace && e.service == service) {
        let target = e
            .ports
            .iter()
            .find(|(n, _)| *n == name)
            .or_else(|| {
                if e.ports.len() == 1 {
                    e.ports.first()
                } else {
                    None
                }
            })
            .map(|(_, n)| *n);
        if let Some(target) = target {
            out.extend(e.addresses.iter().map(|a| (a.clone(), target)));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The Envoy resources of a compilation, with EDS endpoints filled from the manifests.
pub fn envoy_resources(c: &Compilation) -> envoy::Resources {
    let mut res = envoy::emit(&c.ir);
    res.secrets = envoy::Collection::new(envoy::secrets(
        &c.ir.listeners,
        &c.ir.tcp_listeners,
        c.ir.clusters.values().map(|c| &**c),
        &c.manifests.secrets,
    ));
    eds_endpoints(c, |name, addrs| {
        res.set_endpoints(envoy::endpoints(name, addrs))
    });
    res
}

/// [`envoy_resources`] packed, without the typed messages ([`envoy::emit_packed`]): the
/// same names, versions and bytes.
pub fn envoy_resources_packed(c: &Compilation) -> envoy::PackedResources {
    let mut res = envoy::emit_packed(&c.ir);
    let secrets = envoy::secrets(
        &c.ir.listeners,
        &c.ir.tcp_listeners,
        c.ir.clusters.values().map(|c| &**c),
        &c.manifests.secrets,
    );
    res.secrets = envoy::PackedCollection::new(secrets.iter().map(envoy::parts::Packed::of));
    eds_endpoints(c, |name, addrs| {
        res.set_endpoints(&envoy::endpoints(name, addrs))
    });
    res
}

/// Calls `f` with every EDS service the clusters ask for, in name order, and its addresses
/// from the manifests' Endpoints and EndpointSlices.
fn eds_endpoints(c: &Compilation, mut f: impl FnMut(&str, &[(String, u16)])) {
    let wanted: std::collections::BTreeSet<String> =
        c.ir.clusters
            .values()
            .filter_map(|c| envoy::eds_service_of(c))
            .collect();
    for name in wanted {
        if let Some((ns, svc, port)) = envoy::parse_eds_service_name(&name) {
            f(&name, &endpoints_of(&c.manifests, ns, svc, port));
        }
    }
}
