//! Route test files (`kubectl ambassador test --cases`): YAML in, [`RouteCase`]s with
//! positions out, every mistake a message naming the line.
//!
//! The shape follows Envoy's router check tool, with friendlier names accepted beside
//! Envoy's:
//!
//! ```yaml
//! tests:
//! - name: the storefront is served over https      # or test_name
//!   input:                                          # or request
//!     url: https://shop.example.com/cart?x=1        # or authority + path (+ ssl / tls)
//!     method: GET
//!     headers: {x-beta: "true"}                     # or additional_request_headers: [{key, value}]
//!     sni: shop.example.com
//!     port: 8443
//!     random_value: 5                               # 0-99: picks the member of a canary split
//!   expect:                                         # or validate
//!     mapping: shop/storefront                      # namespace/name, or name
//!     service: storefront.shop:80                   # or cluster / cluster_name
//!     path: /cart?x=1                               # or path_rewrite
//!     host: shop.example.com                        # or host_rewrite
//!     status: 301                                   # an answer from Envoy itself
//!     location: https://shop.example.com/           # or path_redirect
//!     no_route: true
//! ```

use crate::source::{FileId, Sources, Span};
use crate::trace::cases::{CaseInput, Expect, RouteCase};

use super::yaml::{self, Node, NodeKind, Shift};

/// A mistake in a test file, with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseError {
    pub span: Span,
    pub message: String,
}

/// Reads every test of `file`; a test with a mistake is reported and left out.
pub fn read(sources: &Sources, file: FileId) -> (Vec<RouteCase>, Vec<CaseError>) {
    let text = &sources.get(file).text;
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for doc in yaml::parse(text, file, &Shift { first_line: 1 }) {
        let root = match doc.root {
            Ok(Some(root)) => root,
            Ok(None) => continue,
            Err(
                yaml::ParseError::Syntax { at, message } | yaml::ParseError::Limit { at, message },
            ) => {
                errors.push(CaseError {
                    span: Span::point(file, at),
                    message: format!("not YAML: {message}"),
                });
                continue;
            }
        };
        let tests = match (&root.kind, root.get("tests")) {
            (NodeKind::Map(_), Some(t)) => t,
            (NodeKind::Seq(_), _) => &root,
            _ => {
                errors.push(CaseError {
                    span: root.span,
                    message: "expected `tests:` with a list of tests".to_owned(),
                });
                continue;
            }
        };
        let Some(items) = tests.as_seq() else {
            errors.push(CaseError {
                span: tests.span,
                message: "`tests` must be a list".to_owned(),
            });
            continue;
        };
        for item in items {
            match case(item) {
                Ok(c) => cases.push(c),
                Err(e) => errors.push(e),
            }
        }
    }
    (cases, errors)
}

fn err(node: &Node, message: impl Into<String>) -> CaseError {
    CaseError {
        span: node.span,
        message: message.into(),
    }
}

/// The first of `keys` the map sets.
fn field<'a>(map: &'a Node, keys: &[&str]) -> Option<&'a Node> {
    keys.iter()
        .find_map(|k| map.get(k))
        .filter(|n| !n.is_null())
}

fn text(map: &Node, keys: &[&str]) -> Result<Option<String>, CaseError> {
    match field(map, keys) {
        None => Ok(None),
        Some(n) => n
            .as_str()
            .map(|s| Some(s.to_owned()))
            .ok_or_else(|| err(n, format!("`{}` must be a string", keys[0]))),
    }
}

fn number(map: &Node, keys: &[&str]) -> Result<Option<u32>, CaseError> {
    match field(map, keys) {
        None => Ok(None),
        Some(n) => n
            .as_str()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| err(n, format!("`{}` must be a number", keys[0]))),
    }
}

fn flag(map: &Node, keys: &[&str]) -> Result<bool, CaseError> {
    match field(map, keys) {
        None => Ok(false),
        Some(n) => n
            .as_bool()
            .ok_or_else(|| err(n, format!("`{}` must be true or false", keys[0]))),
    }
}

/// Keys a map may hold; anything else is reported (a misspelt expectation would pass).
fn known(map: &Node, allowed: &[&str], what: &str) -> Result<(), CaseError> {
    for (k, _) in map.as_map().unwrap_or_default() {
        let key = k.as_str().unwrap_or("");
        if !allowed.contains(&key) {
            return Err(err(
                k,
                format!(
                    "unknown key `{key}` in {what}; expected one of {}",
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn case(item: &Node) -> Result<RouteCase, CaseError> {
    if item.as_map().is_none() {
        return Err(err(
            item,
            "a test must be a map with `name`, `input` and `expect`",
        ));
    }
    known(
        item,
        &[
            "name",
            "test_name",
            "input",
            "request",
            "expect",
            "validate",
        ],
        "a test",
    )?;
    let name =
        text(item, &["name", "test_name"])?.ok_or_else(|| err(item, "the test has no `name`"))?;
    let input = field(item, &["input", "request"])
        .ok_or_else(|| err(item, format!("test `{name}` has no `input`")))?;
    let expect = field(item, &["expect", "validate"])
        .ok_or_else(|| err(item, format!("test `{name}` has no `expect`")))?;
    Ok(RouteCase {
        span: item
            .get("name")
            .or(item.get("test_name"))
            .map_or(item.span, |n| n.span),
        input: case_input(input)?,
        expect: case_expect(expect)?,
        name,
    })
}

fn case_input(n: &Node) -> Result<CaseInput, CaseError> {
    known(
        n,
        &[
            "url",
            "method",
            "authority",
            "host",
            "path",
            "ssl",
            "tls",
            "sni",
            "port",
            "headers",
            "additional_request_headers",
            "random_value",
        ],
        "`input`",
    )?;
    let url = text(n, &["url"])?;
    let authority = text(n, &["authority", "host"])?;
    let path = text(n, &["path"])?;
    if url.is_none() && (authority.is_none() || path.is_none()) {
        return Err(err(n, "`input` needs `url`, or `authority` and `path`"));
    }
    if url.is_some() && (authority.is_some() || path.is_some()) {
        return Err(err(
            n,
            "`input` has both `url` and `authority`/`path`: give one",
        ));
    }
    let mut headers = Vec::new();
    if let Some(h) = field(n, &["headers"]) {
        let entries = h
            .as_map()
            .ok_or_else(|| err(h, "`headers` must be a map of names to values"))?;
        for (k, v) in entries {
            let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
                return Err(err(v, "a header value must be a string"));
            };
            headers.push((k.to_ascii_lowercase(), v.to_owned()));
        }
    }
    if let Some(h) = field(n, &["additional_request_headers"]) {
        for e in h.as_seq().ok_or_else(|| {
            err(
                h,
                "`additional_request_headers` must be a list of {key, value}",
            )
        })? {
            let (Some(k), Some(v)) = (
                e.get("key").and_then(Node::as_str),
                e.get("value").and_then(Node::as_str),
            ) else {
                return Err(err(e, "expected `{key: ..., value: ...}`"));
            };
            headers.push((k.to_ascii_lowercase(), v.to_owned()));
        }
    }
    let port = match number(n, &["port"])? {
        Some(p) => Some(u16::try_from(p).map_err(|_| {
            err(
                n.get("port").unwrap_or(n),
                "`port` must be between 1 and 65535",
            )
        })?),
        None => None,
    };
    let random_value = number(n, &["random_value"])?;
    Ok(CaseInput {
        method: text(n, &["method"])?.unwrap_or_else(|| "GET".to_owned()),
        url,
        authority,
        path,
        tls: flag(n, &["ssl", "tls"])?,
        sni: text(n, &["sni"])?,
        port,
        headers,
        random_value,
    })
}

fn case_expect(n: &Node) -> Result<Expect, CaseError> {
    known(
        n,
        &[
            "mapping",
            "service",
            "cluster",
            "cluster_name",
            "path",
            "path_rewrite",
            "host",
            "host_rewrite",
            "status",
            "location",
            "path_redirect",
            "no_route",
        ],
        "`expect`",
    )?;
    let e = Expect {
        mapping: text(n, &["mapping"])?,
        service: text(n, &["service"])?,
        cluster: text(n, &["cluster", "cluster_name"])?,
        path: text(n, &["path", "path_rewrite"])?,
        host: text(n, &["host", "host_rewrite"])?,
        status: number(n, &["status"])?,
        location: text(n, &["location", "path_redirect"])?,
        no_route: flag(n, &["no_route"])?,
    };
    if e == Expect::default() {
        return Err(err(n, "`expect` says nothing to check"));
    }
    Ok(e)
}
