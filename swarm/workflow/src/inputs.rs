//! A step's `inputs`: glob patterns expanded to files under the workdir.
//!
//! Patterns are `/`-separated and relative: `*` matches within a path
//! segment, `?` one character, and a `**` segment any number of segments
//! (none included). Walks skip `.git` and `.skep`.

use std::path::Path;

/// Whether `path` (relative, `/`-separated) matches `pattern`.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
    let path: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match_segments(&pattern, &path)
}

fn match_segments(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| match_segments(rest, &path[skip..])),
        Some((first, rest)) => path
            .split_first()
            .is_some_and(|(name, tail)| match_segment(first.as_bytes(), name.as_bytes()) && match_segments(rest, tail)),
    }
}

fn match_segment(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| match_segment(rest, &name[skip..])),
        Some((b'?', rest)) => !name.is_empty() && match_segment(rest, &name[1..]),
        Some((c, rest)) => name.first() == Some(c) && match_segment(rest, &name[1..]),
    }
}

/// The files under `workdir` that `patterns` match, relative and sorted,
/// each once.
pub fn expand_inputs(workdir: &Path, patterns: &[String]) -> std::io::Result<Vec<String>> {
    let mut found = Vec::new();
    for pattern in patterns {
        // Walk only below the pattern's literal prefix: `src/**/*.rs` never reads `target/`.
        let segments: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
        let literal = segments.iter().take_while(|s| !s.contains(['*', '?'])).count();
        let prefix = segments[..literal].join("/");
        let start = workdir.join(&prefix);
        if literal == segments.len() {
            if start.is_file() {
                found.push(prefix);
            }
            continue;
        }
        walk(&start, &prefix, &mut |rel| {
            if glob_match(pattern, rel) {
                found.push(rel.to_owned());
            }
        })?;
    }
    found.sort_unstable();
    found.dedup();
    Ok(found)
}

fn walk(dir: &Path, rel: &str, visit: &mut dyn FnMut(&str)) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == ".git" || name == ".skep" {
            continue;
        }
        let child = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), &child, visit)?;
        } else if kind.is_file() || (kind.is_symlink() && entry.path().is_file()) {
            visit(&child);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_stay_in_their_segment() {
        assert!(glob_match("src/*.rs", "src/lib.rs"));
        assert!(!glob_match("src/*.rs", "src/a/lib.rs"));
        assert!(glob_match("src/?ib.rs", "src/lib.rs"));
        assert!(!glob_match("*.rs", "lib.txt"));
    }

    #[test]
    fn double_star_spans_any_depth_including_none() {
        assert!(glob_match("src/**/*.rs", "src/lib.rs"));
        assert!(glob_match("src/**/*.rs", "src/a/b/c.rs"));
        assert!(glob_match("**", "a/b"));
        assert!(!glob_match("src/**/*.rs", "tests/a.rs"));
        assert!(glob_match("./README.md", "README.md"));
    }
}
