//! Helpers shared by the end-to-end tests: look-alike base images (built by `scripts/` and
//! cached), the real checkers, and the piimg binaries under test.
