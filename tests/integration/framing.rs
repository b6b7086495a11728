//! The wire protocol's framing, checked with hand-made messages (issue 30): malformed messages
//! end the connection with FATAL and Postgres' words, text that is not UTF-8 is a statement
//! error (22021) on a connection that stays usable, malformed startup packets are answered,
//! `pg_terminate_backend` says FATAL 57P01, and the server keeps serving everyone else.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::TestServer;

/// A message as the server sent it: its type byte and body.
struct Message(u8, Vec<u8>);

impl Message {
    /// The fields of an ErrorResponse/NoticeResponse, as (code, value).
    fn fields(&self) -> Vec<(u8, String)> {
        self.1
            .split(|b| *b == 0)
            .filter(|f| !f.is_empty())
            .map(|f| (f[0], String::from_utf8_lossy(&f[1..]).into_owned()))
            .collect()
    }

    fn field(&self, code: u8) -> String {
        self.fields().into_iter().find(|(c, _)| *c == code).map(|(_, v)| v).unwrap_or_default()
    }
}

fn typed(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn startup_packet(body: &[u8]) -> Vec<u8> {
    let mut m = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    m.extend_from_slice(&196_608u32.to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Reads one message; `None` at the end of the stream.
async fn read(s: &mut TcpStream) -> Option<Message> {
    let read = async {
        let kind = s.read_u8().await.ok()?;
        let len = s.read_u32().await.ok()? as usize;
        let mut body = vec![0; len - 4];
        s.read_exact(&mut body).await.ok()?;
        Some(Message(kind, body))
    };
    tokio::time::timeout(Duration::from_secs(30), read).await.expect("the server answers within 30 s")
}

/// Reads until ReadyForQuery, returning what came before it.
async fn until_ready(s: &mut TcpStream) -> Vec<Message> {
    let mut seen = Vec::new();
    loop {
        let m = read(s).await.expect("connection open until ReadyForQuery");
        if m.0 == b'Z' {
            return seen;
        }
        seen.push(m);
    }
}

/// A logged-in raw connection.
async fn login(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(&startup_packet(b"user\0headwater\0database\0headwater\0\0")).await.unwrap();
    let seen = until_ready(&mut s).await;
    assert!(seen.iter().all(|m| m.0 != b'E'), "login failed");
    s
}

/// Sends `bytes` and expects FATAL `sqlstate` with `message`, then the end of the stream.
async fn expect_fatal(s: &mut TcpStream, bytes: &[u8], sqlstate: &str, message: &str) {
    s.write_all(bytes).await.unwrap();
    let m = read(s).await.unwrap_or_else(|| panic!("closed without a word instead of FATAL {sqlstate}"));
    assert_eq!(m.0, b'E', "an ErrorResponse");
    assert_eq!((m.field(b'S'), m.field(b'C'), m.field(b'M')), ("FATAL".into(), sqlstate.into(), message.into()));
    assert!(read(s).await.is_none(), "the connection is closed after FATAL");
}

async fn simple_query(s: &mut TcpStream, sql: &str) -> Vec<Message> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    s.write_all(&typed(b'Q', &body)).await.unwrap();
    until_ready(s).await
}

#[tokio::test]
async fn malformed_messages_end_the_connection_with_fatal() {
    let hw = TestServer::start().await;
    let port = hw.port();
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        // A Query of length 3: it ran `SELECT 1` before.
        (b"Q\0\0\0\x03SELECT 1\0".to_vec(), "08P01", "invalid message length"),
        // A Query without its NUL: it read into the next message before.
        ([typed(b'Q', b"SELECT 1"), typed(b'S', b"")].concat(), "08P01", "invalid string in message"),
        (typed(b'Q', b"SELECT 1\0trailing"), "08P01", "invalid message format"),
        (typed(b'y', b""), "08P01", "invalid frontend message type 121"),
        (typed(b'B', b"\0\0\0\0\0\x01\xff\xff\xff\xfe\0\0"), "08P01", "invalid parameter length -2 in bind message"),
        (typed(b'B', b"\0\0\0\x01\0\x07\0\0\0\0"), "08P01", "unsupported format code: 7"),
        (typed(b'D', b"Xs\0"), "08P01", "invalid DESCRIBE message subtype 88"),
        (b"Q\x7f\xff\xff\xff".to_vec(), "08P01", "invalid message length"),
    ];
    for (bytes, sqlstate, message) in cases {
        let mut s = login(port).await;
        expect_fatal(&mut s, &bytes, sqlstate, message).await;
    }
    // Everyone else is still served.
    let c = hw.client().await;
    assert_eq!(c.query_one("SELECT 'served'", &[]).await.unwrap().get::<_, String>(0), "served");
}

#[tokio::test]
async fn malformed_startup_packets_are_answered() {
    let hw = TestServer::start().await;
    let port = hw.port();
    let mut v2 = startup_packet(b"user\0bob\0\0");
    v2[4..8].copy_from_slice(&0x0002_0000u32.to_be_bytes());
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (b"\0\0\0\x05x".to_vec(), "08P01", "invalid length of startup packet"),
        (v2, "0A000", "unsupported frontend protocol 2.0: server supports 3.0 to 3.2"),
        (startup_packet(b"user\0bob\0"), "08P01", "invalid startup packet layout: expected terminator as last byte"),
        (startup_packet(b"database\0x\0\0"), "28000", "no PostgreSQL user name specified in startup packet"),
    ];
    for (bytes, sqlstate, message) in cases {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        expect_fatal(&mut s, &bytes, sqlstate, message).await;
    }
    let c = hw.client().await;
    assert_eq!(c.query_one("SELECT 'served'", &[]).await.unwrap().get::<_, String>(0), "served");
}

#[tokio::test]
async fn text_that_is_not_utf8_is_a_statement_error() {
    let hw = TestServer::start().await;
    let mut s = login(hw.port()).await;
    // Simple protocol: the statement fails with 22021, the connection goes on.
    s.write_all(&typed(b'Q', b"SELECT '\xff\xfe'\0")).await.unwrap();
    let seen = until_ready(&mut s).await;
    let error = seen.iter().find(|m| m.0 == b'E').expect("an error for the invalid text");
    assert_eq!(error.field(b'C'), "22021");
    assert_eq!(error.field(b'M'), "invalid byte sequence for encoding \"UTF8\": 0xff");
    let seen = simple_query(&mut s, "SELECT 7").await;
    assert!(seen.iter().any(|m| m.0 == b'D' && m.1.ends_with(b"7")), "the connection still answers");
    // Extended protocol: Parse fails, the error waits for Sync, then the connection goes on.
    let parse = typed(b'P', b"\0SELECT '\xc3('\0\0\0");
    s.write_all(&[parse, typed(b'S', b"")].concat()).await.unwrap();
    let seen = until_ready(&mut s).await;
    let error = seen.iter().find(|m| m.0 == b'E').expect("an error for the invalid text");
    assert_eq!((error.field(b'S'), error.field(b'C')), ("ERROR".into(), "22021".into()));
    let seen = simple_query(&mut s, "SELECT 8").await;
    assert!(seen.iter().any(|m| m.0 == b'D' && m.1.ends_with(b"8")), "the connection still answers");
}

#[tokio::test]
async fn a_terminated_session_is_told_why() {
    let hw = TestServer::start().await;
    let mut s = login(hw.port()).await;
    let seen = simple_query(&mut s, "SELECT pg_backend_pid()").await;
    let row = seen.iter().find(|m| m.0 == b'D').expect("a row");
    let pid: i32 = String::from_utf8_lossy(&row.1[6..]).parse().expect("a pid");
    let c = hw.client().await;
    let done: bool = c.query_one(&format!("SELECT pg_terminate_backend({pid})"), &[]).await.unwrap().get(0);
    assert!(done);
    let m = read(&mut s).await.expect("FATAL before the close");
    assert_eq!(
        (m.0, m.field(b'S'), m.field(b'C'), m.field(b'M')),
        (b'E', "FATAL".into(), "57P01".into(), "terminating connection due to administrator command".into())
    );
    assert!(read(&mut s).await.is_none(), "closed after FATAL");
}

/// Random mutations of a valid conversation (startup, simple and extended queries) sent to a
/// live server: every connection gets answers or a FATAL and is closed or stays usable, the
/// server never stops serving others. `HEADWATER_WIRE_FUZZ=N` runs N connections (500 here).
#[tokio::test]
async fn mutated_conversations_never_stop_the_server() {
    let runs: usize = std::env::var("HEADWATER_WIRE_FUZZ").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    let hw = TestServer::start().await;
    let port = hw.port();
    let c = hw.client().await;
    c.batch_execute("CREATE TABLE w (id INT PRIMARY KEY, t TEXT); INSERT INTO w VALUES (1, 'a'), (2, 'b')")
        .await
        .unwrap();
    let conversation: Vec<u8> = [
        startup_packet(b"user\0headwater\0database\0headwater\0\0"),
        typed(b'Q', b"SELECT * FROM w ORDER BY id\0"),
        typed(b'P', b"s1\0SELECT t FROM w WHERE id = $1\0\0\x01\0\0\0\x17"),
        typed(b'B', b"\0s1\0\0\x01\0\x01\0\x01\0\0\0\x04\0\0\0\x02\0\x01\0\0"),
        typed(b'D', b"P\0"),
        typed(b'E', b"\0\0\0\0\0"),
        typed(b'S', b""),
        typed(b'Q', b"INSERT INTO w VALUES (3, 'c') ON CONFLICT (id) DO NOTHING\0"),
        typed(b'X', b""),
    ]
    .concat();
    let mut rng = crate::common::Rng(0x5eed_f00d);
    for run in 0..runs {
        let mut bytes = conversation.clone();
        for _ in 0..1 + rng.below(4) {
            if bytes.is_empty() {
                break;
            }
            let at = rng.below(bytes.len() as u64) as usize;
            match rng.below(4) {
                0 => bytes[at] = rng.next() as u8,
                1 => {
                    bytes.remove(at);
                }
                2 => bytes.insert(at, rng.next() as u8),
                _ => bytes.truncate(at),
            }
        }
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let _ = s.write_all(&bytes).await;
        // Half-close: the server sees the end of what the client sends, answers, and closes.
        let _ = s.shutdown().await;
        let mut sink = Vec::new();
        // Generous: a loaded CI machine runs this beside the heaviest suites.
        let read = tokio::time::timeout(Duration::from_secs(90), s.read_to_end(&mut sink)).await;
        assert!(read.is_ok(), "run {run}: the server neither answered nor closed within 90 s after {bytes:?}");
    }
    let rows = c.query("SELECT id FROM w ORDER BY id", &[]).await.expect("the server still serves");
    assert!(rows.len() >= 2);
}
