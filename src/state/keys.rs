//! The layout of the one ordered keyspace in the [`StateStore`](super::StateStore).
//!
//! ```text
//! c/<entry id: u64 BE>            catalog entry (JSON), replayed in id order at start-up
//! m/format                        the store's format version (u32 BE)
//! m/next_id                       the next catalog id (u64 BE)
//! r/<table id: u64 BE><row key>   one row of a table: count (i64 LE) ++ row (Arrow row format);
//!                                 with an image (i/), only rows changed since it, count 0 = deleted
//! i/<table id: u64 BE>            the table's current image file (JSON; state::image)
//! o/<view id: u64 BE><op: u16 BE><entry>
//!                                 a materialized view's operator state, one entry per group,
//!                                 join row, ...; op FFFF holds the state's plan (dataflow::durable)
//! s/<source id: u64 BE>           a source's progress (binlog position, GTID; JSON)
//! s/<source id: u64 BE>/<kind>/<unit>
//!                                 one fact about one captured unit (streaming, snapshot position,
//!                                 resumable snapshot, failure, ...; JSON; source::mysql::progress)
//! u/<user name>                  a user: SCRAM salt and salted password (JSON; catalog::users)
//! g/<object id: u64 BE>           an object's owner and grants (JSON; catalog::privileges)
//! k/<sink id: u64 BE>/s           a sink's progress (acknowledged outbox entry, snapshot done; JSON)
//! k/<sink id: u64 BE>/o/<seq BE>  a sink's outbox: the messages of one commit, not yet acknowledged
//! ```
//! Big-endian ids keep a table's rows contiguous, so a table is one prefix scan.

/// Prefix of catalog entries.
pub const CATALOG: &[u8] = b"c/";
/// Key of the store's format version (u32 BE), written when the store is created.
pub const FORMAT: &[u8] = b"m/format";
/// Key of the catalog id counter.
pub const NEXT_ID: &[u8] = b"m/next_id";
/// Prefix of table rows.
pub const ROWS: &[u8] = b"r/";
/// Prefix of table image records (`state::image`).
pub const IMAGES: &[u8] = b"i/";

/// Prefix of materialized views' operator state (`dataflow::durable`).
pub const VIEW_STATE: &[u8] = b"o/";

/// Prefix of source progress (binlog offsets), written with the rows they produced.
pub const SOURCES: &[u8] = b"s/";

/// Prefix of users (`catalog::users`), keyed by name.
pub const USERS: &[u8] = b"u/";

/// Prefix of access-control lists (`catalog::privileges`), keyed by object id.
pub const ACLS: &[u8] = b"g/";

/// Key of object `id`'s access-control list.
pub fn acl(id: u64) -> Vec<u8> {
    let mut k = ACLS.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The object id of an [`acl`] key.
pub fn acl_id(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.strip_prefix(ACLS)?.try_into().ok()?))
}

/// Prefix of sink state (progress and outbox), written with the commits that produced it.
pub const SINKS: &[u8] = b"k/";

/// Prefix of everything sink `id` stores.
pub fn sink(id: u64) -> Vec<u8> {
    let mut k = SINKS.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Key of sink `id`'s progress record.
pub fn sink_progress(id: u64) -> Vec<u8> {
    let mut k = sink(id);
    k.extend_from_slice(b"/s");
    k
}

/// Prefix of sink `id`'s outbox.
pub fn sink_outbox(id: u64) -> Vec<u8> {
    let mut k = sink(id);
    k.extend_from_slice(b"/o/");
    k
}

/// Key of outbox entry `seq` of sink `id`.
pub fn sink_outbox_entry(id: u64, seq: u64) -> Vec<u8> {
    let mut k = sink_outbox(id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Key of the progress of source `id`.
pub fn source_progress(id: u64) -> Vec<u8> {
    let mut k = SOURCES.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Prefix of source `id`'s per-unit progress entries (`source::mysql::progress`).
pub fn source_progress_entries(id: u64) -> Vec<u8> {
    let mut k = source_progress(id);
    k.push(b'/');
    k
}

/// Key of one per-unit progress entry of source `id`: `kind` tells which fact, `name` the unit.
pub fn source_progress_entry(id: u64, kind: u8, name: &str) -> Vec<u8> {
    let mut k = source_progress_entries(id);
    k.push(kind);
    k.push(b'/');
    k.extend_from_slice(name.as_bytes());
    k
}

/// Key of catalog entry `id`.
pub fn catalog_entry(id: u64) -> Vec<u8> {
    let mut k = CATALOG.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Prefix of all rows of table `table_id`.
pub fn table_rows(table_id: u64) -> Vec<u8> {
    let mut k = ROWS.to_vec();
    k.extend_from_slice(&table_id.to_be_bytes());
    k
}

/// Key of one row of table `table_id`.
pub fn row(table_id: u64, row_key: &[u8]) -> Vec<u8> {
    let mut k = table_rows(table_id);
    k.extend_from_slice(row_key);
    k
}

/// Key of the image record of table `table_id`.
pub fn image(table_id: u64) -> Vec<u8> {
    let mut k = IMAGES.to_vec();
    k.extend_from_slice(&table_id.to_be_bytes());
    k
}

/// Prefix of everything view `view_id`'s operators store.
pub fn view_state(view_id: u64) -> Vec<u8> {
    let mut k = VIEW_STATE.to_vec();
    k.extend_from_slice(&view_id.to_be_bytes());
    k
}

/// Prefix of the state of operator `op` (preorder number) of view `view_id`.
pub fn operator_state(view_id: u64, op: u16) -> Vec<u8> {
    let mut k = view_state(view_id);
    k.extend_from_slice(&op.to_be_bytes());
    k
}
