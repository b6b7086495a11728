//! The server process: open the state, restore the catalog, serve pgwire, checkpoint, shut
//! down cleanly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::pgwire::{AuthMode, WireOptions};
use crate::sql::Engine;
use crate::state::{CheckpointedStore, StateStore};

/// Where to listen, where to keep state, how often to checkpoint.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the Postgres wire protocol listener (`127.0.0.1:6875`).
    pub listen: String,
    /// Directory of the embedded state store (`./headwater-data`).
    pub data_dir: PathBuf,
    /// Time between checkpoints of source-fed state (`--checkpoint-interval`, default 1 s).
    pub checkpoint_interval: Duration,
    /// How clients authenticate (`--auth trust|password`, default trust).
    pub auth: AuthMode,
    /// `name:password` lines to create or update at start-up (`--users-file`).
    pub users_file: Option<PathBuf>,
    /// PEM certificate chain and private key for TLS (`--tls-cert`, `--tls-key`).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Address of the Prometheus endpoint, `GET /metrics` (`--metrics-listen`; off when unset).
    pub metrics_listen: Option<String>,
    /// Most client sessions at once (`--max-connections`, default 256); one more is refused
    /// with 53300.
    pub max_connections: usize,
    /// Longest a client may take to log in (`--authentication-timeout`, default 60 s).
    pub authentication_timeout: Duration,
    /// The key that encrypts secrets (`--secrets-key-file`; default `<data-dir>/secrets.key`,
    /// or `$HEADWATER_SECRETS_KEY`): see `catalog::secrets`.
    pub secrets_key_file: Option<PathBuf>,
    /// Bytes of operator memory one statement may hold (`--query-memory-limit`; default a
    /// quarter of physical memory) and all statements together (`--memory-limit`; default
    /// half): `sql::memory`.
    pub query_memory_limit: Option<usize>,
    pub memory_limit: Option<usize>,
    /// The process's memory ceiling (`--process-memory-limit`; default 90% of physical or
    /// cgroup memory): `alloc::set_process_limit`.
    pub process_memory_limit: Option<usize>,
}

impl Config {
    /// The defaults, listening on `listen` and keeping state in `data_dir`.
    pub fn new(listen: impl Into<String>, data_dir: impl Into<PathBuf>) -> Config {
        Config {
            listen: listen.into(),
            data_dir: data_dir.into(),
            checkpoint_interval: Duration::from_secs(1),
            auth: AuthMode::Trust,
            users_file: None,
            tls: None,
            metrics_listen: None,
            max_connections: 256,
            authentication_timeout: Duration::from_secs(60),
            secrets_key_file: None,
            query_memory_limit: None,
            memory_limit: None,
            process_memory_limit: None,
        }
    }
}

/// Parses a duration option (`--checkpoint-interval`, `--authentication-timeout`): `250ms`,
/// `1s`, `1.5s`, `2m`, or a number of seconds
/// ([`crate::sql::settings::parse_duration`], the one parser), from 1 ms to 1 hour.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let d = crate::sql::settings::parse_duration(text, crate::sql::settings::DurationUnit::Seconds)?;
    if !(Duration::from_millis(1)..=Duration::from_secs(3600)).contains(&d) {
        return Err(format!("{text:?} is out of range (1ms to 1h)"));
    }
    Ok(d)
}

/// Loads the users file and the TLS certificate; refuses `--auth password` without any user.
async fn wire_options(config: &Config, engine: &Arc<Engine>) -> Result<WireOptions> {
    if let Some(path) = &config.users_file {
        let users = crate::catalog::users::read_users_file(path)?;
        for (name, password) in &users {
            engine.users().upsert(name, password)?;
        }
        engine.make_durable().await?;
        tracing::info!(users = users.len(), file = %path.display(), "users file loaded");
    }
    if config.auth == AuthMode::Password && engine.users().names().is_empty() {
        return Err(Error::InvalidParameterValue(
            "--auth password needs at least one user: give --users-file (name:password lines), or start once \
             with --auth trust and run CREATE USER name PASSWORD '...'"
                .into(),
        ));
    }
    let tls = match &config.tls {
        Some((cert, key)) => Some(crate::pgwire::tls::acceptor(cert, key)?),
        None => None,
    };
    Ok(WireOptions {
        auth: config.auth,
        tls,
        max_connections: config.max_connections,
        authentication_timeout: config.authentication_timeout,
    })
}

/// A running server: its address, and the handle that stops it.
pub struct Server {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    engine: Arc<Engine>,
    store: Arc<CheckpointedStore>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    checkpointer: JoinHandle<()>,
    fatal: watch::Receiver<Option<String>>,
}

impl Server {
    /// Opens the data directory, restores the catalog and starts accepting connections.
    pub async fn start(config: &Config) -> Result<Server> {
        Self::start_over(config, Arc::new(CheckpointedStore::open(&config.data_dir)?)).await
    }

    /// [`Server::start`] over a given durable store (`config.data_dir` is only reported; every
    /// row is kept in the store, no table images): for embedding, and for tests that inject
    /// storage faults.
    pub async fn start_on(config: &Config, durable: Arc<dyn StateStore>) -> Result<Server> {
        Self::start_over(config, Arc::new(CheckpointedStore::new(durable))).await
    }

    /// The server over its checkpointed store.
    async fn start_over(config: &Config, store: Arc<CheckpointedStore>) -> Result<Server> {
        let key = if config.data_dir.is_dir() || config.secrets_key_file.is_some() {
            crate::catalog::secrets::SecretKey::load(&config.data_dir, config.secrets_key_file.as_deref())?
        } else {
            tracing::warn!("no data directory: secrets are encrypted with a key that lives as long as this process");
            crate::catalog::secrets::SecretKey::ephemeral()
        };
        let engine = Engine::open_with_key(store.clone(), Arc::new(key)).await?;
        let physical = crate::sql::memory::physical_memory().unwrap_or(8 << 30);
        let server_bytes = config.memory_limit.unwrap_or(physical / 2);
        let query_bytes = config.query_memory_limit.unwrap_or(physical / 4);
        tracing::info!(query_bytes, server_bytes, "memory limits of statements");
        engine.limit_memory(crate::sql::memory::MemoryLimits::new(query_bytes, server_bytes));
        let process_bytes = config.process_memory_limit.unwrap_or(physical / 10 * 9);
        tracing::info!(process_bytes, "memory ceiling of the process");
        crate::alloc::set_process_limit(process_bytes);
        // Temporal filters' rows enter and leave views as time passes.
        engine.dataflow().start_clock();
        let wire = wire_options(config, &engine).await?;
        let listener = TcpListener::bind(&config.listen)
            .await
            .map_err(|e| Error::InvalidParameterValue(format!("cannot listen on {}: {e}", config.listen)))?;
        let local_addr = listener.local_addr().map_err(|e| Error::Internal(e.to_string()))?;
        let (shutdown, rx) = watch::channel(false);
        let metrics_addr = match &config.metrics_listen {
            Some(addr) => {
                let l = TcpListener::bind(addr).await.map_err(|e| {
                    Error::InvalidParameterValue(format!("cannot listen on {addr} for --metrics-listen: {e}"))
                })?;
                let bound = l.local_addr().map_err(|e| Error::Internal(e.to_string()))?;
                tokio::spawn(crate::metrics::serve(Arc::downgrade(&engine), l, rx.clone()));
                Some(bound)
            }
            None => None,
        };
        let task = tokio::spawn(crate::pgwire::serve(engine.clone(), listener, wire, rx.clone()));
        let (fatal_tx, fatal) = watch::channel(None);
        let checkpointer = tokio::spawn(checkpoint_loop(store.clone(), config.checkpoint_interval, rx, fatal_tx));
        tracing::info!(
            %local_addr,
            data_dir = %config.data_dir.display(),
            auth = ?config.auth,
            tls = config.tls.is_some(),
            metrics = ?metrics_addr,
            "Headwater is ready"
        );
        Ok(Server { local_addr, metrics_addr, engine, store, shutdown, task, checkpointer, fatal })
    }

    /// The engine behind the wire (for embedding: in-process benchmarks and tools).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of `GET /metrics`, when `--metrics-listen` was given.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Resolves when the server cannot go on (a checkpoint could not be written), with why.
    pub async fn failed(&mut self) -> String {
        loop {
            if let Some(e) = self.fatal.borrow_and_update().clone() {
                return e;
            }
            if self.fatal.changed().await.is_err() {
                return "the checkpointer stopped".into();
            }
        }
    }

    /// Stops accepting, closes every session, stops the sources and writes a last checkpoint.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        let _ = self.checkpointer.await;
        self.engine.shutdown().await?;
        drop(self.store);
        tracing::info!("checkpoint written, Headwater stopped");
        Ok(())
    }
}

/// Writes a checkpoint every `interval` until shutdown. A failed checkpoint is fatal: the
/// store refuses further writes and the server stops (see `state::checkpoint`).
async fn checkpoint_loop(
    store: Arc<CheckpointedStore>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
    fatal: watch::Sender<Option<String>>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let s = store.clone();
        let result = tokio::task::spawn_blocking(move || s.checkpoint()).await;
        let failure = match result {
            Ok(Ok(_)) => store.failure(),
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(format!("checkpoint task failed: {e}")),
        };
        if let Some(e) = failure {
            tracing::error!("{e}; Headwater stops: the last checkpoint on disk is intact and the sources resume from it after a restart");
            fatal.send_replace(Some(e));
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("1 parsec").is_err());
    }
}
