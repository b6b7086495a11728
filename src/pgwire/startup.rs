//! The startup handshake: trust authentication and the ParameterStatus messages clients
//! check (`server_version` must parse as 16.x for asyncpg, JDBC and SQLAlchemy).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::LazyLock;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata, DefaultServerParameterProvider,
    ServerParameterProvider, StartupHandler,
};
use pgwire::api::{ClientInfo, PidSecretKeyGenerator, RandomPidSecretKeyGenerator};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use crate::sql::settings::SERVER_VERSION;

static PIDS: LazyLock<RandomPidSecretKeyGenerator> = LazyLock::new(RandomPidSecretKeyGenerator::default);

/// Accepts every user (trust) and reports Headwater's server parameters.
pub struct TrustStartup;

struct HeadwaterParameters;

impl ServerParameterProvider for HeadwaterParameters {
    fn server_parameters<C: ClientInfo>(&self, client: &C) -> Option<HashMap<String, String>> {
        let mut p = DefaultServerParameterProvider::default();
        p.server_version = SERVER_VERSION.to_string();
        p.time_zone = "UTC".to_string();
        p.date_style = "ISO, MDY".to_string();
        p.search_path = "\"$user\", public".to_string();
        let mut params = p.server_parameters(client)?;
        params.entry("application_name".into()).or_default();
        Some(params)
    }
}

#[async_trait]
impl StartupHandler for TrustStartup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(ref startup) = message {
            protocol_negotiation(client, startup).await?;
            save_startup_parameters_to_metadata(client, startup);
            let (pid, key) = PIDS.generate(client);
            client.set_pid_and_secret_key(pid, key);
            finish_authentication(client, &HeadwaterParameters).await?;
        }
        Ok(())
    }
}
