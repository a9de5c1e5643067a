//! Golden outputs: every `test_data/golden/*.yaml` is compiled, and its findings and Envoy
//! resources (as `/config_dump` prints them) must equal the `.json` beside it. What lowering
//! really emits is compared, not hand-built IR. `UPDATE_GOLDEN=1` rewrites the expected
//! files; CI fails when they drift from what is checked in.

use std::path::Path;

use ambassador_compiler::{compile_one, envoy, envoy_resources, envoy_resources_packed};
use serde_json::{json, Value};

fn render(name: &str, text: &str) -> Value {
    let c = compile_one(name, text);
    let findings: Vec<Value> = c
        .diagnostics
        .iter()
        .map(|d| {
            let at = d
                .span
                .map(|s| format!("{}:{}", s.start.line, s.start.column))
                .unwrap_or_default();
            Value::from(format!("{at} {} {}", d.code.as_str(), d.message))
        })
        .collect();
    json!({
        "findings": findings,
        "config_dump": envoy::to_config_dump_json(&envoy_resources(&c), None),
    })
}

/// Every golden input: its path, its name in findings and its text.
fn inputs() -> Vec<(std::path::PathBuf, String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/golden");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 9, "golden inputs are missing");
    inputs
        .into_iter()
        .map(|input| {
            let name = format!("golden/{}", input.file_name().unwrap().to_string_lossy());
            let text = std::fs::read_to_string(&input).unwrap();
            (input, name, text)
        })
        .collect()
}

#[test]
fn golden_outputs() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for (input, name, text) in inputs() {
        let got = serde_json::to_string_pretty(&render(&name, &text)).unwrap() + "\n";
        let expected_path = input.with_extension("json");
        if update {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != want {
            let line = got
                .lines()
                .zip(want.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| got.lines().count().min(want.lines().count()));
            failures.push(format!(
                "{name}: differs from {} from line {} (UPDATE_GOLDEN=1 rewrites it):\n  got:  {}\n  want: {}",
                expected_path.display(),
                line + 1,
                got.lines().nth(line).unwrap_or("<end>"),
                want.lines().nth(line).unwrap_or("<end>"),
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `preview -o json` packs the resources without their typed messages and writes the dump
/// as it renders it: the same resources, byte for byte, and the same text as the dump
/// built as a value, for every golden input and every type filter.
#[test]
fn the_packed_resources_and_the_written_dump_are_the_golden_ones() {
    use ambassador_compiler::envoy::TypeFilter;
    for (_, name, text) in inputs() {
        let c = compile_one(&name, &text);
        let typed = envoy_resources(&c);
        let packed = envoy_resources_packed(&c);
        for t in TypeFilter::ALL {
            let want = typed.packed(t.type_url()).unwrap();
            assert_eq!(packed.packed(t), want, "{name}: {t} resources differ");
        }
        for filter in std::iter::once(None).chain(TypeFilter::ALL.map(Some)) {
            let want =
                serde_json::to_string_pretty(&envoy::to_config_dump_json(&typed, filter)).unwrap();
            let mut got = Vec::new();
            envoy::json::write_config_dump_json(&packed, filter, &mut got).unwrap();
            assert!(
                got == want.as_bytes(),
                "{name}, {filter:?}: the written dump differs from the value's"
            );
        }
    }
}

/// Lowering that frees each Mapping's tree once it is read (`lint` and `preview` compile
/// so) gives the same IR and findings as lowering that keeps them: on every golden input,
/// and on a generated one large enough to be read on all cores. So does reading as they read
/// (`read_files_releasing`: the text freed, the annotation Mappings' identifying keys left
/// out), and `lint`'s `compile_findings` gives the same findings, also when it calls
/// `lint`'s hook where it has freed much (`LowerOptions::freed`), which it does after the
/// context, after each run of Mappings read on all cores, and before the check.
#[test]
fn freeing_mapping_trees_changes_nothing() {
    use ambassador_compiler::front::Options;
    use ambassador_compiler::lower::LowerOptions;
    use ambassador_compiler::source::Sources;

    let mut cases: Vec<(String, String)> = inputs()
        .into_iter()
        .map(|(_, name, text)| (name, text))
        .collect();
    let mut big = String::new();
    for i in 0..1500 {
        // Mappings 400 apart share a prefix: groups, canaries and members that differ.
        let extra = match i % 9 {
            0 => "      headers:\n        x-tenant: t1\n".to_owned(),
            1 => format!(
                "      weight: {}\n      prefix_rewrite: /v{i}/\n",
                10 + i % 50
            ),
            2 => "      host_redirect: true\n      path_redirect: /moved\n".to_owned(),
            3 => "      case_sensitive: false\n      method: POST\n".to_owned(),
            4 => "      prefix_regex: true\n      cors:\n        origins: [\"*\"]\n".to_owned(),
            5 => "      tls: missing\n".to_owned(),
            6 => "      tls: true\n      precedence: 3\n".to_owned(),
            7 => "      bypass_auth: true\n      load_balancer:\n        policy: least_request\n"
                .to_owned(),
            _ => format!(
                "      hostname: h{}.example.com\n      host: ignored\n",
                i % 3
            ),
        };
        big.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s{i}\n  namespace: ns{n}\n  annotations:\n    getambassador.io/config: |\n      apiVersion: getambassador.io/v2\n      kind: Mapping\n      name: m{i}\n      prefix: /p{p}/\n      service: s{i}.ns{n}:80\n{extra}spec:\n  ports:\n  - port: 80\n",
            n = i % 7,
            p = i % 400,
        ));
    }
    cases.push(("generated.yaml".to_owned(), big));
    for (name, text) in cases {
        let mut sources = Sources::new();
        sources.add(&name, &text);
        let compiled = |release: bool| {
            let opts = LowerOptions {
                release_mapping_fields: release,
                ..LowerOptions::default()
            };
            let c = ambassador_compiler::compile(&sources, &Options::default(), &opts);
            (serde_json::to_value(&c.ir).unwrap(), c.diagnostics)
        };
        let (kept_ir, kept_findings) = compiled(false);
        let (freed_ir, freed_findings) = compiled(true);
        assert_eq!(kept_findings, freed_findings, "{name}: findings differ");
        assert!(kept_ir == freed_ir, "{name}: IR differs");

        let opts = LowerOptions {
            release_mapping_fields: true,
            ..LowerOptions::default()
        };
        let read_lean = || {
            let mut released = sources.clone();
            let m = ambassador_compiler::read_files_releasing(
                &mut released,
                &[],
                &Options::default(),
                |_| true,
            );
            assert!(released.iter().all(|(id, _)| released.is_released(id)));
            m
        };
        let lean = ambassador_compiler::compile_manifests(read_lean(), &opts);
        assert_eq!(
            kept_findings, lean.diagnostics,
            "{name}: findings differ, read lean"
        );
        assert!(
            kept_ir == serde_json::to_value(&lean.ir).unwrap(),
            "{name}: IR differs, read lean"
        );
        let findings = ambassador_compiler::compile_findings(read_lean(), &opts);
        assert_eq!(
            kept_findings, findings.diagnostics,
            "{name}: compile_findings differs"
        );
        assert_eq!(findings.objects, lean.manifests.objects, "{name}: objects");

        static FREED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        fn count() {
            FREED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        FREED.store(0, std::sync::atomic::Ordering::Relaxed);
        let hooked = LowerOptions {
            freed: Some(count),
            ..opts.clone()
        };
        let findings = ambassador_compiler::compile_findings(read_lean(), &hooked);
        assert_eq!(
            kept_findings, findings.diagnostics,
            "{name}: compile_findings differs with the hook"
        );
        // The context, the Mappings read, and the check; and the runs the Mappings are read
        // in, eight per core when there are many.
        let calls = FREED.load(std::sync::atomic::Ordering::Relaxed);
        let runs = if name == "generated.yaml" { 8 } else { 0 };
        assert!(calls >= 3 + runs, "{name}: called {calls} times");
    }
}

/// A configuration large enough to be packed on all cores (one table of over 4,096 routes,
/// and hundreds of small ones) packs the resources the typed messages encode to.
#[test]
fn a_large_configuration_packs_as_the_typed_one_does() {
    use ambassador_compiler::envoy::TypeFilter;
    let mapping = |name: &str, host: &str, prefix: &str| {
        format!(
            "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  hostname: {host}\n  prefix: {prefix}\n  service: {name}:80\n"
        )
    };
    let mut text = String::new();
    for i in 0..4500 {
        text.push_str(&mapping(
            &format!("big-{i}"),
            "big.example.com",
            &format!("/b{i}/"),
        ));
    }
    for h in 0..460 {
        text.push_str(&format!(
            "---\napiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata:\n  name: h{h}\n  namespace: default\nspec:\n  hostname: h{h}.example.com\n  requestPolicy:\n    insecure:\n      action: Route\n"
        ));
        for i in 0..9 {
            text.push_str(&mapping(
                &format!("h{h}-{i}"),
                &format!("h{h}.example.com"),
                &format!("/p{i}/"),
            ));
        }
    }
    text.push_str(
        "---\napiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata:\n  name: big\n  namespace: default\nspec:\n  hostname: big.example.com\n  requestPolicy:\n    insecure:\n      action: Route\n",
    );
    let c = compile_one("large.yaml", &text);
    let largest = c.ir.virtual_hosts.iter().map(|v| v.routes.len()).max();
    assert!(
        largest > Some(4096),
        "{largest:?} routes in the largest table"
    );
    assert!(c.ir.virtual_hosts.len() > 400);
    let typed = envoy_resources(&c);
    let packed = envoy_resources_packed(&c);
    for t in TypeFilter::ALL {
        let want = typed.packed(t.type_url()).unwrap();
        assert!(packed.packed(t) == want, "{t} resources differ");
    }
}
