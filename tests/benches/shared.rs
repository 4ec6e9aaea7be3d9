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

/// CPU time (user and system) this process has used so far, in seconds.
#[allow(dead_code)] // not every benchmark reads it
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // A figure of 0 would turn into a nonsense ratio, so a failure stops the benchmark.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        panic!("getrusage: {}", std::io::Error::last_os_error());
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}
