//! The Python package (`python/`, module `proxystore_rs`): builds it into the test virtual
//! environment with maturin and runs its pytest suite (ProxyStore 1.1's connector checks,
//! Store/proxy/future across processes, zero-copy buffers, arrays, and interop with the
//! Rust example `array_reduce`).
//!
//! The environment is `target/python-venv` (or `PROXYSTORE_PYTHON_VENV`), made by
//! `python/setup-venv.sh`; without it the test is skipped with one line (a failure under
//! `PROXYSTORE_TESTS_REQUIRE_ALL=1`, as in `.ci/run`, which makes it first).

use std::path::{Path, PathBuf};
use std::process::Command;

use proxy_core::testing::require_or_skip;

fn venv() -> PathBuf {
    match std::env::var_os("PROXYSTORE_PYTHON_VENV") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("python-venv"),
    }
}

/// The environment's python, if it has what the suite needs.
fn python_with_packages(venv: &Path) -> Result<PathBuf, String> {
    let python = venv.join("bin").join("python");
    if !python.exists() {
        return Err(format!("no Python test environment at {}", venv.display()));
    }
    let check = Command::new(&python)
        .args([
            "-c",
            "import maturin, numpy, pytest, proxystore; \
             assert proxystore.__version__ == '1.1.0', proxystore.__version__",
        ])
        .output()
        .map_err(|e| format!("running {}: {e}", python.display()))?;
    if !check.status.success() {
        return Err(format!(
            "{} lacks maturin, numpy, pytest or proxystore 1.1.0: {}",
            python.display(),
            String::from_utf8_lossy(&check.stderr).trim()
        ));
    }
    Ok(python)
}

/// The directory of this build's binaries (`target/<profile>`): this test binary is
/// `target/<profile>/deps/python-<hash>`.
fn profile_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).to_path_buf())
}

#[test]
fn the_python_package_passes_its_suite() {
    let venv = venv();
    let Some(python) = require_or_skip(
        "the Python package's tests (python/tests)",
        "run python/setup-venv.sh first (needs python3-venv and PyPI)",
        python_with_packages(&venv),
    ) else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = venv.join("bin");
    let path = std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH joins");
    // The workspace's target directory (cargo test holds no lock on it while tests run), so
    // the extension reuses the dependencies this build compiled.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let target = tmp.parent().unwrap_or(tmp);
    let built = Command::new(bin.join("maturin"))
        .args(["develop", "--quiet", "--manifest-path"])
        .arg(root.join("python").join("Cargo.toml"))
        .env("VIRTUAL_ENV", &venv)
        .env("PATH", &path)
        .env("CARGO_TARGET_DIR", target)
        .status()
        .expect("maturin runs");
    assert!(built.success(), "maturin develop failed: {built}");

    // Built by `cargo test --workspace`: the examples, and proxy-peer for its own tests.
    let example = profile_dir().join("examples").join("array_reduce");
    let peer = profile_dir().join("proxy-peer");
    let tested = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(root.join("python").join("tests"))
        .env("PROXYSTORE_RS_ARRAY_REDUCE", &example)
        .env("PROXYSTORE_RS_PEER", &peer)
        .env("PATH", &path)
        .current_dir(root.join("python"))
        .status()
        .expect("pytest runs");
    assert!(tested.success(), "the Python suite failed: {tested}");
}
