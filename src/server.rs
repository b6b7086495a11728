//! The server process: open the state, restore the catalog, serve pgwire, shut down cleanly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::sql::Engine;
use crate::state::{SledStore, StateStore};

/// Where to listen and where to keep state.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the Postgres wire protocol listener (`127.0.0.1:6875`).
    pub listen: String,
    /// Directory of the embedded state store (`./headwater-data`).
    pub data_dir: PathBuf,
}

/// A running server: its address, and the handle that stops it.
pub struct Server {
    local_addr: SocketAddr,
    engine: Arc<Engine>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    /// Opens the data directory, restores the catalog and starts accepting connections.
    pub async fn start(config: &Config) -> Result<Server> {
        let store: Arc<dyn StateStore> = Arc::new(SledStore::open(&config.data_dir)?);
        let engine = Engine::open(store).await?;
        let listener = TcpListener::bind(&config.listen)
            .await
            .map_err(|e| Error::InvalidParameterValue(format!("cannot listen on {}: {e}", config.listen)))?;
        let local_addr = listener.local_addr().map_err(|e| Error::Internal(e.to_string()))?;
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(crate::pgwire::serve(engine.clone(), listener, rx));
        tracing::info!(%local_addr, data_dir = %config.data_dir.display(), "Headwater is ready");
        Ok(Server { local_addr, engine, shutdown, task })
    }

    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes every session and flushes the state to disk.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        self.engine.shutdown().await?;
        tracing::info!("state flushed, Headwater stopped");
        Ok(())
    }
}
