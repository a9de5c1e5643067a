//! Admission reviews: decide what to validate, ask the compiler, answer the API server.
//!
//! Scope: Services carrying the `getambassador.io/config` annotation and every
//! resource of the `getambassador.io` group, on CREATE and UPDATE. Everything
//! else (DELETE, CONNECT, subresource writes such as `status`, other objects) is
//! admitted at once without calling the validator.
//!
//! Review handling has no side effects, so `dryRun` requests are answered
//! exactly like real ones, as `sideEffects: None` promises the API server.

mod render;
mod validate;
mod wire;

#[cfg(test)]
mod tests;

use std::fmt;

use serde_json::Value;

pub use render::{MAX_ERROR_LINES, MAX_WARNING_CHARS};
pub use validate::{AllowAll, Finding, Severity, Validate};
pub use wire::{
    AdmissionRequest, AdmissionResponse, GroupVersionKind, GroupVersionResource, Operation,
    ReviewOut, Status, UserInfo, API_VERSION, KIND,
};

/// The annotation on Services that carries Ambassador configuration.
pub const CONFIG_ANNOTATION: &str = "getambassador.io/config";
/// The API group of Ambassador's custom resources.
pub const GROUP: &str = "getambassador.io";

/// HTTP status code of a denial. 422 with reason `Invalid` is what the API
/// server itself answers for an object that fails validation.
pub const DENIAL_CODE: u16 = 422;
const DENIAL_REASON: &str = "Invalid";

/// A review we cannot answer: the API server (or whoever sent it) gets a 400.
#[derive(Debug, thiserror::Error)]
pub enum InvalidReview {
    /// The body is not JSON, or a field has the wrong JSON type.
    #[error("request body is not a valid AdmissionReview: {0}")]
    Json(#[from] serde_json::Error),
    /// `apiVersion` is not `admission.k8s.io/v1`.
    #[error("AdmissionReview apiVersion must be `admission.k8s.io/v1`, got {0}")]
    ApiVersion(String),
    /// `kind` is not `AdmissionReview`.
    #[error("AdmissionReview kind must be `AdmissionReview`, got {0}")]
    Kind(String),
    /// No `request` in the review.
    #[error("AdmissionReview has no `request`")]
    MissingRequest,
    /// `request.uid` absent or empty: the answer could not be matched to the question.
    #[error("AdmissionReview `request.uid` is missing or empty")]
    MissingUid,
    /// Another field the API server always sends is absent.
    #[error("AdmissionReview `{0}` is missing")]
    MissingField(&'static str),
    /// CREATE or UPDATE without `request.object`.
    #[error("AdmissionReview `request.object` is missing for operation {0}")]
    MissingObject(Operation),
}

/// Where the configuration under review lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The `getambassador.io/config` annotation of a Service.
    Annotation,
    /// A `getambassador.io` custom resource.
    Resource,
}

/// The object a review is about, as named in messages: `Mapping ns/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub source: Source,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// What we decided, for metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not ours to validate (operation, subresource or object out of scope).
    Skipped,
    /// Validated and admitted, possibly with warnings.
    Allowed { warnings: usize },
    /// Validated and denied.
    Denied { errors: usize },
}

/// A review's answer plus what it meant.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub review: ReviewOut,
    pub verdict: Verdict,
    /// `None` when skipped.
    pub subject: Option<Subject>,
    pub dry_run: bool,
}

/// Parses and checks an AdmissionReview body.
pub fn parse(body: &[u8]) -> Result<AdmissionRequest, InvalidReview> {
    let review: wire::ReviewIn = serde_json::from_slice(body)?;
    AdmissionRequest::try_from(review)
}

/// Answers one AdmissionReview body.
pub fn review(validator: &dyn Validate, body: &[u8]) -> Result<Outcome, InvalidReview> {
    let request = parse(body)?;
    Ok(decide(validator, &request))
}

/// Answers a checked request.
pub fn decide(validator: &dyn Validate, request: &AdmissionRequest) -> Outcome {
    let Some(subject) = subject(request) else {
        return Outcome {
            review: ReviewOut::new(allow(&request.uid, Vec::new())),
            verdict: Verdict::Skipped,
            subject: None,
            dry_run: request.dry_run,
        };
    };
    // `subject` returns Some only when the object is present.
    let object = request.object.as_ref().unwrap_or(&Value::Null);
    let mut findings = validator.validate(object);

    // Ratcheting: on UPDATE, an error the old object already had does not deny.
    // Otherwise an object that a newer validator considers broken could not even
    // have a finalizer removed or a label changed; the user still sees the error,
    // as a warning, and it cannot get worse because every new error still denies.
    if request.operation == Operation::Update {
        if let Some(old) = request.old_object.as_ref() {
            if findings.iter().any(|f| f.severity == Severity::Error) {
                let before = validator.validate(old);
                for finding in &mut findings {
                    if finding.severity == Severity::Error
                        && before.iter().any(|b| same(b, finding))
                    {
                        finding.severity = Severity::Warning;
                        finding
                            .message
                            .push_str(" (already present before this update)");
                    }
                }
            }
        }
    }

    let errors: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    let mut warnings: Vec<String> = Vec::new();
    for finding in findings.iter().filter(|f| f.severity == Severity::Warning) {
        let line = render::warning(&subject, finding);
        if !warnings.contains(&line) {
            warnings.push(line);
        }
    }

    let (response, verdict) = if errors.is_empty() {
        let n = warnings.len();
        (
            allow(&request.uid, warnings),
            Verdict::Allowed { warnings: n },
        )
    } else {
        let response = AdmissionResponse {
            uid: request.uid.clone(),
            allowed: false,
            status: Some(Status {
                code: DENIAL_CODE,
                message: render::denial(&subject, &errors),
                reason: DENIAL_REASON.to_owned(),
            }),
            warnings,
        };
        (
            response,
            Verdict::Denied {
                errors: errors.len(),
            },
        )
    };
    Outcome {
        review: ReviewOut::new(response),
        verdict,
        subject: Some(subject),
        dry_run: request.dry_run,
    }
}

/// The same finding on the old object: positions may move when lines are added
/// above, so they are not compared.
fn same(a: &Finding, b: &Finding) -> bool {
    a.code == b.code && a.field == b.field && a.message == b.message
}

fn allow(uid: &str, warnings: Vec<String>) -> AdmissionResponse {
    AdmissionResponse {
        uid: uid.to_owned(),
        allowed: true,
        status: None,
        warnings,
    }
}

/// The object this request asks us to validate, or `None` to admit at once.
pub fn subject(request: &AdmissionRequest) -> Option<Subject> {
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return None;
    }
    // Writes to `status` come from controllers reporting on an object that was
    // already admitted; blocking them would hide the very errors they report.
    if request.sub_resource.is_some() {
        return None;
    }
    let object = request.object.as_ref()?;
    let source = if request.kind.group == GROUP {
        Source::Resource
    } else if request.kind.group.is_empty()
        && request.kind.kind == "Service"
        && object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(CONFIG_ANNOTATION))
            .is_some_and(Value::is_string)
    {
        Source::Annotation
    } else {
        return None;
    };
    let meta = |key: &str| {
        object
            .get("metadata")
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    // On CREATE with `generateName` the API server has not chosen the name yet.
    let name = request
        .name
        .clone()
        .or_else(|| meta("name"))
        .or_else(|| meta("generateName").map(|prefix| format!("{prefix}<generated>")))
        .unwrap_or_else(|| "<unnamed>".to_owned());
    Some(Subject {
        kind: request.kind.kind.clone(),
        namespace: request.namespace.clone().or_else(|| meta("namespace")),
        name,
        source,
    })
}
