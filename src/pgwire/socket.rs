//! One client connection's message loop: pgwire's `process_socket`, with every message
//! checked by [`framing`] before pgwire decodes it, protocol violations
//! answered with FATAL instead of a silent close, and `pg_terminate_backend` ending the
//! session with FATAL `57P01` as Postgres does.

use std::io;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::ErrorInfo;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{negotiate_tls, process_error, process_message, MaybeTls, PgWireMessageServerCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use super::framing::{self, Phase, Verdict};
use super::handler::{Connection, Lifecycle, Prepared};

type Socket = Framed<MaybeTls, PgWireMessageServerCodec<Prepared>>;

/// How one step of the loop ended.
enum Flow {
    Continue,
    /// The client left (EOF, Terminate, a broken socket).
    Closed,
    /// Tell the client why, then close.
    Fatal(&'static str, String),
}

/// Serves `tcp` until the client leaves, breaks the protocol, or is terminated.
pub async fn serve(
    tcp: TcpStream,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    conn: Arc<Connection>,
    life: Arc<Lifecycle>,
) -> io::Result<()> {
    if let Some((sqlstate, message)) = first_packet_refused(&tcp).await? {
        tracing::info!(peer = ?tcp.peer_addr().ok(), sqlstate, "protocol violation: {message}");
        let mut tcp = tcp;
        let _ = tcp.write_all(&super::limits::fatal(sqlstate, &message)).await;
        let _ = tcp.shutdown().await;
        return Ok(());
    }
    let Some(mut socket) = negotiate_tls::<Prepared>(tcp, tls).await? else {
        return Ok(());
    };
    // The codec reads the socket itself when its buffer was empty at the start; the first
    // message is read here, and the frame rebuilt so the codec sees it as already buffered.
    // Later messages are always whole in the buffer before the codec is asked (the frame
    // stays readable once a decode has succeeded).
    match next_frame(&mut socket).await? {
        Flow::Continue => {}
        Flow::Closed => {
            let _ = socket.close().await;
            return Ok(());
        }
        Flow::Fatal(sqlstate, message) => return goodbye(&mut socket, sqlstate, message).await,
    }
    let mut socket = Framed::from_parts(socket.into_parts());
    loop {
        // Biased: a terminated session must not serve one more statement because its
        // socket happened to be ready in the same wake-up.
        let flow = tokio::select! {
            biased;
            _ = life.terminate.notified() => {
                Flow::Fatal("57P01", "terminating connection due to administrator command".into())
            }
            flow = step(&mut socket, &conn) => flow?,
        };
        match flow {
            Flow::Continue => {}
            Flow::Closed => {
                // An explicit shutdown sends the FIN now: the socket's descriptor is also held
                // by the disconnect watcher (`peer`), so dropping it alone would not.
                let _ = socket.close().await;
                return Ok(());
            }
            Flow::Fatal(sqlstate, message) => return goodbye(&mut socket, sqlstate, message).await,
        }
    }
}

/// The first packet's length, checked before pgwire's TLS negotiation reads it (pgwire waits
/// for 8 bytes, so a shorter packet would hang until the authentication timeout).
async fn first_packet_refused(tcp: &TcpStream) -> io::Result<Option<(&'static str, String)>> {
    let mut head = [0u8; 4];
    // Fewer than 4 bytes so far: peek returns at once while any byte is unread (also after
    // the client closed), so wait a little for the rest, then let the codec deal with it.
    for _ in 0..100 {
        let n = tcp.peek(&mut head).await?;
        if n == 0 || head[0] == TLS_HANDSHAKE {
            return Ok(None);
        }
        if n == head.len() {
            return Ok(match framing::check(Phase::Startup, &head) {
                Verdict::Fatal { sqlstate, message } => Some((sqlstate, message)),
                _ => None,
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Ok(None)
}

/// The first byte of a TLS ClientHello (direct TLS, without an SSLRequest).
const TLS_HANDSHAKE: u8 = 0x16;

/// Tells the client why the connection ends (FATAL), then closes it.
async fn goodbye(socket: &mut Socket, sqlstate: &'static str, message: String) -> io::Result<()> {
    if sqlstate == "57P01" {
        tracing::info!(peer = %socket.socket_addr(), "session terminated by pg_terminate_backend");
    } else {
        tracing::info!(peer = %socket.socket_addr(), sqlstate, "protocol violation: {message}");
    }
    let info = ErrorInfo::new("FATAL".into(), sqlstate.into(), message);
    // The client may be gone already; closing is all that is left either way.
    let _ = socket.send(PgWireBackendMessage::ErrorResponse(info.into())).await;
    let _ = socket.close().await;
    Ok(())
}

/// Reads, checks and handles one message.
async fn step(socket: &mut Socket, conn: &Arc<Connection>) -> io::Result<Flow> {
    match next_frame(socket).await? {
        Flow::Continue => {}
        other => return Ok(other),
    }
    let msg = match socket.next().await {
        Some(Ok(msg)) => msg,
        None => return Ok(Flow::Closed),
        // The frame passed `framing::check`, so this is pgwire refusing what it holds.
        Some(Err(e)) => return Ok(Flow::Fatal("08P01", e.to_string())),
    };
    // Terminate: the client is leaving; some (asyncpg) wait for the server to close.
    if matches!(msg, PgWireFrontendMessage::Terminate(_)) {
        return Ok(Flow::Closed);
    }
    let is_extended_query = match socket.state() {
        PgWireConnectionState::CopyInProgress(is_extended_query) => is_extended_query,
        _ => msg.is_extended_query(),
    };
    let handled = process_message(
        msg,
        socket,
        conn.startup.clone(),
        conn.parser.clone(),
        conn.parser.clone(),
        conn.parser.clone(),
        conn.cancels.clone(),
    )
    .await;
    if let Err(mut e) = handled {
        conn.error_handler().on_error(socket, &mut e);
        process_error(socket, e, is_extended_query).await?;
    }
    // An Execute that started a COPY FROM STDIN: its CopyInResponse must reach the client
    // now (it sends no Sync before the data, and `Batched` holds replies until Sync).
    if matches!(socket.state(), PgWireConnectionState::CopyInProgress(true)) {
        socket.flush().await?;
    }
    Ok(Flow::Continue)
}

/// Makes sure a whole, well-formed message is at the front of the read buffer.
async fn next_frame(socket: &mut Socket) -> io::Result<Flow> {
    loop {
        let phase = match socket.state() {
            PgWireConnectionState::AwaitingSslRequest | PgWireConnectionState::AwaitingStartup => Phase::Startup,
            PgWireConnectionState::AuthenticationInProgress => Phase::Authentication,
            _ => Phase::Session,
        };
        match framing::check(phase, socket.read_buffer()) {
            Verdict::Ready => break,
            Verdict::Replace { len, with } => {
                let buf = socket.read_buffer_mut();
                let rest = buf.split_off(len);
                buf.clear();
                buf.extend_from_slice(&with);
                buf.unsplit(rest);
                break;
            }
            Verdict::Fatal { sqlstate, message } => return Ok(Flow::Fatal(sqlstate, message)),
            Verdict::Incomplete { need } => {
                let mut buf = std::mem::take(socket.read_buffer_mut());
                buf.reserve(need.saturating_sub(buf.len()));
                let read = socket.get_mut().read_buf(&mut buf).await;
                *socket.read_buffer_mut() = buf;
                match read {
                    Ok(0) | Err(_) => return Ok(Flow::Closed),
                    Ok(_) => {}
                }
            }
        }
    }
    Ok(Flow::Continue)
}
