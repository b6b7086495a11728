//! The integration tests, in one test binary.
//!
//! Each module is one suite (run one with `cargo test --test integration MODULE::`); they share
//! one binary because a debug test binary links all of DataFusion (~300 MB each): a dozen of them
//! cost minutes of linking and gigabytes of disk in every CI run. Every test starts its own
//! server and, where it needs one, its own MariaDB, so suites running side by side in this
//! process share no state. The two crash harnesses (`tests/crash_recovery.rs`,
//! `tests/kafka_crash.rs`) stay separate binaries: they drive the real `headwater` executable.

#[path = "../common/mod.rs"]
mod common;

mod faults;
mod framing;
mod hostile;
mod kafka_sink;
mod kafka_source;
mod layers;
mod mysql_ddl;
mod mysql_oracle;
mod mysql_shards;
mod mysql_source;
mod mysql_types;
mod observability;
mod pg_differential;
mod pg_regress;
mod point_lookups;
mod privileges;
mod secrets;
mod soak;
mod sql_fuzz;
mod sqllogictests;
mod temporal;
mod tpch;
mod views_oracle;
mod wire;
