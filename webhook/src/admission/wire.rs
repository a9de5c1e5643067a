//! `admission.k8s.io/v1` AdmissionReview as it crosses the wire, and its checked form.
//!
//! k8s-openapi does not generate the admission types (they are not part of the
//! API server's OpenAPI document), so the fields we use are written out here
//! with the exact JSON names of `k8s.io/api/admission/v1`. Everything arrives
//! optional and is checked once, by `TryFrom`, into [`AdmissionRequest`].

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::InvalidReview;

/// The only review version we register for (`admissionReviewVersions: [v1]`).
pub const API_VERSION: &str = "admission.k8s.io/v1";
/// The `kind` of both the request and the response envelope.
pub const KIND: &str = "AdmissionReview";

/// `group`, `version`, `kind` of the object under review.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupVersionKind {
    /// Empty for the core group (Services).
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

/// `group`, `version`, `resource` (the plural, lowercase name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupVersionResource {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub resource: String,
}

/// Who asked; only logged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The envelope as received: every field optional so that a malformed review
/// becomes a precise [`InvalidReview`] instead of a generic serde message.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReviewIn {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub request: Option<RequestIn>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RequestIn {
    pub uid: Option<String>,
    pub kind: Option<GroupVersionKind>,
    pub resource: Option<GroupVersionResource>,
    pub sub_resource: Option<String>,
    pub request_kind: Option<GroupVersionKind>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub operation: Option<String>,
    pub user_info: Option<UserInfo>,
    pub object: Option<Value>,
    pub old_object: Option<Value>,
    pub dry_run: Option<bool>,
    pub options: Option<Value>,
}

/// What is being done to the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
    /// An operation this build does not know; admitted without validation
    /// rather than failing reviews after an API server upgrade.
    Other(String),
}

impl Operation {
    fn parse(s: &str) -> Self {
        match s {
            "CREATE" => Operation::Create,
            "UPDATE" => Operation::Update,
            "DELETE" => Operation::Delete,
            "CONNECT" => Operation::Connect,
            other => Operation::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
            Operation::Other(s) => s,
        })
    }
}

/// A checked admission request: the fields the API server always sends are
/// no longer optional.
#[derive(Debug, Clone)]
pub struct AdmissionRequest {
    pub uid: String,
    pub kind: GroupVersionKind,
    pub resource: Option<GroupVersionResource>,
    /// Set for writes to a subresource such as `status`.
    pub sub_resource: Option<String>,
    /// The kind the client asked for, before `matchPolicy: Equivalent` conversion.
    pub request_kind: Option<GroupVersionKind>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub operation: Operation,
    pub user_info: UserInfo,
    pub object: Option<Value>,
    pub old_object: Option<Value>,
    pub dry_run: bool,
    pub options: Option<Value>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

impl TryFrom<ReviewIn> for AdmissionRequest {
    type Error = InvalidReview;

    fn try_from(review: ReviewIn) -> Result<Self, InvalidReview> {
        match review.api_version.as_deref() {
            Some(API_VERSION) => {}
            other => return Err(InvalidReview::ApiVersion(describe(other))),
        }
        match review.kind.as_deref() {
            Some(KIND) => {}
            other => return Err(InvalidReview::Kind(describe(other))),
        }
        let req = review.request.ok_or(InvalidReview::MissingRequest)?;
        let uid = non_empty(req.uid).ok_or(InvalidReview::MissingUid)?;
        let kind = req
            .kind
            .filter(|k| !k.kind.is_empty())
            .ok_or(InvalidReview::MissingField("request.kind"))?;
        let operation = non_empty(req.operation)
            .map(|op| Operation::parse(&op))
            .ok_or(InvalidReview::MissingField("request.operation"))?;
        // The API server always sends the new object on CREATE and UPDATE; a review
        // without one cannot be validated, and admitting it would be a silent hole.
        if matches!(operation, Operation::Create | Operation::Update) && req.object.is_none() {
            return Err(InvalidReview::MissingObject(operation));
        }
        Ok(AdmissionRequest {
            uid,
            kind,
            resource: req.resource,
            sub_resource: non_empty(req.sub_resource),
            request_kind: req.request_kind,
            name: non_empty(req.name),
            namespace: non_empty(req.namespace),
            operation,
            user_info: req.user_info.unwrap_or_default(),
            object: req.object,
            old_object: req.old_object,
            dry_run: req.dry_run.unwrap_or(false),
            options: req.options,
        })
    }
}

fn describe(value: Option<&str>) -> String {
    match value {
        Some(v) => format!("`{v}`"),
        None => "nothing".to_owned(),
    }
}

/// `status` of a denial; kubectl prints `message` as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub code: u16,
    pub message: String,
    pub reason: String,
}

/// The `response` half of the review we send back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionResponse {
    /// Must equal the request's `uid`, or the API server discards the answer.
    pub uid: String,
    pub allowed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The envelope we answer with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewOut {
    pub api_version: String,
    pub kind: String,
    pub response: AdmissionResponse,
}

impl ReviewOut {
    pub fn new(response: AdmissionResponse) -> Self {
        ReviewOut {
            api_version: API_VERSION.to_owned(),
            kind: KIND.to_owned(),
            response,
        }
    }
}
