//! The whole pipeline on arbitrary input: read, lower, check, emit. It must never panic
//! and never hang; whatever the input, the answer is a result plus diagnostics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Files that are not UTF-8 are the plugin's to refuse; the compiler takes text.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let c = ambassador_compiler::compile_one("fuzz.yaml", text);
    let _ = ambassador_compiler::envoy::emit(&c.ir);
});
