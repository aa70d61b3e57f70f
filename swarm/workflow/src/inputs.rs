//! A step's `inputs`: glob patterns expanded to files under the workdir.
//!
//! Patterns are `/`-separated and relative, matched by `globset`: `*` and `?`
//! stay within a path segment, `**` spans any number of segments (none
//! included), and `[ab]`/`{a,b}` are classes and alternatives. Walks skip
//! `.git` and `.skep`.

use std::path::Path;

use globset::{Glob, GlobMatcher};

/// A pattern compiled the way `inputs` are matched, or why it does not compile.
pub fn input_glob(pattern: &str) -> Result<GlobMatcher, globset::Error> {
    let glob = globset::GlobBuilder::new(&normalize(pattern)).literal_separator(true).build()?;
    Ok(Glob::compile_matcher(&glob))
}

// `./a` and `a//b` name the same files as `a` and `a/b`.
fn normalize(pattern: &str) -> String {
    let segments: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
    segments.join("/")
}

/// The files under `workdir` that `patterns` match, relative and sorted,
/// each once.
pub fn expand_inputs(workdir: &Path, patterns: &[String]) -> std::io::Result<Vec<String>> {
    let mut found = Vec::new();
    for pattern in patterns {
        let matcher = input_glob(pattern).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        // Walk only below the pattern's literal prefix: `src/**/*.rs` never reads `target/`.
        let normal = normalize(pattern);
        let segments: Vec<&str> = normal.split('/').filter(|s| !s.is_empty()).collect();
        let literal = segments.iter().take_while(|s| !s.contains(['*', '?', '[', '{'])).count();
        let prefix = segments[..literal].join("/");
        let start = workdir.join(&prefix);
        if literal == segments.len() {
            if start.is_file() {
                found.push(prefix);
            }
            continue;
        }
        let walk = walkdir::WalkDir::new(&start)
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !matches!(e.file_name().to_str(), Some(".git" | ".skep")));
        for entry in walk {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if e.io_error().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) => continue,
                Err(e) => return Err(e.into()),
            };
            // A symlink to a file counts as the file; symlinked directories are not followed.
            let is_file = entry.file_type().is_file() || (entry.path_is_symlink() && entry.path().is_file());
            let Ok(rel) = entry.path().strip_prefix(workdir) else { continue };
            let rel = rel.to_string_lossy().replace(std::path::MAIN_SEPARATOR, "/");
            if is_file && matcher.is_match(&rel) {
                found.push(rel);
            }
        }
    }
    found.sort_unstable();
    found.dedup();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, path: &str) -> bool {
        input_glob(pattern).expect("a valid pattern").is_match(path)
    }

    #[test]
    fn stars_stay_in_their_segment() {
        assert!(matches("src/*.rs", "src/lib.rs"));
        assert!(!matches("src/*.rs", "src/a/lib.rs"));
        assert!(matches("src/?ib.rs", "src/lib.rs"));
        assert!(!matches("*.rs", "lib.txt"));
    }

    #[test]
    fn double_star_spans_any_depth_including_none() {
        assert!(matches("src/**/*.rs", "src/lib.rs"));
        assert!(matches("src/**/*.rs", "src/a/b/c.rs"));
        assert!(matches("**", "a/b"));
        assert!(!matches("src/**/*.rs", "tests/a.rs"));
        assert!(matches("./README.md", "README.md"));
    }

    #[test]
    fn a_malformed_pattern_is_an_error_not_a_literal() {
        assert!(input_glob("src/[a.rs").is_err());
        assert!(matches("src/{a,b}.rs", "src/b.rs"));
    }

    #[test]
    fn expansion_walks_below_the_prefix_skipping_state_dirs() {
        let dir = tempfile::tempdir().expect("temp dir");
        for file in ["src/a.rs", "src/deep/b.rs", "src/c.txt", "src/.skep/d.rs", "other/e.rs", "top.rs"] {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("dirs");
            std::fs::write(&path, file).expect("write");
        }
        let patterns = ["src/**/*.rs".to_owned(), "./top.rs".to_owned(), "missing/*.rs".to_owned()];
        let found = expand_inputs(dir.path(), &patterns).expect("expands");
        assert_eq!(found, ["src/a.rs", "src/deep/b.rs", "top.rs"]);
    }
}
