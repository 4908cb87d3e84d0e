//! Log set-up of both binaries, `piimg` and `piimg-firstboot`: `-v` raises the level,
//! `RUST_LOG` overrides it; logs go to stderr (stdout is the verbs' output), without time
//! (journald and the terminal add their own), coloured only on a terminal.

/// Installs the global subscriber for `-v` given `verbose` times.
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
}
