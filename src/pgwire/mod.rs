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
mod copy;
mod encode;
mod framing;
mod handler;
mod limits;
mod params;
mod peer;
mod socket;
mod startup;
mod throttle;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use startup::AuthMode;

/// Connections over `--max-connections` being answered at once; more are closed unanswered.
const MAX_REFUSALS: usize = 64;

use crate::sql::Engine;

/// How the listener treats clients.
#[derive(Clone)]
pub struct WireOptions {
    /// `--auth`.
    pub auth: AuthMode,
    /// `--tls-cert`/`--tls-key`, loaded ([`tls::acceptor`]).
    pub tls: Option<pgwire::tokio::TlsAcceptor>,
    /// `--max-connections`: sessions beyond it are refused with 53300.
    pub max_connections: usize,
    /// `--authentication-timeout`: a client not logged in by then is disconnected.
    pub authentication_timeout: Duration,
}

impl Default for WireOptions {
    fn default() -> Self {
        WireOptions {
            auth: AuthMode::default(),
            tls: None,
            max_connections: 256,
            authentication_timeout: Duration::from_secs(60),
        }
    }
}

impl std::fmt::Debug for WireOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireOptions")
            .field("auth", &self.auth)
            .field("tls", &self.tls.is_some())
            .field("max_connections", &self.max_connections)
            .field("authentication_timeout", &self.authentication_timeout)
            .finish()
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
    // Connections over the limit, each told so (bounded: past it they are just closed).
    let mut refusals = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    if sessions.len() >= options.max_connections {
                        if refusals.len() < MAX_REFUSALS {
                            refusals.spawn(limits::refuse_too_many(socket, peer, options.max_connections, cancels.clone()));
                        }
                        continue;
                    }
                    let _ = socket.set_nodelay(true);
                    let life = Arc::new(handler::Lifecycle::default());
                    if let Some(peer) = peer::Peer::of(&socket) {
                        let _ = life.peer.set(peer);
                    }
                    let conn = Arc::new(handler::Connection::new(
                        engine.session(),
                        options.auth,
                        cancels.clone(),
                        life.clone(),
                    ));
                    let tls = options.tls.clone();
                    let timeout = options.authentication_timeout;
                    sessions.spawn(async move {
                        tracing::debug!(%peer, "session started");
                        let session = socket::serve(socket, tls, conn, life.clone());
                        let session = limits::logged_in_within(session, &life.authenticated, timeout, peer);
                        if let Err(e) = session.await {
                            tracing::debug!(%peer, "session ended with error: {e}");
                        }
                        // Dropping the session closes its socket.
                    });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            Some(_) = refusals.join_next(), if !refusals.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    tracing::info!(sessions = sessions.len(), "closing sessions");
    sessions.shutdown().await;
}

/// The fuzzing entry for what a client sends (`fuzz/fuzz_targets/wire_messages.rs`, run by
/// `scripts/fuzz.sh`): `data` as the front of a connection's read buffer in each phase, through
/// the framing check and, where that lets a message through, pgwire's decoder — every byte a
/// client sends reaches these two before any statement. Must never panic.
#[doc(hidden)]
pub fn fuzz_frame(data: &[u8]) {
    use ::pgwire::messages::{DecodeContext, PgWireFrontendMessage, ProtocolVersion};
    use framing::{Phase, Verdict};
    for phase in [Phase::Startup, Phase::Authentication, Phase::Session] {
        let mut buf = bytes::BytesMut::from(data);
        match framing::check(phase, &buf) {
            Verdict::Ready => {}
            Verdict::Replace { len, with } => {
                let rest = buf.split_off(len);
                buf.clear();
                buf.extend_from_slice(&with);
                buf.unsplit(rest);
            }
            Verdict::Incomplete { .. } | Verdict::Fatal { .. } => continue,
        }
        let mut ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
        if phase != Phase::Startup {
            ctx.awaiting_frontend_ssl = false;
            ctx.awaiting_frontend_startup = false;
        }
        let _ = PgWireFrontendMessage::decode(&mut buf, &ctx);
    }
}
