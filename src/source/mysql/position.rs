//! Binlog coordinates.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// A position in the binlog: a file and a byte offset in it. Positions at transaction
/// boundaries are what a source stores and resumes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinlogPosition {
    pub file: String,
    pub pos: u64,
}

impl BinlogPosition {
    /// The numeric suffix of the file (`mariadb-bin.000042` → 42).
    fn sequence(&self) -> u64 {
        self.file.rsplit('.').next().and_then(|s| s.parse().ok()).unwrap_or(0)
    }
}

impl Ord for BinlogPosition {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.sequence(), self.pos).cmp(&(other.sequence(), other.pos))
    }
}

impl PartialOrd for BinlogPosition {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for BinlogPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

/// The file name of a ROTATE event. The first rotate of a stream arrives before the format
/// description, so the reader does not yet strip its checksum: its name still carries the 4
/// CRC bytes (`before_format_description`). Those bytes can be anything, `.` and digits
/// included, so they are cut by length, not by looking at them.
pub fn clean_file_name(raw: &[u8], before_format_description: bool) -> String {
    let name = if before_format_description && raw.len() > 4 && raw[raw.len() - 5].is_ascii_digit() {
        &raw[..raw.len() - 4]
    } else {
        raw
    };
    String::from_utf8_lossy(name).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_file_then_offset() {
        let a = BinlogPosition { file: "b.000002".into(), pos: 4 };
        let b = BinlogPosition { file: "b.000001".into(), pos: 9000 };
        assert!(a > b);
        assert_eq!(clean_file_name(b"mariadb-bin.000001\x12\x34\xab\xcd", true), "mariadb-bin.000001");
        // Checksum bytes that look like a name: a `.` and digits.
        assert_eq!(clean_file_name(b"mariadb-bin.000001\xab.12", true), "mariadb-bin.000001");
        assert_eq!(clean_file_name(b"mariadb-bin.000002", false), "mariadb-bin.000002");
    }
}
