//! What the benchmarks under `tests/benches/` share: settings from the environment, the
//! binary measured and latency percentiles.
#![allow(dead_code)]

/// A numeric setting from the environment, `default` when it is not set.
pub fn setting(name: &str, default: f64) -> f64 {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not a number")),
        Err(_) => default,
    }
}

/// The `p`th percentile of `sorted` latencies in microseconds, in milliseconds (0 when there
/// are none).
pub fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

/// The `fhirlake` binary a benchmark measures: `FHIRLAKE_BENCH_BINARY` (another build, such as
/// a release build of an earlier commit) or the one cargo built with the benchmark.
pub fn binary() -> std::path::PathBuf {
    std::env::var_os("FHIRLAKE_BENCH_BINARY").map_or_else(
        || env!("CARGO_BIN_EXE_fhirlake").into(),
        std::path::PathBuf::from,
    )
}
