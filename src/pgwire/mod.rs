//! The Postgres wire protocol edge (pgwire).
//!
//! [`serve`] accepts TCP connections and gives each its own [`handler::Connection`]: one
//! [`Session`](crate::sql::Session) with its settings and DataFusion context, answering the
//! startup handshake ([`startup`]), simple queries and the extended protocol
//! (Parse/Bind/Describe/Execute). Results become pgwire responses in [`encode`], with
//! arrow-pg doing the Arrow → text/binary encoding and [`Error`](crate::Error)s becoming
//! `ErrorResponse`s with their SQLSTATE and hint.

mod encode;
mod handler;
mod startup;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::sql::Engine;

/// Accepts connections until `shutdown` turns true, then closes every session.
pub async fn serve(engine: Arc<Engine>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    let conn = Arc::new(handler::Connection::new(engine.session()));
                    sessions.spawn(async move {
                        tracing::debug!(%peer, "session started");
                        if let Err(e) = pgwire::tokio::process_socket(socket, None, conn).await {
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
