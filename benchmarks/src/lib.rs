//! Helpers shared by the benchmarks of this workspace: criterion micro-benchmarks (in
//! `benches/`) and the scatter benchmark (`cargo run --release -p benchmarks --bin scatter --
//! --help`), whose harness, workloads and reports live in [`scatter`].

pub mod scatter;
