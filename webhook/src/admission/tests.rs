//! Unit tests for review parsing, scoping, ratcheting and message rendering.

use serde_json::{json, Value};

use super::*;

/// Flags `prefix` values that do not start with `/`, in annotations (line 2,
/// column 9) and in `spec.prefix`; warns about `timout_ms`.
struct PrefixCheck;

impl Validate for PrefixCheck {
    fn validate(&self, object: &Value) -> Vec<Finding> {
        let mut out = Vec::new();
        let annotation = object
            .pointer("/metadata/annotations/getambassador.io~1config")
            .and_then(Value::as_str);
        let (text, field) = match annotation {
            Some(text) => (text.to_owned(), "prefix"),
            None => (object.to_string(), "spec.prefix"),
        };
        if text.contains("prefix: foo") || object.pointer("/spec/prefix") == Some(&json!("foo")) {
            let f = Finding::error("E0101", "`prefix` must start with `/`").with_field(field);
            out.push(if annotation.is_some() { f.at(2, 9) } else { f });
        }
        if text.contains("timout_ms") {
            out.push(Finding::warning(
                "W0001",
                "unknown field `timout_ms`; did you mean `timeout_ms`?",
            ));
        }
        out
    }
}

fn review_body(operation: &str, kind: Value, object: Value, old: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": kind,
            "resource": {"group": "getambassador.io", "version": "v3alpha1", "resource": "mappings"},
            "name": "quote",
            "namespace": "default",
            "operation": operation,
            "userInfo": {"username": "admin", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": old,
            "dryRun": false,
        }
    }))
    .unwrap()
}

fn mapping(prefix: &str) -> Value {
    json!({
        "apiVersion": "getambassador.io/v3alpha1",
        "kind": "Mapping",
        "metadata": {"name": "quote", "namespace": "default"},
        "spec": {"prefix": prefix, "service": "quote"}
    })
}

fn mapping_kind() -> Value {
    json!({"group": "getambassador.io", "version": "v3alpha1", "kind": "Mapping"})
}

#[test]
fn denial_names_the_object_then_one_line_per_error() {
    let out = review(
        &PrefixCheck,
        &review_body("CREATE", mapping_kind(), mapping("foo"), Value::Null),
    )
    .unwrap();
    let response = &out.review.response;
    assert!(!response.allowed);
    assert_eq!(response.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
    let status = response.status.as_ref().unwrap();
    assert_eq!(status.code, 422);
    assert_eq!(status.reason, "Invalid");
    assert_eq!(
        status.message,
        "Mapping default/quote: 1 error\n  spec.prefix: [E0101] `prefix` must start with `/`"
    );
    assert_eq!(out.verdict, Verdict::Denied { errors: 1 });
}

#[test]
fn annotation_errors_carry_their_position_inside_the_annotation() {
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "quote", "namespace": "default", "annotations": {
            "getambassador.io/config": "apiVersion: getambassador.io/v2\nprefix: foo\n"
        }},
        "spec": {"ports": [{"port": 80}]}
    });
    let kind = json!({"group": "", "version": "v1", "kind": "Service"});
    let out = review(
        &PrefixCheck,
        &review_body("CREATE", kind, service, Value::Null),
    )
    .unwrap();
    let message = out.review.response.status.unwrap().message;
    assert_eq!(
        message,
        "Service default/quote: 1 error in annotation `getambassador.io/config`\n  prefix at 2:9: [E0101] `prefix` must start with `/`"
    );
}

#[test]
fn services_without_the_annotation_and_other_kinds_are_skipped() {
    let kind = json!({"group": "", "version": "v1", "kind": "Service"});
    let plain = json!({"metadata": {"name": "x", "annotations": {"other": "prefix: foo"}}});
    let out = review(
        &PrefixCheck,
        &review_body("CREATE", kind, plain, Value::Null),
    )
    .unwrap();
    assert_eq!(out.verdict, Verdict::Skipped);
    assert!(out.review.response.allowed);

    let kind = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let out = review(
        &PrefixCheck,
        &review_body("CREATE", kind, mapping("foo"), Value::Null),
    )
    .unwrap();
    assert_eq!(out.verdict, Verdict::Skipped);
}

#[test]
fn delete_connect_and_status_writes_are_admitted_without_validation() {
    for op in ["DELETE", "CONNECT"] {
        let out = review(
            &PrefixCheck,
            &review_body(op, mapping_kind(), Value::Null, mapping("foo")),
        )
        .unwrap();
        assert_eq!(out.verdict, Verdict::Skipped, "{op}");
        assert!(out.review.response.allowed);
    }
    let mut body: Value = serde_json::from_slice(&review_body(
        "UPDATE",
        mapping_kind(),
        mapping("foo"),
        mapping("/"),
    ))
    .unwrap();
    body["request"]["subResource"] = json!("status");
    let out = review(&PrefixCheck, &serde_json::to_vec(&body).unwrap()).unwrap();
    assert_eq!(out.verdict, Verdict::Skipped);
}

#[test]
fn update_does_not_deny_an_error_the_old_object_already_had() {
    let mut old = mapping("foo");
    old["metadata"]["labels"] = json!({"a": "b"});
    let out = review(
        &PrefixCheck,
        &review_body("UPDATE", mapping_kind(), mapping("foo"), old),
    )
    .unwrap();
    assert!(out.review.response.allowed);
    assert_eq!(out.verdict, Verdict::Allowed { warnings: 1 });
    assert_eq!(
        out.review.response.warnings,
        vec!["Mapping default/quote: spec.prefix: [E0101] `prefix` must start with `/` (already present before this update)".to_owned()]
    );

    // A new error on UPDATE still denies.
    let out = review(
        &PrefixCheck,
        &review_body("UPDATE", mapping_kind(), mapping("foo"), mapping("/ok")),
    )
    .unwrap();
    assert!(!out.review.response.allowed);
}

#[test]
fn warnings_are_short_single_lines_naming_the_object_and_deduplicated() {
    let subject = Subject {
        kind: "Mapping".into(),
        namespace: Some("default".into()),
        name: "quote".into(),
        source: Source::Resource,
    };
    let long = Finding::warning("W0002", format!("first line\nsecond {}", "x".repeat(300)));
    let line = render::warning(&subject, &long);
    assert_eq!(line.chars().count(), MAX_WARNING_CHARS);
    assert!(
        line.starts_with("Mapping default/quote: [W0002] first line second x"),
        "{line}"
    );
    assert!(line.ends_with("..."));
    assert!(!line.contains('\n'));

    let mut object = mapping("/");
    object["spec"]["timout_ms"] = json!(10);
    object["spec"]["again"] = json!("timout_ms");
    struct Twice;
    impl Validate for Twice {
        fn validate(&self, o: &Value) -> Vec<Finding> {
            let mut v = PrefixCheck.validate(o);
            v.extend(PrefixCheck.validate(o));
            v
        }
    }
    let out = review(
        &Twice,
        &review_body("CREATE", mapping_kind(), object, Value::Null),
    )
    .unwrap();
    assert!(out.review.response.allowed);
    assert_eq!(
        out.review.response.warnings,
        vec![
            "Mapping default/quote: [W0001] unknown field `timout_ms`; did you mean `timeout_ms`?"
                .to_owned()
        ]
    );
}

/// Found by the `admission` fuzz target: a review whose `request.namespace` held line breaks
/// produced a warning of several lines, which cannot travel as an HTTP `Warning` header.
#[test]
fn a_namespace_with_line_breaks_still_gives_one_line_warnings_and_a_one_line_subject() {
    let mut body: Value = serde_json::from_slice(&review_body(
        "CREATE",
        mapping_kind(),
        json!({
            "apiVersion": "getambassador.io/v3alpha1",
            "kind": "Mapping",
            "metadata": {"name": "quote"},
            "spec": {"prefix": "/", "service": "quote", "timout_ms": 10}
        }),
        Value::Null,
    ))
    .unwrap();
    body["request"]["namespace"] = json!("team\nX-Injected: 1\r\n");
    let out = review(&PrefixCheck, &serde_json::to_vec(&body).unwrap()).unwrap();
    assert_eq!(
        out.review.response.warnings,
        vec![
            "Mapping team X-Injected: 1  /quote: [W0001] unknown field `timout_ms`; did you mean `timeout_ms`?"
                .to_owned()
        ]
    );

    body["request"]["object"]["spec"]["prefix"] = json!("foo");
    let out = review(&PrefixCheck, &serde_json::to_vec(&body).unwrap()).unwrap();
    let message = out.review.response.status.unwrap().message;
    assert_eq!(
        message.lines().next(),
        Some("Mapping team X-Injected: 1  /quote: 1 error"),
        "{message}"
    );
}

#[test]
fn many_errors_are_summarised() {
    struct Many;
    impl Validate for Many {
        fn validate(&self, _: &Value) -> Vec<Finding> {
            (0..70)
                .map(|i| Finding::error("E1", format!("problem {i}")))
                .collect()
        }
    }
    let out = review(
        &Many,
        &review_body("CREATE", mapping_kind(), mapping("/"), Value::Null),
    )
    .unwrap();
    let message = out.review.response.status.unwrap().message;
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines[0], "Mapping default/quote: 70 errors");
    assert_eq!(lines.len(), 1 + MAX_ERROR_LINES + 1);
    assert_eq!(*lines.last().unwrap(), "  ... and 20 more");
}

#[test]
fn generate_name_and_cluster_scope_are_named_sensibly() {
    let mut body: Value = serde_json::from_slice(&review_body(
        "CREATE",
        mapping_kind(),
        json!({
            "metadata": {"generateName": "quote-"}, "spec": {"prefix": "foo"}
        }),
        Value::Null,
    ))
    .unwrap();
    body["request"]["name"] = json!("");
    body["request"]["namespace"] = Value::Null;
    let out = review(&PrefixCheck, &serde_json::to_vec(&body).unwrap()).unwrap();
    assert!(out
        .review
        .response
        .status
        .unwrap()
        .message
        .starts_with("Mapping quote-<generated>: 1 error"));
}

#[test]
fn malformed_reviews_are_reported_precisely() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "not a valid AdmissionReview"),
        (br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}"#.to_vec(), "got `admission.k8s.io/v1beta1`"),
        (br#"{"apiVersion":"admission.k8s.io/v1","kind":"Review"}"#.to_vec(), "kind must be `AdmissionReview`, got `Review`"),
        (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(), "has no `request`"),
        (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"kind":"Mapping"}}}"#.to_vec(), "`request.uid` is missing"),
        (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":7}}"#.to_vec(), "invalid type: integer"),
        (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"getambassador.io","kind":"Mapping"},"operation":"CREATE"}}"#.to_vec(), "`request.object` is missing for operation CREATE"),
        (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"getambassador.io","kind":"Mapping"}}}"#.to_vec(), "`request.operation` is missing"),
    ];
    for (body, expected) in cases {
        let error = review(&PrefixCheck, &body).unwrap_err().to_string();
        assert!(
            error.contains(expected),
            "{error:?} should contain {expected:?}"
        );
    }
}
