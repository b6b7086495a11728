//! Object ids of the relations and of the primary keys the overlay adds.
//!
//! datafusion-pg-catalog hands out relation oids from a counter (16384 up); a primary key's
//! index and constraint get the table's oid plus a fixed offset, far above anything the counter
//! reaches, so an oid alone says what it names.

use std::collections::HashMap;
use std::sync::RwLock;

use super::PublicRelation;
use crate::sync::UnpoisonedRw;

const INDEX_BASE: i32 = 1_000_000_000;
const CONSTRAINT_BASE: i32 = 1_500_000_000;

/// The oid of the primary key index of table `table_oid`.
pub fn index_oid(table_oid: i32) -> i32 {
    INDEX_BASE + table_oid
}

/// The oid of the primary key constraint of table `table_oid`.
pub fn constraint_oid(table_oid: i32) -> i32 {
    CONSTRAINT_BASE + table_oid
}

/// What an oid names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OidKind {
    Relation(i32),
    PrimaryKeyIndex(i32),
    PrimaryKeyConstraint(i32),
}

/// Decodes an oid into what it names (the table's oid inside).
pub fn kind_of(oid: i32) -> OidKind {
    if oid >= CONSTRAINT_BASE {
        OidKind::PrimaryKeyConstraint(oid - CONSTRAINT_BASE)
    } else if oid >= INDEX_BASE {
        OidKind::PrimaryKeyIndex(oid - INDEX_BASE)
    } else {
        OidKind::Relation(oid)
    }
}

/// The name of each `public` relation by oid, as of the last `pg_class` scan.
#[derive(Debug, Default)]
pub struct RelationOids {
    names: RwLock<HashMap<i32, String>>,
}

impl RelationOids {
    pub(super) fn refresh(&self, relations: &[PublicRelation]) {
        let map = relations.iter().map(|r| (r.oid, r.name.clone())).collect();
        *self.names.write_locked() = map;
    }

    /// The oid of the relation called `name`.
    pub fn oid(&self, name: &str) -> Option<i32> {
        self.names.read_locked().iter().find(|(_, n)| *n == name).map(|(o, _)| *o)
    }

    /// The relation called by `oid` (a table's own oid).
    pub fn name(&self, oid: i32) -> Option<String> {
        self.names.read_locked().get(&oid).cloned()
    }
}
