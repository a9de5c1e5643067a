//! Tests of the YAML reader, and the differential tests of its fast path against saphyr.
use super::*;

fn docs(text: &str) -> Vec<Document> {
    parse(text, FileId(0), &Shift { first_line: 1 })
}

#[test]
fn positions_are_one_based_and_shifted_per_document() {
    let d = docs("a: 1\n---\nb:\n  c: x\n");
    assert_eq!(d.len(), 2);
    let root = d[1].root.as_ref().unwrap().as_ref().unwrap();
    let c = root.get("b").unwrap().get_entry("c").unwrap();
    assert_eq!(c.0.span.start, Pos::new(4, 3));
    assert_eq!(c.1.span.start, Pos::new(4, 6));
}

#[test]
fn a_broken_document_does_not_hide_the_next() {
    let d = docs("a: [1\n---\nb: 2\n");
    assert_eq!(d.len(), 2);
    assert!(matches!(d[0].root, Err(ParseError::Syntax { .. })));
    assert_eq!(
        d[1].root
            .as_ref()
            .unwrap()
            .as_ref()
            .unwrap()
            .get("b")
            .unwrap()
            .as_int(),
        Some(2)
    );
}

#[test]
fn alias_bombs_are_refused() {
    let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        s.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let d = docs(&s);
    assert!(
        matches!(d[0].root, Err(ParseError::Limit { .. })),
        "{:?}",
        d[0].root
    );
}

#[test]
fn deep_nesting_is_refused() {
    let s = "[".repeat(10_000);
    let d = docs(&s);
    assert!(d[0].root.is_err());
}

#[test]
fn typing_follows_yaml_1_2() {
    let d = docs("a: yes\nb: true\nc: '80'\nd: 0x1F\ne: ~\nf: 1.5\n");
    let r = d[0].root.as_ref().unwrap().as_ref().unwrap();
    assert_eq!(r.get("a").unwrap().as_bool(), None);
    assert_eq!(r.get("a").unwrap().yaml11_bool(), Some(true));
    assert_eq!(r.get("b").unwrap().as_bool(), Some(true));
    assert_eq!(r.get("c").unwrap().as_int(), None);
    assert_eq!(r.get("d").unwrap().as_int(), Some(31));
    assert!(r.get("e").unwrap().is_null());
    assert_eq!(r.get("f").unwrap().as_float(), Some(1.5));
}

#[test]
fn split_keeps_directives_with_their_document() {
    let chunks = split_documents("%YAML 1.2\n---\na: 1\n---\nb: 2\n");
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[1].0, 4);
}

// ---- the fast path against saphyr ----

/// Each chunk through the fast path alone; `None` when it declines any chunk.
fn fast_only(text: &str) -> Option<Vec<Document>> {
    let mut out = Vec::new();
    for (first_line, chunk) in split_documents(text) {
        let map = ChunkMap {
            inner: &Shift { first_line: 1 },
            offset: first_line - 1,
        };
        out.extend(fast::parse(chunk, FileId(0), &map).ok()?);
    }
    Some(out)
}

fn saphyr_only(text: &str) -> Vec<Document> {
    let mut out = Vec::new();
    for (first_line, chunk) in split_documents(text) {
        let map = ChunkMap {
            inner: &Shift { first_line: 1 },
            offset: first_line - 1,
        };
        parse_chunk_saphyr(chunk, FileId(0), &map, &mut out);
    }
    out
}

/// When the fast path answers, it answers exactly what saphyr does. Returns whether it did.
fn same(text: &str) -> bool {
    let Some(fast) = fast_only(text) else {
        return false;
    };
    let slow = saphyr_only(text);
    if fast != slow {
        let (f, s) = (format!("{fast:#?}"), format!("{slow:#?}"));
        let at = f
            .lines()
            .zip(s.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        let context = |t: &str| {
            t.lines()
                .skip(at.saturating_sub(12))
                .take(16)
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "fast path and saphyr differ on {text:?}\n--- fast:\n{}\n--- saphyr:\n{}",
            context(&f),
            context(&s)
        );
    }
    true
}

/// Scalars that may hold YAML themselves (annotations), to test them as text too.
fn nested_texts(n: &Node, out: &mut Vec<String>) {
    match &n.kind {
        NodeKind::Scalar { text, .. } => {
            if text.contains(": ") {
                out.push(text.to_string());
            }
        }
        NodeKind::Seq(items) => items.iter().for_each(|i| nested_texts(i, out)),
        NodeKind::Map(entries) => entries.iter().for_each(|(k, v)| {
            nested_texts(k, out);
            nested_texts(v, out);
        }),
    }
}

/// Every YAML text the repository has: examples, and the benchmark's generated manifests,
/// with the annotations inside them.
fn corpus() -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    let mut dirs = vec![root.join("examples"), root.join("manifests")];
    while let Some(d) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                files.push(std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    files.push(crate::front::yaml::tests::generated(40));
    let mut all = files.clone();
    for f in &files {
        for d in saphyr_only(f) {
            if let Ok(Some(root)) = &d.root {
                nested_texts(root, &mut all);
            }
        }
    }
    all
}

#[path = "../../../benches/gen.rs"]
mod gen;

fn generated(n: usize) -> String {
    gen::manifests(n).0
}

const CASES: &[&str] = &[
    "",
    "\n",
    "---\n",
    "---\n# c\n",
    "# c\n",
    "# c\n\na: b",
    "--- # c\na: 1\n",
    "a: 1\nb:\n  c: x   # hi\n  d: [1, \"two\", {e: f}]\n  g:\n  - h\n  - i: j\n    k: l\n\n# c\nm: |\n  line1\n   line2\n\nn: 'q'\no:\np: \"\"\n",
    "a: |\n  x\n",
    "a: |\n  x",
    "a: |\n  x\n\n",
    "a: |\n  x\n  \n   \n",
    "a: |\n\n  x\n",
    "a: |\n",
    "a: |\nb: 1\n",
    "a: |-\n  x\n\n  y\n\n\nb: 1\n",
    "a: |+\n  x\n\n\n  # c\nb: 1\n",
    "a: |+\n  x\n\n",
    "a: | # c\n  x\n",
    "a: |2\n   x\n",
    "a:\n",
    "a:",
    "a: b",
    "a:  \n  b\n",
    "a:\n  b\nc: d\n",
    "a: b\n  c\n",
    "a: b\n  # c\n",
    "- a\n- b\n",
    "-\n- b\n",
    "-\n  a: 1\n- b\n",
    "- - x\n  - y\n- z\n",
    "- a: 1\n  b: 2\n-   c: 3\n",
    "a:\n- b\n- c\nd: e\n",
    "a:\n  - x\n  # c\n  - y\nb: 1",
    "a:\n-\n  b: 1\n",
    "k: v #c\n",
    "k: v#c\n",
    "a: b: c\n",
    "a: 'it''s'\n",
    "a: \"x\\\"y\\n\"\n",
    "a: \"\\u00e9\"\n",
    "a: [ ]\nb: {}\nc: [a, b, ]\n",
    "a: [a b, 'c', \"d\", [e], {f: g}]\n",
    "a: {x: 1, y: [2, 3]}\n",
    "a: [1, 2\n",
    "a: [http://x]\n",
    "a: {b}\n",
    "'a': 1\n\"b c\": 2\n",
    "a : 1\n",
    "? a\n: b\n",
    "a: &x 1\nb: *x\n",
    "a: !!str 1\n",
    "%YAML 1.2\n---\na: 1\n",
    "a: 1\n...\n",
    "  a: 1\n  b: 2\n",
    "  a: 1\nb: 2\n",
    "a:\n    b: 1\n  c: 2\n",
    "a: -1\nb: - c\n",
    "a: >\n  folded\n",
    "a: x\n\tb: y\n",
    "a: x\r\nb: y\r\n",
    "a: é\n",
    "- |\n  text\n- x\n",
    "a:\n  |\n   text\n",
    "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  annotations:\n    getambassador.io/config: |\n      ---\n      apiVersion: getambassador.io/v3alpha1\n      kind: Mapping\n      name: m\n      prefix: /m/\n      service: m\nspec:\n  ports:\n  - port: 80\n",
];

#[test]
fn fast_path_matches_saphyr_on_hand_written_cases() {
    let answered = CASES.iter().filter(|c| same(c)).count();
    assert!(
        answered > CASES.len() / 2,
        "fast path answered {answered} cases"
    );
}

#[test]
fn fast_path_answers_the_repository_yaml_and_matches_saphyr() {
    for text in corpus() {
        same(&text);
    }
    // The generated manifests and their annotations are the fast path's purpose.
    let g = generated(40);
    assert!(
        fast_only(&g).is_some(),
        "fast path declined the generated manifests"
    );
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One random edit of `text`, of the kinds that change YAML's structure.
fn mutate(text: &str, rng: &mut Rng) -> String {
    const PIECES: &[&str] = &[
        " ", "  ", "-", "- ", ":", ": ", "#", " #", "'", "\"", "|", "|-", "|+", ">", "[", "]", "{",
        "}", ",", "\n", "\n\n", "a", "\\", "&a ", "*a", "!t ", "---\n", "...", "\t", "\r", "é",
        "?", "%", "0", "~",
    ];
    let mut b = text.to_string();
    let pos = |b: &str, rng: &mut Rng| {
        let mut p = rng.below(b.len() + 1);
        while !b.is_char_boundary(p) {
            p -= 1;
        }
        p
    };
    match rng.below(6) {
        0 => {
            let p = pos(&b, rng);
            b.insert_str(p, PIECES[rng.below(PIECES.len())]);
        }
        1 => {
            let p = pos(&b, rng);
            let mut q = (p + 1 + rng.below(3)).min(b.len());
            while !b.is_char_boundary(q) {
                q += 1;
            }
            b.replace_range(p..q, "");
        }
        2 => {
            // Indent or dedent a line.
            let lines: Vec<&str> = b.split('\n').collect();
            let k = rng.below(lines.len());
            let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            if rng.below(2) == 0 {
                out[k].insert_str(0, "  ");
            } else {
                out[k] = out[k].strip_prefix(' ').unwrap_or(&out[k]).to_string();
            }
            b = out.join("\n");
        }
        3 => {
            // Duplicate or drop a line.
            let mut lines: Vec<String> = b.split('\n').map(str::to_string).collect();
            let k = rng.below(lines.len());
            if rng.below(2) == 0 {
                let l = lines[k].clone();
                lines.insert(k, l);
            } else {
                lines.remove(k);
            }
            b = lines.join("\n");
        }
        4 => {
            let p = pos(&b, rng);
            b.truncate(p);
        }
        _ => {
            let p = pos(&b, rng);
            b.insert_str(p, PIECES[rng.below(PIECES.len())]);
            let p = pos(&b, rng);
            b.insert_str(p, PIECES[rng.below(PIECES.len())]);
        }
    }
    b
}

#[test]
fn fast_path_matches_saphyr_on_mutated_inputs() {
    let mut seeds: Vec<String> = CASES.iter().map(|s| s.to_string()).collect();
    seeds.extend(corpus().into_iter().filter(|t| t.len() < 4000));
    let seed = std::env::var("FAST_PATH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    let mut rng = Rng(seed | 1);
    let rounds: usize = std::env::var("FAST_PATH_MUTANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut answered = 0;
    for r in 0..rounds {
        let seed = &seeds[r % seeds.len()];
        let mut m = mutate(seed, &mut rng);
        if rng.below(3) == 0 {
            m = mutate(&m, &mut rng);
        }
        if same(&m) {
            answered += 1;
        }
    }
    // The mutants stay close enough to the subset for the comparison to mean something.
    eprintln!("fast path answered {answered} of {rounds} mutants");
    assert!(
        answered > rounds / 5,
        "fast path answered {answered} of {rounds} mutants"
    );
}

/// Reading on several threads gives the documents one thread gives, in the same order.
#[test]
fn parallel_parsing_keeps_the_order() {
    let text = generated(400);
    assert!(text.len() > PARALLEL_MIN_BYTES);
    let map = Shift { first_line: 1 };
    let parts = parse_parallel(
        &text,
        FileId(0),
        &map,
        |_| Vec::new(),
        |v, d| v.push(d),
        |_| {},
    );
    if std::thread::available_parallelism().is_ok_and(|n| n.get() > 1) {
        assert!(parts.len() > 1, "the input was not split");
    }
    let together: Vec<Document> = parts.into_iter().flatten().collect();
    assert_eq!(together, docs(&text));
}

#[test]
fn split_documents_matches_its_reference() {
    let mut texts: Vec<String> = CASES.iter().map(|s| s.to_string()).collect();
    texts.extend(corpus());
    texts.extend(
        [
            "a\n---\n\u{a0}\u{2003}# c\n---\nb\n",
            "a\n--- \u{85}x\n---\t#\n---\r\nb\n",
            "x\n---\n\u{b}\n---\n\u{c}y\n",
        ]
        .map(String::from),
    );
    let mut rng = Rng(42);
    for r in 0..20_000 {
        let m = mutate(&texts[r % texts.len()], &mut rng);
        assert_eq!(split_documents(&m), split_documents_reference(&m), "{m:?}");
    }
    for t in &texts {
        assert_eq!(split_documents(t), split_documents_reference(t), "{t:?}");
    }
}
