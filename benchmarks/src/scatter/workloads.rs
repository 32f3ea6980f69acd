//! What is measured: workloads, modes, and the payloads with their checksums.

use std::fmt;
use std::str::FromStr;

/// How payloads travel from the producer (worker 0) to the consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    /// Payload `i` goes to worker `i % workers` (round robin); each consumer reads all of it.
    Scatter,
    /// Every payload goes to every worker; every worker reads all of it.
    Broadcast,
    /// Every payload is announced to every worker, but only its owner (`i % workers`) reads
    /// it. Native modes broadcast the payload itself (non-owners drop it); proxy modes
    /// broadcast the proxy, and only the owner fetches the bytes.
    Selective,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 3] = [Workload::Scatter, Workload::Broadcast, Workload::Selective];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Scatter => "scatter",
            Workload::Broadcast => "broadcast",
            Workload::Selective => "selective",
        }
    }

    /// How many payload bytes consumers read in total when `records` payloads of `size`
    /// bytes go to `workers` workers.
    pub fn delivered_bytes(self, records: u64, size: u64, workers: u64) -> u64 {
        match self {
            Workload::Scatter | Workload::Selective => records * size,
            Workload::Broadcast => records * size * workers,
        }
    }
}

/// How payload bytes are moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// `Vec<u8>` records through Timely's exchange.
    Native,
    /// `bytes::Bytes` records (a serde byte buffer) through Timely's exchange.
    NativeBytes,
    /// Every record behind a proxy (`proxy(&store)` → route → `resolve()`); a consumer on
    /// the producer's machine maps the payload from the producer's shared memory.
    Proxy,
    /// `proxy` with same-host shared memory off: every fetch travels over loopback TCP.
    ProxyTcp,
    /// `proxy_in_place(&store, ..)` → route → `resolve()`: each payload is written straight
    /// into the producer's store (a slot of its peer's shared memory), so it is written once
    /// and a same-host consumer maps those bytes.
    ProxyInPlace,
    /// `auto_proxy(&store, 64 KiB)` → route → `resolve()`: only records over 64 KiB are proxied.
    Auto,
    /// The same bytes over plain ZeroMQ PUSH/PULL sockets, no Timely: the ceiling.
    RawZmq,
    /// The same bytes over iceoryx2 publish-subscribe (zero-copy shared memory between the
    /// processes of one host), no Timely: the state of the art for same-host IPC.
    Iceoryx2,
}

impl Mode {
    /// Every mode, in report order.
    pub const ALL: [Mode; 8] = [
        Mode::Native,
        Mode::NativeBytes,
        Mode::Proxy,
        Mode::ProxyTcp,
        Mode::ProxyInPlace,
        Mode::Auto,
        Mode::RawZmq,
        Mode::Iceoryx2,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::NativeBytes => "native-bytes",
            Mode::Proxy => "proxy",
            Mode::ProxyTcp => "proxy-tcp",
            Mode::ProxyInPlace => "proxy-inplace",
            Mode::Auto => "auto",
            Mode::RawZmq => "raw-zmq",
            Mode::Iceoryx2 => "iceoryx2",
        }
    }

    /// Whether the mode runs a Timely dataflow.
    pub fn uses_timely(self) -> bool {
        !matches!(self, Mode::RawZmq | Mode::Iceoryx2)
    }

    /// Whether the mode runs on one host only (iceoryx2: shared memory; not in hostfile
    /// mode). raw-zmq runs across hosts too, its sockets on ports derived from the hostfile.
    pub fn local_only(self) -> bool {
        matches!(self, Mode::Iceoryx2)
    }

    /// Whether the mode puts payloads into a store.
    pub fn uses_store(self) -> bool {
        matches!(
            self,
            Mode::Proxy | Mode::ProxyTcp | Mode::ProxyInPlace | Mode::Auto
        )
    }
}

macro_rules! named_enum {
    ($ty:ident, $what:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                $ty::ALL.into_iter().find(|v| v.name() == s).ok_or_else(|| {
                    let names: Vec<&str> = $ty::ALL.iter().map(|v| v.name()).collect();
                    format!(
                        "unknown {} `{s}` (expected one of: {})",
                        $what,
                        names.join(", ")
                    )
                })
            }
        }
    };
}

named_enum!(Workload, "workload");
named_enum!(Mode, "mode");

/// The auto mode's threshold: records larger than this are proxied.
pub const AUTO_THRESHOLD: u64 = 64 * 1024;

/// The smallest payload: the first 8 bytes carry the record's index.
pub const MIN_PAYLOAD: u64 = 8;

/// The payloads of one measurement: a pseudo-random template of `size` bytes whose first
/// eight bytes are replaced by each record's index.
///
/// Each payload is a fresh buffer (one copy of the template, the same cost in every mode).
/// Consumers compute [`checksum`] over every byte and compare it with
/// [`expected`](Payloads::expected), which is derived from the template's checksum without
/// reading the payload again.
#[derive(Debug, Clone)]
pub struct Payloads {
    template: Vec<u8>,
    template_sum: u64,
    first_word: u64,
}

impl Payloads {
    /// Payloads of `size` bytes (at least [`MIN_PAYLOAD`], a multiple of 8).
    pub fn new(size: usize) -> Payloads {
        let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ size as u64;
        let mut template = Vec::with_capacity(size);
        while template.len() < size {
            // xorshift64*: cheap, deterministic, and not constant (so corruption shows).
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let word = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            let take = (size - template.len()).min(8);
            template.extend_from_slice(&word[..take]);
        }
        let template_sum = checksum(&template);
        let first_word = word_at(&template, 0);
        Payloads {
            template,
            template_sum,
            first_word,
        }
    }

    /// The payload size in bytes.
    pub fn size(&self) -> usize {
        self.template.len()
    }

    /// Payload number `index`, as a fresh buffer.
    pub fn make(&self, index: u64) -> Vec<u8> {
        let mut data = self.template.clone();
        Payloads::stamp(index, &mut data);
        data
    }

    /// The bytes every payload starts from (a copy of them, [`stamp`](Payloads::stamp)ed,
    /// is payload `index`): for modes that write payloads into memory of their own.
    pub fn template(&self) -> &[u8] {
        &self.template
    }

    /// Writes `index` into a copy of the template, making it payload `index`.
    pub fn stamp(index: u64, data: &mut [u8]) {
        data[..8].copy_from_slice(&index.to_le_bytes());
    }

    /// The checksum payload `index` must have.
    pub fn expected(&self, index: u64) -> u64 {
        // The checksum is a weighted sum of words in which word 0 has weight 1.
        self.template_sum
            .wrapping_sub(self.first_word)
            .wrapping_add(index)
    }

    /// Reads every byte of a received payload and checks it: its length and checksum.
    /// Returns the payload's index.
    pub fn verify(&self, data: &[u8]) -> Result<u64, String> {
        if data.len() != self.template.len() {
            return Err(format!(
                "payload of {} bytes, expected {}",
                data.len(),
                self.template.len()
            ));
        }
        let index = index_of(data);
        let sum = checksum(data);
        let expected = self.expected(index);
        if sum != expected {
            return Err(format!(
                "payload {index}: checksum {sum:#018x}, expected {expected:#018x}"
            ));
        }
        Ok(index)
    }
}

/// The index carried in a payload's first 8 bytes (0 for a shorter buffer).
pub fn index_of(data: &[u8]) -> u64 {
    data.get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes)
}

fn word_at(data: &[u8], word: usize) -> u64 {
    let mut buf = [0u8; 8];
    let start = word * 8;
    let end = (start + 8).min(data.len());
    if start < end {
        buf[..end - start].copy_from_slice(&data[start..end]);
    }
    u64::from_le_bytes(buf)
}

/// A checksum that reads every byte: the sum of the little-endian 64-bit words, word `k`
/// weighted by `2k + 1` (so reordered words are caught, and word 0 has weight 1), modulo
/// 2^64. Four independent lanes keep it well above memory-copy speed.
pub fn checksum(data: &[u8]) -> u64 {
    let mut lanes = [0u64; 4];
    let mut chunks = data.chunks_exact(32);
    let mut weight = 1u64;
    for chunk in &mut chunks {
        for (lane, word) in lanes.iter_mut().zip(chunk.chunks_exact(8)) {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(word);
            *lane = lane.wrapping_add(u64::from_le_bytes(buf).wrapping_mul(weight));
            weight = weight.wrapping_add(2);
        }
    }
    let rest = chunks.remainder();
    let mut sum = lanes.iter().fold(0u64, |a, &b| a.wrapping_add(b));
    for k in 0..rest.len().div_ceil(8) {
        sum = sum.wrapping_add(word_at(rest, k).wrapping_mul(weight));
        weight = weight.wrapping_add(2);
    }
    sum
}

/// A byte count in the units of the report (`1 KiB`, `64 KiB`, `1 MiB`, ...).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{} {name}", bytes / unit);
        }
    }
    format!("{bytes} B")
}

/// Parses `1KiB`, `64KiB`, `1MiB`, `16MiB`, `4096` (bytes), `1K`, `1M`, `1G`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("bad size `{text}` (expected e.g. 1KiB, 1MiB, 4096)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("bad size unit in `{text}` (use KiB, MiB or GiB)")),
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| format!("size `{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_verify_and_corruption_is_caught() {
        // (An 8-byte payload is all header: its index is what identifies it.)
        for size in [9usize, 24, 1024, 65536 + 8] {
            let payloads = Payloads::new(size);
            for index in [0u64, 1, 17, u64::MAX] {
                let mut data = payloads.make(index);
                assert_eq!(payloads.verify(&data), Ok(index));
                assert_eq!(checksum(&data), payloads.expected(index));
                let last = data.len() - 1;
                data[last] ^= 1;
                assert!(payloads.verify(&data).is_err(), "size {size}");
            }
        }
    }

    #[test]
    fn swapped_words_are_caught() {
        let payloads = Payloads::new(1024);
        let mut data = payloads.make(3);
        let (a, b) = data.split_at_mut(512);
        a[8..16].swap_with_slice(&mut b[8..16]);
        assert!(payloads.verify(&data).is_err());
    }

    #[test]
    fn sizes_parse_and_format() {
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1XB").is_err());
        assert_eq!(format_size(64 * 1024), "64 KiB");
        assert_eq!(format_size(1000), "1000 B");
    }

    #[test]
    fn names_round_trip() {
        for mode in Mode::ALL {
            assert_eq!(mode.name().parse::<Mode>(), Ok(mode));
        }
        for workload in Workload::ALL {
            assert_eq!(workload.name().parse::<Workload>(), Ok(workload));
        }
        assert!("nope".parse::<Mode>().is_err());
    }
}
