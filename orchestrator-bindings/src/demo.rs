//! The built-in demo role for Node: its agents are `agents/demo.js` from this
//! package, run by the same Node executable, so `Swarm.demo()` needs nothing
//! else installed.

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// The argv of a demo agent: Node's executable and the package's demo agent script.
pub fn agent_command() -> Result<Vec<String>, String> {
    let node = std::env::current_exe().map_err(|e| format!("cannot find Node's executable: {e}"))?;
    let script = addon_dir()?.join("agents").join("demo.js");
    if !script.is_file() {
        return Err(format!(
            "the demo agent {} is missing; reinstall the package `skep` (it ships agents/demo.js beside the addon)",
            script.display()
        ));
    }
    Ok(vec![node.to_string_lossy().into_owned(), script.to_string_lossy().into_owned()])
}

/// The directory of the loaded `.node` file (the package's root).
fn addon_dir() -> Result<PathBuf, String> {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    let here = addon_dir as *const libc::c_void;
    // SAFETY: dladdr only reads the address and fills `info`; a zero return means it did not.
    let found = unsafe { libc::dladdr(here, info.as_mut_ptr()) };
    // SAFETY: dladdr returned non-zero, so it initialised `info`.
    let info = (found != 0).then(|| unsafe { info.assume_init() }).filter(|info| !info.dli_fname.is_null());
    let Some(info) = info else { return Err("cannot locate the skep addon file (dladdr failed)".into()) };
    // SAFETY: dli_fname is a NUL-terminated path owned by the dynamic loader for the life of the mapping.
    let file = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    let file = PathBuf::from(std::ffi::OsStr::from_bytes(file.to_bytes()));
    file.parent().map(PathBuf::from).ok_or_else(|| format!("the addon path {} has no directory", file.display()))
}
