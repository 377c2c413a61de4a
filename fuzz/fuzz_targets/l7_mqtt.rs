//! mqtt after its start, fed hostile bytes in hostile chunks (see kshark_dissect::testkit::fuzz_l7).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kshark_dissect::testkit::fuzz_l7("mqtt", data));
