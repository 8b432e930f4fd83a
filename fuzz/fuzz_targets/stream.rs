//! `plan -json` streams and terraform's human error text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tfdrift_exporter::plan::stream::{StreamSummary, errors_from_text};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let summary = StreamSummary::parse(&text);
    assert!(summary.stray.len() <= 64 * 1024 + 4096);
    let _ = errors_from_text(&text);
});
