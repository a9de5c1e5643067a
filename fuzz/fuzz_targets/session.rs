//! The incremental session against compiling from scratch, over edit sequences.
//!
//! The input is a script of edits to four files (`f0.yaml` .. `f3.yaml`), one per line that
//! starts with `%%`, each followed by the lines it takes as its body (up to the next `%%`):
//!
//! - `%% p F K`: file F becomes document K of the pool (the manifests of the test data and
//!   the examples, one document each);
//! - `%% a F K`: document K of the pool is appended to file F;
//! - `%% k F K`: document K of file F is removed;
//! - `%% w F`: file F becomes the body;
//! - `%% s F`: the first occurrence in file F of the body's first line is replaced by the
//!   rest of the body (so the fuzzer mutates pool text through a small body);
//! - `%% d F`: file F is deleted;
//! - `%% o`: the order the files are handed to the session is reversed.
//!
//! F and K are taken modulo the number of files and documents. After each edit the session is
//! updated with the files and the resources it has sent so far (its deltas applied one after
//! another) must equal, byte for byte and name for name, the resources of compiling the same
//! files from scratch; so must its findings (sorted), except after an edit written in
//! capitals, whose findings are left to be computed at the next step, as a caller that
//! publishes first and asks for findings later does. An update with the same files must send
//! nothing.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use ambassador_compiler::front::Options;
use ambassador_compiler::incremental::{Session, TYPES};
use ambassador_compiler::lower::LowerOptions;
use ambassador_compiler::source::Sources;
use libfuzzer_sys::fuzz_target;

const FILES: usize = 4;
const MAX_EDITS: usize = 12;
const MAX_FILE: usize = 64 * 1024;

/// Where the pool's documents come from.
const POOL_FILES: &[&str] = &[
    include_str!("../../examples/good/canary.yaml"),
    include_str!("../../examples/good/hosts.yaml"),
    include_str!("../../examples/good/listeners.yaml"),
    include_str!("../../examples/good/quote.yaml"),
    include_str!("../../examples/good/shop-cert.yaml"),
    include_str!("../../examples/auth/protected.yaml"),
    include_str!("../../examples/broken/canaries.yaml"),
    include_str!("../../examples/broken/hosts-and-ids.yaml"),
    include_str!("../../examples/broken/regex-and-service.yaml"),
    include_str!("../../examples/broken/typos.yaml"),
    include_str!("../../examples/demo/echo.yaml"),
    include_str!("../../compiler/test_data/golden/1-regex-default-rewrite.yaml"),
    include_str!("../../compiler/test_data/golden/2-normalize-path.yaml"),
    include_str!("../../compiler/test_data/golden/3-canary-member-rewrites.yaml"),
    include_str!("../../compiler/test_data/golden/4-hostname-groups.yaml"),
    include_str!("../../compiler/test_data/golden/5-v2-host-is-a-glob.yaml"),
    include_str!("../../compiler/test_data/golden/6-group-flags.yaml"),
    include_str!("../../compiler/test_data/golden/7-regex-case.yaml"),
    include_str!("../../compiler/test_data/golden/8-redirect-query.yaml"),
    include_str!("../../compiler/test_data/golden/9-host-header.yaml"),
    include_str!("../../compiler/test_data/golden/10-listeners-and-tls-hosts.yaml"),
    include_str!("../../compiler/test_data/golden/11-listener-models-and-binding.yaml"),
    include_str!("../../compiler/test_data/golden/12-tls-secrets-and-checks.yaml"),
    include_str!("../../compiler/test_data/golden/13-hosts-sharing-an-sni.yaml"),
    include_str!("../../compiler/test_data/golden/14-auth.yaml"),
    include_str!("../../compiler/test_data/trace/left-out.yaml"),
];

/// The documents of a file, split at `---` lines, each without its separator.
fn documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else if let Some(last) = docs.last_mut() {
            last.push_str(line);
        }
    }
    docs.retain(|d| {
        d.lines()
            .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
    });
    docs
}

fn pool() -> &'static [String] {
    static POOL: OnceLock<Vec<String>> = OnceLock::new();
    POOL.get_or_init(|| POOL_FILES.iter().flat_map(|f| documents(f)).collect())
}

type Held = BTreeMap<(usize, String), Vec<u8>>;
type Findings = Vec<(String, u32, u32, &'static str, String)>;

fn from_scratch(sources: &[(String, String)]) -> (Held, Findings) {
    let mut s = Sources::new();
    for (name, text) in sources {
        s.add(name.clone(), text.clone());
    }
    let c = ambassador_compiler::compile(&s, &Options::default(), &LowerOptions::default());
    let res = ambassador_compiler::envoy_resources(&c);
    let mut out = BTreeMap::new();
    for (t, type_url) in TYPES.iter().enumerate() {
        let set = res.packed(type_url).expect("a type the back end emits");
        for (name, _, any) in set.resources {
            out.insert((t, name.to_string()), any.value.clone());
        }
    }
    let mut findings: Findings = c
        .diagnostics
        .iter()
        .map(|d| {
            let (file, line, col) = d.span.map_or((String::new(), 0, 0), |sp| {
                (s.name(sp.file).to_string(), sp.start.line, sp.start.column)
            });
            (file, line, col, d.code.as_str(), d.message.clone())
        })
        .collect();
    findings.sort();
    (out, findings)
}

fn session_findings(session: &mut Session) -> Findings {
    let diags = session.diagnostics().to_vec();
    let mut findings: Findings = diags
        .iter()
        .map(|d| {
            let (file, line, col) = d.span.map_or((String::new(), 0, 0), |sp| {
                (
                    session.file_name(sp.file).to_string(),
                    sp.start.line,
                    sp.start.column,
                )
            });
            (file, line, col, d.code.as_str(), d.message.clone())
        })
        .collect();
    findings.sort();
    findings
}

/// One edit: its header's words and its body.
struct Edit<'a> {
    op: char,
    file: usize,
    k: usize,
    body: &'a str,
}

fn script(text: &str) -> Vec<Edit<'_>> {
    let mut edits = Vec::new();
    let mut rest = text;
    // Everything before the first header is a comment.
    let Some(start) = rest.find("%%") else {
        return edits;
    };
    rest = &rest[start..];
    while let Some(after) = rest.strip_prefix("%%") {
        let (header, tail) = after.split_once('\n').unwrap_or((after, ""));
        let end = tail.find("\n%%").map_or(tail.len(), |i| i + 1);
        let body = &tail[..end];
        rest = &tail[end..];
        let mut words = header.split_whitespace();
        let Some(op) = words.next().and_then(|w| w.chars().next()) else {
            continue;
        };
        let mut num = || {
            words
                .next()
                .and_then(|w| w.parse::<usize>().ok())
                .unwrap_or(0)
        };
        let file = num() % FILES;
        let k = num();
        edits.push(Edit { op, file, k, body });
        if edits.len() == MAX_EDITS {
            break;
        }
    }
    edits
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let edits = script(text);
    if edits.is_empty() {
        return;
    }
    let pool = pool();
    let mut files: [Option<String>; FILES] = Default::default();
    let mut reversed = false;
    let mut session = Session::new(Options::default(), LowerOptions::default());
    let mut held: Held = BTreeMap::new();
    let mut last: Option<Vec<(String, String)>> = None;

    for (step, e) in edits.iter().enumerate() {
        let f = &mut files[e.file];
        match e.op.to_ascii_lowercase() {
            'p' => *f = Some(pool[e.k % pool.len()].clone()),
            'a' => {
                let mut t = f.take().unwrap_or_default();
                if !t.is_empty() && !t.ends_with('\n') {
                    t.push('\n');
                }
                t.push_str("---\n");
                t.push_str(&pool[e.k % pool.len()]);
                *f = Some(t);
            }
            'k' => {
                if let Some(t) = f.as_mut() {
                    let mut docs = documents(t);
                    if !docs.is_empty() {
                        docs.remove(e.k % docs.len());
                    }
                    *t = docs.join("---\n");
                }
            }
            'w' => *f = Some(e.body.to_owned()),
            's' => {
                if let Some(t) = f.as_mut() {
                    let (needle, with) = e.body.split_once('\n').unwrap_or((e.body, ""));
                    if !needle.is_empty() {
                        *t = t.replacen(needle, with.strip_suffix('\n').unwrap_or(with), 1);
                    }
                }
            }
            'd' => *f = None,
            'o' => reversed = !reversed,
            _ => continue,
        }
        if files.iter().flatten().any(|t| t.len() > MAX_FILE) {
            return;
        }
        let mut sources: Vec<(String, String)> = files
            .iter()
            .enumerate()
            .filter_map(|(i, t)| Some((format!("f{i}.yaml"), t.clone()?)))
            .collect();
        if reversed {
            sources.reverse();
        }

        let update = session.update(sources.clone());
        if last.as_ref() == Some(&sources) {
            assert!(
                update.deltas.is_empty(),
                "step {step}: the same files sent {} resources again",
                update.deltas.len()
            );
        }
        for d in update.deltas {
            let t = TYPES
                .iter()
                .position(|t| *t == d.type_url)
                .expect("a known type");
            match d.resource {
                Some(p) => {
                    assert_eq!(p.name, d.name, "step {step}: a delta names its resource");
                    held.insert((t, d.name), p.any.value);
                }
                None => assert!(
                    held.remove(&(t, d.name.clone())).is_some(),
                    "step {step}: removed `{}`, which was never sent",
                    d.name
                ),
            }
        }
        let (want, want_findings) = from_scratch(&sources);
        let names = |m: &Held| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            names(&held),
            names(&want),
            "step {step} (full: {}): resource names differ from a compile from scratch",
            update.full
        );
        for (k, v) in &want {
            assert!(
                held.get(k) == Some(v),
                "step {step} (full: {}): `{}` differs from a compile from scratch",
                update.full,
                k.1
            );
        }
        if e.op.is_ascii_lowercase() {
            assert_eq!(
                session_findings(&mut session),
                want_findings,
                "step {step} (full: {}): findings differ from a compile from scratch",
                update.full
            );
        }
        last = Some(sources);
    }
});
