//! Secret hygiene of `proxy-peer`: `secret new` makes a good secret file, and a short secret
//! or a secret file that others may read stops the peer (and the client commands) before
//! anything is served or sent.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxy_core::{Connector, ZmqConnector, ZmqOptions};

mod common;
use common::{start_peer, PEER};

/// What a finished `proxy-peer` run left.
struct Output {
    /// `None`: it was still running after 20 s (a peer that started serving) and was
    /// killed.
    status: Option<ExitStatus>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Output {
    fn success(&self) -> bool {
        self.status.is_some_and(|status| status.success())
    }
}

/// Runs `proxy-peer` with `args`, with no secret in its environment but `env`, until it
/// exits (at most 20 s: a serving peer is killed then; a refusal takes milliseconds).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new(PEER)
        .args(args)
        .env_remove("PROXYSTORE_SECRET")
        .env_remove("PROXYSTORE_SECRET_FILE")
        .env_remove("PROXYSTORE_SECRET_FILE_ANY_MODE")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("run proxy-peer");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: std::fs::read(&out).expect("read stdout"),
        stderr: std::fs::read(&err).expect("read stderr"),
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn secret_new_writes_32_random_bytes_as_hex_in_a_private_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = dir.path().join("first");
    let second = dir.path().join("second");
    for path in [&first, &second] {
        let output = run(&["secret", "new", path.to_str().expect("utf-8")], &[]);
        assert!(output.success(), "{}", stderr(&output));
        assert!(
            output.stdout.is_empty(),
            "the secret went to standard output"
        );
    }
    let text = std::fs::read_to_string(&first).expect("read");
    assert_eq!(text.len(), 65, "{text:?}");
    let hex = text.strip_suffix('\n').expect("a final newline");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hexadecimal"))
        .collect();
    assert_eq!(bytes.len(), 32);
    assert_eq!(mode(&first), 0o600);
    assert_ne!(
        text,
        std::fs::read_to_string(&second).expect("read"),
        "two calls made the same secret"
    );
    // The log names the file, never the secret.
    let output = run(
        &["secret", "new", "--force", first.to_str().expect("utf-8")],
        &[],
    );
    assert!(output.success(), "{}", stderr(&output));
    let log = stderr(&output);
    assert!(log.contains("first"), "{log}");
    let replaced = std::fs::read_to_string(&first).expect("read");
    assert!(!log.contains(replaced.trim_end()), "the secret is in {log}");
    assert_ne!(replaced, text, "--force did not replace the secret");
    assert_eq!(mode(&first), 0o600);

    // The file works as it is, and its content as PROXYSTORE_SECRET.
    let (mut child, endpoint) = start_peer(&["--secret-file", first.to_str().expect("utf-8")]);
    let member = ZmqConnector::client(
        ZmqOptions::default()
            .with_secret(replaced.trim_end())
            .with_timeout(Duration::from_secs(5)),
    )
    .expect("client");
    let key = member
        .put_to(&endpoint, Bytes::from_static(b"secret kept"))
        .expect("put with the new secret");
    assert_eq!(
        member.get(&key).expect("get"),
        Some(Bytes::from_static(b"secret kept"))
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn secret_new_never_replaces_a_file_unasked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("secret");
    std::fs::write(&path, "the secret every process uses today\n").expect("write");
    let output = run(&["secret", "new", path.to_str().expect("utf-8")], &[]);
    assert!(!output.success(), "an existing secret was replaced");
    let log = stderr(&output);
    assert!(log.contains("already exists"), "{log}");
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        "the secret every process uses today\n"
    );
}

/// A peer given a bad secret exits with an error naming the problem, before printing an
/// endpoint (it never serves).
fn refused(args: &[&str], env: &[(&str, &str)], expected: &[&str]) {
    let output = run(args, env);
    assert!(
        output.status.is_some(),
        "{args:?} {env:?}: the peer started and served"
    );
    assert!(!output.success(), "{args:?} {env:?}: the peer started");
    assert!(
        output.stdout.is_empty(),
        "{args:?}: printed {:?}",
        String::from_utf8_lossy(&output.stdout)
    );
    let log = stderr(&output);
    for part in expected {
        assert!(
            log.contains(part),
            "{args:?} {env:?}: {part:?} not in {log}"
        );
    }
}

#[test]
fn a_short_secret_stops_the_peer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("short");
    std::fs::write(&path, "hunter2-secret\n").expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let path = path.to_str().expect("utf-8");
    refused(
        &["--secret-file", path],
        &[],
        &[path, "14 bytes long", "at least 16 bytes"],
    );
    refused(
        &[],
        &[("PROXYSTORE_SECRET_FILE", path)],
        &[path, "14 bytes"],
    );
    refused(
        &[],
        &[("PROXYSTORE_SECRET", "hunter2-secret")],
        &["PROXYSTORE_SECRET", "14 bytes"],
    );
    // Client commands refuse it too, before sending anything.
    refused(
        &[
            "stats",
            "--peer",
            "tcp://127.0.0.1:9",
            "--secret-file",
            path,
        ],
        &[],
        &["14 bytes"],
    );
    for output in [
        run(&["--secret-file", path], &[]),
        run(&[], &[("PROXYSTORE_SECRET", "hunter2-secret")]),
    ] {
        assert!(!stderr(&output).contains("hunter2"), "{}", stderr(&output));
    }
}

#[test]
fn a_secret_file_others_may_read_stops_the_peer_unless_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("secret");
    std::fs::write(&path, "a secret that is long enough\n").expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let text = path.to_str().expect("utf-8");
    let chmod = format!("chmod 600 {text}");
    let expected = [text, "mode 0644", chmod.as_str(), "--secret-file-any-mode"];
    refused(&["--secret-file", text], &[], &expected);
    refused(&[], &[("PROXYSTORE_SECRET_FILE", text)], &expected);

    // Allowed explicitly, by flag or by variable: the peer serves members.
    for (args, env) in [
        (
            vec!["--secret-file", text, "--secret-file-any-mode"],
            vec![],
        ),
        (
            vec!["--secret-file", text],
            vec![("PROXYSTORE_SECRET_FILE_ANY_MODE", "1")],
        ),
    ] {
        let mut child = Command::new(PEER)
            .args(&args)
            .env_remove("PROXYSTORE_SECRET")
            .env_remove("PROXYSTORE_SECRET_FILE")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start proxy-peer");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("read the endpoint");
        let endpoint = line.trim();
        assert!(endpoint.starts_with("tcp://"), "{args:?}: printed {line:?}");
        let member = ZmqConnector::client(
            ZmqOptions::default()
                .with_secret("a secret that is long enough")
                .with_timeout(Duration::from_secs(5)),
        )
        .expect("client");
        member
            .put_to(endpoint, Bytes::from_static(b"allowed"))
            .expect("put");
        let _ = child.kill();
        let _ = child.wait();
    }

    // Made private, the same file needs no opt-in.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (mut child, endpoint) = start_peer(&["--secret-file", text]);
    assert!(endpoint.starts_with("tcp://"));
    let _ = child.kill();
    let _ = child.wait();
}
