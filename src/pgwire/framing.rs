//! Strict framing of what a client sends (issue 30: a `Query` of length 3 ran `SELECT 1`, a
//! `Query` without its NUL read into the next message, unknown message types closed the
//! connection without a word, Bind parameter length −2 and format code 7 were accepted,
//! invalid UTF-8 silently became U+FFFD, malformed startup packets got no answer).
//!
//! [`check`] looks at the front of the connection's read buffer before pgwire decodes it and
//! says whether a whole, well-formed message is there. The rules are Postgres's
//! (`src/backend/tcop/postgres.c`, `libpq/pqformat.c`, `postmaster` startup):
//! - a message whose framing is wrong (length below 4 or past the limit of its type, an
//!   unknown type, a string without its NUL, bytes left over, a Bind whose counts or lengths
//!   do not add up) ends the connection with FATAL `08P01`: after it, nothing in the stream
//!   can be trusted to start a message;
//! - text that is not UTF-8 in a `Query` or `Parse` is a data error, not a framing one: the
//!   statement fails with `22021` naming the bytes, the connection stays usable. The message
//!   is rewritten to carry [`INVALID_ENCODING`] and the handler answers the error;
//! - a startup packet of the wrong length, an unknown protocol or no user name: FATAL
//!   (`08P01`, `0A000`, `28000`) instead of a silent close.

/// Prefix of the text a `Query`/`Parse` whose text was not UTF-8 is rewritten to; the rest
/// names the offending bytes. It starts with a private-use character no client sends.
pub const INVALID_ENCODING: &str = "\u{F8FF}hw:invalid-utf8:";

/// Postgres' limit for the startup packet (`MAX_STARTUP_PACKET_LENGTH`).
const MAX_STARTUP: usize = 10_000;
/// Postgres' limit for messages that carry statements or data (`PQ_LARGE_MESSAGE_LIMIT`).
const MAX_LARGE: usize = (1 << 30) - 1;
/// Postgres' limit for every other message (`PQ_SMALL_MESSAGE_LIMIT`).
const MAX_SMALL: usize = 10_000;

const CANCEL_REQUEST: u32 = 80_877_102;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

/// Where the connection is: which messages may come next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The untyped startup packet (or a CancelRequest).
    Startup,
    /// Password / SASL responses only.
    Authentication,
    /// Logged in: queries, the extended protocol, COPY data.
    Session,
}

/// What is at the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A message is still arriving: wait until the buffer holds `need` bytes.
    Incomplete { need: usize },
    /// A well-formed message is at the front.
    Ready,
    /// The first `len` bytes are a message whose text is not UTF-8: replace them by `with`,
    /// the same message carrying [`INVALID_ENCODING`] instead of its text.
    Replace { len: usize, with: Vec<u8> },
    /// A protocol violation: answer FATAL with this SQLSTATE and message, then close.
    Fatal { sqlstate: &'static str, message: String },
}

fn fatal(sqlstate: &'static str, message: impl Into<String>) -> Verdict {
    Verdict::Fatal { sqlstate, message: message.into() }
}

fn violation(message: impl Into<String>) -> Verdict {
    fatal("08P01", message)
}

/// Judges the front of `buf` in `phase`.
pub fn check(phase: Phase, buf: &[u8]) -> Verdict {
    match phase {
        Phase::Startup => check_startup(buf),
        Phase::Authentication | Phase::Session => check_typed(phase, buf),
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn check_startup(buf: &[u8]) -> Verdict {
    if buf.len() < 4 {
        return Verdict::Incomplete { need: 4 };
    }
    let len = be_u32(buf) as usize;
    if !(8..=MAX_STARTUP).contains(&len) {
        return violation("invalid length of startup packet");
    }
    if buf.len() < len {
        return Verdict::Incomplete { need: len };
    }
    let code = be_u32(&buf[4..]);
    match code {
        CANCEL_REQUEST if len >= 16 => return Verdict::Ready,
        CANCEL_REQUEST => return violation("invalid length of cancel request packet"),
        SSL_REQUEST | GSSENC_REQUEST => {
            return violation("unexpected encryption request after the connection was negotiated")
        }
        _ => {}
    }
    let (major, minor) = (code >> 16, code & 0xffff);
    if major != 3 {
        return fatal("0A000", format!("unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.2"));
    }
    let body = &buf[8..len];
    if body.last() != Some(&0) {
        return violation("invalid startup packet layout: expected terminator as last byte");
    }
    // name\0value\0 ... then the terminator
    let layout = || violation("invalid startup packet layout: expected terminator as last byte");
    let mut fields = Reader(&body[..body.len() - 1]);
    let mut has_user = false;
    let mut strings = Vec::new();
    while !fields.0.is_empty() {
        let (Ok(name), Ok(value)) = (fields.cstring(), fields.cstring()) else {
            return layout();
        };
        has_user |= name == b"user" && !value.is_empty();
        strings.push(name);
        strings.push(value);
    }
    for s in strings {
        if let Err(e) = std::str::from_utf8(s) {
            return fatal("22021", invalid_utf8_message(s, &e));
        }
    }
    if !has_user {
        return fatal("28000", "no PostgreSQL user name specified in startup packet");
    }
    Verdict::Ready
}

/// Postgres' wording: `invalid byte sequence for encoding "UTF8": 0xff 0xfe`.
fn invalid_utf8_message(text: &[u8], error: &std::str::Utf8Error) -> String {
    let start = error.valid_up_to();
    let bad = error.error_len().unwrap_or(text.len() - start).clamp(1, 4);
    let bytes: Vec<String> = text[start..(start + bad).min(text.len())].iter().map(|b| format!("0x{b:02x}")).collect();
    format!("invalid byte sequence for encoding \"UTF8\": {}", bytes.join(" "))
}

fn check_typed(phase: Phase, buf: &[u8]) -> Verdict {
    if buf.len() < 5 {
        return Verdict::Incomplete { need: 5 };
    }
    let kind = buf[0];
    let declared = be_u32(&buf[1..]) as usize;
    let limit = match (phase, kind) {
        (Phase::Authentication, b'p') => MAX_SMALL,
        (Phase::Authentication, _) => {
            return violation(format!("expected password response, got message type {kind}"));
        }
        (Phase::Session, b'Q' | b'P' | b'B' | b'd') => MAX_LARGE,
        (Phase::Session, b'E' | b'D' | b'C' | b'H' | b'S' | b'X' | b'c' | b'f') => MAX_SMALL,
        (Phase::Session, b'F') => return fatal("0A000", "the function call message is not supported"),
        _ => return violation(format!("invalid frontend message type {kind}")),
    };
    if declared < 4 || declared > limit {
        return violation("invalid message length");
    }
    let len = 1 + declared;
    if buf.len() < len {
        return Verdict::Incomplete { need: len };
    }
    let mut body = Reader(&buf[5..len]);
    let judged = match kind {
        b'Q' => check_query(&mut body, &buf[..len]),
        b'P' => check_parse(&mut body, &buf[..len]),
        b'B' => check_bind(&mut body),
        b'E' => check_execute(&mut body, &buf[..len]),
        b'D' | b'C' => check_target(kind, &mut body),
        b'f' => body.cstring().map(|_| Verdict::Ready),
        b'd' | b'p' => return Verdict::Ready,
        _ => Ok(Verdict::Ready), // Flush, Sync, Terminate, CopyDone: nothing but the header
    };
    match judged {
        Ok(Verdict::Ready) if !body.0.is_empty() => violation("invalid message format"),
        Ok(verdict) => verdict,
        Err(verdict) => verdict,
    }
}

/// A cursor over a message body; each read fails with Postgres' message.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn cstring(&mut self) -> Result<&'a [u8], Verdict> {
        let Some(end) = self.0.iter().position(|b| *b == 0) else {
            return Err(violation("invalid string in message"));
        };
        let s = &self.0[..end];
        self.0 = &self.0[end + 1..];
        Ok(s)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Verdict> {
        if self.0.len() < n {
            return Err(violation("insufficient data left in message"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, Verdict> {
        self.bytes(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, Verdict> {
        self.bytes(4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn check_query(body: &mut Reader, frame: &[u8]) -> Result<Verdict, Verdict> {
    let text = body.cstring()?;
    if !body.0.is_empty() {
        return Err(violation("invalid message format"));
    }
    Ok(match std::str::from_utf8(text) {
        Ok(_) => Verdict::Ready,
        Err(e) => {
            let mut with = vec![b'Q', 0, 0, 0, 0];
            with.extend_from_slice(marker(text, &e).as_bytes());
            with.push(0);
            Verdict::Replace { len: frame.len(), with: framed(with) }
        }
    })
}

fn check_parse(body: &mut Reader, frame: &[u8]) -> Result<Verdict, Verdict> {
    let name = body.cstring()?;
    let text = body.cstring()?;
    let count = body.u16()?;
    let types = body.bytes(4 * count as usize)?;
    if !body.0.is_empty() {
        return Err(violation("invalid message format"));
    }
    let bad = std::str::from_utf8(name)
        .err()
        .map(|e| (name, e))
        .or_else(|| std::str::from_utf8(text).err().map(|e| (text, e)));
    Ok(match bad {
        None => Verdict::Ready,
        Some((bytes, e)) => {
            let mut with = vec![b'P', 0, 0, 0, 0];
            with.extend_from_slice(String::from_utf8_lossy(name).as_bytes());
            with.push(0);
            with.extend_from_slice(marker(bytes, &e).as_bytes());
            with.push(0);
            with.extend_from_slice(&count.to_be_bytes());
            with.extend_from_slice(types);
            Verdict::Replace { len: frame.len(), with: framed(with) }
        }
    })
}

fn check_bind(body: &mut Reader) -> Result<Verdict, Verdict> {
    body.cstring()?; // portal
    body.cstring()?; // statement
    let formats = body.u16()?;
    for _ in 0..formats {
        format_code(body)?;
    }
    let params = body.u16()?;
    if formats > 1 && formats != params {
        return Err(violation(format!("bind message has {formats} parameter formats but {params} parameters")));
    }
    for _ in 0..params {
        match body.i32()? {
            -1 => {}
            n if n < 0 => return Err(violation(format!("invalid parameter length {n} in bind message"))),
            n => {
                body.bytes(n as usize)?;
            }
        }
    }
    let results = body.u16()?;
    for _ in 0..results {
        format_code(body)?;
    }
    Ok(Verdict::Ready)
}

fn format_code(body: &mut Reader) -> Result<(), Verdict> {
    match body.bytes(2).map(|b| i16::from_be_bytes([b[0], b[1]]))? {
        0 | 1 => Ok(()),
        code => Err(violation(format!("unsupported format code: {code}"))),
    }
}

/// Execute's row limit: zero or less means all rows (Postgres); pgwire reserves room for as
/// many rows as the limit says, so a limit past [`MAX_FETCH`] (a 2-billion-row page would
/// reserve tens of GB and abort the process) is sent on as "all rows".
fn check_execute(body: &mut Reader, frame: &[u8]) -> Result<Verdict, Verdict> {
    body.cstring()?;
    let limit = body.i32()?;
    if !body.0.is_empty() {
        return Err(violation("invalid message format"));
    }
    if (0..=MAX_FETCH).contains(&limit) {
        return Ok(Verdict::Ready);
    }
    let mut with = frame.to_vec();
    let at = with.len() - 4;
    with[at..].copy_from_slice(&0i32.to_be_bytes());
    Ok(Verdict::Replace { len: frame.len(), with })
}

/// The largest Execute row limit passed on as it is.
const MAX_FETCH: i32 = 1 << 20;

fn check_target(kind: u8, body: &mut Reader) -> Result<Verdict, Verdict> {
    let what = body.bytes(1)?[0];
    if what != b'S' && what != b'P' {
        let message = if kind == b'D' { "DESCRIBE" } else { "CLOSE" };
        return Err(violation(format!("invalid {message} message subtype {what}")));
    }
    body.cstring()?;
    Ok(Verdict::Ready)
}

/// The text a message whose `text` is not UTF-8 carries instead.
fn marker(text: &[u8], error: &std::str::Utf8Error) -> String {
    format!("{INVALID_ENCODING}{}", invalid_utf8_message(text, error))
}

/// Fills in the length of a message built with a placeholder one.
fn framed(mut message: Vec<u8>) -> Vec<u8> {
    let len = (message.len() - 1) as u32;
    message[1..5].copy_from_slice(&len.to_be_bytes());
    message
}

/// The error a statement rewritten by [`check`] answers: `22021` with Postgres' message.
pub fn invalid_encoding(text: &str) -> Option<&str> {
    text.strip_prefix(INVALID_ENCODING)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn typed(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn startup(body: &[u8]) -> Vec<u8> {
        let mut m = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        m.extend_from_slice(&196_608u32.to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn code(v: Verdict) -> String {
        match v {
            Verdict::Fatal { sqlstate, message } => format!("{sqlstate} {message}"),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn well_formed_messages_pass() {
        assert_eq!(check(Phase::Session, &typed(b'Q', b"SELECT 1\0")), Verdict::Ready);
        assert_eq!(check(Phase::Session, &typed(b'S', b"")), Verdict::Ready);
        assert_eq!(check(Phase::Session, &typed(b'P', b"s1\0SELECT $1\0\0\x01\0\0\0\x17")), Verdict::Ready);
        let bind = b"\0s1\0\0\x01\0\x01\0\x01\0\0\0\x04\0\0\0\x07\0\x01\0\0";
        assert_eq!(check(Phase::Session, &typed(b'B', bind)), Verdict::Ready);
        assert_eq!(check(Phase::Session, &typed(b'B', b"\0\0\0\0\0\x01\xff\xff\xff\xff\0\0")), Verdict::Ready);
        assert_eq!(check(Phase::Session, &typed(b'E', b"\0\0\0\0\0")), Verdict::Ready);
        assert_eq!(check(Phase::Session, &typed(b'D', b"Ss1\0")), Verdict::Ready);
        assert_eq!(check(Phase::Session, &typed(b'E', b"p\0\0\0\x03\xe8")), Verdict::Ready);
        assert_eq!(check(Phase::Startup, &startup(b"user\0bob\0database\0db\0\0")), Verdict::Ready);
        assert_eq!(check(Phase::Authentication, &typed(b'p', b"secret\0")), Verdict::Ready);
    }

    #[test]
    fn partial_messages_wait_for_their_bytes() {
        let q = typed(b'Q', b"SELECT 1\0");
        assert_eq!(check(Phase::Session, &q[..3]), Verdict::Incomplete { need: 5 });
        assert_eq!(check(Phase::Session, &q[..7]), Verdict::Incomplete { need: q.len() });
        let s = startup(b"user\0bob\0\0");
        assert_eq!(check(Phase::Startup, &s[..6]), Verdict::Incomplete { need: s.len() });
    }

    #[test]
    fn violations_are_fatal_with_postgres_words() {
        // A Query of length 3 (issue 30 ran `SELECT 1` from it).
        assert_eq!(code(check(Phase::Session, b"Q\0\0\0\x03SELECT 1\0")), "08P01 invalid message length");
        assert_eq!(code(check(Phase::Session, &typed(b'Q', b"SELECT 1"))), "08P01 invalid string in message");
        assert_eq!(code(check(Phase::Session, &typed(b'Q', b"SELECT 1\0x"))), "08P01 invalid message format");
        assert_eq!(code(check(Phase::Session, &typed(b'z', b""))), "08P01 invalid frontend message type 122");
        assert_eq!(code(check(Phase::Session, &typed(b'S', b"x"))), "08P01 invalid message format");
        let minus_two = b"\0\0\0\0\0\x01\xff\xff\xff\xfe\0\0";
        assert_eq!(
            code(check(Phase::Session, &typed(b'B', minus_two))),
            "08P01 invalid parameter length -2 in bind message"
        );
        let format_seven = b"\0\0\0\x01\0\x07\0\0\0\0";
        assert_eq!(code(check(Phase::Session, &typed(b'B', format_seven))), "08P01 unsupported format code: 7");
        let too_long = b"\0\0\0\0\0\x01\0\0\0\x09ab\0\0";
        assert_eq!(code(check(Phase::Session, &typed(b'B', too_long))), "08P01 insufficient data left in message");
        assert_eq!(code(check(Phase::Session, &typed(b'D', b"Xs\0"))), "08P01 invalid DESCRIBE message subtype 88");
        assert_eq!(code(check(Phase::Session, &typed(b'F', b""))), "0A000 the function call message is not supported");
        assert_eq!(
            code(check(Phase::Authentication, &typed(b'Q', b"SELECT 1\0"))),
            "08P01 expected password response, got message type 81"
        );
        assert_eq!(code(check(Phase::Session, b"Q\x7f\xff\xff\xff")), "08P01 invalid message length");
    }

    #[test]
    fn malformed_startup_packets_are_answered() {
        assert_eq!(code(check(Phase::Startup, b"\0\0\0\x04")), "08P01 invalid length of startup packet");
        assert_eq!(code(check(Phase::Startup, b"\0\x01\0\0")), "08P01 invalid length of startup packet");
        let mut v2 = startup(b"user\0bob\0\0");
        v2[4..8].copy_from_slice(&0x0002_0000u32.to_be_bytes());
        assert_eq!(
            code(check(Phase::Startup, &v2)),
            "0A000 unsupported frontend protocol 2.0: server supports 3.0 to 3.2"
        );
        assert_eq!(
            code(check(Phase::Startup, &startup(b"user\0bob\0"))),
            "08P01 invalid startup packet layout: expected terminator as last byte"
        );
        assert_eq!(
            code(check(Phase::Startup, &startup(b"user\0\0"))),
            "08P01 invalid startup packet layout: expected terminator as last byte"
        );
        assert_eq!(
            code(check(Phase::Startup, &startup(b"database\0db\0\0"))),
            "28000 no PostgreSQL user name specified in startup packet"
        );
        assert_eq!(
            code(check(Phase::Startup, &startup(b"user\0b\xffb\0\0"))),
            "22021 invalid byte sequence for encoding \"UTF8\": 0xff"
        );
    }

    #[test]
    fn invalid_utf8_text_becomes_a_statement_error() {
        let q = typed(b'Q', b"SELECT '\xff\xfe'\0");
        let Verdict::Replace { len, with } = check(Phase::Session, &q) else { panic!("not replaced") };
        assert_eq!(len, q.len());
        assert_eq!(check(Phase::Session, &with), Verdict::Ready, "the replacement is well formed");
        let text = std::str::from_utf8(&with[5..with.len() - 1]).unwrap();
        assert_eq!(invalid_encoding(text), Some("invalid byte sequence for encoding \"UTF8\": 0xff"));
        let p = typed(b'P', b"s\0SELECT '\xc3'\0\0\x01\0\0\0\x17");
        let Verdict::Replace { with, .. } = check(Phase::Session, &p) else { panic!("not replaced") };
        assert_eq!(check(Phase::Session, &with), Verdict::Ready);
        assert!(with.ends_with(b"\0\0\x01\0\0\0\x17"), "the parameter types are kept");
    }

    #[test]
    fn huge_or_negative_row_limits_mean_all_rows() {
        for limit in [-1i32, i32::MIN, i32::MAX, MAX_FETCH + 1] {
            let mut body = b"p\0".to_vec();
            body.extend_from_slice(&limit.to_be_bytes());
            let Verdict::Replace { with, .. } = check(Phase::Session, &typed(b'E', &body)) else { panic!("{limit}") };
            assert_eq!(with, typed(b'E', b"p\0\0\0\0\0"));
        }
    }

    proptest! {
        /// Any byte string gets a verdict (no panic), a Ready verdict never exceeds the
        /// buffer, and a replacement is itself well formed.
        #[test]
        fn any_bytes_get_a_verdict(bytes in proptest::collection::vec(any::<u8>(), 0..64), kind in prop::sample::select(b"QPBEDCHSXdcfpFz".to_vec())) {
            let mut message = vec![kind];
            message.extend_from_slice(&((bytes.len() + 4) as u32).to_be_bytes());
            message.extend_from_slice(&bytes);
            for phase in [Phase::Session, Phase::Authentication] {
                if let Verdict::Replace { len, with } = check(phase, &message) {
                    prop_assert_eq!(len, message.len());
                    prop_assert_eq!(check(phase, &with), Verdict::Ready);
                }
                let _ = check(phase, &bytes);
            }
            let _ = check(Phase::Startup, &bytes);
            let mut packet = ((bytes.len() + 8) as u32).to_be_bytes().to_vec();
            packet.extend_from_slice(&196_608u32.to_be_bytes());
            packet.extend_from_slice(&bytes);
            let _ = check(Phase::Startup, &packet);
        }
    }
}
