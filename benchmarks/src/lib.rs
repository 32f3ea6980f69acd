//! Helpers shared by the benchmarks of this workspace.
