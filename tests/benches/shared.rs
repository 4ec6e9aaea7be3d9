//! What both end-to-end benchmarks need: the allocator and logging as `rxledger serve` sets
//! them up, and RSS.

/// The allocator of `rxledger serve` (src/main.rs), so the benchmarks measure the server as
/// it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Logging as `rxledger serve` sets it up: without a subscriber, every library's spans would
/// fall back to the `log` crate, a cost the server does not pay.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RXLEDGER_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,rumqttd=warn,sqlx=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// This process's resident set size, in MB.
pub fn rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}
