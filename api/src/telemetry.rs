//! Tracing: an `EnvFilter` (RUST_LOG, default `info`), JSON lines in production, pretty text locally.

use tracing::Subscriber;
use tracing::subscriber::set_global_default;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::{EnvFilter, Registry, fmt, layer::SubscriberExt};

/// Builds the subscriber; `json` selects machine-readable output.
pub fn get_subscriber<W>(
    default_filter: &str,
    json: bool,
    sink: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let registry = Registry::default().with(filter);
    if json {
        Box::new(
            registry.with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_writer(sink),
            ),
        )
    } else {
        Box::new(registry.with(fmt::layer().with_writer(sink)))
    }
}

/// Installs the subscriber for the whole process; call once.
///
/// # Errors
/// When a global subscriber is installed already.
pub fn init_subscriber(subscriber: Box<dyn Subscriber + Send + Sync>) -> anyhow::Result<()> {
    set_global_default(subscriber)?;
    Ok(())
}
