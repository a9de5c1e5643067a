//! The built `kubectl_complete-ambassador`, directly and through kubectl's plugin completion.

use std::path::Path;
use std::process::Command;

const COMPLETE: &str = env!("CARGO_BIN_EXE_kubectl_complete-ambassador");
const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-ambassador");

fn stdout(cmd: &mut Command) -> String {
    let out = cmd.output().expect("running the program");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn kubeconfig(dir: &Path) -> String {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        r#"{"apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
            "contexts": [{"name": "kind-dev", "context": {"cluster": "c"}},
                         {"name": "prod", "context": {"cluster": "c"}}],
            "users": []}"#,
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn protocol_from_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path());
    let run = |args: &[&str]| stdout(Command::new(COMPLETE).args(args).env_remove("KUBECONFIG"));
    assert_eq!(
        run(&["__completeNoDesc", ""]),
        "lint\nroutes\npreview\ntrace\ntest\nhelp\n:4\n"
    );
    assert_eq!(run(&["routes", "-o", ""]), "table\njson\nyaml\n:4\n");
    assert_eq!(run(&["lint", "--failure-threshold", "w"]), "warning\n:4\n");
    assert_eq!(run(&["lint", "-f", ""]), ":0\n");
    assert_eq!(
        run(&["routes", "--kubeconfig", &kc, "--context", ""]),
        "kind-dev\nprod\n:4\n"
    );
    // An unreadable kubeconfig offers nothing, and completion still succeeds.
    assert_eq!(
        run(&["routes", "--kubeconfig", "/nonexistent", "--context", ""]),
        ":4\n"
    );
}

#[test]
fn through_kubectl() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        panic!("kubectl is not installed: install it (Debian package `kubectl`) to run this test");
    }
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path());
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(PLUGIN, bin.join("kubectl-ambassador")).unwrap();
    std::os::unix::fs::symlink(COMPLETE, bin.join("kubectl_complete-ambassador")).unwrap();
    let mut paths = vec![bin.clone()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let path = std::env::join_paths(paths).unwrap();
    let kubectl = |args: &[&str]| {
        stdout(
            Command::new("kubectl")
                .arg("__complete")
                .args(args)
                .env("PATH", &path)
                .env("KUBECONFIG", &kc),
        )
    };
    assert_eq!(
        kubectl(&["ambassador", "li"]),
        "lint\tReport everything wrong in Ambassador configuration, with exact positions\n:4\n"
    );
    assert_eq!(
        kubectl(&["ambassador", "lint", "--color="]),
        "--color=auto\n--color=always\n--color=never\n:4\n"
    );
    assert_eq!(
        kubectl(&["ambassador", "routes", "--context", "p"]),
        "prod\n:4\n"
    );
    assert_eq!(kubectl(&["ambassador", "lint", "-f", ""]), ":0\n");
}
