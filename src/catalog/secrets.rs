//! Secret values at rest: `CREATE SECRET` values and connection passwords are stored
//! encrypted (AES-256-GCM, a fresh random nonce per value) under a key kept outside the state
//! store, so the store's files, journal and backups never hold them in clear.
//!
//! The key comes from, in order: the environment variable [`KEY_ENV`] (32 bytes in base64,
//! or any passphrase, hashed with SHA-256), the file given with `--secrets-key-file`, or
//! `<data-dir>/secrets.key`, created on first start with 32 random bytes and mode 0600.
//! Losing the key loses the secrets (connections then fail to log in upstream, and say so);
//! keeping it apart from the data directory (a mounted secret, a vault-provided variable)
//! keeps a stolen copy of the directory useless.
//!
//! A stored value is `hw-enc-v1:` + base64(nonce ‖ ciphertext ‖ tag). A value without the
//! prefix is one written before encryption existed, read as it is.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{Error, Result};

/// The environment variable that may hold the key.
pub const KEY_ENV: &str = "HEADWATER_SECRETS_KEY";
/// The key file's name in the data directory, when no other key is given.
pub use crate::state::datadir::SECRETS_KEY as KEY_FILE;
const PREFIX: &str = "hw-enc-v1:";

/// The key that encrypts secrets.
pub struct SecretKey {
    key: LessSafeKey,
    /// For values derived from the key ([`SecretKey::derive`]).
    mac: ring::hmac::Key,
    /// Where it came from, for messages.
    pub origin: String,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey").field("origin", &self.origin).finish_non_exhaustive()
    }
}

fn storage(what: String) -> Error {
    Error::Storage(what)
}

impl SecretKey {
    fn from_bytes(bytes: &[u8; 32], origin: String) -> Result<Self> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| storage("invalid secrets key".into()))?;
        let mac =
            ring::hmac::Key::new(ring::hmac::HMAC_SHA256, ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
        Ok(SecretKey { key: LessSafeKey::new(unbound), mac, origin })
    }

    /// A key from text: 32 bytes in base64, or a passphrase (SHA-256 of it).
    fn from_text(text: &str, origin: String) -> Result<Self> {
        let text = text.trim();
        let b64 = base64::engine::general_purpose::STANDARD;
        let bytes: [u8; 32] = match b64.decode(text).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()) {
            Some(b) => b,
            None => {
                if text.len() < 16 {
                    return Err(Error::InvalidParameterValue(format!(
                        "the secrets key from {origin} is too short: give 32 bytes in base64 or a passphrase of at \
                         least 16 characters"
                    )));
                }
                let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
                digest.as_ref().try_into().expect("SHA-256 is 32 bytes")
            }
        };
        Self::from_bytes(&bytes, origin)
    }

    /// The server's key (see the module documentation for where it is looked for).
    pub fn load(data_dir: &Path, file: Option<&Path>) -> Result<Self> {
        if let Ok(text) = std::env::var(KEY_ENV) {
            return Self::from_text(&text, format!("${KEY_ENV}"));
        }
        let (path, default): (PathBuf, bool) = match file {
            Some(f) => (f.to_path_buf(), false),
            None => (data_dir.join(KEY_FILE), true),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_text(&text, path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && default => Self::create(&path),
            Err(e) => Err(storage(format!("cannot read the secrets key {}: {e}", path.display()))),
        }
    }

    /// Creates a key file with a random key, readable by its owner only.
    fn create(path: &Path) -> Result<Self> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut bytes = [0u8; 32];
        SystemRandom::new().fill(&mut bytes).map_err(|_| storage("no randomness for the secrets key".into()))?;
        let text = base64::engine::general_purpose::STANDARD.encode(bytes);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| storage(format!("cannot create the secrets key {}: {e}", path.display())))?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| storage(format!("cannot write the secrets key {}: {e}", path.display())))?;
        tracing::info!(path = %path.display(), "secrets key created");
        Self::from_bytes(&bytes, path.display().to_string())
    }

    /// A random key that lives as long as the process (embedded engines over a memory store).
    pub fn ephemeral() -> Self {
        let mut bytes = [0u8; 32];
        SystemRandom::new().fill(&mut bytes).expect("system randomness");
        Self::from_bytes(&bytes, "memory".into()).expect("a 32-byte key")
    }

    /// `plain`, encrypted for storage.
    pub fn encrypt(&self, plain: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).expect("system randomness");
        let mut data = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
            .expect("AES-GCM sealing of a short value");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        format!("{PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(out))
    }

    /// A stored value in clear; one without the prefix is returned as it is.
    pub fn decrypt(&self, stored: &str) -> Result<String> {
        let Some(b64) = stored.strip_prefix(PREFIX) else { return Ok(stored.to_string()) };
        let wrong = || {
            Error::InvalidParameterValue(format!(
                "a stored secret cannot be decrypted with the secrets key from {}: the key changed since the \
                 secret was stored; restore the old key, or store the secret again (ALTER SECRET, or CREATE \
                 CONNECTION again)",
                self.origin
            ))
        };
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| wrong())?;
        if raw.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
        let mut sealed = sealed.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::empty(), &mut sealed).map_err(|_| wrong())?;
        String::from_utf8(plain.to_vec()).map_err(|_| wrong())
    }

    /// 32 bytes derived from the key and `input` (HMAC-SHA-256 under a hash of the key, not
    /// the key itself): stable across restarts, unpredictable without the key. The SCRAM
    /// exchange of an unknown user name uses it, so that it looks like a real user's.
    pub fn derive(&self, input: &[u8]) -> [u8; 32] {
        ring::hmac::sign(&self.mac, input).as_ref().try_into().expect("HMAC-SHA-256 is 32 bytes")
    }

    /// Whether `stored` is an encrypted value.
    pub fn is_encrypted(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_the_key_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::load(dir.path(), None).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealed = key.encrypt("hunter2");
        assert!(SecretKey::is_encrypted(&sealed) && !sealed.contains("hunter2"));
        assert_ne!(sealed, key.encrypt("hunter2"), "a fresh nonce per value");
        // The same key file again (a restart) opens it; another key does not.
        let again = SecretKey::load(dir.path(), None).unwrap();
        assert_eq!(again.decrypt(&sealed).unwrap(), "hunter2");
        assert_eq!(SecretKey::ephemeral().decrypt(&sealed).unwrap_err().sqlstate(), "22023");
        assert_eq!(key.decrypt("legacy clear value").unwrap(), "legacy clear value");
        let passphrase = SecretKey::from_text("a long enough passphrase", "test".into()).unwrap();
        assert_eq!(passphrase.decrypt(&passphrase.encrypt("x")).unwrap(), "x");
        assert!(SecretKey::from_text("short", "test".into()).is_err());
        assert_eq!(key.derive(b"bob"), again.derive(b"bob"));
        assert_ne!(key.derive(b"bob"), key.derive(b"alice"));
    }
}
