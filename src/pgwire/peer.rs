//! Noticing that a client went away while its statement runs (issue 30: a query kept a core
//! busy after its client disconnected).
//!
//! pgwire reads the socket only between statements, so a client that disconnects during a
//! long statement is not seen until the result is written. A second handle on the socket (a
//! `dup` of its descriptor) lets the statement's future wait for the end of the stream
//! without consuming anything: `peek` returns 0 bytes once the client has closed. If the
//! client has already sent its next message (pipelining), the bytes are left for pgwire and
//! the check is repeated now and then.

use std::os::fd::{AsRawFd, FromRawFd};
use std::time::Duration;

/// How often a socket with unread bytes is checked again.
const RECHECK: Duration = Duration::from_millis(250);

/// A second handle on a client's socket.
#[derive(Debug)]
pub struct Peer(tokio::net::TcpStream);

impl Peer {
    /// A handle on `socket`'s connection; `None` if the descriptor cannot be duplicated (the
    /// server then simply does not notice disconnects early).
    pub fn of(socket: &tokio::net::TcpStream) -> Option<Peer> {
        // SAFETY: dup(2) of a valid descriptor we own; the copy is owned by the new stream.
        let fd = unsafe { libc::dup(socket.as_raw_fd()) };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` is a fresh descriptor of a connected TCP socket, owned by nothing else.
        let std = unsafe { std::net::TcpStream::from_raw_fd(fd) };
        std.set_nonblocking(true).ok()?;
        tokio::net::TcpStream::from_std(std).ok().map(Peer)
    }
}

/// Completes when the client has closed its side (never, for `None`).
pub async fn closed(peer: Option<&Peer>) {
    let Some(Peer(stream)) = peer else { return std::future::pending().await };
    let mut byte = [0u8; 1];
    loop {
        match stream.peek(&mut byte).await {
            Ok(0) => return,
            Ok(_) => tokio::time::sleep(RECHECK).await,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A reset connection is gone too.
            Err(_) => return,
        }
    }
}
