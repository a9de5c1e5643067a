//! The directory view on a temp dir: debounced changes, only changed files re-read,
//! a broken file keeps its last good text and the others.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ambassador_webhook::view::dir::{self, DirOptions, Problem};
use ambassador_webhook::view::{Snapshot, View};

const WAIT: Duration = Duration::from_secs(10);

async fn until(view: &View, what: &str, f: impl FnMut(&Snapshot) -> bool) -> Snapshot {
    match tokio::time::timeout(WAIT, view.wait_for(f)).await {
        Ok(s) => s,
        Err(_) => panic!(
            "timed out after {WAIT:?} waiting for {what}; view: {:?}",
            view.snapshot()
        ),
    }
}

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  namespace: n\nspec:\n  ports:\n  - port: 80\n";

fn mapping(prefix: &str) -> String {
    format!(
        "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata:\n  name: m\n  namespace: n\nspec:\n  hostname: \"*\"\n  prefix: {prefix}\n  service: a\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let path = |n: &str| root.join(n);
    let name = |n: &str| path(n).display().to_string();
    std::fs::write(path("a.yaml"), SERVICE).unwrap();
    std::fs::write(path("b.yaml"), mapping("/b/")).unwrap();
    std::fs::write(path("README.md"), "not a manifest").unwrap();

    let problems: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = problems.clone();
    let options = DirOptions {
        debounce: Duration::from_millis(20),
        recursive: false,
        on_problem: Some(Arc::new(move |p: &Problem| {
            seen.lock().unwrap().push(p.to_string())
        })),
    };
    let view = View::new();
    let _watch = dir::watch(tmp.path(), view.clone(), options).await.unwrap();

    // The first scan is complete before `watch` returns.
    let s = view.snapshot();
    assert!(s.is_synced());
    let files: Vec<&str> = s.files().map(|(n, _)| n).collect();
    assert_eq!(files, [name("a.yaml"), name("b.yaml")]);

    // A new file.
    std::fs::write(path("c.yaml"), mapping("/c/")).unwrap();
    until(&view, "c.yaml", |s| s.file(&name("c.yaml")).is_some()).await;

    // A modified file; the others are the same `Arc`s, not re-read copies.
    let before = view.snapshot();
    std::fs::write(path("b.yaml"), mapping("/b2/")).unwrap();
    let after = until(&view, "b.yaml modified", |s| {
        s.file(&name("b.yaml")).is_some_and(|t| t.contains("/b2/"))
    })
    .await;
    assert!(std::ptr::eq(
        before.file(&name("a.yaml")).unwrap(),
        after.file(&name("a.yaml")).unwrap()
    ));

    // A broken file keeps its last good text; the rest stays.
    std::fs::write(path("b.yaml"), "kind: [\n").unwrap();
    let s = until(&view, "the problem with b.yaml", |s| {
        s.problems().contains_key(&name("b.yaml"))
    })
    .await;
    assert!(s.file(&name("b.yaml")).unwrap().contains("/b2/"));
    assert!(s.file(&name("a.yaml")).is_some());
    assert!(s.file(&name("c.yaml")).is_some());
    let reported = problems.lock().unwrap().clone();
    assert!(
        reported
            .iter()
            .any(|p| p.starts_with(&format!("{}:2:", name("b.yaml")))),
        "{reported:?}"
    );

    // Fixed again: taken, and the problem is gone.
    std::fs::write(path("b.yaml"), mapping("/b3/")).unwrap();
    let s = until(&view, "b.yaml fixed", |s| {
        s.file(&name("b.yaml")).is_some_and(|t| t.contains("/b3/"))
    })
    .await;
    assert!(s.problems().is_empty(), "{:?}", s.problems());

    // An editor's atomic save: a hidden temporary renamed over the file.
    std::fs::write(path(".c.yaml.swp"), mapping("/c2/")).unwrap();
    std::fs::rename(path(".c.yaml.swp"), path("c.yaml")).unwrap();
    until(&view, "c.yaml replaced by rename", |s| {
        s.file(&name("c.yaml")).is_some_and(|t| t.contains("/c2/"))
    })
    .await;

    // A deleted file leaves the view.
    std::fs::remove_file(path("c.yaml")).unwrap();
    let s = until(&view, "c.yaml gone", |s| s.file(&name("c.yaml")).is_none()).await;
    let files: Vec<&str> = s.files().map(|(n, _)| n).collect();
    assert_eq!(files, [name("a.yaml"), name("b.yaml")]);

    // The compiler reads what the view holds.
    let (sources, _) = s.compile_input();
    let c = ambassador_compiler::compile(
        &sources,
        &ambassador_compiler::front::Options::default(),
        &ambassador_compiler::lower::LowerOptions::default(),
    );
    assert_eq!(c.manifests.objects, 2, "{:?}", c.diagnostics);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_are_debounced() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let file = root.join("a.yaml");
    std::fs::write(&file, mapping("/0/")).unwrap();
    let view = View::new();
    let options = DirOptions {
        // Long enough that a burst of writes from one thread is one batch even on a
        // loaded machine, short enough for a test.
        debounce: Duration::from_millis(300),
        ..DirOptions::default()
    };
    let _watch = dir::watch(tmp.path(), view.clone(), options).await.unwrap();
    let start = view.snapshot().generation();
    for i in 1..=20 {
        std::fs::write(&file, mapping(&format!("/{i}/"))).unwrap();
    }
    let name = file.display().to_string();
    let s = until(&view, "the last write", |s| {
        s.file(&name).is_some_and(|t| t.contains("/20/"))
    })
    .await;
    // Twenty writes, one batch (two if inotify split the burst across the quiet period).
    let batches = s.generation() - start;
    assert!(
        (1..=2).contains(&batches),
        "{batches} batches for one burst"
    );
    // Nothing further arrives after the quiet period.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(view.snapshot().generation(), s.generation());
}

#[tokio::test]
async fn a_missing_directory_is_an_error() {
    let err = dir::watch(
        std::path::Path::new("/nonexistent/ambassador-view"),
        View::new(),
        DirOptions::default(),
    )
    .await
    .err()
    .expect("an error");
    assert!(
        err.to_string()
            .starts_with("/nonexistent/ambassador-view: "),
        "{err}"
    );
}

/// Reading a file is an inotify event too (open, read, close without writing): the watch
/// must not take its own reads for changes, or an idle server rereads its directory forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_directory_is_not_read_again() {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..5 {
        std::fs::write(
            tmp.path().join(format!("m{i}.yaml")),
            mapping(&format!("/{i}/")),
        )
        .unwrap();
    }
    let view = View::new();
    let watch = dir::watch(tmp.path(), view.clone(), DirOptions::default())
        .await
        .unwrap();
    assert_eq!(watch.files_read(), 5, "the first scan reads each file once");
    // Well past the debounce period, several times over.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        watch.files_read(),
        5,
        "the files were read again with nothing changed"
    );
    // A real change is still seen, and read once.
    std::fs::write(tmp.path().join("m0.yaml"), mapping("/changed/")).unwrap();
    let name = std::fs::canonicalize(tmp.path().join("m0.yaml"))
        .unwrap()
        .display()
        .to_string();
    until(&view, "the change", |s| {
        s.file(&name).is_some_and(|t| t.contains("/changed/"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(watch.files_read(), 6, "one change, one read");
}
