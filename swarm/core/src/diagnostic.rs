//! Where a file is wrong and why: the one source-location type, the one
//! "invalid file" error and the one "cannot use this file" error shared by
//! `skep.toml` and workflow files.
//!
//! Positions come from the toml crate's spans and key paths from
//! `serde_path_to_error`, so nothing here re-parses a file to find a key.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::de::DeTable;

/// Why a file skep reads (`skep.toml`, a workflow) could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML or not valid for its kind: where, why and what to do.
    #[error(transparent)]
    Invalid(#[from] Invalid),
}

/// The text of a file about to be loaded, or why it cannot be read.
pub fn read_source(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|source| FileError::Read { path: path.to_path_buf(), source })
}

/// A place in a source file: file, 1-based line and column, and the dotted key if known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file name, or `<inline>`.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The dotted key (`roles.r.timeout`, `steps[2].run`), when the place is a key or its value.
    pub key: Option<String>,
}

impl Location {
    /// The location of byte `offset` of `text` (clamped to the text).
    pub fn at(file: &str, text: &str, offset: usize) -> Location {
        // toml spans are byte offsets; a char boundary below them keeps the slice valid.
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = before.matches('\n').count() + 1;
        let column = before[line_start..].chars().count() + 1;
        Location { file: file.to_owned(), line, column, key: None }
    }

    /// The same place, naming `key`.
    pub fn with_key(mut self, key: impl Into<String>) -> Location {
        self.key = Some(key.into());
        self
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A file is invalid at `location` because of `problem`; `help` says what to do when the problem does not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    /// Where.
    pub location: Location,
    /// What is wrong, as a lowercase fragment.
    pub problem: String,
    /// What to do about it.
    pub help: Option<String>,
}

impl Invalid {
    /// An error at byte `offset` of `text`.
    pub fn at(file: &str, text: &str, offset: usize, problem: impl Into<String>) -> Invalid {
        Invalid { location: Location::at(file, text, offset), problem: problem.into(), help: None }
    }

    /// The same error, naming `key`.
    pub fn key(mut self, key: impl Into<String>) -> Invalid {
        self.location.key = Some(key.into());
        self
    }

    /// The same error, saying what to do.
    pub fn help(mut self, help: impl Into<String>) -> Invalid {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.location)?;
        if let Some(key) = &self.location.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.problem)?;
        match &self.help {
            Some(help) => write!(f, "; {help}"),
            None => Ok(()),
        }
    }
}

/// Parses TOML `text` into `T`; a syntax or shape error becomes an [`Invalid`] with its line, column and key.
pub fn from_toml<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, Invalid> {
    let tree = DeTable::parse(text).map_err(|e| {
        let problem = format!("invalid TOML: {}", one_line(e.message()));
        Invalid::at(file, text, start(e.span()), problem)
    })?;
    serde_path_to_error::deserialize(toml::de::Deserializer::from(tree)).map_err(|e| {
        let key = key_path(e.path());
        let e = e.into_inner();
        let invalid = Invalid::at(file, text, start(e.span()), one_line(e.message()));
        if key.is_empty() { invalid } else { invalid.key(key) }
    })
}

/// A key segment as TOML would spell it: bare when it can be, quoted otherwise.
pub fn quote(segment: &str) -> String {
    let bare = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    if !segment.is_empty() && segment.bytes().all(bare) {
        return segment.to_owned();
    }
    format!("{segment:?}")
}

fn start(span: Option<Range<usize>>) -> usize {
    span.map_or(0, |s| s.start)
}

fn one_line(message: &str) -> String {
    message.trim().replace('\n', "; ")
}

// `toml::Spanned` deserializes through a private field name; it is plumbing, not a key a user wrote.
const SPANNED_FIELD: &str = "$__serde_spanned_private_value";

fn key_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut key = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => key.push_str(&format!("[{index}]")),
            Segment::Map { key: k } | Segment::Enum { variant: k } if k != SPANNED_FIELD => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(&quote(k));
            }
            _ => {}
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use toml::Spanned;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        items: Vec<Spanned<Item>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        n: Spanned<u32>,
    }

    #[test]
    fn lines_and_columns_count_characters_from_one() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(Location::at("f", text, 0), Location { file: "f".into(), line: 1, column: 1, key: None });
        let at_two = text.find('2').expect("a 2");
        assert_eq!((Location::at("f", text, at_two).line, Location::at("f", text, at_two).column), (2, 6));
        assert_eq!(Location::at("f", text, 10_000).line, 3);
        // Inside a multi-byte character: the character's own column.
        assert_eq!(Location::at("f", text, 8).column, 2);
    }

    #[test]
    fn shape_errors_name_line_column_and_key_through_spanned_values() {
        let text = "[[items]]\nn = 1\n[[items]]\nn = \"x\"\n";
        let err = from_toml::<Doc>("f.toml", text).expect_err("a string is not a u32");
        assert_eq!((err.location.line, err.location.column), (4, 5));
        assert_eq!(err.location.key.as_deref(), Some("items[1].n"));
        assert!(err.to_string().starts_with("f.toml:4:5: items[1].n: invalid type: string \"x\""), "{err}");
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        let err = from_toml::<Doc>("f.toml", "[[items]]\nn = 1\nm = 2\n").expect_err("unknown key");
        assert_eq!(err.location.key.as_deref(), Some("items[0].m"));
        assert_eq!(err.location.line, 3);
        assert!(err.problem.contains("unknown field `m`"), "{err}");
    }

    #[test]
    fn syntax_errors_carry_the_position_and_help_is_appended() {
        let err = from_toml::<Doc>("f.toml", "[[items]]\nn = [1\n").expect_err("bad syntax");
        assert_eq!(err.location.line, 2);
        assert!(err.problem.starts_with("invalid TOML: "), "{err}");
        let err = Invalid::at("f", "x", 0, "bad").key("a.\"b c\"").help("do this");
        assert_eq!(err.to_string(), "f:1:1: a.\"b c\": bad; do this");
        assert_eq!(quote("b c"), "\"b c\"");
    }
}
