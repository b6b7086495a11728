//! Bytes from a client: the framing check and pgwire's decoder must answer every input
//! (ready, incomplete, or a protocol violation) without a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    headwater::pgwire::fuzz_frame(data);
});
