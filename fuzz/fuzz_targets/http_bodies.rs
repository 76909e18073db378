#![no_main]

#[path = "../checks/http.rs"]
#[allow(dead_code)] // each target uses one entry point of its checks module
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::http_bodies(data));
