//! berth.yaml: any text loads to a validated Config or a ConfigError with locations, never a
//! panic; the error renders.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = berth_config::parse(text, "berth.yaml", Path::new("/nonexistent-berth-fuzz")) {
        let _ = e.to_string();
    }
});
