//! Shared by the `proxy-peer` test files: starting the binary and reading its endpoint.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The `proxy-peer` binary built for these tests.
pub(crate) const PEER: &str = env!("CARGO_BIN_EXE_proxy-peer");

/// Starts `proxy-peer` with `args` and reads the TCP endpoint it prints first.
pub(crate) fn start_peer(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(PEER)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start proxy-peer");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the endpoint");
    let endpoint = line.trim().to_string();
    assert!(endpoint.starts_with("tcp://"), "printed {line:?}");
    (child, endpoint)
}
