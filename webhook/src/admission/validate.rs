//! The seam between the webhook and the compiler: one object in, findings out.

use serde::Serialize;

/// What the webhook asks of the compiler for one object.
///
/// Implementations must not block for long: the API server gives the whole
/// review at most `timeoutSeconds` (5 in our manifests). The webhook runs
/// `validate` on a blocking thread and turns a panic into a failed review, so a
/// compiler bug costs one request, not the server.
pub trait Validate: Send + Sync + 'static {
    /// `object` is the AdmissionRequest's `object` (JSON): a Service carrying the
    /// `getambassador.io/config` annotation, or a `getambassador.io` resource.
    /// Returns the findings for it; an empty list admits the object.
    fn validate(&self, object: &serde_json::Value) -> Vec<Finding>;
}

/// A shared validator validates: the server can hold one that another task keeps current.
impl<T: Validate> Validate for std::sync::Arc<T> {
    fn validate(&self, object: &serde_json::Value) -> Vec<Finding> {
        (**self).validate(object)
    }
}

/// Whether a finding rejects the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Denies the request.
    Error,
    /// Admits the request; shown by kubectl as `Warning: ...`.
    Warning,
}

/// One diagnostic, already "cooked" by the compiler into what a person reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// Stable diagnostic code, for example `E0101`.
    pub code: String,
    /// The field the finding is about, as the user wrote it: `prefix` inside an
    /// annotation, `spec.prefix` in a custom resource.
    pub field: Option<String>,
    /// 1-based line inside the annotation value, when known.
    pub line: Option<u32>,
    /// 1-based column inside the annotation value, when known.
    pub column: Option<u32>,
    /// Lowercase, no trailing period, names things in backticks.
    pub message: String,
}

impl Finding {
    /// An error finding with no position.
    pub fn error(code: impl Into<String>, message: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Error,
            code: code.into(),
            field: None,
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// A warning finding with no position.
    pub fn warning(code: impl Into<String>, message: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Warning,
            ..Finding::error(code, message)
        }
    }

    /// Sets the field the finding is about.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Sets the 1-based line and column inside the annotation.
    pub fn at(mut self, line: u32, column: u32) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }
}

/// Admits everything. The binary uses it until the compiler-backed validator is
/// wired in, so that installing the manifests never blocks a cluster on a
/// validator that does not exist yet.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

impl Validate for AllowAll {
    fn validate(&self, _object: &serde_json::Value) -> Vec<Finding> {
        Vec::new()
    }
}
