//! Exit statuses described for people.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use rustix::process::Signal;

/// Renders an exit status for people: "exit code 3", "killed by SIGKILL".
pub fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    match status.signal() {
        Some(signal) => {
            let core = if status.core_dumped() { " (core dumped)" } else { "" };
            format!("killed by {}{core}", signal_name(signal))
        }
        None => status.to_string(),
    }
}

/// "SIGTERM" for 15; "signal 40" for one without a name.
fn signal_name(raw: i32) -> String {
    let Some(signal) = Signal::from_named_raw(raw) else {
        return format!("signal {raw}");
    };
    let debug = format!("{signal:?}");
    // rustix's Debug form is the quoted path, `"Signal::TERM"`, and it spells
    // two names out; people (and grep) know them by their C names.
    let name = match debug.trim_matches('"').trim_start_matches("Signal::") {
        "ABORT" => "ABRT",
        "ALARM" => "ALRM",
        other => other,
    };
    format!("SIG{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_exits_for_people() {
        let raw = |signal: Signal| signal.as_raw();
        assert_eq!(describe_exit(ExitStatus::from_raw(3 << 8)), "exit code 3");
        assert_eq!(describe_exit(ExitStatus::from_raw(raw(Signal::KILL))), "killed by SIGKILL");
        assert_eq!(describe_exit(ExitStatus::from_raw(raw(Signal::SEGV) | 0x80)), "killed by SIGSEGV (core dumped)");
        assert_eq!(describe_exit(ExitStatus::from_raw(raw(Signal::ABORT))), "killed by SIGABRT");
        assert_eq!(describe_exit(ExitStatus::from_raw(raw(Signal::ALARM))), "killed by SIGALRM");
        assert_eq!(describe_exit(ExitStatus::from_raw(raw(Signal::TERM))), "killed by SIGTERM");
        assert_eq!(describe_exit(ExitStatus::from_raw(40)), "killed by signal 40");
    }
}
