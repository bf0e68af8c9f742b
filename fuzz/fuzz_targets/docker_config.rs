#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| image_mirror_registry::fuzzing::docker_config(data));
