//! Shared helpers for strata's criterion benchmarks (`cargo bench -p strata-benches`).
