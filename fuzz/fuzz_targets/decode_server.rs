#![no_main]

#[path = "../checks/protocol.rs"]
#[allow(dead_code)] // each target uses one entry point of its checks module
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::decode_server(data));
