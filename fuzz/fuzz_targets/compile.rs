//! The whole compilation on arbitrary text: front end, lowering, checks, the Envoy resources
//! (`envoy_resources`: EDS endpoints and SDS secrets included), their `/config_dump` JSON,
//! and the route tracer over the table decoded from those resources.
//!
//! The requests traced: each comment line `#trace METHOD URL [name:value ...]` of the input
//! (up to four; a YAML comment, so it changes nothing in the compilation), or else one request
//! made from the input itself: the first `hostname:`/`host:` and `prefix:` values it holds,
//! with the transport, method and a path suffix picked by a hash of the bytes.
//!
//! Must hold: no panic, no hang; the JSON rendering is valid JSON that reads back to the same
//! value; the trace serialises.
#![no_main]

use ambassador_compiler::envoy;
use ambassador_compiler::matcher::{Request, Table};
use ambassador_compiler::trace;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let c = ambassador_compiler::compile_one("fuzz.yaml", text);
    let res = ambassador_compiler::envoy_resources(&c);

    let dump = envoy::to_config_dump_json(&res, None);
    let rendered = serde_json::to_string(&dump).expect("the config dump serialises");
    let back: serde_json::Value =
        serde_json::from_str(&rendered).expect("the config dump is valid JSON");
    assert_eq!(back, dump, "the config dump reads back as written");

    let table = envoy::table::table(&res);
    let mut requests: Vec<Request> = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("#trace "))
        .take(4)
        .filter_map(|l| from_command(&table, l))
        .collect();
    if requests.is_empty() {
        requests.push(derived(&table, text, data));
    }
    for req in &requests {
        let t = trace::trace(&table, &c.ir, req);
        serde_json::to_string(&t).expect("a trace serialises");
    }
});

/// `METHOD URL [name:value ...]`, as `kubectl ambassador trace` takes it.
fn from_command(table: &Table, line: &str) -> Option<Request> {
    let mut words = line.split_whitespace();
    let method = words.next()?;
    let url = words.next()?;
    let headers = words
        .filter_map(|h| h.split_once(':'))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    trace::request_for_url(table, method, url, headers).ok()
}

/// A request towards what the input names, varied by a hash of its bytes.
fn derived(table: &Table, text: &str, data: &[u8]) -> Request {
    let h = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    let value = |keys: &[&str]| {
        text.lines().find_map(|l| {
            let l = l.trim_start().trim_start_matches("- ");
            keys.iter().find_map(|k| {
                l.strip_prefix(k)
                    .and_then(|r| r.strip_prefix(':'))
                    .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'').to_owned())
            })
        })
    };
    let host = value(&["hostname", "host"])
        .unwrap_or_else(|| "example.com".to_owned())
        .replace('*', "a");
    let prefix = value(&["prefix"]).unwrap_or_else(|| "/".to_owned());
    let tls = h & 1 == 1;
    let method = ["GET", "POST", "PUT", "OPTIONS"][(h >> 1) as usize % 4];
    let suffix = ["", "x", "/", "/a/../b", "?q=1", "%2e%2e/x", "//y"][(h >> 3) as usize % 7];
    let port = if h & 4 == 0 {
        trace::default_port(table, tls)
    } else {
        table.listeners.first().map_or(8080, |l| l.port)
    };
    let mut headers = Vec::new();
    if (h >> 8) & 3 == 0 {
        headers.push(("x-forwarded-proto".to_owned(), "https".to_owned()));
    }
    if (h >> 10) & 3 == 0 {
        headers.push(("upgrade".to_owned(), "websocket".to_owned()));
    }
    Request {
        tls,
        sni: tls.then(|| host.clone()),
        port,
        method: method.to_owned(),
        authority: host,
        path: format!("{prefix}{suffix}"),
        headers,
    }
}
