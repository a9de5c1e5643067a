//! The plugin as users run it: the real binary, as `kubectl-ambassador` and as `kubectl ambassador`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use ambassador_compiler::diag::Code;
use serde_json::Value;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kubectl-ambassador"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(repo())
        .env_remove("NO_COLOR")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

fn codes(v: &Value) -> Vec<String> {
    v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap().to_string())
        .collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "kubectl-ambassador-test-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn good_examples_have_no_findings_and_exit_0() {
    let o = run(&["lint", "-f", "examples/good", "-R"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).starts_with("ok: no findings in 6 files"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn broken_examples_exit_1_in_every_format() {
    for fmt in ["text", "json", "yaml", "sarif"] {
        let o = run(&["lint", "-f", "examples/broken", "-R", "-o", fmt]);
        assert_eq!(o.status.code(), Some(1), "format {fmt}");
    }
}

#[test]
fn positions_point_into_the_annotation_in_the_file() {
    let v = json(&run(&[
        "lint",
        "-f",
        "examples/broken/typos.yaml",
        "-o",
        "json",
    ]));
    let d = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "AMB105")
        .unwrap();
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(21), Some(7))
    );
    assert_eq!(d["object"]["kind"], "Mapping");
    assert_eq!(d["object"]["namespace"], "finance");
    assert_eq!(d["object"]["name"], "billing");
    assert_eq!(d["help"], "did you mean `timeout_ms`?");
    let parse = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["code"] == "AMB102" && d["line"] == 31);
    assert!(parse, "{v}");
}

#[test]
fn text_output_shows_the_line_and_a_caret() {
    let o = run(&[
        "lint",
        "-f",
        "examples/broken/typos.yaml",
        "--color",
        "never",
    ]);
    let s = stdout(&o);
    assert!(
        s.contains("error[AMB105]: unknown field `timout_ms` in Mapping"),
        "{s}"
    );
    assert!(s.contains("  --> examples/broken/typos.yaml:21:7"), "{s}");
    assert!(
        s.contains("21 |       timout_ms: 10000\n   |       ^^^^^^^^^"),
        "{s}"
    );
    assert!(s.contains("= help: did you mean `timeout_ms`?"), "{s}");
    assert!(!s.contains('\u{1b}'), "no colour with --color never");
    let coloured = stdout(&run(&[
        "lint",
        "-f",
        "examples/broken/typos.yaml",
        "--color",
        "always",
    ]));
    assert!(coloured.contains('\u{1b}'));
}

#[test]
fn no_color_is_honoured_in_auto_mode() {
    let o = Command::new(bin())
        .args(["lint", "-f", "examples/broken/typos.yaml"])
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!stdout(&o).contains('\u{1b}'));
}

#[test]
fn failure_threshold_warning_fails_on_warnings() {
    let dir = temp_dir("threshold");
    let f = dir.join("v0.yaml");
    std::fs::copy(repo().join("examples/broken/deprecated-v0.yaml"), &f).unwrap();
    let path = f.to_str().unwrap();
    assert_eq!(run(&["lint", "-f", path]).status.code(), Some(0));
    assert_eq!(
        run(&["lint", "-f", path, "--failure-threshold", "warning"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        run(&[
            "lint",
            "-f",
            path,
            "--failure-threshold",
            "warning",
            "-o",
            "json"
        ])
        .status
        .code(),
        Some(1)
    );
}

#[test]
fn unreadable_input_exits_2_and_is_never_clean() {
    let o = run(&["lint", "-f", "does/not/exist.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stdout(&o).contains("no such file or directory"),
        "{}",
        stdout(&o)
    );
    assert!(!stdout(&o).contains("ok:"));
    // A good file next to a missing one: still exit 2.
    assert_eq!(
        run(&[
            "lint",
            "-f",
            "examples/good/quote.yaml",
            "-f",
            "missing.yaml",
            "-o",
            "json"
        ])
        .status
        .code(),
        Some(2)
    );
    // A usage error.
    assert_eq!(
        run(&["lint", "--output", "xml", "-f", "examples"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn binary_and_invalid_utf8_files_are_diagnosed() {
    let dir = temp_dir("binary");
    std::fs::write(dir.join("bin.yaml"), [0x7f, b'E', b'L', b'F', 0, 0, 1]).unwrap();
    std::fs::write(
        dir.join("latin1.yaml"),
        b"apiVersion: v1\nkind: Service\nmetadata:\n  name: caf\xe9\n",
    )
    .unwrap();
    let v = json(&run(&["lint", "-f", dir.to_str().unwrap(), "-o", "json"]));
    let d: Vec<&Value> = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["code"] == "AMB003")
        .collect();
    assert_eq!(d.len(), 2, "{v}");
    let latin = d
        .iter()
        .find(|d| d["file"].as_str().unwrap().ends_with("latin1.yaml"))
        .unwrap();
    assert_eq!(
        (latin["line"].as_u64(), latin["column"].as_u64()),
        (Some(4), Some(12))
    );
}

#[test]
fn directories_are_read_for_manifests_only() {
    // `ambassador_compiler::source::is_manifest_name`: `.yaml`, `.yml`, `.json`, not hidden,
    // and hidden directories (`.github/`, a ConfigMap's `..data`) are not entered.
    let dir = temp_dir("manifest-names");
    let service = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n";
    let binary: &[u8] = &[0, 1, 2];
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::create_dir_all(dir.join(".github/workflows")).unwrap();
    std::fs::create_dir_all(dir.join("..data")).unwrap();
    std::fs::write(dir.join("a.yaml"), service).unwrap();
    std::fs::write(
        dir.join("sub/b.yml"),
        service.replace("{name: a}", "{name: b}"),
    )
    .unwrap();
    std::fs::write(dir.join(".hidden.yaml"), binary).unwrap();
    std::fs::write(dir.join("notes.txt"), binary).unwrap();
    std::fs::write(dir.join(".github/workflows/ci.yml"), binary).unwrap();
    std::fs::write(dir.join("..data/a.yaml"), binary).unwrap();
    let v = json(&run(&[
        "lint",
        "-f",
        dir.to_str().unwrap(),
        "-R",
        "-o",
        "json",
    ]));
    assert_eq!(codes(&v), Vec::<String>::new(), "{v}");
    assert_eq!(v["summary"]["files"], 2, "{v}");
    // A file named on the command line is read whatever its name.
    let v = json(&run(&[
        "lint",
        "-f",
        dir.join("notes.txt").to_str().unwrap(),
        "-o",
        "json",
    ]));
    assert_eq!(codes(&v), ["AMB003"], "{v}");
}

#[test]
fn stdin_is_read_with_dash() {
    let mut child = Command::new(bin())
        .args(["lint", "-f", "-", "-o", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let text = std::fs::read(repo().join("examples/broken/typos.yaml")).unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &text).unwrap();
    drop(child.stdin.take());
    let o = child.wait_with_output().unwrap();
    let v = json(&o);
    assert!(codes(&v).contains(&"AMB105".to_string()));
    assert_eq!(v["diagnostics"][0]["file"], "<stdin>");
}

#[test]
fn sarif_is_2_1_0_with_rules_and_locations() {
    let v = json(&run(&[
        "lint",
        "-f",
        "examples/broken",
        "-R",
        "-o",
        "sarif",
    ]));
    assert_eq!(v["version"], "2.1.0");
    let run0 = &v["runs"][0];
    let rules = run0["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), Code::ALL.len());
    for r in run0["results"].as_array().unwrap() {
        let idx = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[idx]["id"], r["ruleId"]);
        assert!(["error", "warning", "note"].contains(&r["level"].as_str().unwrap()));
        let loc = &r["locations"][0]["physicalLocation"];
        assert!(loc["artifactLocation"]["uri"]
            .as_str()
            .unwrap()
            .starts_with("examples/broken/"));
        assert!(loc["region"]["startLine"].as_u64().unwrap() >= 1);
    }
}

#[test]
fn routes_lists_a_canary_with_effective_weights() {
    let o = run(&["routes", "-f", "examples/good/canary.yaml", "-o", "json"]);
    assert_eq!(o.status.code(), Some(0));
    let out = json(&o);
    let rows = out["http"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(out["tcp"], serde_json::json!([]));
    let weights: Vec<(String, u64)> = rows[0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["service"].as_str().unwrap().to_string(),
                b["weight"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        weights,
        vec![
            ("checkout-v2.shop:80".to_string(), 10),
            ("checkout.shop:80".to_string(), 90)
        ]
    );
    assert_eq!(rows[0]["match"]["path"]["prefix"], "/checkout/");
    let table = stdout(&run(&["routes", "-f", "examples/good/canary.yaml"]));
    assert!(
        table.contains("checkout-v2.shop:80 10%, checkout.shop:80 90%"),
        "{table}"
    );
}

/// TCPMappings are listed after the HTTP routes, with each backend's share of the
/// connections as Envoy splits them (Emissary's running-total weights read as relative ones).
#[test]
fn routes_lists_tcpmappings_with_their_share_of_connections() {
    let file = "compiler/test_data/golden/17-tcpmapping-groups.yaml";
    let out = json(&run(&["routes", "-f", file, "-o", "json"]));
    let tcp = out["tcp"].as_array().unwrap();
    let shares: Vec<(u64, String, u64)> = tcp
        .iter()
        .flat_map(|r| {
            r["backends"].as_array().unwrap().iter().map(|b| {
                (
                    r["port"].as_u64().unwrap(),
                    b["service"].as_str().unwrap().to_string(),
                    b["weight"].as_u64().unwrap(),
                )
            })
        })
        .collect();
    assert_eq!(
        shares,
        vec![
            (9000, "db-v2.default:5432".to_string(), 33),
            (9000, "db.default:5432".to_string(), 67),
            (9001, "cache-a.default:6379".to_string(), 33),
            (9001, "cache-b.default:6379".to_string(), 67),
        ]
    );
    let sni = json(&run(&[
        "routes",
        "-f",
        "compiler/test_data/golden/21-tcpmapping-sni-tls.yaml",
        "-o",
        "json",
    ]));
    let row = &sni["tcp"][0];
    assert_eq!(row["sni"], "queue.example.com");
    assert_eq!(row["tls"]["secret"], "default/queue-cert");
    assert_eq!(row["tls"]["context"], "tcpctx");
}

#[test]
fn routes_are_in_evaluation_order() {
    let rows = json(&run(&[
        "routes",
        "-f",
        "examples/good/hosts.yaml",
        "-o",
        "json",
    ]));
    let star: Vec<(String, i64)> = rows["http"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["virtual_host"] == "*")
        .map(|r| {
            (
                r["sources"][0]["name"].as_str().unwrap().to_string(),
                r["precedence"].as_i64().unwrap(),
            )
        })
        .collect();
    // Precedence first, then the longer prefix.
    assert_eq!(star[0], ("api-by-header".to_string(), 1));
    assert_eq!(star.last().unwrap().0, "storefront");
}

#[test]
fn preview_prints_envoy_resources() {
    let o = run(&[
        "preview",
        "-f",
        "examples/good/quote.yaml",
        "-o",
        "json",
        "--type",
        "cluster",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let v = json(&o);
    let text = v.to_string();
    assert!(text.contains("cluster_quote_default_8080"), "{text}");
    assert!(!text.contains("RouteConfiguration"), "filtered to clusters");
}

#[test]
fn runs_as_a_kubectl_plugin() {
    let dir = temp_dir("path");
    let link = dir.join("kubectl-ambassador");
    std::os::unix::fs::symlink(bin(), &link).unwrap();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new("kubectl")
        .args([
            "ambassador",
            "lint",
            "-f",
            "examples/broken/typos.yaml",
            "--color",
            "never",
        ])
        .current_dir(repo())
        .env("PATH", &path)
        .output()
        .expect("kubectl is installed");
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout(&o).contains("error[AMB105]"));
    let listed = Command::new("kubectl")
        .args(["plugin", "list"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains("kubectl-ambassador"));
}

/// Every code in the catalogue has a section in docs/diagnostics.md, and its example
/// produces it.
#[test]
fn diagnostics_catalogue() {
    let doc = std::fs::read_to_string(repo().join("docs/diagnostics.md")).unwrap();
    let dir = temp_dir("catalogue");
    let mut failures = Vec::new();
    for code in Code::ALL {
        let heading = format!("## {} {}\n", code.as_str(), code.slug());
        let Some(start) = doc.find(&heading) else {
            failures.push(format!("{code}: no section `{}`", heading.trim()));
            continue;
        };
        let section = &doc[start + heading.len()..];
        let section = &section[..section.find("\n## ").unwrap_or(section.len())];
        let file = dir.join(format!("{}.yaml", code.as_str()));
        match section.find("```yaml\n") {
            Some(i) => {
                let body = &section[i + 8..];
                let body = &body[..body.find("```").unwrap()];
                std::fs::write(&file, body).unwrap();
            }
            None if *code == Code::NotText => std::fs::write(&file, b"name: \xff\n").unwrap(),
            None => {
                failures.push(format!("{code}: no example"));
                continue;
            }
        }
        let v = json(&run(&["lint", "-f", file.to_str().unwrap(), "-o", "json"]));
        if !codes(&v).contains(&code.as_str().to_string()) {
            failures.push(format!("{code}: the example produced {:?}", codes(&v)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The `routes` table of every golden input (`compiler/test_data/golden/*.yaml`) is checked
/// in beside its Envoy output, as `<name>.routes.txt`: what a user sees of each cleartext and
/// TLS scheme is pinned with the configuration Envoy gets. `UPDATE_GOLDEN=1` rewrites them.
#[test]
fn golden_routes_tables() {
    let dir = repo().join("compiler/test_data/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 9, "golden inputs are missing");
    let mut failures = Vec::new();
    for input in inputs {
        let name = input.file_name().unwrap().to_string_lossy().into_owned();
        let relative = format!("compiler/test_data/golden/{name}");
        let o = run(&["routes", "-f", &relative, "--color", "never"]);
        let got = stdout(&o);
        let expected = input.with_extension("routes.txt");
        if update {
            std::fs::write(&expected, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&expected).unwrap_or_default();
        if got != want {
            failures.push(format!(
                "{relative}: the routes table differs from {} (UPDATE_GOLDEN=1 rewrites it):\n{got}",
                expected.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `preview --type secret` shows the certificates a TLS Host is served with, the private
/// key redacted as Envoy's admin does, and never the key itself.
#[test]
fn preview_shows_secrets_with_the_key_redacted() {
    let o = run(&[
        "preview",
        "-f",
        "examples/good",
        "-R",
        "--type",
        "secret",
        "-o",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let v = json(&o);
    let s = &v["configs"][0]["dynamic_active_secrets"][0];
    assert_eq!(s["name"], "shop/shop-cert");
    // base64 of `[redacted]`.
    assert_eq!(
        s["secret"]["tls_certificate"]["private_key"]["inline_bytes"],
        "W3JlZGFjdGVkXQ=="
    );
    let example = std::fs::read_to_string(repo().join("examples/good/shop-cert.yaml")).unwrap();
    let key = example
        .lines()
        .find_map(|l| l.trim().strip_prefix("tls.key: "))
        .unwrap();
    assert!(!stdout(&o).contains(key), "the private key is printed");
}
