//! The catalog: every named object (table, view, connection; sources, materialized views and
//! sinks as they arrive), persisted in the [`StateStore`] and replayed at start-up.
//!
//! Each object is a [`CatalogEntry`] — its kind, name, the normalised SQL that created it and
//! the names it depends on — stored under `c/<id>`. At start-up the SQL layer re-executes the
//! entries in id order (`sql::Engine::open`), so the catalog never stores planner structures
//! that could drift between versions; rows of tables are keyed by the same id. The runtime
//! side of an object (a table's [`TableState`], a view's plan) lives next to its entry in
//! memory as a [`Relation`].
//!
//! Names: tables and views share one namespace (like Postgres relations); connections,
//! sources and sinks each have their own.

pub mod privileges;
pub mod secrets;
pub mod users;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use datafusion::catalog::TableProvider;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::state::{keys, StateStore, TableState, WriteBatch};
use crate::sync::{Unpoisoned, UnpoisonedRw};

/// The kinds of catalog objects a user can name in SHOW / DROP / SHOW CREATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    Table,
    View,
    MaterializedView,
    Source,
    Sink,
    Connection,
    Secret,
}

impl ObjectType {
    /// The SQL spelling, as in `DROP <kind>`.
    pub fn sql_name(self) -> &'static str {
        match self {
            ObjectType::Table => "TABLE",
            ObjectType::View => "VIEW",
            ObjectType::MaterializedView => "MATERIALIZED VIEW",
            ObjectType::Source => "SOURCE",
            ObjectType::Sink => "SINK",
            ObjectType::Connection => "CONNECTION",
            ObjectType::Secret => "SECRET",
        }
    }
}

/// Which namespace a name lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Namespace {
    Relation,
    Connection,
    Source,
    Sink,
    Secret,
}

impl ObjectType {
    /// The namespace objects of this type are named in.
    pub fn namespace(self) -> Namespace {
        match self {
            ObjectType::Table | ObjectType::View | ObjectType::MaterializedView => Namespace::Relation,
            ObjectType::Connection => Namespace::Connection,
            ObjectType::Secret => Namespace::Secret,
            ObjectType::Source => Namespace::Source,
            ObjectType::Sink => Namespace::Sink,
        }
    }

    /// The name other objects use for it in [`CatalogEntry::depends_on`].
    pub fn dependency_key(self, name: &str) -> String {
        match self {
            ObjectType::Source => format!("source:{name}"),
            ObjectType::Connection => format!("connection:{name}"),
            ObjectType::Secret => format!("secret:{name}"),
            ObjectType::Sink => format!("sink:{name}"),
            _ => name.to_string(),
        }
    }

    /// Lower-case noun for messages ("table", "materialized view").
    pub fn noun(self) -> &'static str {
        match self {
            ObjectType::Table => "table",
            ObjectType::View => "view",
            ObjectType::MaterializedView => "materialized view",
            ObjectType::Source => "source",
            ObjectType::Sink => "sink",
            ObjectType::Connection => "connection",
            ObjectType::Secret => "secret",
        }
    }
}

/// The persisted description of one object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// Unique, increasing; also the key prefix of a table's rows.
    pub id: u64,
    pub object_type: StoredType,
    pub name: String,
    /// The statement that recreates the object (normalised, without IF NOT EXISTS).
    pub create_sql: String,
    /// What this object depends on: relation names, `source:<name>` for a source's tables,
    /// `connection:<name>` for a source (for DROP ... CASCADE and restart order).
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Structured state that the SQL cannot carry (a captured table's upstream description).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// Serialisable twin of [`ObjectType`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredType {
    Table,
    View,
    MaterializedView,
    Source,
    Sink,
    Connection,
    Secret,
}

impl From<ObjectType> for StoredType {
    fn from(t: ObjectType) -> Self {
        match t {
            ObjectType::Table => StoredType::Table,
            ObjectType::View => StoredType::View,
            ObjectType::MaterializedView => StoredType::MaterializedView,
            ObjectType::Source => StoredType::Source,
            ObjectType::Sink => StoredType::Sink,
            ObjectType::Connection => StoredType::Connection,
            ObjectType::Secret => StoredType::Secret,
        }
    }
}

impl From<StoredType> for ObjectType {
    fn from(t: StoredType) -> Self {
        match t {
            StoredType::Table => ObjectType::Table,
            StoredType::View => ObjectType::View,
            StoredType::MaterializedView => ObjectType::MaterializedView,
            StoredType::Source => ObjectType::Source,
            StoredType::Sink => ObjectType::Sink,
            StoredType::Connection => ObjectType::Connection,
            StoredType::Secret => ObjectType::Secret,
        }
    }
}

/// The runtime side of a queryable object.
#[derive(Debug, Clone)]
pub enum Relation {
    /// A table with stored rows, and the DataFusion provider over them.
    Table { state: Arc<TableState>, provider: Arc<dyn TableProvider> },
    /// A plain view: a DataFusion provider that inlines its query.
    View(Arc<dyn TableProvider>),
}

/// One object: its entry and, for relations, its runtime side.
#[derive(Debug, Clone)]
pub struct CatalogObject {
    pub entry: CatalogEntry,
    pub relation: Option<Relation>,
}

impl CatalogObject {
    /// The object's type.
    pub fn object_type(&self) -> ObjectType {
        self.entry.object_type.into()
    }
}

#[derive(Default)]
struct Objects {
    by_name: BTreeMap<(Namespace, String), CatalogObject>,
    next_id: u64,
}

/// The set of named objects, shared by all sessions.
pub struct Catalog {
    store: Arc<dyn StateStore>,
    objects: RwLock<Objects>,
    /// The tables whose rows are stored, apart from `objects` so that a checkpoint's image cut
    /// reads them without waiting for DDL (which may hold `objects` while it waits for that
    /// checkpoint); held only to copy or change the list.
    stored: std::sync::Mutex<Vec<Arc<TableState>>>,
    /// Owners and grants, removed with their objects.
    privileges: privileges::Privileges,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").field("objects", &self.read().by_name.len()).finish()
    }
}

impl Catalog {
    /// An empty in-memory catalog over `store`; entries are read with [`Catalog::stored_entries`].
    pub fn new(store: Arc<dyn StateStore>) -> Result<Self> {
        let next_id = match store.get(keys::NEXT_ID)? {
            Some(v) if v.len() == 8 => u64::from_be_bytes(v.try_into().expect("8 bytes")),
            Some(_) => return Err(Error::Storage("corrupt catalog id counter".into())),
            None => 1,
        };
        Ok(Catalog {
            privileges: privileges::Privileges::load(store.clone())?,
            store,
            objects: RwLock::new(Objects { next_id, ..Default::default() }),
            stored: Default::default(),
        })
    }

    /// Owners and grants of the objects.
    pub fn privileges(&self) -> &privileges::Privileges {
        &self.privileges
    }

    /// The object with id `id`, if it exists.
    pub fn by_id(&self, id: u64) -> Option<CatalogObject> {
        self.read().by_name.values().find(|o| o.entry.id == id).cloned()
    }

    /// The store the catalog and the tables live in.
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    /// The persisted entries, in creation order, for replay at start-up.
    pub fn stored_entries(&self) -> Result<Vec<CatalogEntry>> {
        let mut entries = Vec::new();
        for (_, v) in self.store.scan_prefix(keys::CATALOG)? {
            let entry: CatalogEntry =
                serde_json::from_slice(&v).map_err(|e| Error::Storage(format!("corrupt catalog entry: {e}")))?;
            entries.push(entry);
        }
        Ok(entries)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Objects> {
        self.objects.read_locked()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Objects> {
        self.objects.write_locked()
    }

    /// Every table whose rows are stored (materialized views' results too). Never waits for DDL: a
    /// checkpoint asks while it holds the checkpoint lock, which DDL may be waiting for, and
    /// must see every table a commit may have left rows of for its image
    /// (`TableState::write_planned`).
    pub fn stored_tables(&self) -> Vec<Arc<TableState>> {
        self.stored.locked().clone()
    }

    /// Looks an object up by namespace and name.
    pub fn get(&self, ns: Namespace, name: &str) -> Option<CatalogObject> {
        self.read().by_name.get(&(ns, name.to_string())).cloned()
    }

    /// True while relation `name` is a table or materialized view whose rows are `state`;
    /// checked per execution of a prepared point lookup, so it clones nothing.
    pub fn resolves_to(&self, name: &str, state: &Arc<TableState>) -> bool {
        let objects = self.read();
        let object = objects.by_name.get(&(Namespace::Relation, name.to_string()));
        matches!(object.and_then(|o| o.relation.as_ref()), Some(Relation::Table { state: s, .. }) if Arc::ptr_eq(s, state))
    }

    /// All objects of one type, by name.
    pub fn list(&self, object_type: ObjectType) -> Vec<CatalogObject> {
        let stored: StoredType = object_type.into();
        self.read().by_name.values().filter(|o| o.entry.object_type == stored).cloned().collect()
    }

    /// All relation names (tables and views), for DataFusion's schema provider.
    pub fn relation_names(&self) -> Vec<String> {
        self.read().by_name.keys().filter(|(ns, _)| *ns == Namespace::Relation).map(|(_, n)| n.clone()).collect()
    }

    /// Creates an object. `build` receives the new id and returns the runtime side; the entry
    /// is persisted only if it succeeds. `restore` is `Some(entry)` when replaying at start-up:
    /// the stored id is kept and nothing is written.
    pub fn create(
        &self,
        object_type: ObjectType,
        name: &str,
        create_sql: String,
        depends_on: Vec<String>,
        restore: Option<u64>,
        build: impl FnOnce(u64) -> Result<Option<Relation>>,
    ) -> Result<CatalogObject> {
        self.create_with_details(object_type, name, create_sql, depends_on, None, restore, build)
    }

    /// [`Catalog::create`] with [`CatalogEntry::details`].
    #[allow(clippy::too_many_arguments)]
    pub fn create_with_details(
        &self,
        object_type: ObjectType,
        name: &str,
        create_sql: String,
        depends_on: Vec<String>,
        details: Option<serde_json::Value>,
        restore: Option<u64>,
        build: impl FnOnce(u64) -> Result<Option<Relation>>,
    ) -> Result<CatalogObject> {
        self.insert(object_type, name, create_sql, depends_on, details, restore, restore.is_none(), build)
    }

    /// The id the next object will get (ids only grow: an object with a smaller id existed
    /// before this call).
    pub fn next_id(&self) -> u64 {
        self.read().next_id
    }

    /// Takes the next id for an object whose runtime side must exist before its entry (a
    /// materialized view computes its contents first, and stores its rows under the id); pass
    /// it to [`Catalog::create_reserved`]. The id is stored as taken at once, so that a CREATE
    /// that fails or a crash before the entry is written never hands it out again: rows the
    /// view left under it cannot turn up in a later object.
    pub fn reserve_id(&self) -> Result<u64> {
        let mut objects = self.write();
        let id = objects.next_id;
        let mut batch = WriteBatch::default();
        batch.put(keys::NEXT_ID.to_vec(), (id + 1).to_be_bytes().to_vec());
        self.store.apply(batch)?;
        objects.next_id = id + 1;
        Ok(id)
    }

    /// [`Catalog::create`] with an id from [`Catalog::reserve_id`]; the entry is persisted.
    pub fn create_reserved(
        &self,
        object_type: ObjectType,
        name: &str,
        create_sql: String,
        depends_on: Vec<String>,
        id: u64,
        relation: Relation,
    ) -> Result<CatalogObject> {
        self.insert(object_type, name, create_sql, depends_on, None, Some(id), true, |_| Ok(Some(relation)))
    }

    #[allow(clippy::too_many_arguments)]
    fn insert(
        &self,
        object_type: ObjectType,
        name: &str,
        create_sql: String,
        depends_on: Vec<String>,
        details: Option<serde_json::Value>,
        id: Option<u64>,
        persist: bool,
        build: impl FnOnce(u64) -> Result<Option<Relation>>,
    ) -> Result<CatalogObject> {
        let ns = object_type.namespace();
        let mut objects = self.write();
        if let Some(existing) = objects.by_name.get(&(ns, name.to_string())) {
            return Err(Error::duplicate(existing.object_type().noun(), name));
        }
        let id = id.unwrap_or(objects.next_id);
        let relation = build(id)?;
        let entry = CatalogEntry {
            id,
            object_type: object_type.into(),
            name: name.to_string(),
            create_sql,
            depends_on,
            details,
        };
        if persist {
            let mut batch = WriteBatch::default();
            batch.put(keys::catalog_entry(id), serde_json::to_vec(&entry).map_err(|e| Error::Internal(e.to_string()))?);
            batch.put(keys::NEXT_ID.to_vec(), (objects.next_id.max(id + 1)).to_be_bytes().to_vec());
            self.store.apply(batch)?;
        }
        objects.next_id = objects.next_id.max(id + 1);
        let object = CatalogObject { entry, relation };
        if let Some(Relation::Table { state, .. }) = &object.relation {
            self.stored.locked().push(state.clone());
        }
        objects.by_name.insert((ns, name.to_string()), object.clone());
        Ok(object)
    }

    /// Adds the write of `entry`, the changed definition of an existing object (a captured
    /// table whose upstream gained columns), to `batch`; once the batch is stored,
    /// [`Catalog::replace_entry`] makes it current.
    pub fn write_entry(entry: &CatalogEntry, batch: &mut WriteBatch) -> Result<()> {
        batch
            .put(keys::catalog_entry(entry.id), serde_json::to_vec(entry).map_err(|e| Error::Internal(e.to_string()))?);
        Ok(())
    }

    /// Replaces the entry of an existing object (same id and name), keeping its runtime side.
    pub fn replace_entry(&self, entry: CatalogEntry) {
        let mut objects = self.write();
        let ns = ObjectType::from(entry.object_type).namespace();
        if let Some(o) = objects.by_name.get_mut(&(ns, entry.name.clone())).filter(|o| o.entry.id == entry.id) {
            o.entry = entry;
        }
    }

    /// Objects that depend on `key` (a relation name or an [`ObjectType::dependency_key`]),
    /// directly or through other objects, newest (dependents) first.
    pub fn dependents(&self, key: &str) -> Vec<CatalogObject> {
        let objects = self.read();
        let mut out: Vec<CatalogObject> = Vec::new();
        let mut frontier = vec![key.to_string()];
        while let Some(n) = frontier.pop() {
            for o in objects.by_name.values() {
                if o.entry.depends_on.contains(&n) && !out.iter().any(|x| x.entry.id == o.entry.id) {
                    out.push(o.clone());
                    frontier.push(o.object_type().dependency_key(&o.entry.name));
                }
            }
        }
        out.sort_by_key(|o| std::cmp::Reverse(o.entry.id));
        out
    }

    /// Removes objects, their catalog entries and the rows of tables among them, atomically.
    pub fn drop_objects(&self, victims: &[CatalogObject]) -> Result<()> {
        let mut objects = self.write();
        let mut batch = WriteBatch::default();
        let ids: Vec<u64> = victims.iter().map(|v| v.entry.id).collect();
        privileges::Privileges::delete_into(&ids, &mut batch);
        for v in victims {
            batch.delete(keys::catalog_entry(v.entry.id));
            if let Some(Relation::Table { state, .. }) = &v.relation {
                state.delete_all(self.store.as_ref(), &mut batch)?;
            }
            if v.object_type() == ObjectType::Source {
                // The record and every per-unit entry under it.
                batch.delete_prefix(self.store.as_ref(), &keys::source_progress(v.entry.id))?;
            }
            if v.object_type() == ObjectType::MaterializedView {
                batch.delete_prefix(self.store.as_ref(), &keys::view_state(v.entry.id))?;
            }
        }
        self.store.apply(batch)?;
        self.privileges.forget(&ids);
        for v in victims {
            objects.by_name.remove(&(v.object_type().namespace(), v.entry.name.clone()));
        }
        let gone: Vec<u64> = victims.iter().map(|v| v.entry.id).collect();
        self.stored.locked().retain(|t| !gone.contains(&t.id()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;

    fn view(c: &Catalog, name: &str, deps: &[&str]) -> CatalogObject {
        c.create(
            ObjectType::View,
            name,
            format!("CREATE VIEW {name} AS ..."),
            deps.iter().map(|s| s.to_string()).collect(),
            None,
            |_| Ok(None),
        )
        .unwrap()
    }

    #[test]
    fn entries_persist_and_ids_increase() {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::default());
        let c = Catalog::new(store.clone()).unwrap();
        let a = view(&c, "a", &[]);
        let b = view(&c, "b", &["a"]);
        assert!(b.entry.id > a.entry.id);
        let err = c.create(ObjectType::Table, "a", String::new(), vec![], None, |_| Ok(None)).unwrap_err();
        assert_eq!(err.sqlstate(), "42P07");
        // Connections are a namespace of their own.
        c.create(ObjectType::Connection, "a", String::new(), vec![], None, |_| Ok(None)).unwrap();
        let reopened = Catalog::new(store).unwrap();
        let names: Vec<String> = reopened.stored_entries().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, vec!["a", "b", "a"]);
        let next = reopened.create(ObjectType::View, "z", String::new(), vec![], None, |id| {
            assert!(id > b.entry.id);
            Ok(None)
        });
        assert!(next.is_ok());
    }

    #[test]
    fn a_reserved_id_is_never_handed_out_again() {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::default());
        let c = Catalog::new(store.clone()).unwrap();
        let reserved = c.reserve_id().unwrap();
        // Its CREATE failed (or the server stopped) before the entry was written.
        let reopened = Catalog::new(store).unwrap();
        assert!(reopened.stored_entries().unwrap().is_empty());
        let next = view(&reopened, "t", &[]);
        assert!(next.entry.id > reserved, "id {reserved} was handed out again");
    }

    #[test]
    fn dependents_are_transitive_and_dropped_first() {
        let c = Catalog::new(Arc::new(MemoryStore::default())).unwrap();
        view(&c, "t", &[]);
        view(&c, "v1", &["t"]);
        view(&c, "v2", &["v1"]);
        view(&c, "other", &[]);
        let deps: Vec<String> = c.dependents("t").into_iter().map(|o| o.entry.name).collect();
        assert_eq!(deps, vec!["v2", "v1"]);
        let mut victims = c.dependents("t");
        victims.push(c.get(Namespace::Relation, "t").unwrap());
        c.drop_objects(&victims).unwrap();
        assert_eq!(c.relation_names(), vec!["other"]);
        assert!(c.stored_entries().unwrap().iter().all(|e| e.name == "other"));
    }
}
