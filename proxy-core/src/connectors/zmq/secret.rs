//! Where a cluster secret comes from, and what is refused on the way in.
//!
//! - A secret shorter than [`MIN_SECRET_LEN`] bytes is refused wherever it enters
//!   (`ZmqOptions::with_secret`, `PROXYSTORE_SECRET`, a secret file), with an
//!   [`Error::Config`] that names where it came from and its length, never its bytes: a short
//!   secret can be guessed offline from one recorded request (the proof is a keyed hash of
//!   bytes the eavesdropper sees).
//! - A secret file that its group or others may read (`mode & 0o077 != 0`) is refused as ssh
//!   refuses such a private key, naming the file, its mode and the fix (`chmod 600`), unless
//!   the operator allows it explicitly (`ZmqOptions::with_secret_file_any_mode`,
//!   `PROXYSTORE_SECRET_FILE_ANY_MODE=1`, `proxy-peer --secret-file-any-mode`). The mode is
//!   read from the opened file (`fstat`), so what is checked is what is read.
//! - [`create_file`] makes a fresh secret: 32 bytes from the operating system's generator,
//!   written as 64 hexadecimal characters and a newline (a text file, whose content also
//!   works as `PROXYSTORE_SECRET`), in a file created with mode 0600 that did not exist
//!   (`O_CREAT | O_EXCL`); replacing an existing one is explicit and goes through a new file
//!   renamed over it, so a reader never sees a half-written secret.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::auth::Secret;
use crate::error::{Error, Result};

/// The shortest secret accepted, in bytes.
pub(crate) const MIN_SECRET_LEN: usize = 16;
/// Random bytes in a secret made by [`create_file`].
pub(crate) const NEW_SECRET_BYTES: usize = 32;
/// The largest secret file read (a secret is tens of bytes; this only bounds a mistake such
/// as pointing at a log file).
const MAX_SECRET_FILE_LEN: u64 = 64 << 10;
/// `1` allows a secret file that its group or others may read
/// (`PROXYSTORE_SECRET_FILE_ANY_MODE`).
pub(crate) const ENV_SECRET_FILE_ANY_MODE: &str = "PROXYSTORE_SECRET_FILE_ANY_MODE";

fn config_error(message: String) -> Error {
    Error::Config {
        what: "cluster secret".to_string(),
        message,
    }
}

/// The error for a secret of `len` bytes from `source` shorter than [`MIN_SECRET_LEN`]
/// (names the source and the length, never the secret).
pub(crate) fn too_short(source: &str, len: usize) -> Error {
    config_error(format!(
        "the secret from {source} is {len} bytes long; a secret must have at least {MIN_SECRET_LEN} bytes (make one with `proxy-peer secret new PATH`: {NEW_SECRET_BYTES} random bytes written as {} hexadecimal characters)",
        NEW_SECRET_BYTES * 2
    ))
}

/// `secret` (from `source`) as a [`Secret`], or [`too_short`]'s error.
pub(crate) fn from_bytes(secret: &[u8], source: &str) -> Result<Secret> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(too_short(source, secret.len()));
    }
    Ok(Secret::new(secret))
}

/// Reads a secret file as [`read_file`] does, allowing a file that others may read only when
/// `PROXYSTORE_SECRET_FILE_ANY_MODE` is set (for callers with no options of their own, such as
/// the stream publishers and subscribers).
pub(crate) fn read_file_env(path: &Path) -> Result<Secret> {
    let any_mode = std::env::var_os(ENV_SECRET_FILE_ANY_MODE)
        .is_some_and(|v| matches!(v.to_string_lossy().trim(), "1" | "true" | "yes"));
    read_file(path, any_mode)
}

/// Reads the secret file at `path`: its content without a trailing newline, at least
/// [`MIN_SECRET_LEN`] bytes, from a file that only its owner may read unless `any_mode`.
pub(crate) fn read_file(path: &Path, any_mode: bool) -> Result<Secret> {
    let file = File::open(path).map_err(|e| Error::io("read the secret file", path, e))?;
    let metadata = file
        .metadata()
        .map_err(|e| Error::io("read the secret file", path, e))?;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 && !any_mode {
        return Err(config_error(format!(
            "the secret file {path} may be read by its group or others (mode {mode:04o}): make it private with `chmod 600 {path}`, or allow it with {ENV_SECRET_FILE_ANY_MODE}=1 (ZmqOptions::with_secret_file_any_mode, proxy-peer --secret-file-any-mode)",
            path = path.display()
        )));
    }
    let mut bytes = Vec::new();
    (&file)
        .take(MAX_SECRET_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read the secret file", path, e))?;
    if bytes.len() as u64 > MAX_SECRET_FILE_LEN {
        return Err(config_error(format!(
            "the secret file {} is longer than {MAX_SECRET_FILE_LEN} bytes: is it the right file?",
            path.display()
        )));
    }
    let trimmed = bytes
        .strip_suffix(b"\r\n")
        .or_else(|| bytes.strip_suffix(b"\n"))
        .unwrap_or(&bytes);
    from_bytes(trimmed, &format!("the secret file {}", path.display()))
}

/// A fresh secret as a file's text: [`NEW_SECRET_BYTES`] random bytes from the operating
/// system, as lowercase hexadecimal, and a newline.
fn new_secret_text() -> Result<Vec<u8>> {
    let mut random = [0u8; NEW_SECRET_BYTES];
    getrandom::fill(&mut random).map_err(|e| {
        config_error(format!(
            "the operating system's random number generator failed: {e}"
        ))
    })?;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = Vec::with_capacity(NEW_SECRET_BYTES * 2 + 1);
    for byte in random {
        text.push(HEX[usize::from(byte >> 4)]);
        text.push(HEX[usize::from(byte & 0xf)]);
    }
    text.push(b'\n');
    Ok(text)
}

/// Writes a fresh secret (see [`new_secret_text`]) to `path`, a file that must not exist
/// unless `overwrite`; the file has mode 0600 and is complete when it appears under `path`.
pub(crate) fn create_file(path: &Path, overwrite: bool) -> Result<()> {
    let text = new_secret_text()?;
    if !overwrite {
        return write_new(path, &text);
    }
    // A new file next to it, renamed over it: readers see the old secret or the new one.
    let name = path.file_name().ok_or_else(|| {
        config_error(format!(
            "{} does not name a file to write the secret to",
            path.display()
        ))
    })?;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let temporary = directory.join(format!(
        ".{}.{:032x}.new",
        name.to_string_lossy(),
        crate::ids::new_id()
    ));
    write_new(&temporary, &text)?;
    std::fs::rename(&temporary, path).map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        Error::io("replace the secret file", path, e)
    })
}

/// Creates `path` (which must not exist) with mode 0600 and writes `text` to it; on failure
/// nothing is left behind.
fn write_new(path: &Path, text: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                config_error(format!(
                    "{} already exists: refusing to replace a secret (other processes may use it); remove it first or pass --force (ZmqOptions::create_secret_file(path, true))",
                    path.display()
                ))
            } else {
                Error::io("create the secret file", path, e)
            }
        })?;
    // 0600 whatever the umask (a umask can only take bits away, but 0077 would leave 0600
    // and 0777 would leave the owner unable to read it).
    let written = file
        .set_permissions(Permissions::from_mode(0o600))
        .and_then(|()| file.write_all(text))
        .and_then(|()| file.sync_all());
    written.map_err(|e| {
        let _ = std::fs::remove_file(path);
        Error::io("write the secret file", path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, content: &str, mode: u32) -> PathBuf {
        let path = dir.join("secret");
        std::fs::write(&path, content).expect("write");
        std::fs::set_permissions(&path, Permissions::from_mode(mode)).expect("chmod");
        path
    }

    fn config_message(result: Result<Secret>) -> String {
        match result {
            Err(Error::Config { what, message }) => {
                assert_eq!(what, "cluster secret");
                message
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn short_secrets_are_refused_without_showing_them() {
        for secret in ["", "s", "hunter2-secret", "fifteen bytes!!"] {
            let message = config_message(from_bytes(secret.as_bytes(), "the test"));
            assert!(
                message.contains(&format!("is {} bytes long", secret.len())),
                "{message}"
            );
            assert!(message.contains("at least 16 bytes"), "{message}");
            assert!(
                secret.len() < 3 || !message.contains(secret),
                "the secret is in {message:?}"
            );
        }
        assert!(from_bytes(b"sixteen bytes!!!", "the test").is_ok());
    }

    #[test]
    fn a_short_secret_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "hunter2-secret\n", 0o600);
        let message = config_message(read_file(&path, false));
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("14 bytes long"), "{message}");
        assert!(!message.contains("hunter2"), "the secret is in {message:?}");
    }

    #[test]
    fn a_secret_file_others_may_read_is_refused_unless_allowed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = "a long enough cluster secret\n";
        for mode in [0o644, 0o640, 0o604, 0o660, 0o606] {
            let path = write(dir.path(), secret, mode);
            let message = config_message(read_file(&path, false));
            for part in [
                path.display().to_string(),
                format!("mode {mode:04o}"),
                format!("chmod 600 {}", path.display()),
                ENV_SECRET_FILE_ANY_MODE.to_string(),
            ] {
                assert!(message.contains(&part), "{part:?} not in {message}");
            }
            assert!(!message.contains("cluster secret"), "{message}");
            let allowed = read_file(&path, true).expect("allowed explicitly");
            assert_eq!(allowed, Secret::new(secret.trim_end().as_bytes()));
        }
        for mode in [0o600, 0o400, 0o700] {
            let path = write(dir.path(), secret, mode);
            assert_eq!(
                read_file(&path, false).expect("private"),
                Secret::new(secret.trim_end().as_bytes()),
                "{mode:o}"
            );
        }
    }

    #[test]
    fn a_new_secret_is_private_random_text_and_never_replaced_unasked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = dir.path().join("one");
        let second = dir.path().join("two");
        create_file(&first, false).expect("created");
        create_file(&second, false).expect("created");
        let read = |path: &Path| std::fs::read_to_string(path).expect("read");
        let text = read(&first);
        assert_eq!(text.len(), 65, "{text:?}");
        assert!(text.ends_with('\n'));
        let hex = text.trim_end();
        assert!(hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(text, read(&second), "two secrets are equal");
        let mode = std::fs::metadata(&first)
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o600);
        assert!(
            read_file(&first, false).is_ok(),
            "a new secret file is usable"
        );

        // Not replaced unless asked; replaced atomically when asked, still private.
        match create_file(&first, false) {
            Err(Error::Config { message, .. }) => {
                assert!(message.contains("already exists"), "{message}")
            }
            other => panic!("an existing secret was replaced: {other:?}"),
        }
        assert_eq!(read(&first), text, "the refused call changed the file");
        std::fs::set_permissions(&first, Permissions::from_mode(0o644)).expect("chmod");
        create_file(&first, true).expect("replaced");
        assert_ne!(read(&first), text);
        let mode = std::fs::metadata(&first)
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o600);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(left.len(), 2, "temporary files left behind: {left:?}");
    }
}
