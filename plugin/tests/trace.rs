//! `kubectl ambassador trace` and `kubectl ambassador test` as users run them: the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-ambassador"))
        .args(args)
        .arg("--color=never")
        .current_dir(repo())
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "kubectl-ambassador-trace-{}-{name}",
        std::process::id()
    ));
    std::fs::write(&p, text).unwrap();
    p
}

/// Splits a command line on spaces, keeping single-quoted words whole.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '\'' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Every command of `compiler/test_data/trace/commands.txt`, its output and exit code,
/// against the transcript kept beside it.
#[test]
fn golden_transcript() {
    let dir = repo().join("compiler/test_data/trace");
    let commands = std::fs::read_to_string(dir.join("commands.txt")).unwrap();
    let mut got = String::new();
    for line in commands
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let args = words(line);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run(&args);
        got.push_str(&format!("$ kubectl ambassador {line}\n{}", stdout(&o)));
        got.push_str(&format!("[exit {}]\n\n", o.status.code().unwrap_or(-1)));
    }
    let path = dir.join("transcript.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        got == want,
        "the transcript differs from {} (UPDATE_GOLDEN=1 rewrites it):\n{got}",
        path.display()
    );
}

#[test]
fn trace_exits_0_when_routed_1_when_not_and_2_on_usage_errors() {
    let routed = run(&[
        "trace",
        "-R",
        "-f",
        "examples/good",
        "https://shop.example.com/cart",
    ]);
    assert_eq!(routed.status.code(), Some(0), "{}", stdout(&routed));
    let not = run(&[
        "trace",
        "-R",
        "-f",
        "examples/good",
        "http://other.example.com/nothing",
    ]);
    assert_eq!(not.status.code(), Some(1), "{}", stdout(&not));
    for bad in [
        vec!["trace", "-R", "-f", "examples/good", "ftp://x/"],
        vec![
            "trace",
            "-R",
            "-f",
            "examples/good",
            "-H",
            "no-colon",
            "http://x/",
        ],
        vec!["trace", "-R", "-f", "examples/good"],
    ] {
        assert_eq!(run(&bad).status.code(), Some(2), "{bad:?}");
    }
}

#[test]
fn trace_json_names_the_mapping_file_and_line_of_each_backend() {
    let o = run(&[
        "trace",
        "-R",
        "-f",
        "examples/good",
        "-o",
        "json",
        "https://shop.example.com/checkout/pay",
    ]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let backends = v["outcome"]["backends"].as_array().unwrap();
    let mut seen: Vec<(String, f64, String)> = backends
        .iter()
        .map(|b| {
            (
                b["source"]["name"].as_str().unwrap().to_owned(),
                b["percent"].as_f64().unwrap(),
                format!(
                    "{}:{}",
                    b["source"]["file"].as_str().unwrap(),
                    b["source"]["line"]
                ),
            )
        })
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        vec![
            (
                "checkout".to_owned(),
                90.0,
                "examples/good/canary.yaml:14".to_owned()
            ),
            (
                "checkout-v2".to_owned(),
                10.0,
                "examples/good/canary.yaml:35".to_owned()
            ),
        ]
    );
}

#[test]
fn test_fails_with_a_diff_and_on_coverage_under_the_floor() {
    let cases = temp_file(
        "fail.yaml",
        "tests:\n- name: wrong backend\n  input: {url: 'https://shop.example.com/api/x'}\n  expect: {mapping: shop/storefront, path: /x}\n",
    );
    let o = run(&[
        "test",
        "-R",
        "-f",
        "examples/good",
        "--cases",
        cases.to_str().unwrap(),
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("FAIL  wrong backend"), "{out}");
    assert!(
        out.contains("- expected: shop/storefront\n        + actual:   shop/api"),
        "{out}"
    );
    assert!(
        out.contains("- expected: /x\n        + actual:   /v1/x"),
        "{out}"
    );
    // The shipped tests pass but exercise half the routes.
    let good = [
        "test",
        "-R",
        "-f",
        "examples/good",
        "--cases",
        "examples/good/routes.test.yaml",
    ];
    assert_eq!(run(&good).status.code(), Some(0));
    let mut floor = good.to_vec();
    floor.extend(["--fail-under", "90"]);
    assert_eq!(run(&floor).status.code(), Some(1));
}

#[test]
fn test_reports_mistakes_in_a_test_file_with_their_line() {
    let cases = temp_file(
        "bad.yaml",
        "tests:\n- name: typo\n  input: {url: 'http://x/'}\n  expect: {mappping: a}\n",
    );
    let o = run(&[
        "test",
        "-R",
        "-f",
        "examples/good",
        "--cases",
        cases.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.yaml:4:") && err.contains("unknown key `mappping`"),
        "{err}"
    );
}

#[test]
fn test_writes_junit_for_ci_systems() {
    let o = run(&[
        "test",
        "-R",
        "-f",
        "examples/good",
        "--cases",
        "examples/good/routes.test.yaml",
        "-o",
        "junit",
    ]);
    let xml = stdout(&o);
    assert!(
        xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites"),
        "{xml}"
    );
    assert_eq!(xml.matches("<testcase ").count(), 9, "{xml}");
    assert!(
        xml.contains("name=\"routes.coverage_percent\" value=\"50.0\""),
        "{xml}"
    );
    assert!(!xml.contains("<failure"), "{xml}");
}
