//! Who owns each object and what others were granted on it (`GRANT` / `REVOKE`).
//!
//! One access-control list per catalog object, keyed by the object's id (ids are never
//! reused, so an ACL cannot outlive its object into a new one of the same name), stored under
//! `g/<id>` and removed with the object. Id [`DATABASE`] holds the database-wide grants
//! (`CREATE` on the database or on schema `public`: the right to create objects).
//!
//! The owner is the role that created the object. Objects without a record (created before
//! privileges existed, or by the server itself) belong to [`BOOTSTRAP_OWNER`], so only
//! superusers may use them until a superuser grants something: the safe reading of a store
//! that predates the rules. A captured table belongs to its source's owner.
//!
//! The checks themselves (`sql::access`) read these lists; this module only keeps them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::state::keys;
use crate::state::{StateStore, WriteBatch};
use crate::sync::UnpoisonedRw;

/// The id of the database-wide ACL.
pub const DATABASE: u64 = 0;

/// Who owns what nobody is recorded to own: the server's bootstrap superuser.
pub const BOOTSTRAP_OWNER: &str = "headwater";

/// The grantee that stands for every role.
pub const PUBLIC: &str = "PUBLIC";

/// One privilege, as `GRANT` names it. The letters are those of Postgres's `aclitem`
/// (`r` SELECT, `a` INSERT, `w` UPDATE, `d` DELETE, ...), which `\dp` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Privilege {
    Insert,
    Select,
    Update,
    Delete,
    Truncate,
    References,
    Trigger,
    Create,
    Usage,
}

impl Privilege {
    /// Every privilege, in `aclitem` order.
    pub const ALL: [Privilege; 9] = [
        Privilege::Insert,
        Privilege::Select,
        Privilege::Update,
        Privilege::Delete,
        Privilege::Truncate,
        Privilege::References,
        Privilege::Trigger,
        Privilege::Create,
        Privilege::Usage,
    ];

    /// The privilege's SQL keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Privilege::Insert => "INSERT",
            Privilege::Select => "SELECT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
            Privilege::Truncate => "TRUNCATE",
            Privilege::References => "REFERENCES",
            Privilege::Trigger => "TRIGGER",
            Privilege::Create => "CREATE",
            Privilege::Usage => "USAGE",
        }
    }

    /// The `aclitem` letter.
    pub fn letter(self) -> char {
        match self {
            Privilege::Insert => 'a',
            Privilege::Select => 'r',
            Privilege::Update => 'w',
            Privilege::Delete => 'd',
            Privilege::Truncate => 'D',
            Privilege::References => 'x',
            Privilege::Trigger => 't',
            Privilege::Create => 'C',
            Privilege::Usage => 'U',
        }
    }

    /// Parses a keyword (any case); `None` if it names no privilege.
    pub fn parse(word: &str) -> Option<Privilege> {
        Privilege::ALL.into_iter().find(|p| p.keyword().eq_ignore_ascii_case(word))
    }
}

/// One object's owner and grants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    /// The owning role; `None`: see the module documentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Grantee (a role, or [`PUBLIC`]) → what it was granted, and by whom.
    #[serde(default)]
    pub grants: BTreeMap<String, Grant>,
}

/// What one grantee holds on one object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub privileges: BTreeSet<Privilege>,
    /// The role that granted them (shown after the `/` of an `aclitem`).
    pub grantor: String,
}

impl Acl {
    /// Whether one of `roles` (or PUBLIC) holds `privilege` here.
    pub fn grants_any(&self, roles: &[String], privilege: Privilege) -> bool {
        self.grants.iter().any(|(grantee, g)| {
            g.privileges.contains(&privilege) && (grantee == PUBLIC || roles.iter().any(|r| r == grantee))
        })
    }

    /// The list as Postgres prints `aclitem[]`: `grantee=letters/grantor`, PUBLIC as an empty
    /// grantee; the owner's own entry first (it holds `owner_privileges`).
    pub fn items(&self, owner: &str, owner_privileges: &[Privilege]) -> Vec<String> {
        let letters = |ps: &mut dyn Iterator<Item = Privilege>| -> String {
            let mut v: Vec<Privilege> = ps.collect();
            v.sort_by_key(|p| Privilege::ALL.iter().position(|q| q == p));
            v.into_iter().map(Privilege::letter).collect()
        };
        let mut out = vec![format!("{owner}={}/{owner}", letters(&mut owner_privileges.iter().copied()))];
        for (grantee, g) in &self.grants {
            if g.privileges.is_empty() {
                continue;
            }
            let who = if grantee == PUBLIC { "" } else { grantee.as_str() };
            out.push(format!("{who}={}/{}", letters(&mut g.privileges.iter().copied()), g.grantor));
        }
        out
    }
}

/// The ACLs of every object, in memory and in the store.
pub struct Privileges {
    store: Arc<dyn StateStore>,
    acls: RwLock<HashMap<u64, Acl>>,
}

impl std::fmt::Debug for Privileges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Privileges").field("objects", &self.read().len()).finish()
    }
}

impl Privileges {
    /// Loads the stored ACLs.
    pub fn load(store: Arc<dyn StateStore>) -> Result<Self> {
        let mut acls = HashMap::new();
        for (k, v) in store.scan_prefix(keys::ACLS)? {
            let id = keys::acl_id(&k).ok_or_else(|| Error::Storage("corrupt privilege key".into()))?;
            let acl: Acl =
                serde_json::from_slice(&v).map_err(|e| Error::Storage(format!("corrupt privileges: {e}")))?;
            acls.insert(id, acl);
        }
        Ok(Privileges { store, acls: RwLock::new(acls) })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u64, Acl>> {
        self.acls.read_locked()
    }

    /// The ACL of object `id` (empty if none was recorded).
    pub fn get(&self, id: u64) -> Acl {
        self.read().get(&id).cloned().unwrap_or_default()
    }

    /// Whether object `id` has a recorded ACL.
    pub fn has(&self, id: u64) -> bool {
        self.read().contains_key(&id)
    }

    /// Changes object `id`'s ACL with `change` and stores it.
    pub fn update(&self, id: u64, change: impl FnOnce(&mut Acl)) -> Result<()> {
        let mut acls = self.acls.write_locked();
        let mut acl = acls.get(&id).cloned().unwrap_or_default();
        change(&mut acl);
        let mut batch = WriteBatch::default();
        batch.put(keys::acl(id), serde_json::to_vec(&acl).map_err(|e| Error::Internal(e.to_string()))?);
        self.store.apply(batch)?;
        acls.insert(id, acl);
        Ok(())
    }

    /// Adds the removal of the ACLs of `ids` (dropped objects) to `batch`; call
    /// [`Privileges::forget`] once it is stored.
    pub fn delete_into(ids: &[u64], batch: &mut WriteBatch) {
        for id in ids {
            batch.delete(keys::acl(*id));
        }
    }

    /// Forgets the ACLs of dropped objects.
    pub fn forget(&self, ids: &[u64]) {
        let mut acls = self.acls.write_locked();
        for id in ids {
            acls.remove(id);
        }
    }

    /// The ids of the objects recorded as owned by `role` (a DROP ROLE must not leave them
    /// without an owner).
    pub fn objects_of(&self, role: &str) -> Vec<u64> {
        let mut ids: Vec<u64> =
            self.read().iter().filter(|(_, acl)| acl.owner.as_deref() == Some(role)).map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids
    }

    /// Removes every grant to `role` (it is being dropped).
    pub fn revoke_all_from(&self, role: &str) -> Result<()> {
        let ids: Vec<u64> =
            self.read().iter().filter(|(_, acl)| acl.grants.contains_key(role)).map(|(id, _)| *id).collect();
        for id in ids {
            self.update(id, |acl| {
                acl.grants.remove(role);
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;

    #[test]
    fn acls_persist_and_print_as_aclitems() {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::default());
        let p = Privileges::load(store.clone()).unwrap();
        p.update(7, |acl| {
            acl.owner = Some("alice".into());
            let g = acl.grants.entry("bob".into()).or_default();
            g.privileges.extend([Privilege::Select, Privilege::Insert]);
            g.grantor = "alice".into();
            let everyone = acl.grants.entry(PUBLIC.into()).or_default();
            everyone.privileges.insert(Privilege::Select);
            everyone.grantor = "alice".into();
        })
        .unwrap();
        let reloaded = Privileges::load(store.clone()).unwrap();
        let acl = reloaded.get(7);
        assert!(acl.grants_any(&["bob".into()], Privilege::Insert));
        assert!(acl.grants_any(&["carol".into()], Privilege::Select), "PUBLIC's grant");
        assert!(!acl.grants_any(&["carol".into()], Privilege::Insert));
        assert_eq!(
            acl.items("alice", &[Privilege::Insert, Privilege::Select, Privilege::Update, Privilege::Delete]),
            ["alice=arwd/alice", "=r/alice", "bob=ar/alice"]
        );
        assert_eq!(reloaded.objects_of("alice"), [7]);
        reloaded.revoke_all_from("bob").unwrap();
        assert!(!Privileges::load(store.clone()).unwrap().get(7).grants_any(&["bob".into()], Privilege::Insert));
        let mut batch = WriteBatch::default();
        Privileges::delete_into(&[7], &mut batch);
        store.apply(batch).unwrap();
        reloaded.forget(&[7]);
        assert!(!reloaded.has(7) && !Privileges::load(store).unwrap().has(7));
    }
}
