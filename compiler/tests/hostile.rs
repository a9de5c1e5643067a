//! Hostile input: whatever the bytes, the compiler answers quickly with a result and
//! diagnostics, never a panic and never a hang.
//!
//! Time limits are loose (they hold in debug builds on a loaded two-core machine); they
//! catch hangs and quadratic blow-ups, not small slowdowns. Invalid UTF-8 is the plugin's to
//! refuse before the compiler sees the file, so it is not tested here.

use std::time::{Duration, Instant};

use ambassador_compiler::diag::{Code, Severity};
use ambassador_compiler::{compile_one, Compilation};

/// The bound for one input. Unoptimised test builds are some twenty times slower than
/// release builds, so they get more room; a hang or a quadratic blow-up exceeds either.
const LIMIT: Duration = Duration::from_secs(if cfg!(debug_assertions) { 40 } else { 10 });

/// Compiles and emits `text`, asserting that it takes less than `LIMIT`.
fn run(name: &str, text: &str) -> Compilation {
    let t = Instant::now();
    let c = compile_one(name, text);
    let _ = ambassador_compiler::envoy::emit(&c.ir);
    let took = t.elapsed();
    assert!(took < LIMIT, "{name}: {took:?} for {} bytes", text.len());
    c
}

fn codes(c: &Compilation) -> Vec<Code> {
    c.diagnostics.iter().map(|d| d.code).collect()
}

fn has(c: &Compilation, code: Code) -> bool {
    c.diagnostics.iter().any(|d| d.code == code)
}

/// A Service with one Mapping in its annotation; `annotation` replaces the annotation body.
fn service(name: &str, annotation: &str) -> String {
    let mut s = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  annotations:\n    getambassador.io/config: |\n"
    );
    for line in annotation.lines() {
        s.push_str("      ");
        s.push_str(line);
        s.push('\n');
    }
    s.push_str("spec:\n  ports:\n  - port: 80\n");
    s
}

fn mapping(name: &str) -> String {
    format!(
        "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nname: {name}\nhostname: \"*\"\nprefix: /{name}/\nservice: {name}:80\n"
    )
}

/// A deterministic byte generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn binary_data_that_is_valid_utf8() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for round in 0..50 {
        let len = 1 + (rng.next() % 20_000) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| (rng.next() % 128) as u8).collect();
        let text = String::from_utf8(bytes).expect("ASCII");
        let c = run(&format!("binary-{round}.yaml"), &text);
        assert!(
            c.ir.virtual_hosts.iter().all(|v| v.routes.is_empty()) || !c.diagnostics.is_empty()
        );
    }
    // Arbitrary characters, not only ASCII.
    let text: String = (0..50_000u32)
        .filter_map(|i| char::from_u32(i.wrapping_mul(2_654_435_761) % 0x11_0000))
        .collect();
    run("unicode-noise.yaml", &text);
}

#[test]
fn nul_bytes() {
    let c = run("nul.yaml", "\0\0\0\0");
    assert!(!c.diagnostics.is_empty());
    let c = run(
        "nul-in-value.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\0b\n",
    );
    let _ = codes(&c);
    let text = service("nul", &format!("{}timeout_ms: 1\0\n", mapping("nul")));
    let c = run("nul-in-annotation.yaml", &text);
    let _ = codes(&c);
}

#[test]
fn a_50_mb_file() {
    // Two real Services around 50 MB of comments: the work stays linear in the size.
    let mut text = service("first", &mapping("first"));
    text.push_str("---\n");
    let pad = "# padding padding padding padding padding padding padding padding padding\n";
    let n = 50 * 1024 * 1024 / pad.len();
    text.reserve(n * pad.len() + 512);
    for _ in 0..n {
        text.push_str(pad);
    }
    text.push_str("---\n");
    text.push_str(&service("last", &mapping("last")));
    assert!(text.len() >= 50 * 1024 * 1024);
    let c = run("50mb.yaml", &text);
    assert_eq!(c.manifests.resources.len(), 2, "{:?}", codes(&c));
    assert!(
        c.diagnostics.iter().all(|d| d.severity != Severity::Error),
        "{:?}",
        codes(&c)
    );
}

#[test]
fn a_huge_annotation() {
    // 1,000 Mappings and 4 MB of comment lines in one annotation.
    let mut body = String::new();
    for i in 0..1000 {
        body.push_str("---\n");
        body.push_str(&mapping(&format!("m{i}")));
    }
    let pad = "# padding padding padding padding padding padding padding padding padding\n";
    for _ in 0..(4 << 20) / pad.len() {
        body.push_str(pad);
    }
    let c = run("huge-annotation.yaml", &service("huge", &body));
    assert_eq!(c.manifests.resources.len(), 1000);
}

#[test]
fn billion_laughs_in_the_file() {
    let mut s = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lol\ndata:\n  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..12 {
        let p = i - 1;
        s.push_str(&format!(
            "  a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let c = run("lol.yaml", &s);
    assert!(has(&c, Code::YamlLimit), "{:?}", codes(&c));
}

#[test]
fn billion_laughs_in_an_annotation() {
    let mut body = mapping("lol");
    body.push_str("labels:\n  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..12 {
        let p = i - 1;
        body.push_str(&format!(
            "  a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let c = run("lol-annotation.yaml", &service("lol", &body));
    assert!(has(&c, Code::YamlLimit), "{:?}", codes(&c));
}

#[test]
fn deep_nesting_in_flow_style() {
    for (open, close) in [("[", "]"), ("{a: ", "}")] {
        let text = format!("a: {}{}\n", open.repeat(100_000), close.repeat(100_000));
        let c = run("deep-flow.yaml", &text);
        assert!(
            has(&c, Code::YamlLimit) || has(&c, Code::YamlSyntax),
            "{:?}",
            codes(&c)
        );
        // Unclosed, too.
        let c = run("deep-flow-open.yaml", &open.repeat(100_000));
        assert!(!c.diagnostics.is_empty());
    }
}

#[test]
fn deep_nesting_in_block_style() {
    // Compact nested sequences: `- - - - x`, 100,000 deep on one line.
    let text = format!("{}x\n", "- ".repeat(100_000));
    let c = run("deep-block.yaml", &text);
    assert!(has(&c, Code::YamlLimit), "{:?}", codes(&c));
    // Block mappings, each level indented one more column (1,000 deep: 500,000 bytes).
    let mut text = String::new();
    for i in 0..1000 {
        text.push_str(&" ".repeat(i));
        text.push_str("a:\n");
    }
    let c = run("deep-block-map.yaml", &text);
    assert!(has(&c, Code::YamlLimit), "{:?}", codes(&c));
    // The same inside an annotation.
    let body = format!("{}{}x\n", mapping("deep"), "- ".repeat(10_000));
    let c = run("deep-annotation.yaml", &service("deep", &body));
    assert!(!c.diagnostics.is_empty());
}

#[test]
fn annotations_that_are_not_strings() {
    for value in [
        "{a: b}",
        "[1, 2]",
        "42",
        "true",
        "~",
        "",
        "''",
        "\"   \"",
        "|\n      not: [yaml",
    ] {
        let text = format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n  annotations:\n    getambassador.io/config: {value}\n"
        );
        let c = run("not-string.yaml", &text);
        assert!(!c.diagnostics.is_empty(), "no diagnostic for {value:?}");
        assert!(c.manifests.resources.is_empty());
    }
    // Block-style mapping and list as the annotation.
    for value in [
        "\n      kind: Mapping\n      name: x",
        "\n      - kind: Mapping",
    ] {
        let text = format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n  annotations:\n    getambassador.io/config:{value}\n"
        );
        let c = run("not-string-block.yaml", &text);
        assert!(has(&c, Code::AnnotationNotString), "{:?}", codes(&c));
    }
    // Annotation text that is YAML but not a mapping.
    for body in ["just a string\n", "- a\n- b\n", "42\n"] {
        let c = run("not-mapping.yaml", &service("x", body));
        assert!(has(&c, Code::NotAnObject), "{body:?}: {:?}", codes(&c));
    }
    // `annotations` itself not a mapping, `metadata` not a mapping.
    for meta in ["  annotations: [a]\n", "  annotations: x\n"] {
        let text = format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n{meta}");
        run("odd-metadata.yaml", &text);
    }
    run(
        "odd-metadata.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: 7\n",
    );
}

#[test]
fn huge_single_lines() {
    // A 10 MB plain scalar.
    let text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  a: {}\n",
        "x".repeat(10 << 20)
    );
    let c = run("long-line.yaml", &text);
    assert!(c.diagnostics.iter().all(|d| d.severity != Severity::Error));
    // A 1 MB flow sequence on one line.
    let text = format!("a: [{}x]\n", "x, ".repeat(1 << 18));
    run("long-flow.yaml", &text);
    // A 1 MB key.
    let text = format!("{}: 1\n", "k".repeat(1 << 20));
    let c = run("long-key.yaml", &text);
    assert!(!c.diagnostics.is_empty());
    // A 1 MB line inside an annotation.
    let body = format!(
        "{}prefix_regex: true\nregex_rewrite:\n  pattern: '{}'\n  substitution: x\n",
        mapping("long"),
        "a".repeat(1 << 20)
    );
    run("long-annotation-line.yaml", &service("long", &body));
}

/// The same configuration with LF and CRLF line ends yields the same findings at the same
/// positions.
#[test]
fn crlf_files() {
    let mut lf = service("crlf", &format!("{}timeout_msx: 10\n", mapping("crlf")));
    lf.push_str("---\n");
    lf.push_str(&service("other", &mapping("other")));
    let crlf = lf.replace('\n', "\r\n");
    let a = run("lf.yaml", &lf);
    let b = run("crlf.yaml", &crlf);
    assert_eq!(a.manifests.resources.len(), 2);
    let found = |c: &Compilation| {
        c.diagnostics
            .iter()
            .map(|d| (d.code, d.span.map(|s| s.start)))
            .collect::<Vec<_>>()
    };
    assert_eq!(found(&a), found(&b));
    assert!(a
        .diagnostics
        .iter()
        .any(|d| d.message.contains("timeout_msx")));
}

#[test]
fn a_byte_order_mark() {
    let text = format!("\u{feff}{}", service("bom", &mapping("bom")));
    let c = run("bom.yaml", &text);
    assert_eq!(c.manifests.resources.len(), 1, "{:?}", codes(&c));
    // A BOM before a later document, where YAML allows one too.
    let text = format!(
        "{}---\n\u{feff}{}",
        service("a", &mapping("a")),
        service("b", &mapping("b"))
    );
    run("bom-later.yaml", &text);
}

#[test]
fn odd_documents() {
    for text in [
        "",
        "\n\n\n",
        "---\n---\n---\n",
        "...\n",
        "--- |\n  text\n",
        "%YAML 1.2\n%TAG ! tag:x,2000:\n---\na: 1\n",
        "? [a, b]\n: c\n",
        "!!binary aGVsbG8=\n",
        "a: !!map {}\n",
        "*unknown\n",
        "&a a: *a\n",
        "\t\ta: 1\n",
        "a:\n\t- b\n",
        "- [\n",
        "\"\\u12",
        "'",
        "a: |0\n x\n",
        "a: >9\n x\n",
    ] {
        run("odd.yaml", text);
    }
}

/// A carriage return on its own breaks a line for YAML but not for the file's line table:
/// positions must still point into the file. Found by the `scalar_map` fuzz target.
#[test]
fn lone_carriage_returns_keep_positions_in_the_file() {
    let mut text = String::from("# Typos\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r: x\n");
    text.push_str(&service("cr", &format!("{}timout_ms: 10\n", mapping("cr"))));
    text.push_str("---\na: 1\rb: [1,\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r");
    let lines = text.matches('\n').count() as u32 + 1;
    let c = run("cr.yaml", &text);
    assert!(!c.diagnostics.is_empty());
    for d in &c.diagnostics {
        if let Some(s) = d.span {
            assert!(
                s.start.line <= lines && s.end.line <= lines,
                "{d:?} past line {lines}"
            );
        }
    }
}
