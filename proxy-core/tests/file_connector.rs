//! The file connector's directory is absolute: a change of working directory, or a process
//! started in another directory, still finds the objects. A process that ends without
//! closing its connector leaves no recycled files behind.

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use proxy_core::{Connector, ConnectorConfig, FileConnector, Proxy, Store};

/// Set in the child process, to the folder where it writes the serialized proxy.
const CHILD_ENV: &str = "PROXY_CORE_TEST_FILE_CHILD_OUT";
/// Set in the child of `free_files_go_when_the_process_exits_without_closing`: its store.
const EXIT_CHILD_ENV: &str = "PROXY_CORE_TEST_FILE_EXIT_CHILD_DIR";

/// Relative to the package directory (the working directory of integration tests): the
/// workspace's target folder.
const RELATIVE: &str = "../target/tmp-file-connector-relative";

#[test]
fn a_relative_directory_is_made_absolute() {
    let connector = FileConnector::create(RELATIVE).expect("create");
    assert!(
        connector.dir().is_absolute(),
        "{}",
        connector.dir().display()
    );
    match connector.config() {
        ConnectorConfig::File { dir, .. } => assert!(dir.is_absolute(), "{}", dir.display()),
        other => panic!("wrong config {other:?}"),
    }
    let expected = std::env::current_dir().expect("cwd").join(RELATIVE);
    assert_eq!(connector.dir(), expected);
    connector.close().expect("close removes the directory");
    assert!(!expected.exists());
}

/// Runs only as the child of `a_proxy_made_in_another_working_directory_resolves_here`:
/// creates a store over the relative directory `store`, changes directory, checks that the
/// store still reads its object, and writes a serialized proxy for the parent.
#[test]
#[ignore = "run by a_proxy_made_in_another_working_directory_resolves_here in a child process"]
fn child_relative_store() {
    let out = PathBuf::from(std::env::var_os(CHILD_ENV).expect("run by the parent test"));
    let store = Store::new(
        "file-relative-child",
        FileConnector::create("store")
            .expect("create relative")
            .with_clear_on_close(false),
    );
    let key = store
        .put_bytes(Bytes::from_static(b"written before chdir"))
        .expect("put");
    let proxy = store.proxy(String::from("made elsewhere")).expect("proxy");
    std::env::set_current_dir(out.join("elsewhere")).expect("chdir");
    assert_eq!(
        store.get_bytes(&key).expect("get after chdir"),
        Some(Bytes::from_static(b"written before chdir")),
    );
    assert!(store.exists(&key).expect("exists after chdir"));
    std::fs::write(
        out.join("proxy.bin"),
        bincode::serialize(&proxy).expect("serialize"),
    )
    .expect("write proxy");
}

#[test]
fn a_proxy_made_in_another_working_directory_resolves_here() {
    let root = tempfile::tempdir().expect("tempdir");
    let child_cwd = root.path().join("child-cwd");
    std::fs::create_dir_all(&child_cwd).expect("child cwd");
    std::fs::create_dir_all(root.path().join("elsewhere")).expect("elsewhere");
    run_child(&child_cwd, root.path());

    let wire = std::fs::read(root.path().join("proxy.bin")).expect("the child wrote its proxy");
    let proxy: Proxy<String> = bincode::deserialize(&wire).expect("deserialize");
    let store = Proxy::store(&proxy).expect("store");
    match store.config().connector {
        ConnectorConfig::File { dir, .. } => assert_eq!(dir, child_cwd.join("store")),
        other => panic!("wrong config {other:?}"),
    }
    assert_eq!(*proxy, "made elsewhere");
    proxy_core::unregister_store("file-relative-child");
}

fn run_child(cwd: &Path, out: &Path) {
    let exe = std::env::current_exe().expect("test binary");
    let status = Command::new(exe)
        .args([
            "--exact",
            "child_relative_store",
            "--ignored",
            "--test-threads=1",
        ])
        .current_dir(cwd)
        .env(CHILD_ENV, out)
        .status()
        .expect("spawn the child");
    assert!(status.success(), "the child test failed: {status}");
}

/// The names in `dir` (all of them, dot files included).
fn names_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

/// Runs only as the child of `free_files_go_when_the_process_exits_without_closing`: puts
/// and evicts with recycled files, checks that a free file is waiting, and exits without
/// closing or dropping the connector (as a program whose store sits in the registry does).
#[test]
#[ignore = "run by free_files_go_when_the_process_exits_without_closing in a child process"]
fn child_exits_with_a_free_file() {
    let dir = PathBuf::from(std::env::var_os(EXIT_CHILD_ENV).expect("run by the parent test"));
    let connector = FileConnector::new(&dir)
        .expect("connector")
        .with_recycled_files(8)
        .with_clear_on_close(false);
    for i in 0..5u8 {
        let key = connector.put(Bytes::from(vec![i; 100])).expect("put");
        connector.evict(&key).expect("evict");
    }
    assert_eq!(connector.recycled_puts(), 4, "puts reused evicted files");
    let free: Vec<String> = names_in(&dir)
        .into_iter()
        .filter(|n| n.starts_with(".free-"))
        .collect();
    assert_eq!(free.len(), 1, "one free file waits for a put: {free:?}");
    std::mem::forget(connector);
    std::process::exit(0);
}

#[test]
fn free_files_go_when_the_process_exits_without_closing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "child_exits_with_a_free_file",
            "--ignored",
            "--test-threads=1",
        ])
        .env(EXIT_CHILD_ENV, dir.path())
        .status()
        .expect("spawn the child");
    assert!(status.success(), "the child test failed: {status}");
    assert_eq!(
        names_in(dir.path()),
        Vec::<String>::new(),
        "the exited process left files in the store directory"
    );
}
