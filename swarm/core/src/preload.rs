//! Preload roles (`protocol = "preload"`): unmodified Python scripts kept warm.
//!
//! The role's agents are the Python kit's preloader
//! (`swarm/kits/python/skep_agent/preload.py`, embedded here so a role needs
//! no installed package): started through the one process runner like any
//! agent, it imports the role's modules, answers `initialize` once they are
//! loaded, and forks per call to run the script as `__main__` (in a process
//! group of its own, which a keeper process kills if the parent dies). Everything
//! else (leases, `max_calls` recycling, restarts, timeouts and cancellation)
//! is the pool's, as for any JSON-RPC role.

use std::path::Path;
use std::time::Duration;

/// The preloader's source, run with `python -c`.
const PRELOADER: &str = include_str!("../../kits/python/skep_agent/preload.py");

/// The interpreter a preload role runs when its `command` is not given.
pub(crate) const DEFAULT_INTERPRETER: &str = "python3";

/// The warm parent's argv: the role's interpreter running the preloader.
pub(crate) fn argv(interpreter: &[String], script: &Path, modules: &[String], timeout: Duration) -> Vec<String> {
    let mut argv = interpreter.to_vec();
    argv.extend([
        "-c".to_owned(),
        PRELOADER.to_owned(),
        "--timeout-ms".to_owned(),
        timeout.as_millis().to_string(),
        "--preload".to_owned(),
        modules.join(","),
        "--".to_owned(),
        script.display().to_string(),
    ]);
    argv
}

/// Whether `name` is a dotted Python module name such as `my_pkg.heavy`.
pub(crate) fn is_module_name(name: &str) -> bool {
    name.split('.').all(|part| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c == '_' || c.is_alphabetic()) && chars.all(|c| c == '_' || c.is_alphanumeric())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_are_dotted_identifiers() {
        for good in ["json", "my_pkg.heavy", "_private", "a.b.c", "numpy"] {
            assert!(is_module_name(good), "{good}");
        }
        for bad in ["", "a..b", ".a", "a.", "1abc", "a-b", "a b", "os;rm"] {
            assert!(!is_module_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_warm_parent_runs_the_embedded_preloader() {
        let argv = argv(
            &["python3".into(), "-X".into(), "utf8".into()],
            Path::new("/t/s.py"),
            &["a".into(), "b.c".into()],
            Duration::from_secs(3),
        );
        assert_eq!(argv[..4], ["python3", "-X", "utf8", "-c"]);
        assert!(argv[4].contains("class Preloader"));
        assert_eq!(argv[5..], ["--timeout-ms", "3000", "--preload", "a,b.c", "--", "/t/s.py"]);
    }
}
