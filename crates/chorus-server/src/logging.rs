//! Structured logs with `tracing`: the binary installs the subscriber the config asks for.

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Installs a global subscriber (text or JSON lines on stderr) filtered by
/// `config.log_level`; `RUST_LOG` is not consulted so that the config stays the one source.
/// Does nothing when a subscriber is already installed (tests, embedding applications).
pub fn init(config: &Config) {
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, never in a redirected log.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
