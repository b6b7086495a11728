//! Connection limits, as Postgres has them: `--max-connections` (a client past it is told
//! `53300` "sorry, too many clients already" and disconnected) and
//! `--authentication-timeout` (a client that has not logged in by then is disconnected, so
//! half-open connections cannot pile up and lock everyone out).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::cancel::Cancels;

/// How long a refused client has to send its startup packet.
const REFUSAL_WAIT: Duration = Duration::from_secs(5);

/// Protocol codes of the packets a client may open with.
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;

/// Answers a connection over the limit as Postgres does: reads its startup packet (declining
/// TLS, so the answer can be read), then sends FATAL 53300 and closes. A cancel request is
/// still carried out: a full server must let clients stop what runs.
pub async fn refuse_too_many(mut socket: TcpStream, peer: SocketAddr, max: usize, cancels: Arc<Cancels>) {
    tracing::warn!(%peer, max, "connection refused: --max-connections reached");
    let answer = async {
        loop {
            let len = socket.read_i32().await?;
            if !(8..=10_000).contains(&len) {
                return Ok(());
            }
            let mut body = vec![0u8; len as usize - 4];
            socket.read_exact(&mut body).await?;
            let code = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
            match code {
                SSL_REQUEST | GSSENC_REQUEST => socket.write_all(b"N").await?,
                CANCEL_REQUEST if body.len() >= 8 => {
                    let pid = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
                    cancels.cancel(pid, &body[8..]);
                    return Ok(());
                }
                _ => break,
            }
        }
        let message = format!("sorry, too many clients already (--max-connections is {max})");
        socket.write_all(&fatal("53300", &message)).await?;
        socket.flush().await
    };
    let _: Result<std::io::Result<()>, _> = tokio::time::timeout(REFUSAL_WAIT, answer).await;
}

/// An ErrorResponse with severity FATAL.
pub(super) fn fatal(sqlstate: &str, message: &str) -> Vec<u8> {
    let mut fields = Vec::new();
    for (kind, value) in [(b'S', "FATAL"), (b'V', "FATAL"), (b'C', sqlstate), (b'M', message)] {
        fields.push(kind);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut out = vec![b'E'];
    out.extend_from_slice(&((fields.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(&fields);
    out
}

/// Runs a client's `session`, cut off when the client has not logged in (`authenticated`)
/// within `timeout`.
pub async fn logged_in_within<E>(
    session: impl Future<Output = Result<(), E>>,
    authenticated: &AtomicBool,
    timeout: Duration,
    peer: SocketAddr,
) -> Result<(), E> {
    tokio::pin!(session);
    tokio::select! {
        result = &mut session => return result,
        _ = tokio::time::sleep(timeout) => {}
    }
    if !authenticated.load(Ordering::SeqCst) {
        tracing::info!(%peer, ?timeout, "client did not log in within --authentication-timeout: disconnected");
        return Ok(());
    }
    session.await
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_fatal_error_response_is_framed_as_postgres_frames_it() {
        let bytes = super::fatal("53300", "full");
        assert_eq!(bytes[0], b'E');
        let len = i32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        assert_eq!(len + 1, bytes.len(), "the length counts itself, not the type byte");
        assert_eq!(&bytes[5..], b"SFATAL\0VFATAL\0C53300\0Mfull\0\0");
    }
}
