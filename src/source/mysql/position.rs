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

/// The file name of a ROTATE event. The first (fake) rotate arrives before the format
/// description, so its name still carries the 4 checksum bytes: keep `base.NNNNNN` only.
pub fn clean_file_name(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    match s.rfind('.') {
        Some(dot) => {
            let digits: String = s[dot + 1..].chars().take_while(|c| c.is_ascii_digit()).collect();
            format!("{}.{}", &s[..dot], digits)
        }
        None => s.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_file_then_offset() {
        let a = BinlogPosition { file: "b.000002".into(), pos: 4 };
        let b = BinlogPosition { file: "b.000001".into(), pos: 9000 };
        assert!(a > b);
        assert_eq!(clean_file_name(b"mariadb-bin.000001\x12\x34\xab\xcd"), "mariadb-bin.000001");
    }
}
