//! `piimg-firstboot status`: the saved progress, for a person at the console.

use crate::state::State;
use std::fmt::Write;

/// Renders the state (and the last status line, if any) as text.
pub fn render(state: &State, last_status: Option<&crate::report::Report>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "build: {}",
        if state.build_id.is_empty() {
            "-"
        } else {
            &state.build_id
        }
    );
    if let Some(s) = &state.storage {
        let _ = writeln!(out, "storage: {} {} at {}", s.disk, s.action, s.mount_point);
    }
    if let Some(f) = &state.formatting {
        let _ = writeln!(
            out,
            "formatting interrupted on disk {f}: the next run finishes it"
        );
    }
    for (name, step) in &state.steps {
        let _ = write!(out, "{name}: {}", step.status);
        if let Some(e) = &step.error {
            let _ = write!(out, " ({e})");
        }
        out.push('\n');
    }
    if let Some(r) = last_status {
        let _ = writeln!(out, "{}", crate::announce::summary_line(r));
    }
    if state.steps.is_empty() && last_status.is_none() {
        out.push_str("first boot has not run yet\n");
    }
    out
}
