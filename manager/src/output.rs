//! What commands print: the one place skep writes to stdout.

use std::io::Write;

use anyhow::Context;

/// Writes one line of a command's output to stdout.
///
/// The one place skep writes to stdout: the workspace denies
/// `clippy::print_stdout` so that nothing else can, because in `serve` and
/// `agent` stdout is the protocol. `writeln!` rather than `println!` so that a
/// closed pipe (`skep demo | head -1`) is an error instead of a panic.
pub fn emit(line: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").and_then(|()| stdout.flush()).context("cannot write to stdout")
}

/// Writes a terminal frame (no newline added) to stdout: `emit`'s twin for
/// the panes that redraw themselves in place.
pub fn emit_frame(frame: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(frame.as_bytes()).and_then(|()| stdout.flush()).context("cannot write to stdout")
}

/// Valid JSON without the whitespace between tokens, on one line. Unlike a
/// round trip through `serde_json::Value`, it keeps key order and number text.
pub fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            (in_string, escaped) = (escaped || c != '"', !escaped && c == '\\');
        } else if c == '"' {
            in_string = true;
        } else if c.is_ascii_whitespace() {
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_drops_whitespace_between_tokens_only() {
        let pretty = "{\n  \"a b\": [1, 2.50],\n  \"q\\\" \\\\\": \" x \"\n}";
        assert_eq!(compact(pretty), r#"{"a b":[1,2.50],"q\" \\":" x "}"#);
    }
}
