//! Shared by the benchmarks: each one owns a marked section of `docs/benchmarks.md` and
//! replaces only that section, so running one benchmark keeps the others' figures.

/// Replaces (or appends) the section `name` of `docs/benchmarks.md` with `body`.
pub fn write_section(name: &str, body: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/benchmarks.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".to_string());
    let start = format!("<!-- bench:{name} -->");
    let end = format!("<!-- /bench:{name} -->");
    let section = format!("{start}\n{}\n{end}", body.trim_end());
    let updated = match (text.find(&start), text.find(&end)) {
        (Some(s), Some(e)) if e > s => format!("{}{section}{}", &text[..s], &text[e + end.len()..]),
        _ => format!("{}\n\n{section}\n", text.trim_end()),
    };
    std::fs::write(&path, updated).unwrap();
    println!("wrote section {name} of {}", path.display());
}
