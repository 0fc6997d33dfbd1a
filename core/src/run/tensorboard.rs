//! TensorBoard event files (`events.out.tfevents.*`) for scalar summaries, written without
//! TensorFlow: TFRecord framing around hand-encoded `Event` protocol buffers.
//!
//! TFRecord record: `u64 length (LE) | u32 masked_crc32c(length) | data | u32 masked_crc32c(data)`.
//! `Event { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }`,
//! `Summary { repeated Value value = 1; }`, `Value { string tag = 1; float simple_value = 2; }`
//! (tensorflow/core/util/event.proto, summary.proto). The first event carries
//! `file_version = "brain.Event:2"`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The version string of the first event of every file.
pub const FILE_VERSION: &str = "brain.Event:2";
/// Added to the rotated CRC by TFRecord's masking.
const CRC_MASK_DELTA: u32 = 0xa282_ead8;
/// The CRC-32C (Castagnoli) polynomial, reflected.
const CRC32C_POLY: u32 = 0x82f6_3b78;

/// CRC-32C of `data` (bitwise table, computed once).
pub fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ CRC32C_POLY
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    });
    !data.iter().fold(!0u32, |c, &b| {
        table[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8)
    })
}

/// TFRecord's masked CRC.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let c = crc32c(data);
    (c.rotate_right(15)).wrapping_add(CRC_MASK_DELTA)
}

/// Protocol-buffer encoding helpers (only the wire types used here).
mod proto {
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    pub fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
        varint(out, ((field as u64) << 3) | wire as u64);
    }
    pub fn bytes(out: &mut Vec<u8>, field: u32, data: &[u8]) {
        key(out, field, 2);
        varint(out, data.len() as u64);
        out.extend_from_slice(data);
    }
    pub fn double(out: &mut Vec<u8>, field: u32, v: f64) {
        key(out, field, 1);
        out.extend_from_slice(&v.to_le_bytes());
    }
    pub fn float(out: &mut Vec<u8>, field: u32, v: f32) {
        key(out, field, 5);
        out.extend_from_slice(&v.to_le_bytes());
    }
    pub fn int64(out: &mut Vec<u8>, field: u32, v: i64) {
        key(out, field, 0);
        varint(out, v as u64);
    }
}

/// Encodes an `Event` with scalar values.
fn encode_event(
    wall_time: f64,
    step: i64,
    scalars: &[(&str, f32)],
    file_version: Option<&str>,
) -> Vec<u8> {
    let mut ev = Vec::new();
    proto::double(&mut ev, 1, wall_time);
    proto::int64(&mut ev, 2, step);
    if let Some(v) = file_version {
        proto::bytes(&mut ev, 3, v.as_bytes());
    }
    if !scalars.is_empty() {
        let mut summary = Vec::new();
        for (tag, value) in scalars {
            let mut v = Vec::new();
            proto::bytes(&mut v, 1, tag.as_bytes());
            proto::float(&mut v, 2, *value);
            proto::bytes(&mut summary, 1, &v);
        }
        proto::bytes(&mut ev, 5, &summary);
    }
    ev
}

/// Frames `data` as one TFRecord.
fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// Seconds since the Unix epoch.
fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Appends scalar summaries to one event file.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// Creates `dir/events.out.tfevents.<unix time>.<host>.aqn` and writes the version event.
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let t = now();
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        let path = dir.join(format!("events.out.tfevents.{}.{host}.aqn", t as u64));
        let mut w = Self {
            out: BufWriter::new(File::create(&path)?),
            path,
        };
        w.out
            .write_all(&record(&encode_event(t, 0, &[], Some(FILE_VERSION))))?;
        w.out.flush()?;
        Ok(w)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the scalars of one step (non-finite values are skipped: TensorBoard cannot plot
    /// them and they would hide the rest of the curve) and flushes, so a crash loses nothing.
    pub fn scalars(&mut self, step: u64, values: &[(&str, f64)]) -> std::io::Result<()> {
        let finite: Vec<(&str, f32)> = values
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|&(k, v)| (k, v as f32))
            .collect();
        if finite.is_empty() {
            return Ok(());
        }
        self.out
            .write_all(&record(&encode_event(now(), step as i64, &finite, None)))?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_values() {
        // RFC 3720 appendix B.4 / the standard check value.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
    }

    #[test]
    fn record_framing() {
        let r = record(b"abc");
        assert_eq!(r.len(), 8 + 4 + 3 + 4);
        assert_eq!(&r[..8], &3u64.to_le_bytes());
        assert_eq!(&r[12..15], b"abc");
        assert_eq!(
            u32::from_le_bytes(r[15..19].try_into().unwrap()),
            masked_crc32c(b"abc")
        );
    }

    #[test]
    fn event_encoding_by_hand() {
        let ev = encode_event(1.5, 7, &[("a/b", 0.5)], None);
        let mut want = vec![0x09];
        want.extend_from_slice(&1.5f64.to_le_bytes());
        want.extend_from_slice(&[0x10, 7]);
        // summary (field 5): value (field 1) { tag "a/b", simple_value 0.5 }
        let value = [&[0x0a, 3][..], b"a/b", &[0x15], &0.5f32.to_le_bytes()].concat();
        let summary = [&[0x0a, value.len() as u8][..], &value].concat();
        want.extend_from_slice(&[0x2a, summary.len() as u8]);
        want.extend_from_slice(&summary);
        assert_eq!(ev, want);
    }
}
