//! The benchmark harness (issue 8).

fn main() {}
