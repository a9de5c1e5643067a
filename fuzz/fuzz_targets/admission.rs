//! An AdmissionReview body through the webhook's own decoding and validation: the function
//! the HTTPS handler calls on a body it has read (`admission::review`), with the
//! compiler-backed validator, against an empty view or the examples' view, with and without
//! `--reject-conflicts`. No network: the handler's part before it (body limits, timeouts) is
//! transport, tested in the webhook's own tests.
//!
//! Must hold: no panic; a body that parses as a review gets an answer with the request's
//! uid, the `admission.k8s.io/v1` envelope, a verdict that agrees with `allowed`, a denial
//! status with code 422 and a message, and warnings that can travel as HTTP `Warning`
//! headers (one line, at most 119 characters); a body that does not parse gets an error,
//! never an answer.
#![no_main]

use std::sync::OnceLock;

use ambassador_compiler::source::Sources;
use ambassador_webhook::admission::{self, Verdict, API_VERSION, KIND, MAX_WARNING_CHARS};
use ambassador_webhook::validator::CompilerValidator;
use libfuzzer_sys::fuzz_target;

/// The view the validator checks against when it is not empty: the examples a user applies.
const VIEW: &[(&str, &str)] = &[
    (
        "good/canary.yaml",
        include_str!("../../examples/good/canary.yaml"),
    ),
    (
        "good/hosts.yaml",
        include_str!("../../examples/good/hosts.yaml"),
    ),
    (
        "good/listeners.yaml",
        include_str!("../../examples/good/listeners.yaml"),
    ),
    (
        "good/quote.yaml",
        include_str!("../../examples/good/quote.yaml"),
    ),
    (
        "good/shop-cert.yaml",
        include_str!("../../examples/good/shop-cert.yaml"),
    ),
    (
        "auth/protected.yaml",
        include_str!("../../examples/auth/protected.yaml"),
    ),
];

/// Empty view; the examples' view; the examples' view with `--reject-conflicts`.
fn validators() -> &'static [CompilerValidator; 3] {
    static V: OnceLock<[CompilerValidator; 3]> = OnceLock::new();
    V.get_or_init(|| {
        let mut view = Sources::new();
        for (name, text) in VIEW {
            view.add(*name, *text);
        }
        let with_view = || {
            let v = CompilerValidator::new("default");
            v.set_view(&view);
            v
        };
        [
            CompilerValidator::new("default"),
            with_view(),
            with_view().reject_conflicts(true),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    // The validator is picked by the body's length, so that a reproducer replays the same.
    let validator = &validators()[data.len() % 3];
    let parsed = admission::parse(data);
    let answered = admission::review(validator, data);
    let (request, outcome) = match (parsed, answered) {
        (Ok(request), Ok(outcome)) => (request, outcome),
        (Err(_), Err(_)) => return,
        (p, a) => panic!(
            "parse and review disagree: parse {:?}, review {:?}",
            p.map(|r| r.uid),
            a.map(|o| o.verdict)
        ),
    };
    assert!(!request.uid.is_empty(), "a parsed request has a uid");

    // The envelope as the handler serialises it (axum::Json), read back as plain JSON.
    let json = serde_json::to_value(&outcome.review).expect("a review serialises");
    assert_eq!(json["apiVersion"], API_VERSION);
    assert_eq!(json["kind"], KIND);
    let response = &json["response"];
    assert_eq!(
        response["uid"],
        request.uid.as_str(),
        "the answer carries the request's uid"
    );
    let allowed = response["allowed"]
        .as_bool()
        .expect("`response.allowed` is a boolean");
    let back: admission::ReviewOut =
        serde_json::from_value(json.clone()).expect("the answer reads back as a review");
    assert_eq!(
        back, outcome.review,
        "the answer survives its own serialisation"
    );

    let r = &outcome.review.response;
    match &outcome.verdict {
        Verdict::Skipped => {
            assert!(allowed && r.status.is_none() && r.warnings.is_empty());
            assert!(outcome.subject.is_none());
        }
        Verdict::Allowed { warnings } => {
            assert!(allowed && r.status.is_none());
            assert_eq!(*warnings, r.warnings.len());
            assert!(outcome.subject.is_some());
        }
        Verdict::Denied { errors } => {
            assert!(!allowed && *errors > 0);
            let status = r.status.as_ref().expect("a denial has a status");
            assert_eq!(status.code, admission::DENIAL_CODE);
            assert_eq!(status.reason, "Invalid");
            assert!(!status.message.is_empty());
            assert!(outcome.subject.is_some());
        }
    }
    assert_eq!(outcome.dry_run, request.dry_run);
    for w in &r.warnings {
        assert!(
            w.chars().count() <= MAX_WARNING_CHARS,
            "warning longer than {MAX_WARNING_CHARS} characters: {w:?}"
        );
        assert!(
            !w.chars().any(char::is_control),
            "a warning is one header line: {w:?}"
        );
    }
    let mut unique = r.warnings.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), r.warnings.len(), "warnings are said once");
});
