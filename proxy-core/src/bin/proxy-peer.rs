//! `proxy-peer`: a standalone ZeroMQ peer that serves objects with no dataflow running.
//!
//! It prints its endpoint on the first line of standard output, serves until SIGINT or
//! SIGTERM, then stops its server and exits with status 0. Clients store objects on it with
//! `ZmqConnector::put_to` and read them with any `ZmqConnector` (the keys name the peer).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use proxy_core::{Connector, ZmqOptions};

const USAGE: &str = "\
proxy-peer: serve proxy-core objects over ZeroMQ until SIGINT or SIGTERM

Usage: proxy-peer [OPTIONS]

Options:
  --bind ADDR              interface to bind (default 127.0.0.1; * or 0.0.0.0 needs --address)
  --address HOST           host name or address written into keys (default: the interface)
  --port PORT              TCP port (default 0: chosen by the OS)
  --timeout SECONDS        timeout of requests this peer makes to other peers (default 5;
                           a peer that only serves makes none)
  --max-message-size BYTES largest frame accepted from the network (default 1073741824)
  -h, --help               print this help

Prints the endpoint (tcp://HOST:PORT) on the first line of standard output.";

fn parse(args: &[String]) -> Result<Option<ZmqOptions>, String> {
    let mut options = ZmqOptions::default();
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let invalid = |what: &str| format!("invalid {what} for {flag}: {value:?}");
        options = match flag.as_str() {
            "--bind" => options.with_interface(value.as_str()),
            "--address" => options.with_address(value.as_str()),
            "--port" => options.with_port(value.parse().map_err(|_| invalid("port"))?),
            "--timeout" => {
                let seconds: f64 = value.parse().map_err(|_| invalid("number of seconds"))?;
                let timeout = Duration::try_from_secs_f64(seconds)
                    .map_err(|_| invalid("number of seconds"))?;
                options.with_timeout(timeout)
            }
            "--max-message-size" => {
                options.with_max_message_size(value.parse().map_err(|_| invalid("size in bytes"))?)
            }
            other => return Err(format!("unknown option {other:?}")),
        };
    }
    Ok(Some(options))
}

/// Blocks SIGINT and SIGTERM in this thread, and so in every thread started after it (the
/// server thread and libzmq's I/O threads), so that [`wait_for_signal`] receives them.
fn block_termination_signals() -> libc::sigset_t {
    // SAFETY: `sigset_t` is plain data that `sigemptyset` initialises; the calls only read
    // and write the set and this thread's signal mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits until one of the signals in `set` arrives and returns it.
fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut signal = 0;
    // SAFETY: `set` is initialised and `signal` is a valid place to write the signal number.
    while unsafe { libc::sigwait(set, &mut signal) } != 0 {}
    signal
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("proxy-peer: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // Before any thread starts.
    let signals = block_termination_signals();
    let connector = match options.build() {
        Ok(connector) => connector,
        Err(e) => {
            eprintln!("proxy-peer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let endpoint = connector.endpoint().unwrap_or_default().to_string();
    {
        let mut stdout = std::io::stdout().lock();
        // If nobody reads our endpoint there is nobody to tell.
        let _ = writeln!(stdout, "{endpoint}");
        let _ = stdout.flush();
    }
    eprintln!("proxy-peer: serving on {endpoint}");

    let signal = wait_for_signal(&signals);
    let objects = connector.object_count().unwrap_or(0);
    let rejected = connector.rejected_requests();
    if let Err(e) = connector.close() {
        eprintln!("proxy-peer: closing: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "proxy-peer: signal {signal}: stopped {endpoint} ({objects} objects dropped, {rejected} bad requests refused)"
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_are_parsed() {
        let parsed = parse(&args(&[
            "--bind",
            "0.0.0.0",
            "--address",
            "node-1",
            "--port",
            "7001",
            "--timeout",
            "1.5",
            "--max-message-size",
            "1024",
        ]))
        .expect("valid")
        .expect("options");
        let expected = ZmqOptions::default()
            .with_interface("0.0.0.0")
            .with_address("node-1")
            .with_port(7001)
            .with_timeout(Duration::from_millis(1500))
            .with_max_message_size(1024);
        assert_eq!(parsed, expected);
        assert_eq!(parse(&args(&["--help"])), Ok(None));
    }

    #[test]
    fn bad_arguments_are_errors() {
        for bad in [
            &["--port"][..],
            &["--port", "x"],
            &["--port", "70000"],
            &["--timeout", "-1"],
            &["--frobnicate", "1"],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?} accepted");
        }
    }
}
