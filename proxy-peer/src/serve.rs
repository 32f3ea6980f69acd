//! Serving until SIGINT or SIGTERM.

use std::io::Write;
use std::process::ExitCode;

use proxy_core::{Connector, ZmqOptions};

use crate::cli::ServeArgs;

/// Serves with `args` (over the environment's settings) until a termination signal.
pub(crate) fn serve(args: &ServeArgs) -> proxy_core::Result<ExitCode> {
    let options = args.apply(ZmqOptions::from_env()?);
    raise_open_file_limit();
    // Before any thread starts.
    let signals = block_termination_signals();
    if let Some(listen) = args.metrics_listen {
        let bound = proxystore_metrics_http::serve(listen).map_err(|message| {
            proxy_core::Error::Config {
                what: "--metrics-listen".to_string(),
                message,
            }
        })?;
        tracing::info!(metrics = %format_args!("http://{bound}/metrics"), "serving metrics");
    }
    let connector = options.build()?;
    let endpoint = connector.endpoint().unwrap_or_default().to_string();
    {
        let mut stdout = std::io::stdout().lock();
        // If nobody reads our endpoint there is nobody to tell.
        let _ = writeln!(stdout, "{endpoint}");
        let _ = stdout.flush();
    }
    tracing::info!(%endpoint, "serving");

    let signal = wait_for_signal(&signals);
    let objects = connector.object_count().unwrap_or(0);
    let rejected = connector.rejected_requests();
    connector.close()?;
    tracing::info!(
        signal,
        %endpoint,
        objects_dropped = objects,
        rejected_requests = rejected,
        "stopped"
    );
    Ok(ExitCode::SUCCESS)
}

/// Raises this process's soft open-file limit to its hard limit, and logs what it is: each
/// connection takes a descriptor, and the server keeps its connections within this limit
/// less a quarter (see `ZmqOptions::with_max_connections`). Distributions often set the soft
/// limit to 1,024 with a far higher hard limit, which any process may raise itself to.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` and `setrlimit` read and write one `rlimit` of this process.
    let (rc, raised) = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "could not read the open-file limit"
            );
            return;
        }
        let before = limit.rlim_cur;
        if limit.rlim_cur < limit.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            (
                libc::setrlimit(libc::RLIMIT_NOFILE, &wanted),
                Some((before, wanted.rlim_cur)),
            )
        } else {
            (0, None)
        }
    };
    match raised {
        Some((before, after)) if rc == 0 => tracing::info!(
            open_files = after,
            was = before,
            "raised the open-file limit to its hard limit"
        ),
        Some((before, after)) => tracing::warn!(
            open_files = before,
            hard_limit = after,
            error = %std::io::Error::last_os_error(),
            "could not raise the open-file limit to its hard limit"
        ),
        None => tracing::info!(
            open_files = limit.rlim_cur,
            "the open-file limit is already its hard limit"
        ),
    }
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
