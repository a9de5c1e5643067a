//! The YAML fast path against saphyr: when the fast path answers, it must answer exactly
//! what saphyr does (same nodes, text, styles and spans).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(diff) = ambassador_compiler::front::yaml::fast_path_agrees(text) {
        panic!("fast path and saphyr differ on {text:?}\n{diff}");
    }
});
