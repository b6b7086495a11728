//! Users who may log in when the server runs with `--auth password`.
//!
//! A user is a name and a SCRAM-SHA-256 secret: a random salt and the password salted with
//! PBKDF2 ([`SCRAM_ITERATIONS`] rounds), the value SCRAM's server side needs. The clear
//! password is never stored or logged. Users live under `u/<name>` in the state store
//! (written and checkpointed like DDL) and come from `CREATE USER`/`ALTER USER` or from the
//! `--users-file` given at start-up. Headwater has no privileges yet: every user may do
//! everything, as a Postgres superuser can.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use pgwire::api::auth::sasl::scram::{gen_salted_password, random_nonce, SCRAM_ITERATIONS};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::state::keys::USERS;
use crate::state::{StateStore, WriteBatch};

/// What is stored about a user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserRecord {
    /// The SCRAM salt, base64; `None` for a user without a password (cannot log in with one).
    pub salt: Option<String>,
    /// The salted password (PBKDF2-HMAC-SHA-256), base64.
    pub salted_password: Option<String>,
    /// PBKDF2 rounds the secret was made with.
    pub iterations: usize,
}

impl UserRecord {
    /// A record for `password` (`None`: a user who cannot log in with a password).
    pub fn new(password: Option<&str>) -> Self {
        let b64 = base64::engine::general_purpose::STANDARD;
        match password {
            Some(pw) => {
                let salt = random_nonce().into_bytes();
                let salted = gen_salted_password(pw, &salt, SCRAM_ITERATIONS);
                UserRecord {
                    salt: Some(b64.encode(&salt)),
                    salted_password: Some(b64.encode(salted)),
                    iterations: SCRAM_ITERATIONS,
                }
            }
            None => UserRecord { salt: None, salted_password: None, iterations: SCRAM_ITERATIONS },
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
        self.users.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// Every user's name, sorted.
    pub fn names(&self) -> Vec<String> {
        self.users.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }

    /// Creates a user; 42710 if the name is taken.
    pub fn create(&self, name: &str, password: Option<&str>) -> Result<()> {
        let mut users = self.users.write().unwrap_or_else(|p| p.into_inner());
        if users.contains_key(name) {
            return Err(Error::duplicate("role", name));
        }
        let record = UserRecord::new(password);
        self.persist(name, Some(&record))?;
        users.insert(name.to_string(), record);
        Ok(())
    }

    /// Sets (or, with `None`, removes) a user's password; 42704 if there is no such user.
    pub fn set_password(&self, name: &str, password: Option<&str>) -> Result<()> {
        let mut users = self.users.write().unwrap_or_else(|p| p.into_inner());
        if !users.contains_key(name) {
            return Err(Error::undefined("role", name));
        }
        let record = UserRecord::new(password);
        self.persist(name, Some(&record))?;
        users.insert(name.to_string(), record);
        Ok(())
    }

    /// Creates the user or sets its password (the users file at start-up).
    pub fn upsert(&self, name: &str, password: &str) -> Result<()> {
        let mut users = self.users.write().unwrap_or_else(|p| p.into_inner());
        if users.get(name).is_some_and(|u| u.verifies(password)) {
            return Ok(());
        }
        let record = UserRecord::new(Some(password));
        self.persist(name, Some(&record))?;
        users.insert(name.to_string(), record);
        Ok(())
    }

    /// Drops a user; returns whether it existed.
    pub fn drop_user(&self, name: &str) -> Result<bool> {
        let mut users = self.users.write().unwrap_or_else(|p| p.into_inner());
        if !users.contains_key(name) {
            return Ok(false);
        }
        self.persist(name, None)?;
        users.remove(name);
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
        users.create("alice", Some("s3cret")).unwrap();
        assert_eq!(users.create("alice", Some("x")).unwrap_err().sqlstate(), "42710");
        assert!(users.get("alice").unwrap().verifies("s3cret"));
        assert!(!users.get("alice").unwrap().verifies("wrong"));
        let reloaded = Users::load(store.clone()).unwrap();
        assert!(reloaded.get("alice").unwrap().verifies("s3cret"));
        reloaded.set_password("alice", Some("new")).unwrap();
        assert!(reloaded.get("alice").unwrap().verifies("new"));
        assert_eq!(reloaded.set_password("bob", None).unwrap_err().sqlstate(), "42704");
        assert!(reloaded.drop_user("alice").unwrap());
        assert!(Users::load(store).unwrap().get("alice").is_none());
    }
}
