//! Progress on stderr for the long commands: one line, rewritten in place.

use std::io::Write;

use patchbay_patching::Progress;

/// An observer that writes `stage: done/total unit` on stderr (nothing when `quiet`) and never
/// cancels. `unit` ends with its own space ("patches "), or is empty.
pub fn on_stderr(quiet: bool, unit: &'static str) -> impl FnMut(&Progress) -> bool {
    move |p: &Progress| {
        if !quiet {
            eprint!("\r{}: {}/{} {unit}", p.stage, p.done, p.total);
            let _ = std::io::stderr().flush();
        }
        true
    }
}
