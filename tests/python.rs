//! The Python package (`python/`, module `proxystore_rs`): runs its pytest suite
//! (ProxyStore 1.1's connector checks, Store/proxy/future across processes, zero-copy
//! buffers, arrays, a standalone `proxy-peer` with a secret, and interop with the Rust
//! example `array_reduce`) against the extension this test build compiled, and checks that
//! maturin packages it.
//!
//! The extension (`lib_native.so`) is built by this very `cargo test`: the package
//! `proxystore-python` is a dev-dependency of the root package, so it is compiled with the
//! same dependencies as everything else, and this test assembles the importable package
//! from it and `python/proxystore_rs/*.py` (what `maturin develop` installs, without a
//! second build).
//!
//! The Python environment is `target/python-venv` (or `PROXYSTORE_PYTHON_VENV`), made by
//! `python/setup-venv.sh`; without it the test is skipped with one line (a failure under
//! `PROXYSTORE_TESTS_REQUIRE_ALL=1`, as in `.ci/run`, which makes it first).

use std::path::{Path, PathBuf};
use std::process::Command;

use proxy_core::testing::require_or_skip;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn venv() -> PathBuf {
    match std::env::var_os("PROXYSTORE_PYTHON_VENV") {
        Some(dir) => PathBuf::from(dir),
        None => root().join("target").join("python-venv"),
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

/// The extension this build compiled (as a dependency it stays in `deps/`).
fn extension() -> PathBuf {
    let dir = profile_dir();
    [
        dir.join("deps").join("lib_native.so"),
        dir.join("lib_native.so"),
    ]
    .into_iter()
    .filter_map(|path| Some((path.metadata().ok()?.modified().ok()?, path)))
    .max()
    .map(|(_, path)| path)
    .unwrap_or_else(|| dir.join("deps").join("lib_native.so"))
}

/// The importable package: `python/proxystore_rs/*.py` and the extension as
/// `_native.abi3.so`, in a fresh directory; returns the directory to put on PYTHONPATH.
fn assemble_package() -> PathBuf {
    let site = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-package");
    let package = site.join("proxystore_rs");
    let _ = std::fs::remove_dir_all(&site);
    std::fs::create_dir_all(&package).expect("package directory");
    let sources = root().join("python").join("proxystore_rs");
    for entry in std::fs::read_dir(&sources).expect("python/proxystore_rs") {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().expect("file name").to_owned();
        let keep = path
            .extension()
            .is_some_and(|ext| ext == "py" || ext == "typed");
        if keep {
            std::fs::copy(&path, package.join(name)).expect("copy a module");
        }
    }
    let extension = extension();
    assert!(
        extension.exists(),
        "{} is missing: the test build compiles proxystore-python (a dev-dependency)",
        extension.display()
    );
    std::fs::copy(&extension, package.join("_native.abi3.so")).expect("copy the extension");
    site
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
    let site = assemble_package();
    // Built by `cargo test --workspace`: the examples, and proxy-peer for its own tests.
    let example = profile_dir().join("examples").join("array_reduce");
    let peer = profile_dir().join("proxy-peer");
    let tested = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(root().join("python").join("tests"))
        .env("PYTHONPATH", &site)
        .env("PROXYSTORE_RS_PACKAGE_DIR", &site)
        .env("PROXYSTORE_RS_ARRAY_REDUCE", &example)
        .env("PROXYSTORE_RS_PEER", &peer)
        .current_dir(&site)
        .status()
        .expect("pytest runs");
    assert!(tested.success(), "the Python suite failed: {tested}");
}

/// maturin accepts the package's metadata and sources (a source distribution; no build).
#[test]
fn maturin_packages_the_python_package() {
    let Some(python) = require_or_skip(
        "the Python package's tests (python/tests)",
        "run python/setup-venv.sh first (needs python3-venv and PyPI)",
        python_with_packages(&venv()),
    ) else {
        return;
    };
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-sdist");
    let _ = std::fs::remove_dir_all(&out);
    let maturin = python.with_file_name("maturin");
    let packaged = Command::new(&maturin)
        .args(["sdist", "--manifest-path"])
        .arg(root().join("python").join("Cargo.toml"))
        .arg("--out")
        .arg(&out)
        .output()
        .expect("maturin runs");
    assert!(
        packaged.status.success(),
        "maturin sdist failed ({}):\n{}",
        packaged.status,
        String::from_utf8_lossy(&packaged.stderr)
    );
    let built: Vec<_> = std::fs::read_dir(&out)
        .expect("sdist directory")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    assert!(
        built
            .iter()
            .any(|name| name.starts_with("proxystore_rs-") && name.ends_with(".tar.gz")),
        "no source distribution in {}: {built:?}",
        out.display()
    );
}
