//! The Postgres wire protocol edge (pgwire).
//!
//! [`serve`] accepts TCP connections (TLS when [`WireOptions::tls`] is set: clients that send
//! an SSLRequest get TLS, `sslmode=require` works) and gives each its own
//! [`handler::Connection`]: one [`Session`](crate::sql::Session) with its settings and
//! DataFusion context, answering the startup handshake ([`startup`]: trust or SCRAM-SHA-256),
//! simple queries and the extended protocol (Parse/Bind/Describe/Execute), and CancelRequests
//! ([`cancel`]). Results become pgwire responses in [`encode`], with
//! arrow-pg doing the Arrow → text/binary encoding and [`Error`](crate::Error)s becoming
//! `ErrorResponse`s with their SQLSTATE and hint.

mod batched;
mod cancel;
mod encode;
mod handler;
mod startup;
pub mod tls;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use startup::AuthMode;

use crate::sql::Engine;

/// How the listener treats clients.
#[derive(Clone, Default)]
pub struct WireOptions {
    /// `--auth`.
    pub auth: AuthMode,
    /// `--tls-cert`/`--tls-key`, loaded ([`tls::acceptor`]).
    pub tls: Option<pgwire::tokio::TlsAcceptor>,
}

impl std::fmt::Debug for WireOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireOptions").field("auth", &self.auth).field("tls", &self.tls.is_some()).finish()
    }
}

/// Accepts connections until `shutdown` turns true, then closes every session.
pub async fn serve(
    engine: Arc<Engine>,
    listener: TcpListener,
    options: WireOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let cancels = Arc::new(cancel::Cancels::default());
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    let conn = Arc::new(handler::Connection::new(engine.session(), options.auth, cancels.clone()));
                    let tls = options.tls.clone();
                    sessions.spawn(async move {
                        tracing::debug!(%peer, "session started");
                        if let Err(e) = pgwire::tokio::process_socket(socket, tls, conn).await {
                            tracing::debug!(%peer, "session ended with error: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    tracing::info!(sessions = sessions.len(), "closing sessions");
    sessions.shutdown().await;
}
