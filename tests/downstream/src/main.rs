//! A ZeroMQ peer served by a program outside the proxystore workspace.
//!
//! Usage: `downstream-peer [MAX_MESSAGE_SIZE]`. Serves on loopback, prints its endpoint on
//! the first line of standard output, and stops when standard input closes.

use std::io::{Read, Write};
use std::process::ExitCode;

use proxy_core::{ZmqConnector, ZmqOptions};

fn main() -> ExitCode {
    match serve() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("downstream-peer: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve() -> Result<(), String> {
    let mut options = ZmqOptions::default().with_interface("127.0.0.1");
    if let Some(size) = std::env::args().nth(1) {
        let size: u64 = size
            .parse()
            .map_err(|e| format!("maximum message size {size:?}: {e}"))?;
        options = options.with_max_message_size(size);
    }
    let connector = ZmqConnector::with_options(options).map_err(|e| e.to_string())?;
    let endpoint = connector
        .endpoint()
        .ok_or("the connector serves no endpoint")?;
    // proxy-core's re-export of its ZeroMQ bindings: what a program uses for raw sockets.
    eprintln!(
        "downstream-peer: serving {endpoint}; libzmq proxystore-hardened: {}",
        proxy_core::zmq::has("proxystore-hardened").unwrap_or(false)
    );
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{endpoint}")
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("printing the endpoint: {e}"))?;
    // Serve until told to stop (standard input closes or says anything).
    let _ = std::io::stdin().read(&mut [0u8; 1]);
    drop(connector);
    Ok(())
}
