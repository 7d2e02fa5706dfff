//! The Dockerfile frontend: any text parses to a Dockerfile or a typed error, never a panic;
//! every instruction of a parsed file expands without panicking either.
#![no_main]
use berth_build::{BuildArgs, Dockerfile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Dockerfile::parse("Dockerfile", text, &BuildArgs::default());
});
