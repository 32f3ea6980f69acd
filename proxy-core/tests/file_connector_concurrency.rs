//! One `FileConnector` directory used from several threads at once: a writer that puts and
//! evicts (so that evicted files are recycled for its next puts) and readers that read every
//! object they find in the directory while that goes on. A reader must see each object whole
//! (puts are atomic) and only under its own key (a file recycled for another object after
//! the reader opened it must not hand that object's bytes to the reader).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxy_core::{Connector, FileConnector, Key};

/// Large enough that a write and a read take a while (the windows the races need).
const SIZE: usize = 256 << 10;
const PUTS: u64 = 1500;
/// Objects alive at once: each put evicts the one put this many puts earlier.
const ALIVE: usize = 3;
const READERS: usize = 2;

/// Object number `n`: `n` as 8 little-endian bytes, repeated.
fn object(n: u64) -> Bytes {
    Bytes::from(n.to_le_bytes().repeat(SIZE / 8))
}

/// The number an object's bytes hold, if they are one whole object.
fn number_of(data: &[u8]) -> Result<u64, String> {
    if data.len() != SIZE {
        return Err(format!("{} bytes instead of {SIZE}", data.len()));
    }
    let first: [u8; 8] = data[..8].try_into().map_err(|_| "short".to_string())?;
    if data != first.repeat(SIZE / 8) {
        return Err("bytes of more than one object".to_string());
    }
    Ok(u64::from_le_bytes(first))
}

#[test]
fn concurrent_readers_see_whole_objects_and_never_another_keys_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = FileConnector::new(dir.path())
        .expect("connector")
        .with_recycled_files(ALIVE);
    // What the writer stored under each key (recorded right after its put returns).
    let stored: Arc<Mutex<HashMap<u128, u64>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));

    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (connector, stored, done, reads) = (
                connector.clone(),
                Arc::clone(&stored),
                Arc::clone(&done),
                Arc::clone(&reads),
            );
            std::thread::spawn(move || -> Result<(), String> {
                while !done.load(Ordering::Acquire) {
                    let entries = std::fs::read_dir(connector.dir()).map_err(|e| e.to_string())?;
                    for entry in entries.flatten() {
                        let name = entry.file_name().to_string_lossy().into_owned();
                        let Ok(id) = u128::from_str_radix(&name, 16) else {
                            continue; // a temporary or free file: not an object
                        };
                        let key = Key::new("file", id);
                        let data = match connector.get(&key) {
                            Ok(Some(data)) => data,
                            Ok(None) => continue, // evicted meanwhile
                            Err(e) => return Err(format!("get {key}: {e}")),
                        };
                        let n = number_of(&data)
                            .map_err(|e| format!("{key}: a partly written object: {e}"))?;
                        // The writer records the key once its put returned: wait for it.
                        let deadline = Instant::now() + Duration::from_secs(30);
                        let want = loop {
                            if let Some(&want) = stored.lock().expect("lock").get(&id) {
                                break want;
                            }
                            if Instant::now() > deadline {
                                return Err(format!("{key} was never recorded"));
                            }
                            std::thread::yield_now();
                        };
                        if n != want {
                            return Err(format!(
                                "the get of {key} (object {want}) returned the bytes of object {n}"
                            ));
                        }
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(())
            })
        })
        .collect();

    let mut alive = std::collections::VecDeque::new();
    for n in 0..PUTS {
        let key = connector.put(object(n)).expect("put");
        stored.lock().expect("lock").insert(key.id(), n);
        alive.push_back(key);
        if alive.len() > ALIVE {
            let old = alive.pop_front().expect("oldest");
            connector.evict(&old).expect("evict");
        }
    }
    done.store(true, Ordering::Release);
    for reader in readers {
        if let Err(e) = reader.join().expect("reader thread") {
            panic!("{e}");
        }
    }
    // The situation the test is about was reached: readers read objects while files were
    // being recycled under them.
    assert!(
        reads.load(Ordering::Relaxed) > 0,
        "the readers never read an object"
    );
    assert!(
        connector.recycled_puts() > PUTS / 2,
        "puts reused evicted files: {} of {PUTS}",
        connector.recycled_puts()
    );
}
