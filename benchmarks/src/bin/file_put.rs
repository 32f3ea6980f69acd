//! The Rust side of `benchmarks/file_put_vs_python.py`: `FileConnector` puts through a
//! `Store`, driven round by round over standard input so that a driver can alternate them
//! with Python ProxyStore's puts into the same directory (same disk, same minutes, same
//! history of deleted files).
//!
//! ```text
//! file_put DIR [SIZE]     # SIZE in bytes, default 1024
//! round N                 # N puts timed one after another, then their evicts (timed apart)
//!                         # answer: "<us per put> <us per evict> <files recycled by the puts>"
//! quit
//! ```
//!
//! The store is `Store::builder(..).with_cache_size(0)` over `FileConnector::new(DIR)` with
//! its defaults (as Python's reference runs `Store(..., cache_size=0)`), and `clear_on_close`
//! off: the driver owns the directory.

use std::io::{BufRead, Write};
use std::time::Instant;

use bytes::Bytes;
use proxy_core::{FileConnector, Key, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: file_put DIR [SIZE]")?;
    let size: usize = match args.next() {
        Some(size) => size.parse()?,
        None => 1024,
    };
    let connector = FileConnector::new(&dir)?.with_clear_on_close(false);
    let store = Store::builder("file-put", connector.clone())
        .with_cache_size(0)
        .build();
    let data = Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for line in stdin.lock().lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("round"), Some(n)) => {
                let n: usize = n.parse()?;
                let recycled_before = connector.recycled_puts();
                let mut keys: Vec<Key> = Vec::with_capacity(n);
                let started = Instant::now();
                for _ in 0..n {
                    keys.push(store.put(&data)?);
                }
                let put = started.elapsed();
                let recycled = connector.recycled_puts() - recycled_before;
                let started = Instant::now();
                for key in &keys {
                    store.evict(key)?;
                }
                let evict = started.elapsed();
                writeln!(
                    stdout,
                    "{:.2} {:.2} {recycled}",
                    put.as_secs_f64() * 1e6 / n as f64,
                    evict.as_secs_f64() * 1e6 / n as f64
                )?;
                stdout.flush()?;
            }
            (Some("quit"), _) | (None, _) => break,
            _ => return Err(format!("unknown command {line:?}").into()),
        }
    }
    store.close()?;
    Ok(())
}
