//! Statement text: the parser, with the compatibility rewrites and the complexity limits
//! that run before planning, must parse or refuse every input without a panic (a deep
//! expression once overflowed the stack there).
#![no_main]

use std::sync::OnceLock;

use headwater::sql::parser::SqlParser;

static PARSER: OnceLock<SqlParser> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = PARSER.get_or_init(SqlParser::new).parse(text);
    }
});
