//! A connector defined in this file (as a third-party crate would) passes the whole
//! conformance suite, `rebuilt_from_config` included, and its proxies resolve in another
//! process that registered its kind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use proxy_core::{
    check_kind, register_connector_kind, Connector, ConnectorConfig, Error, ErrorKind, Key, Proxy,
    Result, Store,
};
use serde::{Deserialize, Serialize};

const KIND: &str = "dir-test";

/// Objects as files named by their key's id in a directory.
#[derive(Debug)]
struct DirConnector {
    config: DirConfig,
    /// Removes the directory with the connector that created it (not with rebuilt ones).
    _owned: Option<tempfile::TempDir>,
}

/// The connector's own configuration: what travels inside its proxies.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DirConfig {
    dir: PathBuf,
}

impl DirConnector {
    fn new(config: DirConfig) -> Result<Self> {
        std::fs::create_dir_all(&config.dir).map_err(|e| Error::Config {
            what: format!("directory {}", config.dir.display()),
            message: e.to_string(),
        })?;
        Ok(DirConnector {
            config,
            _owned: None,
        })
    }

    /// A connector over a new temporary directory, removed when the connector is dropped.
    fn temporary() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut connector = DirConnector::new(DirConfig {
            dir: dir.path().to_path_buf(),
        })
        .expect("connector");
        connector._owned = Some(dir);
        connector
    }

    fn path(&self, key: &Key) -> Result<PathBuf> {
        check_kind(key, KIND)?;
        Ok(self.config.dir.join(key.id_hex()))
    }
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Config {
        what: format!("file {}", path.display()),
        message: e.to_string(),
    }
}

impl Connector for DirConnector {
    fn put(&self, data: Bytes) -> Result<Key> {
        let key = Key::random(KIND);
        let path = self.path(&key)?;
        std::fs::write(&path, &data).map_err(|e| io(&path, e))?;
        Ok(key)
    }

    fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        let path = self.path(key)?;
        match std::fs::read(&path) {
            Ok(data) => Ok(Some(Bytes::from(data))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path, e)),
        }
    }

    fn exists(&self, key: &Key) -> Result<bool> {
        Ok(self.path(key)?.exists())
    }

    fn evict(&self, key: &Key) -> Result<()> {
        let path = self.path(key)?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path, e)),
            _ => Ok(()),
        }
    }

    fn new_key(&self) -> Result<Key> {
        Ok(Key::random(KIND))
    }

    /// Writes a temporary file and hard-links it into place: the link fails if the name is
    /// taken, so the key is written once.
    fn put_at(&self, key: &Key, data: Bytes) -> Result<()> {
        let path = self.path(key)?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &data).map_err(|e| io(&tmp, e))?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::KeyTaken {
                key: key.clone(),
                connector: format!("dir connector {}", self.config.dir.display()),
            }),
            Err(e) => Err(io(&path, e)),
        }
    }

    fn config(&self) -> ConnectorConfig {
        ConnectorConfig::external(KIND, &self.config).expect("a path always encodes")
    }
}

fn register_kind() {
    register_connector_kind(KIND, |config: DirConfig| {
        Ok(Arc::new(DirConnector::new(config)?) as Arc<dyn Connector>)
    });
}

fn fresh_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

proxy_core::conformance_tests!({
    register_kind();
    DirConnector::temporary()
});

#[test]
fn an_unregistered_kind_is_a_config_error_naming_it() {
    let config = ConnectorConfig::external("never-registered", &1u8).expect("config");
    let err = config.build().expect_err("kind is not registered");
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("never-registered"), "{err}");
    assert!(
        !format!("{config:?}").contains('['),
        "Debug shows no config bytes: {config:?}"
    );
}

/// The parent stores an object, writes its serialized proxy to a file and starts a child
/// process (this test binary again) that registers the kind and resolves it.
#[test]
fn a_proxy_of_a_custom_connector_resolves_in_another_process() {
    register_kind();
    let dir = fresh_dir();
    let connector = DirConnector::new(DirConfig {
        dir: dir.path().join("objects"),
    })
    .expect("connector");
    let store = Store::new("custom-connector-mp", connector);
    let proxy = store
        .proxy(vec![String::from("across"), String::from("processes")])
        .expect("proxy");
    let wire = dir.path().join("proxy.bin");
    std::fs::write(&wire, bincode::serialize(&proxy).expect("serialize")).expect("write");

    let out = dir.path().join("out.txt");
    for (register, expected) in [("1", "across processes"), ("0", "error Config")] {
        let status = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "child", "--ignored", "--test-threads=1"])
            .env("CC_PROXY", &wire)
            .env("CC_OUT", &out)
            .env("CC_REGISTER", register)
            .status()
            .expect("spawn child");
        assert!(status.success(), "child failed: {status}");
        let seen = std::fs::read_to_string(&out).expect("child output");
        assert!(seen.starts_with(expected), "register={register}: {seen}");
    }
    // The child evicted the object through its rebuilt store.
    assert!(!store.exists(Proxy::key(&proxy)).expect("exists"));
}

/// The child process of the test above; does nothing unless started by it.
#[test]
#[ignore = "started by a_proxy_of_a_custom_connector_resolves_in_another_process"]
fn child() {
    let (Ok(wire), Ok(out)) = (std::env::var("CC_PROXY"), std::env::var("CC_OUT")) else {
        return;
    };
    if std::env::var("CC_REGISTER").as_deref() == Ok("1") {
        register_kind();
    }
    let bytes = std::fs::read(wire).expect("read proxy");
    let proxy: Proxy<Vec<String>> = bincode::deserialize(&bytes).expect("deserialize");
    let line = match Proxy::get(&proxy) {
        Ok(words) => {
            let store = Proxy::store(&proxy).expect("store");
            store.evict(Proxy::key(&proxy)).expect("evict");
            words.join(" ")
        }
        Err(e) => format!("error {:?}: {e}", e.kind()),
    };
    std::fs::write(out, line).expect("write output");
}
