//! The scatter benchmark: proxied dataflow against Timely's own exchange, across real
//! processes on loopback. Run with `--help` for the options; results and method in `benchmarks/README.md`.

fn main() -> std::process::ExitCode {
    benchmarks::scatter::main()
}
