//! Running the real tools: every helper panics with the command line and its output when a
//! tool fails, because a test that cannot run its checker must say exactly why.

use std::process::{Command, Output};

/// Runs `cmd` to completion; panics naming the program if it cannot be started (missing tool).
pub(crate) fn output(cmd: &mut Command) -> Output {
    match cmd.output() {
        Ok(out) => out,
        Err(e) => panic!(
            "could not run {:?}: {e} (is it installed? see scripts/fixtures/INDEX.md for the Debian packages)",
            cmd
        ),
    }
}

/// Runs `cmd` and panics with its stdout and stderr unless it exits 0.
pub(crate) fn success(cmd: &mut Command) -> Output {
    let out = output(cmd);
    if !out.status.success() {
        panic!("{}", describe(cmd, &out));
    }
    out
}

/// The command line, exit status and both output streams, for a failure message.
pub(crate) fn describe(cmd: &Command, out: &Output) -> String {
    format!(
        "{:?} exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        cmd,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
