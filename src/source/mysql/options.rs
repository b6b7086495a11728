//! The options of a MySQL source (`CREATE SOURCE ... WITH (...)`) and of its connection.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::snapshot;
use crate::error::{Error, Result};

/// Options of `CREATE SOURCE ... WITH (...)`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceOptions {
    pub server_id: u32,
    pub snapshot: bool,
    pub chunk_size: usize,
    pub parallelism: usize,
    /// How a snapshot finds where its view lies in the binlog (`SNAPSHOT_POSITION`).
    #[serde(default)]
    pub snapshot_position: snapshot::ViewPosition,
}

impl SourceOptions {
    /// Reads and checks the options.
    pub fn parse(options: &BTreeMap<String, String>) -> Result<Self> {
        let mut o = SourceOptions {
            server_id: 5400,
            snapshot: true,
            chunk_size: 8192,
            parallelism: 2,
            snapshot_position: snapshot::ViewPosition::Auto,
        };
        for (k, v) in options {
            let num = |max: u64| -> Result<u64> {
                v.parse::<u64>().ok().filter(|n| *n >= 1 && *n <= max).ok_or_else(|| {
                    Error::InvalidParameterValue(format!("{k} must be a number from 1 to {max}, got {v}"))
                })
            };
            match k.as_str() {
                "SERVER_ID" => o.server_id = num(u32::MAX as u64)? as u32,
                "CHUNK_SIZE" => o.chunk_size = num(1 << 24)? as usize,
                "SNAPSHOT_PARALLELISM" => o.parallelism = num(64)? as usize,
                "SNAPSHOT" => {
                    o.snapshot = match v.to_ascii_lowercase().as_str() {
                        "initial" => true,
                        "never" => false,
                        _ => {
                            return Err(Error::InvalidParameterValue(format!(
                                "SNAPSHOT must be 'initial' or 'never', got '{v}'"
                            )))
                        }
                    }
                }
                "SNAPSHOT_POSITION" => {
                    o.snapshot_position = match v.to_ascii_lowercase().as_str() {
                        "auto" => snapshot::ViewPosition::Auto,
                        "exact" => snapshot::ViewPosition::Exact,
                        "watermark" | "watermarks" => snapshot::ViewPosition::Watermark,
                        _ => {
                            return Err(Error::InvalidParameterValue(format!(
                                "SNAPSHOT_POSITION must be 'auto', 'exact' or 'watermark', got '{v}'"
                            )))
                        }
                    }
                }
                other => {
                    return Err(Error::InvalidParameterValue(format!(
                        "unknown source option {other} (valid: SERVER_ID, SNAPSHOT, CHUNK_SIZE, \
                         SNAPSHOT_PARALLELISM, SNAPSHOT_POSITION)"
                    )))
                }
            }
        }
        Ok(o)
    }
}

/// Connection options from a `CREATE CONNECTION ... TO MYSQL` option map.
pub fn connection_opts(options: &BTreeMap<String, String>) -> Result<mysql_async::Opts> {
    let host = options.get("HOST").cloned().unwrap_or_else(|| "127.0.0.1".into());
    let port: u16 = options
        .get("PORT")
        .map_or(Ok(3306), |p| p.parse().map_err(|_| Error::InvalidParameterValue(format!("bad PORT {p}"))))?;
    let builder = mysql_async::OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(port)
        .user(options.get("USER").cloned())
        .pass(options.get("PASSWORD").cloned())
        .prefer_socket(false)
        .wait_timeout(Some(28800));
    Ok(builder.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<SourceOptions> {
        SourceOptions::parse(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn options_default_and_snapshot_position() {
        let o = parse(&[]).unwrap();
        assert_eq!((o.server_id, o.snapshot, o.chunk_size, o.parallelism), (5400, true, 8192, 2));
        assert_eq!(o.snapshot_position, snapshot::ViewPosition::Auto);
        for (text, want) in [
            ("auto", snapshot::ViewPosition::Auto),
            ("EXACT", snapshot::ViewPosition::Exact),
            ("watermark", snapshot::ViewPosition::Watermark),
        ] {
            assert_eq!(parse(&[("SNAPSHOT_POSITION", text)]).unwrap().snapshot_position, want);
        }
    }

    #[test]
    fn bad_options_name_the_valid_ones() {
        for bad in [("SNAPSHOT_POSITION", "sometimes"), ("SNAPSHOT", "always"), ("CHUNK_SIZE", "0"), ("NOPE", "1")] {
            let e = parse(&[bad]).unwrap_err();
            assert_eq!(e.sqlstate(), "22023", "{bad:?}: {e}");
            assert!(e.to_string().contains(bad.0), "{bad:?}: {e}");
        }
    }
}
