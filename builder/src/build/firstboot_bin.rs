//! Which `piimg-firstboot` binary goes into an image when neither `--firstboot-bin` nor the
//! catalogue names one: piimg's own build, found by one rule (README, "The first-boot binary").
//!
//! 1. `piimg-firstboot-<arch>` beside the running `piimg` (a release bundle);
//! 2. `target/<triple>/release-firstboot/piimg-firstboot` under the current folder, where
//!    `<triple>` is `aarch64-unknown-linux-musl` (arm64) or `x86_64-unknown-linux-musl` (amd64):
//!    what `cargo build -p piimg-firstboot --profile release-firstboot --target <triple>` (or
//!    `scripts/build-firstboot`, both at once) makes in this workspace.

use crate::profile::Arch;
use std::path::PathBuf;

/// The Rust target a static first-boot binary is built for.
pub fn musl_triple(arch: Arch) -> &'static str {
    match arch {
        Arch::Arm64 => "aarch64-unknown-linux-musl",
        Arch::Amd64 => "x86_64-unknown-linux-musl",
    }
}

/// No own build of `piimg-firstboot` for an architecture was found.
#[derive(Debug, thiserror::Error)]
#[error("no piimg-firstboot binary for {arch} (looked at {looked}): build it with `cargo build -p piimg-firstboot --profile release-firstboot --target {triple}`, or pass --firstboot-bin PATH")]
pub struct FirstbootBinError {
    /// The architecture.
    pub arch: Arch,
    /// Where it was looked for, comma-separated.
    pub looked: String,
    /// The Rust target that builds it.
    pub triple: &'static str,
}

/// The binary for `arch`, or an error naming the one command that builds it.
pub fn own_build(arch: Arch) -> Result<PathBuf, FirstbootBinError> {
    let mut tried = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
    {
        tried.push(dir.join(format!("piimg-firstboot-{arch}")));
    }
    let triple = musl_triple(arch);
    tried.push(PathBuf::from(format!(
        "target/{triple}/release-firstboot/piimg-firstboot"
    )));
    if let Some(found) = tried.iter().find(|p| p.is_file()) {
        tracing::info!(path = %found.display(), "using piimg's own piimg-firstboot build");
        return Ok(found.clone());
    }
    let looked: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
    Err(FirstbootBinError {
        arch,
        looked: looked.join(", "),
        triple,
    })
}
