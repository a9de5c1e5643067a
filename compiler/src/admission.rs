//! One Kubernetes object, as the admission webhook receives it, checked exactly as `lint` checks a file holding it.
//!
//! A Service's annotation is read as a text of its own, so positions are lines and columns
//! inside the annotation, which is what a person can find in the object they apply. A
//! custom resource is read from its JSON; its findings name fields, not positions.

use serde_json::Value;

use crate::diag::{Diagnostic, ObjectRef};
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
    /// The Ambassador resources the object holds.
    pub fn resources(&self) -> &[Resource] {
        &self.manifests.resources
    }

    /// Compiles the object with `shared` resources and `services` and checks it (the second
    /// half of [`check_object_with`]).
    pub fn finish(self, shared: &[Resource], services: &[ServiceInfo]) -> ObjectCheck {
        let ReadObject {
            object,
            sources,
            mut manifests,
            annotation,
        } = self;
        let own: Vec<Resource> = std::mem::take(&mut manifests.resources);
        let own_ids: Vec<ObjectRef> = own.iter().map(|r| r.id.clone()).collect();
        manifests.resources = shared
            .iter()
            .filter(|r| !own_ids.contains(&r.id))
            .cloned()
            .collect();
        manifests.resources.extend(own.iter().cloned());
        manifests.services.extend(services.iter().cloned());
        let (ir, mut diags) = lower::lower(&manifests, &LowerOptions::default());
        crate::check::check(&ir, &mut diags);
        let mut diagnostics = std::mem::take(&mut manifests.diagnostics);
        diags.retain(|d| {
            d.object
                .as_ref()
                .is_none_or(|o| *o == object || own_ids.contains(o))
        });
        diagnostics.append(&mut diags);
        crate::diag::sort(&mut diagnostics);
        ObjectCheck {
            object,
            diagnostics,
            sources,
            annotation,
            resources: own,
            ir,
        }
    }
}

/// Reads one object (an AdmissionRequest's `object`) into its resources, without compiling it.
pub fn read_object(obj: &Value, opts: &Options) -> ReadObject {
    let meta = &obj["metadata"];
    let object = ObjectRef {
        kind: obj["kind"].as_str().unwrap_or_default().to_string(),
        namespace: meta["namespace"]
            .as_str()
            .unwrap_or(&opts.default_namespace)
            .to_string(),
        name: meta["name"].as_str().unwrap_or_default().to_string(),
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
        default_namespace: object.namespace.clone(),
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
                                    name: p["name"].as_str().map(str::to_string),
                                    port: u16::try_from(p["port"].as_u64()?).ok()?,
                                    target_port: p
                                        .get("targetPort")
                                        .map(|t| t.to_string().trim_matches('"').to_string()),
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
