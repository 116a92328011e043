//! The `strata` command line. See `strata --help`.
fn main() {}
