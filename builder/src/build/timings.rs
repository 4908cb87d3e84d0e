//! Where one node's build time went, logged when it is published (`-v` is not needed): the
//! first place to look when a build is slower than expected.

use std::time::{Duration, Instant};

/// Seconds per step, each step beginning where the previous one ended.
#[derive(Debug, Default)]
pub(super) struct Timings {
    steps: Vec<(&'static str, Duration)>,
    since: Option<Instant>,
}

impl Timings {
    /// Starts the clock.
    pub(super) fn start() -> Timings {
        Timings {
            steps: Vec::new(),
            since: Some(Instant::now()),
        }
    }

    /// Restarts the clock without a step: time spent waiting (for a thread) is not the node's.
    pub(super) fn resume(&mut self) {
        self.since = Some(Instant::now());
    }

    /// Ends the step `name`, which began where the previous one ended.
    pub(super) fn lap(&mut self, name: &'static str) {
        let now = Instant::now();
        if let Some(since) = self.since.replace(now) {
            self.steps.push((name, now - since));
        }
    }

    /// `sources 0.12 s, copy 0.01 s, …`.
    pub(super) fn summary(&self) -> String {
        self.steps
            .iter()
            .map(|(name, d)| format!("{name} {:.2} s", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
