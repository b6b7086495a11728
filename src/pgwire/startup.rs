//! The startup handshake: authentication (`--auth trust` or `--auth password`, SCRAM-SHA-256
//! against [`Users`]), cancel registration, and the ParameterStatus messages clients check
//! (`server_version` must parse as 16.x for asyncpg, JDBC and SQLAlchemy).
//!
//! Both modes end the same way: the session learns its user and the settings the client sent
//! in the startup packet (JDBC sends `TimeZone`, `DateStyle`, `extra_float_digits`), the
//! connection is registered with [`Cancels`] so a CancelRequest can find it,
//! and the server reports the session's settings.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::sasl::scram::ScramAuth;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata, AuthSource,
    DefaultServerParameterProvider, LoginInfo, Password, ServerParameterProvider, StartupHandler,
};
use pgwire::api::{ClientInfo, PidSecretKeyGenerator, RandomPidSecretKeyGenerator, METADATA_USER};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::cancel::{CancelToken, Cancels};
use super::handler::Lifecycle;
use crate::catalog::users::{UserRecord, Users};
use crate::sql::activity::Backend;
use crate::sql::settings::SERVER_VERSION;
use crate::sql::Session;

static PIDS: LazyLock<Arc<RandomPidSecretKeyGenerator>> = LazyLock::new(Default::default);

/// How clients prove who they are (`--auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Every user name is accepted without a password (the default, for local use).
    #[default]
    Trust,
    /// SCRAM-SHA-256 against the users of `CREATE USER` / `--users-file`.
    Password,
}

impl std::str::FromStr for AuthMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "trust" => Ok(AuthMode::Trust),
            "password" | "scram-sha-256" | "scram" => Ok(AuthMode::Password),
            other => Err(format!("unknown auth mode {other:?} (use trust or password)")),
        }
    }
}

/// The startup handler of one connection.
pub enum Startup {
    Trust(TrustStartup),
    Scram(SASLAuthStartupHandler<SessionParameters>),
}

impl Startup {
    /// The handler for `mode` over `session`.
    pub fn new(
        mode: AuthMode,
        session: Arc<Session>,
        cancels: Arc<Cancels>,
        token: Arc<CancelToken>,
        life: Arc<Lifecycle>,
    ) -> Self {
        let parameters = SessionParameters { session: session.clone(), cancels, token, life };
        match mode {
            AuthMode::Trust => Startup::Trust(TrustStartup { parameters }),
            AuthMode::Password => {
                let users = UsersAuthSource {
                    users: session.engine().users().clone(),
                    key: session.engine().secrets().clone(),
                };
                Startup::Scram(
                    SASLAuthStartupHandler::new(Arc::new(parameters))
                        .with_scram(ScramAuth::new(Arc::new(users)))
                        .with_pid_secret_key_generator(PIDS.clone()),
                )
            }
        }
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match self {
            Startup::Trust(t) => t.on_startup(client, message).await,
            Startup::Scram(s) => s.on_startup(client, message).await,
        }
    }
}

/// Accepts every user (trust).
pub struct TrustStartup {
    parameters: SessionParameters,
}

#[async_trait]
impl StartupHandler for TrustStartup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(ref startup) = message {
            protocol_negotiation(client, startup).await?;
            save_startup_parameters_to_metadata(client, startup);
            if let Some(user) = client.metadata().get(METADATA_USER) {
                may_log_in(self.parameters.session.engine().users(), user)?;
            }
            let (pid, key) = PIDS.generate(client);
            client.set_pid_and_secret_key(pid, key);
            finish_authentication(client, &self.parameters).await?;
        }
        Ok(())
    }
}

/// Runs once the client is authenticated (both modes call it last): applies what the client
/// sent at startup to the session, registers the connection for cancel requests, and reports
/// the session's settings.
pub struct SessionParameters {
    session: Arc<Session>,
    cancels: Arc<Cancels>,
    token: Arc<CancelToken>,
    /// Marked logged in here, and given the session's `pg_stat_activity` entry.
    life: Arc<Lifecycle>,
}

impl ServerParameterProvider for SessionParameters {
    fn server_parameters<C: ClientInfo>(&self, client: &C) -> Option<HashMap<String, String>> {
        self.life.authenticated.store(true, std::sync::atomic::Ordering::SeqCst);
        super::throttle::THROTTLE.succeeded(&client.socket_addr().ip().to_string());
        let (pid, key) = client.pid_and_secret_key();
        let registration = self.cancels.register(pid, key.to_bytes().to_vec(), &self.token);
        client.session_extensions().insert(registration);
        let metadata = client.metadata();
        self.session.apply_startup(metadata.get(METADATA_USER).map(String::as_str), metadata);
        let setting = |name: &str, default: &str| self.session.setting(name).unwrap_or_else(|| default.to_string());
        // Listed in pg_stat_activity under the pid the client was given (cancel requests and
        // pg_cancel_backend name the same session).
        self.session.set_pid(pid);
        let token = self.token.clone();
        let life = Arc::downgrade(&self.life);
        let backend = Arc::new(Backend::new(
            pid,
            setting("session_authorization", ""),
            setting("application_name", ""),
            Some(client.socket_addr()),
            Box::new(move || token.cancel()),
            Box::new(move || {
                if let Some(life) = life.upgrade() {
                    life.terminate.notify_one();
                }
            }),
        ));
        let _ = self.life.backend.set(backend.clone());
        client.session_extensions().insert(self.session.engine().activity().register(backend));
        let mut p = DefaultServerParameterProvider::default();
        p.server_version = SERVER_VERSION.to_string();
        p.time_zone = setting("timezone", "UTC");
        p.date_style = setting("datestyle", "ISO, MDY");
        p.search_path = setting("search_path", "\"$user\", public");
        let mut params = p.server_parameters(client)?;
        params.insert("application_name".into(), setting("application_name", ""));
        params.insert("IntervalStyle".into(), setting("intervalstyle", "postgres"));
        let superuser = crate::sql::access::identity(&self.session).superuser;
        params.insert("is_superuser".into(), if superuser { "on" } else { "off" }.into());
        params.insert("session_authorization".into(), setting("session_authorization", ""));
        Some(params)
    }
}

/// FATAL 28000 for a role without LOGIN (`CREATE ROLE` without it, or `ALTER ROLE .. NOLOGIN`).
fn may_log_in(users: &Users, user: &str) -> PgWireResult<()> {
    if users.get(user).is_some_and(|r| !r.login) {
        tracing::info!(user, "login refused: role has no LOGIN");
        return Err(PgWireError::UserError(Box::new(pgwire::error::ErrorInfo::new(
            "FATAL".into(),
            "28000".into(),
            format!("role \"{user}\" is not permitted to log in"),
        ))));
    }
    Ok(())
}

/// SCRAM secrets of the users. A name that is not a user (or has no password) gets a secret
/// derived from the server's key and the name: the exchange runs to the end and fails like a
/// wrong password (28P01), and the salt it shows is the same at every attempt, as a real
/// user's is, so that probing cannot tell which users exist. Each attempt from an address
/// that failed recently waits first ([`super::throttle::LoginThrottle`]).
#[derive(Debug)]
struct UsersAuthSource {
    users: Arc<Users>,
    key: Arc<crate::catalog::secrets::SecretKey>,
}

impl UsersAuthSource {
    /// A stable, unguessable stand-in for a user without a SCRAM secret.
    fn decoy(&self, user: &str) -> (Vec<u8>, Vec<u8>) {
        use base64::Engine as _;
        let salt_bytes = self.key.derive(format!("scram-salt:{user}").as_bytes());
        // The shape of a real salt: base64 text of 18 bytes (pgwire's random_nonce).
        let salt = base64::engine::general_purpose::STANDARD.encode(&salt_bytes[..18]).into_bytes();
        (salt, self.key.derive(format!("scram-secret:{user}").as_bytes()).to_vec())
    }
}

#[async_trait]
impl AuthSource for UsersAuthSource {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().ok_or(PgWireError::UserNameRequired)?;
        super::throttle::THROTTLE.wait(login.host()).await;
        may_log_in(&self.users, user)?;
        let record = self.users.get(user);
        let (salt, salted) = match record.as_ref().and_then(UserRecord::scram_secret) {
            Some(secret) => secret,
            None => {
                tracing::info!(user, "login refused: no such user, or no password");
                self.decoy(user)
            }
        };
        Ok(Password::new(Some(salt), salted))
    }
}
