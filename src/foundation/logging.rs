//! Logging and process signals.

use tracing_subscriber::EnvFilter;

use crate::foundation::config::LogFormat;

/// Logs to standard error, as text or JSON; `RUST_LOG` chooses what (default `info`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        // Each line carries its span's fields: a request's id on every line it logs.
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
