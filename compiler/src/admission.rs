//! One Kubernetes object, as the admission webhook receives it, checked exactly as `lint` checks a file holding it.
//!
//! A Service's annotation is read as a text of its own, so positions are lines and columns
//! inside the annotation, which is what a person can find in the object they apply. A
//! custom resource is read from its JSON; its findings name fields, not positions.
//!
//! `kubectl apply -f` sends the objects of a file one at a time, in any order, so a finding
//! that another object can settle must not deny the object that arrives first. [`Reach`]
//! says, for each finding, whether it is about the object alone or depends on others, and
//! [`admission_severity`] turns that into the severity the webhook answers with.

use serde_json::Value;

use crate::diag::{Code, Diagnostic, ObjectRef, Severity};
use crate::front::{self, Manifests, Options, Resource, ServiceInfo, ANNOTATION};
use crate::ir::Ir;
use crate::lower::{self, LowerOptions};
use crate::source::{FileId, Sources};

/// The findings for one object.
#[derive(Debug)]
pub struct ObjectCheck {
    pub object: ObjectRef,
    pub diagnostics: Vec<Diagnostic>,
    pub sources: Sources,
    /// The file holding the annotation text, when the object is an annotated Service: its
    /// positions are inside the annotation.
    pub annotation: Option<FileId>,
    /// The Ambassador resources the object holds (one per annotation document).
    pub resources: Vec<Resource>,
    /// The object compiled on its own (with the shared resources it was given).
    pub ir: Ir,
}

/// kubectl's copy of the last applied configuration: an annotation nobody writes by hand.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// An object read from the API server, as its author wrote it: `apiVersion` and `kind` first
/// (list items come without them), without `managedFields`, `resourceVersion` and the
/// last-applied copy, and without `status` unless `keep_status`. `lint` on a cluster and the
/// webhook's watched view both read objects through this, so a finding has the same position
/// in both.
pub fn as_written(api_version: &str, kind: &str, object: Value, keep_status: bool) -> Value {
    let Value::Object(mut fields) = object else {
        return object;
    };
    // `shift_remove` throughout: the map keeps insertion order (serde_json's
    // `preserve_order`), which is the order the YAML is written in, and a plain `remove`
    // would move the last key into the hole and shift every position below it.
    let mut out = serde_json::Map::new();
    out.insert("apiVersion".into(), api_version.into());
    out.insert("kind".into(), kind.into());
    fields.shift_remove("apiVersion");
    fields.shift_remove("kind");
    if !keep_status {
        fields.shift_remove("status");
    }
    if let Some(Value::Object(meta)) = fields.get_mut("metadata") {
        meta.shift_remove("managedFields");
        meta.shift_remove("resourceVersion");
        if let Some(Value::Object(annotations)) = meta.get_mut("annotations") {
            annotations.shift_remove(LAST_APPLIED);
            if annotations.is_empty() {
                meta.shift_remove("annotations");
            }
        }
    }
    out.extend(fields);
    Value::Object(out)
}

/// Whether the webhook has anything to check in this object.
pub fn is_ambassador_object(obj: &Value) -> bool {
    let group = obj["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default();
    group == "getambassador.io" || obj["metadata"]["annotations"].get(ANNOTATION).is_some()
}

/// Checks one object (an AdmissionRequest's `object`) on its own.
pub fn check_object(obj: &Value, opts: &Options) -> ObjectCheck {
    check_object_with(obj, opts, &[], &[])
}

/// Checks one object with resources it may refer to (Hosts, TLSContexts, resolvers, the
/// Module) and the Services that exist, taken from the cluster's view. Findings about those
/// other resources are not reported.
pub fn check_object_with(
    obj: &Value,
    opts: &Options,
    shared: &[Resource],
    services: &[ServiceInfo],
) -> ObjectCheck {
    read_object(obj, opts).finish(shared, services)
}

/// One object read on its own (the first half of [`check_object_with`]), so that a caller
/// can look at its resources before choosing what to compile it with.
#[derive(Debug)]
pub struct ReadObject {
    object: ObjectRef,
    sources: Sources,
    /// The object's own resources, its own Service, and the findings of reading it.
    manifests: Manifests,
    annotation: Option<FileId>,
}

impl ReadObject {
    /// The object read: a Service for an annotation, the resource itself otherwise.
    pub fn object(&self) -> &ObjectRef {
        &self.object
    }

    /// The Ambassador resources the object holds.
    pub fn resources(&self) -> &[Resource] {
        &self.manifests.resources
    }

    /// Compiles the object with `shared` resources (those it may refer to), `others` (other
    /// objects' resources the check needs, such as the members of the canary groups it
    /// joins) and `services`. Returns the IR and every finding of lowering and of the
    /// whole-configuration checks, about the object and about the others alike
    /// ([`ReadObject::is_own`] tells them apart); the findings of reading the object are
    /// added by [`ReadObject::into_check`]. A resource of `shared` or `others` with the name
    /// of one of the object's own is left out: the object replaces it.
    pub fn compile_with(
        &self,
        shared: &[Resource],
        others: &[Resource],
        services: &[ServiceInfo],
    ) -> (Ir, Vec<Diagnostic>) {
        let own = &self.manifests.resources;
        let mut manifests = Manifests {
            resources: Vec::with_capacity(shared.len() + others.len() + own.len()),
            services: self.manifests.services.clone(),
            endpoints: self.manifests.endpoints.clone(),
            secrets: self.manifests.secrets.clone(),
            diagnostics: Vec::new(),
            objects: self.manifests.objects,
            excluded: Vec::new(),
        };
        manifests.resources.extend(
            shared
                .iter()
                .chain(others)
                .filter(|r| !own.iter().any(|o| o.id == r.id))
                .cloned(),
        );
        manifests.resources.extend(own.iter().cloned());
        manifests.services.extend(services.iter().cloned());
        let (ir, mut diags) = lower::lower(&manifests, &LowerOptions::default());
        crate::check::check(&ir, &mut diags);
        (ir, diags)
    }

    /// Whether a finding is about this object (or one of its resources), not another one.
    pub fn is_own(&self, d: &Diagnostic) -> bool {
        d.object
            .as_ref()
            .is_none_or(|o| *o == self.object || self.resources().iter().any(|r| r.id == *o))
    }

    /// The check of this object, from a compilation of it and the findings of that
    /// compilation kept about it, with the findings of reading it.
    pub fn into_check(mut self, ir: Ir, mut lowered: Vec<Diagnostic>) -> ObjectCheck {
        let mut diagnostics = std::mem::take(&mut self.manifests.diagnostics);
        diagnostics.append(&mut lowered);
        crate::diag::sort(&mut diagnostics);
        ObjectCheck {
            object: self.object,
            diagnostics,
            sources: self.sources,
            annotation: self.annotation,
            resources: self.manifests.resources,
            ir,
        }
    }

    /// Compiles the object with `shared` resources and `services` and checks it (the second
    /// half of [`check_object_with`]). Findings about the shared resources are left out.
    pub fn finish(self, shared: &[Resource], services: &[ServiceInfo]) -> ObjectCheck {
        let (ir, mut diagnostics) = self.compile_with(shared, &[], services);
        diagnostics.retain(|d| self.is_own(d));
        self.into_check(ir, diagnostics)
    }
}

/// How a finding at admission depends on objects other than the one under review.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// About the object alone (syntax, types, unknown fields, RE2, a malformed `service`,
    /// a weight over 100, a canary group made only of the object's own Mappings): lint's
    /// severity, so an error denies whatever the order objects arrive in.
    Own,
    /// Another object may settle it by arriving: a TLSContext, resolver, Host, Listener or
    /// Service not seen yet, a canary group whose weights do not add up to 100 yet, a
    /// shadow waiting for its primary.
    Awaits,
    /// Computed together with objects the view already holds: the object conflicts with
    /// them (a canary group it joins, a route it shadows or is shadowed by, a name they
    /// already use).
    Conflict,
}

/// Findings another object can settle by arriving: the object may be waiting for it.
pub fn awaits_others(code: Code) -> bool {
    matches!(
        code,
        Code::UndefinedTlsContext
            | Code::UndefinedResolver
            | Code::HostnameMatchesNoHost
            | Code::ServiceNotFound
            | Code::WeightTotalUnder100
            | Code::ShadowOnly
            | Code::HostNotBound
            | Code::ListenerServesNothing
            | Code::SecretNotFound
            | Code::HostsNotServed
    )
}

/// Findings computed on a canary group, or on Mappings that share a match under different
/// precedences: they involve other objects when the group holds some.
pub fn is_group_finding(code: Code) -> bool {
    matches!(
        code,
        Code::WeightTotalOver100
            | Code::WeightTotalUnder100
            | Code::CanaryPrecedence
            | Code::CanaryMismatch
            | Code::BypassAuthDiffers
            | Code::ShadowOnly
            | Code::ImplicitSplit
            | Code::ZeroWeight
            | Code::CanarySettingsDiffer
            | Code::CanaryRewritesDiffer
            | Code::GroupFlagsInherited
    )
}

/// Conflicts with the view that `--reject-conflicts` denies although lint only warns: the
/// same route bound to another service, shadowing, a would-be canary under another
/// precedence, a duplicate name.
const DENIED_CONFLICTS: [Code; 5] = [
    Code::ImplicitSplit,
    Code::ShadowedRoute,
    Code::ShadowedByRegex,
    Code::CanaryPrecedence,
    Code::DuplicateName,
];

/// The severity of a finding at admission. A finding about the object alone keeps lint's
/// severity. One that depends on other objects is at most a warning, so that no order of
/// `kubectl apply` denies a configuration lint accepts; with `reject_conflicts` it keeps
/// lint's severity, and conflicts with the view ([`DENIED_CONFLICTS`]) are errors.
pub fn admission_severity(
    lint: Severity,
    code: Code,
    reach: Reach,
    reject_conflicts: bool,
) -> Severity {
    match reach {
        Reach::Own => lint,
        _ if !reject_conflicts => lint.min(Severity::Warning),
        Reach::Conflict if DENIED_CONFLICTS.contains(&code) => Severity::Error,
        _ => lint,
    }
}

/// The words put before a finding that another object may settle. First, because the API
/// server may cut a warning after 120 characters.
pub const AWAITS_NOTE: &str = "may be waiting for another object";

/// Reads one object (an AdmissionRequest's `object`) into its resources, without compiling it.
pub fn read_object(obj: &Value, opts: &Options) -> ReadObject {
    let meta = &obj["metadata"];
    let object = ObjectRef {
        kind: obj["kind"].as_str().unwrap_or_default().into(),
        namespace: meta["namespace"]
            .as_str()
            .unwrap_or(&opts.default_namespace)
            .to_string()
            .into(),
        name: meta["name"].as_str().unwrap_or_default().into(),
    };
    let mut sources = Sources::new();
    let mut manifests = Manifests::default();
    let mut annotation = None;
    let group = obj["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default();
    let opts = Options {
        default_namespace: object.namespace.to_string(),
        ..opts.clone()
    };
    if group != "getambassador.io" {
        if let Some(value) = meta["annotations"].get(ANNOTATION) {
            match value.as_str() {
                Some(text) => {
                    let file = sources.add(format!("{ANNOTATION} of {object}"), text);
                    let labels: std::collections::BTreeMap<String, String> = meta["labels"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                                .collect()
                        })
                        .unwrap_or_default();
                    front::read_annotation_file(
                        &sources,
                        file,
                        &object,
                        &front::Labels::new(labels),
                        &opts,
                        &mut manifests,
                    );
                    if object.kind == "Service" {
                        // The Service being applied exists, whatever the cluster holds.
                        let ports = obj["spec"]["ports"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|p| {
                                Some(front::ServicePort {
                                    name: p["name"].as_str().map(Into::into),
                                    port: u16::try_from(p["port"].as_u64()?).ok()?,
                                    target_port: p
                                        .get("targetPort")
                                        .map(|t| t.to_string().trim_matches('"').into()),
                                })
                            })
                            .collect();
                        manifests.services.push(front::ServiceInfo {
                            namespace: object.namespace.clone(),
                            name: object.name.clone(),
                            ports,
                            span: crate::source::Span::default(),
                        });
                    }
                    annotation = Some(file);
                }
                None => manifests.diagnostics.push(
                    Diagnostic::new(
                        crate::diag::Code::AnnotationNotString,
                        None,
                        format!("`{ANNOTATION}` must be a string holding YAML"),
                    )
                    .with_object(&object),
                ),
            }
        }
    } else {
        // JSON is YAML: the object is read as it came, and findings name its fields.
        let text = serde_json::to_string_pretty(obj).unwrap_or_default();
        let file = sources.add(format!("{object}"), text);
        front::read_file(&sources, file, &opts, &mut manifests);
    }
    ReadObject {
        object,
        sources,
        manifests,
        annotation,
    }
}
