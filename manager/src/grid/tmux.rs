//! The only place tmux is run: argv only (never a shell string), always on the
//! grid's private server (`-S SOCKET`), never on the user's default one.
//!
//! tmux expands formats (`#{...}`, `#(command)`) in some arguments, such as
//! `select-pane -T` (checked on tmux 3.3), and treats an argument ending in
//! `;` as a command separator, so every argument skep passes is checked first.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// A private tmux server, addressed by its socket.
#[derive(Debug, Clone)]
pub struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// The server on `socket` (it starts with the first `new-session`).
    pub fn new(socket: PathBuf) -> Tmux {
        Tmux { socket }
    }

    /// The server's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Runs one tmux command and returns its stdout.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        for arg in args {
            check_arg(arg)?;
        }
        let output = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .context("cannot run tmux; install it (e.g. apt-get install tmux)")?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            bail!("tmux {} failed: {}", args.first().unwrap_or(&""), stderr.trim());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Whether the server is up.
    pub fn alive(&self) -> bool {
        self.run(&["list-sessions"]).is_ok()
    }

    /// Ends the server and every process in its panes (they get SIGHUP).
    pub fn kill_server(&self) -> anyhow::Result<()> {
        self.run(&["kill-server"]).map(drop)
    }
}

/// Refuses what tmux would interpret: `#` (formats, `#(...)` runs a command),
/// a trailing `;` (command separator), control characters.
pub fn check_arg(arg: &str) -> anyhow::Result<()> {
    if arg.contains('#') && !is_our_format(arg) {
        bail!("refusing to pass {arg:?} to tmux: `#` would be expanded as a format");
    }
    if arg.ends_with(';') || arg.chars().any(char::is_control) {
        bail!("refusing to pass {arg:?} to tmux: `;` or control characters");
    }
    Ok(())
}

/// The fixed formats skep itself uses in `-F` and option values.
fn is_our_format(arg: &str) -> bool {
    const OURS: &[&str] = &[
        "#{pane_id} #{window_id} #{pane_pid} #{@skep_agent} #{pane_title}",
        "#{window_id} #{pane_id}",
        "#{pane_id}",
        "#{window_id}",
        "#{pane_pid}",
        "#{pid}",
        " #{pane_title} ",
    ];
    OURS.contains(&arg)
}

/// Whether `title` is safe as a pane title: `role/N` and digits, from
/// validated names only.
pub fn is_safe_title(title: &str) -> bool {
    title.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/ ".contains(&b)) && !title.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_separators_and_control_characters_are_refused() {
        for bad in ["#(touch x)", "a#{pane_id}", "kill;", "a\nb", "\x1b]2;x\x07"] {
            assert!(check_arg(bad).is_err(), "{bad:?}");
        }
        for good in ["select-pane", "-T", "rev/1 4242", "/run/user/1000/skep/1.sock", "#{pane_id}", "a;b"] {
            check_arg(good).unwrap();
        }
    }

    #[test]
    fn titles_are_names_and_digits_only() {
        assert!(is_safe_title("reviewer.v2/12 4242"));
        assert!(!is_safe_title("#(touch x)/1 2"));
        assert!(!is_safe_title(""));
    }
}
