//! Questions to the upstream server: its current binlog position, and whether it can feed a
//! source at all (binlog settings, server ids, grants), with the fix in each answer.

use mysql_async::prelude::Queryable;

use super::position::BinlogPosition;
use super::schema::upstream;
use crate::error::{Error, Result};

/// The server's current binlog end (`SHOW MASTER STATUS`; MySQL 8.4 calls it BINARY LOG STATUS).
pub async fn current_position(conn: &mut mysql_async::Conn) -> Result<BinlogPosition> {
    let row: Option<mysql_async::Row> = match conn.query_first("SHOW MASTER STATUS").await {
        Ok(r) => r,
        // MySQL 8.4 removed the old spelling (a syntax error there); any other error is
        // the answer, and the usual one is a missing grant.
        Err(mysql_async::Error::Server(e)) if e.code == 1064 => {
            conn.query_first("SHOW BINARY LOG STATUS").await.map_err(upstream)?
        }
        Err(mysql_async::Error::Server(e)) if matches!(e.code, 1227 | 1045 | 1142) => {
            return Err(Error::InsufficientPrivilege {
                message: format!("the upstream user may not read the binlog position: {}", e.message),
                hint: "Grant it upstream: GRANT BINLOG MONITOR, REPLICATION SLAVE, SELECT ON *.* TO 'user'@'%' \
                       (MariaDB; on MySQL: REPLICATION CLIENT, REPLICATION SLAVE, SELECT)."
                    .into(),
            })
        }
        Err(e) => return Err(upstream(e)),
    };
    let row = row.ok_or_else(|| Error::InvalidParameterValue(
        "the upstream server has no binary log: start it with log_bin (and binlog_format=ROW, binlog_row_image=FULL)".into(),
    ))?;
    let file: String = row.get(0).ok_or_else(|| Error::Internal("SHOW MASTER STATUS without a file".into()))?;
    let pos: u64 = row.get(1).ok_or_else(|| Error::Internal("SHOW MASTER STATUS without a position".into()))?;
    Ok(BinlogPosition { file, pos })
}

/// Checks that the upstream server can feed a source, with the fix in each error.
pub async fn check_upstream(conn: &mut mysql_async::Conn, server_id: u32) -> Result<()> {
    let vars: Vec<(String, String)> = conn
        .query(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN \
             ('log_bin', 'binlog_format', 'binlog_row_image', 'server_id')",
        )
        .await
        .map_err(upstream)?;
    let get = |n: &str| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.to_ascii_uppercase());
    let fix = |what: &str| {
        Error::InvalidParameterValue(format!(
            "upstream {what}; Headwater needs log_bin=ON, binlog_format=ROW, binlog_row_image=FULL \
         (and binlog_row_metadata=FULL on MariaDB/MySQL 8) in the server's configuration"
        ))
    };
    if get("log_bin").as_deref() != Some("ON") {
        return Err(fix("binary logging is off"));
    }
    if get("binlog_format").as_deref() != Some("ROW") {
        return Err(fix(&format!("binlog_format is {}", get("binlog_format").unwrap_or_default())));
    }
    if get("binlog_row_image").as_deref() != Some("FULL") {
        return Err(fix(&format!("binlog_row_image is {}", get("binlog_row_image").unwrap_or_default())));
    }
    if get("server_id").as_deref() == Some(server_id.to_string().as_str()) {
        return Err(Error::InvalidParameterValue(format!(
            "SERVER_ID {server_id} is the upstream server's own server_id; choose another with WITH (SERVER_ID = n)"
        )));
    }
    let replicas: Vec<mysql_async::Row> = conn.query("SHOW SLAVE HOSTS").await.unwrap_or_default();
    if replicas.iter().any(|r| r.get::<u32, _>(0) == Some(server_id)) {
        return Err(Error::InvalidParameterValue(format!(
            "SERVER_ID {server_id} is already used by another replica of the upstream server; choose another"
        )));
    }
    current_position(conn).await.map_err(|e| match e {
        Error::ConnectionException { message, .. } | Error::DataException { message, .. }
            if message.contains("denied") =>
        {
            Error::InvalidParameterValue(format!(
                "{message}; grant the user REPLICATION SLAVE, REPLICATION CLIENT (BINLOG MONITOR) and SELECT"
            ))
        }
        other => other,
    })?;
    Ok(())
}
