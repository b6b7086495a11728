//! Users who may log in when the server runs with `--auth password`.
//!
//! A user is a name and a SCRAM-SHA-256 secret: a random salt and the password salted with
//! PBKDF2 ([`SCRAM_ITERATIONS`] rounds), the value SCRAM's server side needs. The clear
//! password is never stored or logged. Users live under `u/<name>` in the state store
//! (written and checkpointed like DDL) and come from `CREATE USER`/`ALTER USER` or from the
//! `--users-file` given at start-up.
//!
//! A user is also a role, as in Postgres: it has attributes (`SUPERUSER`, `LOGIN`,
//! `CREATEROLE`, `CREATEDB`) and may be a member of other roles, whose privileges it inherits.
//! Records written before roles existed carry no attributes and read back as superusers who
//! can log in: that is what every user was then.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use pgwire::api::auth::sasl::scram::{gen_salted_password, random_nonce, SCRAM_ITERATIONS};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::state::keys::USERS;
use crate::state::{StateStore, WriteBatch};
use crate::sync::UnpoisonedRw;

/// What is stored about a user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserRecord {
    /// The SCRAM salt, base64; `None` for a user without a password (cannot log in with one).
    pub salt: Option<String>,
    /// The salted password (PBKDF2-HMAC-SHA-256), base64.
    pub salted_password: Option<String>,
    /// PBKDF2 rounds the secret was made with.
    pub iterations: usize,
    #[serde(default = "yes")]
    pub superuser: bool,
    /// May log in (`CREATE USER` gives it, `CREATE ROLE` does not).
    #[serde(default = "yes")]
    pub login: bool,
    /// May create, alter and drop roles that are not superusers.
    #[serde(default)]
    pub createrole: bool,
    /// May create objects (tables, views, connections, sources, sinks) without a grant of
    /// CREATE on the database.
    #[serde(default)]
    pub createdb: bool,
    /// The roles this one is a member of (`GRANT role TO this`), whose privileges it has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub member_of: Vec<String>,
}

fn yes() -> bool {
    true
}

/// The attributes `CREATE ROLE` / `ALTER ROLE` set; `None` leaves one as it is (or at its
/// default, for a new role).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleAttributes {
    pub superuser: Option<bool>,
    pub login: Option<bool>,
    pub createrole: Option<bool>,
    pub createdb: Option<bool>,
}

impl RoleAttributes {
    fn apply(&self, r: &mut UserRecord) {
        if let Some(v) = self.superuser {
            r.superuser = v;
        }
        if let Some(v) = self.login {
            r.login = v;
        }
        if let Some(v) = self.createrole {
            r.createrole = v;
        }
        if let Some(v) = self.createdb {
            r.createdb = v;
        }
    }

    /// Whether any attribute is set.
    pub fn is_empty(&self) -> bool {
        *self == RoleAttributes::default()
    }
}

impl UserRecord {
    /// A superuser record for `password` (`None`: a user who cannot log in with a password).
    pub fn new(password: Option<&str>) -> Self {
        let mut r = UserRecord {
            salt: None,
            salted_password: None,
            iterations: SCRAM_ITERATIONS,
            superuser: true,
            login: true,
            createrole: false,
            createdb: false,
            member_of: Vec::new(),
        };
        r.set_password(password);
        r
    }

    /// Replaces the SCRAM secret (`None`: no password).
    fn set_password(&mut self, password: Option<&str>) {
        let b64 = base64::engine::general_purpose::STANDARD;
        match password {
            Some(pw) => {
                let salt = random_nonce().into_bytes();
                let salted = gen_salted_password(pw, &salt, SCRAM_ITERATIONS);
                self.salt = Some(b64.encode(&salt));
                self.salted_password = Some(b64.encode(salted));
                self.iterations = SCRAM_ITERATIONS;
            }
            None => {
                self.salt = None;
                self.salted_password = None;
            }
        }
    }

    /// (salt, salted password) for SCRAM, if the user has a password.
    pub fn scram_secret(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b64.decode(self.salt.as_ref()?).ok()?;
        let salted = b64.decode(self.salted_password.as_ref()?).ok()?;
        Some((salt, salted))
    }

    /// Whether `password` is this user's password (for tests and the users file).
    pub fn verifies(&self, password: &str) -> bool {
        self.scram_secret()
            .is_some_and(|(salt, salted)| gen_salted_password(password, &salt, self.iterations) == salted)
    }
}

/// The users, in memory and in the store.
pub struct Users {
    store: Arc<dyn StateStore>,
    users: RwLock<BTreeMap<String, UserRecord>>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").field("names", &self.names()).finish()
    }
}

fn key(name: &str) -> Vec<u8> {
    let mut k = USERS.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

impl Users {
    /// Loads the users stored in `store`.
    pub fn load(store: Arc<dyn StateStore>) -> Result<Self> {
        let mut users = BTreeMap::new();
        for (k, v) in store.scan_prefix(USERS)? {
            let name = String::from_utf8_lossy(&k[USERS.len()..]).into_owned();
            let record: UserRecord =
                serde_json::from_slice(&v).map_err(|e| Error::Storage(format!("corrupt user record {name}: {e}")))?;
            users.insert(name, record);
        }
        Ok(Users { store, users: RwLock::new(users) })
    }

    /// The user called `name`.
    pub fn get(&self, name: &str) -> Option<UserRecord> {
        self.read().get(name).cloned()
    }

    /// Every user's name, sorted.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// Creates a role: no attribute but `login` (a `CREATE USER`) unless `attributes` says;
    /// 42710 if the name is taken.
    pub fn create(&self, name: &str, password: Option<&str>, login: bool, attributes: &RoleAttributes) -> Result<()> {
        let mut users = self.write();
        if users.contains_key(name) {
            return Err(Error::duplicate("role", name));
        }
        let mut record = UserRecord::new(password);
        record.superuser = false;
        record.login = login;
        attributes.apply(&mut record);
        self.persist(name, Some(&record))?;
        users.insert(name.to_string(), record);
        Ok(())
    }

    /// Sets (or, with `None`, removes) a user's password; 42704 if there is no such user.
    pub fn set_password(&self, name: &str, password: Option<&str>) -> Result<()> {
        self.update(name, |r| r.set_password(password))
    }

    /// Changes a role's attributes; 42704 if there is no such role.
    pub fn set_attributes(&self, name: &str, attributes: &RoleAttributes) -> Result<()> {
        self.update(name, |r| attributes.apply(r))
    }

    /// Makes `member` a member of `role` (`GRANT role TO member`); false if it already was.
    /// 0LP01 for a grant that would make a role a member of itself.
    pub fn grant_membership(&self, role: &str, member: &str) -> Result<bool> {
        {
            let users = self.read();
            for n in [role, member] {
                if !users.contains_key(n) {
                    return Err(Error::undefined("role", n));
                }
            }
            if role == member || Self::closure(&users, role).iter().any(|r| r == member) {
                return Err(Error::InvalidGrantOperation(format!("role \"{member}\" is a member of role \"{role}\"")));
            }
            if users.get(member).is_some_and(|r| r.member_of.iter().any(|m| m == role)) {
                return Ok(false);
            }
        }
        self.update(member, |r| r.member_of.push(role.to_string()))?;
        Ok(true)
    }

    /// Ends `member`'s membership of `role`; false if it was not one.
    pub fn revoke_membership(&self, role: &str, member: &str) -> Result<bool> {
        if !self.get(member).is_some_and(|r| r.member_of.iter().any(|m| m == role)) {
            return Ok(false);
        }
        self.update(member, |r| r.member_of.retain(|m| m != role))?;
        Ok(true)
    }

    /// `name` and every role it is a member of, directly or through others.
    pub fn roles_of(&self, name: &str) -> Vec<String> {
        Self::closure(&self.read(), name)
    }

    fn closure(users: &BTreeMap<String, UserRecord>, name: &str) -> Vec<String> {
        let mut out = vec![name.to_string()];
        let mut i = 0;
        while i < out.len() {
            if let Some(r) = users.get(&out[i]) {
                for m in &r.member_of {
                    if !out.contains(m) {
                        out.push(m.clone());
                    }
                }
            }
            i += 1;
        }
        out
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut UserRecord)) -> Result<()> {
        let mut users = self.write();
        let Some(mut record) = users.get(name).cloned() else {
            return Err(Error::undefined("role", name));
        };
        change(&mut record);
        self.persist(name, Some(&record))?;
        users.insert(name.to_string(), record);
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, UserRecord>> {
        self.users.read_locked()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, UserRecord>> {
        self.users.write_locked()
    }

    /// Creates the user or sets its password (the users file at start-up: its users are
    /// the operator's, superusers who can log in).
    pub fn upsert(&self, name: &str, password: &str) -> Result<()> {
        let mut users = self.write();
        if users.get(name).is_some_and(|u| u.verifies(password) && u.superuser && u.login) {
            return Ok(());
        }
        let mut record = users.get(name).cloned().unwrap_or_else(|| UserRecord::new(None));
        record.set_password(Some(password));
        record.superuser = true;
        record.login = true;
        self.persist(name, Some(&record))?;
        users.insert(name.to_string(), record);
        Ok(())
    }

    /// Drops a user, and its place in other roles' memberships; returns whether it existed.
    pub fn drop_user(&self, name: &str) -> Result<bool> {
        let mut users = self.write();
        if !users.contains_key(name) {
            return Ok(false);
        }
        self.persist(name, None)?;
        users.remove(name);
        let members: Vec<String> =
            users.iter().filter(|(_, r)| r.member_of.iter().any(|m| m == name)).map(|(n, _)| n.clone()).collect();
        for m in members {
            if let Some(r) = users.get_mut(&m) {
                r.member_of.retain(|x| x != name);
                let r = r.clone();
                self.persist(&m, Some(&r))?;
            }
        }
        Ok(true)
    }

    fn persist(&self, name: &str, record: Option<&UserRecord>) -> Result<()> {
        let mut batch = WriteBatch::default();
        match record {
            Some(r) => batch.put(key(name), serde_json::to_vec(r).map_err(|e| Error::Internal(e.to_string()))?),
            None => batch.delete(key(name)),
        }
        self.store.apply(batch)
    }
}

/// Reads a users file: one `name:password` per line; blank lines and `#` comments skipped.
pub fn read_users_file(path: &std::path::Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::InvalidParameterValue(format!("cannot read users file {}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((name, password)) if !name.trim().is_empty() && !password.is_empty() => {
                out.push((name.trim().to_string(), password.to_string()))
            }
            _ => {
                return Err(Error::InvalidParameterValue(format!(
                    "{}:{}: expected `name:password`",
                    path.display(),
                    n + 1
                )))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;

    #[test]
    fn users_persist_and_verify() {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::default());
        let users = Users::load(store.clone()).unwrap();
        users.create("alice", Some("s3cret"), true, &RoleAttributes::default()).unwrap();
        assert_eq!(users.create("alice", Some("x"), true, &RoleAttributes::default()).unwrap_err().sqlstate(), "42710");
        assert!(!users.get("alice").unwrap().superuser);
        users.create("readers", None, false, &RoleAttributes::default()).unwrap();
        users.create("everyone", None, false, &RoleAttributes::default()).unwrap();
        assert!(users.grant_membership("readers", "alice").unwrap());
        assert!(users.grant_membership("everyone", "readers").unwrap());
        assert_eq!(users.grant_membership("alice", "everyone").unwrap_err().sqlstate(), "0LP01");
        assert_eq!(users.roles_of("alice"), ["alice", "readers", "everyone"]);
        assert!(users.get("alice").unwrap().verifies("s3cret"));
        assert!(!users.get("alice").unwrap().verifies("wrong"));
        let reloaded = Users::load(store.clone()).unwrap();
        assert!(reloaded.get("alice").unwrap().verifies("s3cret"));
        assert_eq!(reloaded.roles_of("alice"), ["alice", "readers", "everyone"]);
        // A record from before roles existed: a superuser who can log in.
        let old: UserRecord =
            serde_json::from_str(r#"{"salt":null,"salted_password":null,"iterations":4096}"#).unwrap();
        assert!(old.superuser && old.login && old.member_of.is_empty());
        assert!(reloaded.drop_user("readers").unwrap());
        assert_eq!(reloaded.roles_of("alice"), ["alice"]);
        reloaded.set_password("alice", Some("new")).unwrap();
        assert!(reloaded.get("alice").unwrap().verifies("new"));
        assert_eq!(reloaded.set_password("bob", None).unwrap_err().sqlstate(), "42704");
        assert!(reloaded.drop_user("alice").unwrap());
        assert!(Users::load(store).unwrap().get("alice").is_none());
    }
}
