//! Postgres identifiers in text: the one quoter every layer uses for names it prints or
//! writes back as SQL (error messages, regenerated definitions, `hw_catalog`).
//!
//! Upstream MySQL names are quoted with backticks by the MySQL source itself
//! (`source::mysql::schema::quote_upstream`): that is another dialect.

/// An identifier as Postgres prints it: bare when it is lower-case and plain, else quoted.
pub fn quote_ident(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        quoted(name)
    }
}

/// An identifier always in double quotes, for SQL that is parsed again (stored definitions):
/// case and keywords survive the round trip.
pub fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("orders"), "orders");
        assert_eq!(quote_ident("_x1"), "_x1");
        assert_eq!(quote_ident("Orders"), "\"Orders\"");
        assert_eq!(quote_ident("1a"), "\"1a\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quoted("order"), "\"order\"");
    }
}
