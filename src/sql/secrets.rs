//! `CREATE SECRET`, `ALTER SECRET`, and the connection options that use them.
//!
//! A secret is a catalog object whose stored statement carries its value encrypted
//! ([`SecretKey`]): `CREATE SECRET name AS 'hw-enc-v1:…'`.
//! A connection names one with `PASSWORD SECRET name` (and depends on it: dropping the secret
//! needs CASCADE); an inline `PASSWORD 'pw'` is encrypted the same way before the connection
//! is stored. Values are decrypted only when a source or sink connects
//! ([`resolve_options`]); no statement result, `SHOW CREATE` or log line shows them.

use std::collections::BTreeMap;

use super::parser::{HwStatement, ObjectType, Secret, SECRET_REFERENCE};
use super::{QueryResult, Session};
use crate::catalog::secrets::SecretKey;
use crate::catalog::{Catalog, Namespace};
use crate::error::{Error, Result};
use crate::state::WriteBatch;

fn secret_sql(name: &str, stored: &str) -> String {
    format!("CREATE SECRET {} AS '{}'", crate::sql::quote_ident(name), stored.replace('\'', "''"))
}

/// `CREATE SECRET [IF NOT EXISTS] name AS 'value'`. At restore, `value` is the stored
/// (encrypted) form and is kept as it is.
pub(super) fn create_secret(
    s: &Session,
    name: &str,
    if_not_exists: bool,
    value: &Secret,
    restore: Option<u64>,
) -> Result<QueryResult> {
    let catalog = s.engine().catalog();
    if catalog.get(Namespace::Secret, name).is_some() && if_not_exists {
        return Ok(QueryResult::command("CREATE SECRET"));
    }
    let stored = match restore {
        Some(_) => value.0.clone(),
        None => s.engine().secrets().encrypt(&value.0),
    };
    catalog.create(ObjectType::Secret, name, secret_sql(name, &stored), vec![], restore, |_| Ok(None))?;
    Ok(QueryResult::command("CREATE SECRET"))
}

/// `ALTER SECRET name AS 'value'`: connections that use it get the new value when they next
/// connect (a source's next reconnect, a new source or sink).
pub(super) fn alter_secret(s: &Session, name: &str, value: &Secret) -> Result<QueryResult> {
    let catalog = s.engine().catalog();
    let obj = catalog.get(Namespace::Secret, name).ok_or_else(|| Error::undefined("secret", name))?;
    let mut entry = obj.entry.clone();
    entry.create_sql = secret_sql(name, &s.engine().secrets().encrypt(&value.0));
    let mut batch = WriteBatch::default();
    Catalog::write_entry(&entry, &mut batch)?;
    catalog.store().apply(batch)?;
    catalog.replace_entry(entry);
    Ok(QueryResult::command("ALTER SECRET"))
}

/// The value of secret `name`, in clear.
fn secret_value(s: &Session, name: &str) -> Result<String> {
    let obj = s.engine().catalog().get(Namespace::Secret, name).ok_or_else(|| Error::undefined("secret", name))?;
    match s.parse(&obj.entry.create_sql)?.pop() {
        Some(HwStatement::CreateSecret { value, .. }) => s.engine().secrets().decrypt(&value.0),
        _ => Err(Error::Storage(format!("secret \"{name}\" has a corrupt definition"))),
    }
}

/// A connection's options as a client library needs them: `KEY SECRET name` replaced by
/// `KEY` with the secret's value, encrypted values decrypted.
pub(super) fn resolve_options(s: &Session, options: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (key, value) in options {
        match key.strip_suffix(SECRET_REFERENCE) {
            Some(plain_key) => {
                out.insert(plain_key.to_string(), secret_value(s, value)?);
            }
            None => {
                out.insert(key.clone(), s.engine().secrets().decrypt(value)?);
            }
        }
    }
    Ok(out)
}

/// The options as a connection stores them: inline secrets (any `*PASSWORD*` key) encrypted.
pub(super) fn seal_options(key: &SecretKey, options: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    options
        .iter()
        .map(|(k, v)| {
            let sealed = if is_secret_option(k) && !SecretKey::is_encrypted(v) { key.encrypt(v) } else { v.clone() };
            (k.clone(), sealed)
        })
        .collect()
}

/// Whether option `key` holds a secret inline.
pub(super) fn is_secret_option(key: &str) -> bool {
    key.contains("PASSWORD") && !key.ends_with(SECRET_REFERENCE)
}
