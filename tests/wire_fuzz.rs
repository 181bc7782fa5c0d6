//! The frontend against a server that lies: a fake server plays a whole session (sign-in,
//! preparing a statement, a portal fetched in two batches, a query, an error) and corrupts one
//! of its messages — bytes flipped, a length that lies, a message cut short, random bytes, a
//! stray message, a stall in the middle of a message — and then closes its side.
//!
//! Whatever arrives, every session must end in an error (the last step always reads past
//! the server's end), without a panic, within its timeout, and without holding more memory
//! than a few read chunks: a corrupt length may not make the frontend allocate what the
//! server never sent. Cases are deterministic: a failure names its case number, and
//! `WIRE_FUZZ_CASES` runs more of them.

use crate::support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fivetran_source::source::wire::tls::TlsMode;
use fivetran_source::source::wire::{
    ConnectOptions, Connection, DataRowColumns, Fetched, Format, WireError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Counts the bytes the process holds, and the most it held since the last reset.
struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only a counter is kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`, passed on.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            let held = HELD.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(held, Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: `pointer` came from this allocator, that is from System, with `layout`.
        unsafe { System.dealloc(pointer, layout) };
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for dealloc; the caller's contract for `realloc`, passed on.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            if new_size > layout.size() {
                let grown = new_size - layout.size();
                let held = HELD.fetch_add(grown, Ordering::Relaxed) + grown;
                PEAK.fetch_max(held, Ordering::Relaxed);
            } else {
                HELD.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The cases `cargo test` runs; `WIRE_FUZZ_CASES` sets another number.
const DEFAULT_CASES: u64 = 2500;
/// The session's connect timeout, which also bounds a stall in the middle of a message.
const STALL_TIMEOUT: Duration = Duration::from_millis(100);
/// No case may take longer, whatever the server does.
const CASE_LIMIT: Duration = Duration::from_secs(10);
/// What one session may hold at most beyond what the process held before it: a few 64 KiB
/// read chunks and one 4 MiB reservation step, far below the 256 MiB message cap.
const MEMORY_LIMIT: usize = 16 << 20;

/// SplitMix64: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend((body.len() as i32 + 4).to_be_bytes());
    out.extend(body);
    out
}

fn cstring(text: &str) -> Vec<u8> {
    let mut out = text.as_bytes().to_vec();
    out.push(0);
    out
}

fn authentication(code: i32, data: &[u8]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend(data);
    message(b'R', &body)
}

fn row_description(names: &[&str]) -> Vec<u8> {
    let mut body = (names.len() as i16).to_be_bytes().to_vec();
    for name in names {
        body.extend(cstring(name));
        body.extend(0i32.to_be_bytes()); // table
        body.extend(0i16.to_be_bytes()); // column number
        body.extend(25i32.to_be_bytes()); // TEXT
        body.extend((-1i16).to_be_bytes()); // type length
        body.extend((-1i32).to_be_bytes()); // type modifier
        body.extend(0i16.to_be_bytes()); // format
    }
    message(b'T', &body)
}

fn data_row(values: &[Option<&str>]) -> Vec<u8> {
    let mut body = (values.len() as i16).to_be_bytes().to_vec();
    for value in values {
        match value {
            Some(text) => {
                body.extend((text.len() as i32).to_be_bytes());
                body.extend(text.as_bytes());
            }
            None => body.extend((-1i32).to_be_bytes()),
        }
    }
    message(b'D', &body)
}

fn error_response() -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "ERROR"),
        (b'V', "ERROR"),
        (b'C', "42703"),
        (b'M', "column \"broken\" does not exist"),
    ] {
        body.push(field);
        body.extend(cstring(value));
    }
    body.push(0);
    message(b'E', &body)
}

/// The server's side of the session [`client_session`] runs, message by message.
fn script(rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    // Sign-in by one of the methods the frontend answers (or refuses: cleartext without TLS).
    match rng.below(4) {
        0 => {}
        1 => messages.push(authentication(5, b"salt")),
        2 => {
            let mut data = 0i32.to_be_bytes().to_vec();
            data.extend(4i32.to_be_bytes());
            data.extend(b"salt");
            data.extend(8i32.to_be_bytes());
            data.extend(b"nonce-01");
            messages.push(authentication(13, &data));
        }
        _ => messages.push(authentication(10, b"SCRAM-SHA-256\0\0")),
    }
    messages.push(authentication(0, &[]));
    let mut parameter = cstring("server_version");
    parameter.extend(cstring("8.0.2"));
    messages.push(message(b'S', &parameter));
    let mut key = 7i32.to_be_bytes().to_vec();
    key.extend(11i32.to_be_bytes());
    messages.push(message(b'K', &key));
    messages.push(message(b'Z', b"I"));
    // prepare: ParseComplete, ParameterDescription, RowDescription, ReadyForQuery.
    messages.push(message(b'1', &[]));
    messages.push(message(b't', &0i16.to_be_bytes()));
    messages.push(row_description(&["id", "name"]));
    messages.push(message(b'Z', b"T"));
    // The portal's first batch: BindComplete, rows, PortalSuspended, ReadyForQuery.
    messages.push(message(b'2', &[]));
    messages.push(data_row(&[Some("1"), Some("one")]));
    messages.push(data_row(&[Some("2"), None]));
    messages.push(message(b's', &[]));
    messages.push(message(b'Z', b"T"));
    // Its second and last batch.
    messages.push(data_row(&[Some("3"), Some("three")]));
    messages.push(message(b'C', &cstring("SELECT 3")));
    messages.push(message(b'Z', b"T"));
    // A query with text results.
    messages.push(message(b'1', &[]));
    messages.push(message(b'2', &[]));
    messages.push(data_row(&[Some("42")]));
    messages.push(message(b'C', &cstring("SELECT 1")));
    messages.push(message(b'Z', b"I"));
    // A simple query that fails.
    messages.push(error_response());
    messages.push(message(b'Z', b"I"));
    messages
}

/// How the server corrupts the message it picked.
enum Corruption {
    /// These bytes instead, then the rest of the script (or not), then the end of the stream.
    Send { bytes: Vec<u8>, rest: bool },
    /// Part of the message, then nothing, the socket left open.
    Stall(Vec<u8>),
}

fn corrupt(original: &[u8], rng: &mut Rng) -> Corruption {
    let mut bytes = original.to_vec();
    let rest = rng.below(2) == 0;
    match rng.below(9) {
        0 => {
            for _ in 0..=rng.below(4) {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
        }
        1 => bytes.truncate(1 + rng.below(bytes.len())),
        2 => {
            // A length that lies: negative, too small, past the cap, or more than is sent.
            let length: i32 = match rng.below(4) {
                0 => -(rng.below(1 << 30) as i32) - 1,
                1 => rng.below(4) as i32,
                2 => (1 << 28) + rng.below(1 << 30) as i32,
                _ => bytes.len() as i32 + 1 + rng.below(300 << 20) as i32,
            };
            bytes[1..5].copy_from_slice(&length.to_be_bytes());
        }
        3 => {
            let n = 1 + rng.below(64);
            bytes = rng.bytes(n);
        }
        4 => bytes[0] = rng.next() as u8,
        5 => {
            let tag = rng.next() as u8;
            let n = rng.below(32);
            let stray = message(tag, &rng.bytes(n));
            bytes.splice(0..0, stray);
        }
        6 if bytes.len() >= 7 => {
            // A count that lies (RowDescription, DataRow, ParameterDescription).
            let count: i16 = [-1, i16::MAX, 1000, 0][rng.below(4)];
            bytes[5..7].copy_from_slice(&count.to_be_bytes());
        }
        // Stalls cost the stall timeout each: a quarter of this arm's share is enough.
        7 if rng.below(4) == 0 => {
            let cut = 1 + rng.below(bytes.len() - 1);
            return Corruption::Stall(bytes[..cut].to_vec());
        }
        _ => {
            let n = 1 + rng.below(16);
            bytes.extend(rng.bytes(n));
        }
    }
    Corruption::Send { bytes, rest }
}

/// Plays one corrupted session for the next client, then closes its side (or stalls).
async fn serve(listener: TcpListener, case: u64) {
    let mut rng = Rng(case);
    let messages = script(&mut rng);
    let target = rng.below(messages.len());
    let corruption = corrupt(&messages[target], &mut rng);
    let (mut socket, _) = listener.accept().await.unwrap();
    // The startup packet: a length, then that many bytes.
    let length = socket.read_i32().await.unwrap();
    let mut startup = vec![0; length as usize - 4];
    socket.read_exact(&mut startup).await.unwrap();

    let mut out: Vec<u8> = messages[..target].concat();
    let stall = match corruption {
        Corruption::Send { bytes, rest } => {
            out.extend(bytes);
            if rest {
                out.extend(messages[target + 1..].concat());
            }
            false
        }
        Corruption::Stall(bytes) => {
            out.extend(bytes);
            true
        }
    };
    // The client may already have given up and closed: that is not the server's problem.
    let _ = socket.write_all(&out).await;
    if !stall {
        let _ = socket.shutdown().await;
    }
    // Read what the client sends until it closes (so it never sees a reset instead of our end).
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(CASE_LIMIT, async {
        while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// The client's side: every public way of reading from a session, in one session.
async fn client_session(port: u16) -> Result<(), WireError> {
    let tls = TlsMode::Disable;
    let options = ConnectOptions {
        host: "127.0.0.1",
        port,
        database: "dev",
        user: "fuzz",
        password: "fuzz-password",
        tls: &tls,
        timeout: STALL_TIMEOUT,
        application_name: "wire-fuzz",
        ssh: None,
    };
    let mut session = Connection::connect(&options).await?;
    session.prepare("s1", "SELECT id, name FROM t", &[]).await?;
    session
        .start_portal("p1", "s1", &[], &[Format::Text, Format::Text], 2)
        .await?;
    read_rows(&mut session).await?;
    session.continue_portal("p1", 2).await?;
    read_rows(&mut session).await?;
    session.query("SELECT 42", &[]).await?;
    match session.simple_query("SELECT broken").await {
        Ok(()) | Err(WireError::Db(_)) => {}
        Err(other) => return Err(other),
    }
    // The server's script ends here: this must fail.
    session.query("SELECT 'past the end'", &[]).await?;
    Ok(())
}

async fn read_rows(session: &mut Connection) -> Result<(), WireError> {
    loop {
        match session.next_row().await? {
            Fetched::Row => {
                for column in DataRowColumns::new(session.current_row())? {
                    column?;
                }
            }
            Fetched::Suspended | Fetched::Complete => return Ok(()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_server_gets_an_error_never_a_panic_a_hang_or_unbounded_memory() {
    let cases = std::env::var("WIRE_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let mut failures_by_kind = std::collections::BTreeMap::<String, u64>::new();
    for case in 0..cases {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(serve(listener, case));
        let held_before = HELD.load(Ordering::Relaxed);
        PEAK.store(held_before, Ordering::Relaxed);
        let client = tokio::spawn(client_session(port));
        let outcome = tokio::time::timeout(CASE_LIMIT, client).await;
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(held_before);
        server.abort();
        let result = match outcome {
            Err(_) => panic!("case {case}: the session hung for {CASE_LIMIT:?}"),
            Ok(Err(join)) => panic!("case {case}: the session panicked: {join}"),
            Ok(Ok(result)) => result,
        };
        let err = match result {
            Ok(()) => panic!("case {case}: a session past the server's end succeeded"),
            Err(err) => err,
        };
        assert!(
            peak <= MEMORY_LIMIT,
            "case {case}: the session held {peak} bytes ({err})"
        );
        let kind = format!("{err:?}");
        let kind = kind
            .split(['(', ' ', '{'])
            .next()
            .unwrap_or_default()
            .to_string();
        *failures_by_kind.entry(kind).or_default() += 1;
    }
    // Every corruption was caught by something; the spread shows the cases reached each check.
    eprintln!("{cases} cases, errors by kind: {failures_by_kind:?}");
    for kind in ["Protocol", "Io", "ConnectTimeout"] {
        assert!(
            failures_by_kind.keys().any(|k| k.contains(kind)),
            "no case ended in {kind}: {failures_by_kind:?}"
        );
    }
}

/// How [`malformed`] breaks a message: each way leaves a whole message whose shape the
/// protocol does not allow, so a frontend that checks what it reads can tell at once.
#[derive(Debug, Clone, Copy)]
enum Malformation {
    /// A type no server sends this frontend.
    UnknownType,
    /// The body cut short, the length word saying so (a field, a count or a terminator short).
    CutShort,
    /// One byte more than the message's contents, the length word counting it.
    TrailingByte,
    /// A count of -1 (RowDescription, DataRow, ParameterDescription).
    NegativeCount,
}

/// `original` broken by `how`, or `None` where that way cannot break this message.
fn malformed(original: &[u8], how: Malformation) -> Option<Vec<u8>> {
    let (tag, body) = (original[0], &original[5..]);
    match how {
        Malformation::UnknownType => Some(message(b'x', body)),
        // An Authentication request's data has no fixed length: only its code can be cut.
        Malformation::CutShort if tag == b'R' => Some(message(tag, &body[..2])),
        Malformation::CutShort if !body.is_empty() => Some(message(tag, &body[..body.len() - 1])),
        Malformation::TrailingByte if tag != b'R' => Some(message(tag, &[body, &[7]].concat())),
        Malformation::NegativeCount if matches!(tag, b'T' | b'D' | b't') => {
            let mut body = body.to_vec();
            body[..2].copy_from_slice(&(-1i16).to_be_bytes());
            Some(message(tag, &body))
        }
        _ => None,
    }
}

/// Plays the script up to message `target`, sends it malformed, and then waits, the socket
/// open, until the test ends: a peer that goes silent instead of closing.
async fn serve_then_go_silent(listener: TcpListener, messages: Vec<Vec<u8>>, broken: Vec<u8>) {
    let (mut socket, _) = listener.accept().await.unwrap();
    let length = socket.read_i32().await.unwrap();
    let mut startup = vec![0; length as usize - 4];
    socket.read_exact(&mut startup).await.unwrap();
    let _ = socket
        .write_all(&[messages.concat(), broken].concat())
        .await;
    let mut sink = [0u8; 4096];
    while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
}

/// A server that sends one malformed message, at any point of a session, and then says
/// nothing more while keeping the connection open: the session ends at once with a protocol
/// violation (no wait for a ReadyForQuery that will not come), and a session that ended
/// sends and waits for nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_then_silence_ends_the_session_at_once() {
    // The session's timeouts are far longer than the limit below: only the check of what
    // arrived can end these sessions in time.
    const SESSION_TIMEOUT: Duration = Duration::from_secs(30);
    const LIMIT: Duration = Duration::from_secs(3);
    let messages = script(&mut Rng(0));
    let mut cases = 0;
    for target in 0..messages.len() {
        for how in [
            Malformation::UnknownType,
            Malformation::CutShort,
            Malformation::TrailingByte,
            Malformation::NegativeCount,
        ] {
            let Some(broken) = malformed(&messages[target], how) else {
                continue;
            };
            cases += 1;
            let case = format!(
                "message {target} (`{}`) {how:?}",
                char::from(messages[target][0])
            );
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = tokio::spawn(serve_then_go_silent(
                listener,
                messages[..target].to_vec(),
                broken,
            ));
            let outcome = tokio::time::timeout(LIMIT, async {
                let (result, session) = session_until_error(port, SESSION_TIMEOUT).await;
                // An ended session answers at once, without a byte on the wire.
                let again = match session {
                    Some(mut session) => Some(session.query("SELECT 1", &[]).await),
                    None => None,
                };
                (result, again)
            })
            .await;
            server.abort();
            let (result, again) =
                outcome.unwrap_or_else(|_| panic!("{case}: the session waited past {LIMIT:?}"));
            match result {
                Err(WireError::Protocol(_)) => {}
                other => panic!("{case}: ended with {other:?}, not a protocol violation"),
            }
            if let Some(again) = again {
                assert!(again.is_err(), "{case}: the ended session ran a query");
            }
        }
    }
    assert!(cases > 60, "only {cases} cases");
}

/// [`client_session`]'s steps until the first error, and the session if it was open by then.
async fn session_until_error(
    port: u16,
    timeout: Duration,
) -> (Result<(), WireError>, Option<Connection>) {
    let tls = TlsMode::Disable;
    let options = ConnectOptions {
        host: "127.0.0.1",
        port,
        database: "dev",
        user: "fuzz",
        password: "fuzz-password",
        tls: &tls,
        timeout,
        application_name: "wire-fuzz",
        ssh: None,
    };
    let mut session = match Connection::connect(&options).await {
        Ok(session) => session,
        Err(err) => return (Err(err), None),
    };
    let result = async {
        session.prepare("s1", "SELECT id, name FROM t", &[]).await?;
        session
            .start_portal("p1", "s1", &[], &[Format::Text, Format::Text], 2)
            .await?;
        read_rows(&mut session).await?;
        session.continue_portal("p1", 2).await?;
        read_rows(&mut session).await?;
        session.query("SELECT 42", &[]).await?;
        session.simple_query("SELECT broken").await?;
        Ok(())
    }
    .await;
    (result, Some(session))
}

/// Plays a server that signs every client in and answers its first query with `broken`, then
/// says nothing more, the connection kept open until the test ends.
async fn broken_after_sign_in(listener: TcpListener, broken: Vec<u8>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        let broken = broken.clone();
        tokio::spawn(async move {
            let length = socket.read_i32().await.unwrap_or(8);
            let mut startup = vec![0; (length as usize).saturating_sub(4)];
            if socket.read_exact(&mut startup).await.is_err() {
                return;
            }
            let mut parameter = cstring("server_version");
            parameter.extend(cstring("8.0.2"));
            let mut key = 7i32.to_be_bytes().to_vec();
            key.extend(11i32.to_be_bytes());
            let signed_in = [
                authentication(0, &[]),
                message(b'S', &parameter),
                message(b'K', &key),
                message(b'Z', b"I"),
            ]
            .concat();
            if socket.write_all(&signed_in).await.is_err() {
                return;
            }
            // The first query's message(s), then the malformed answer, then silence.
            let mut sink = [0u8; 4096];
            if !matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {
                return;
            }
            let _ = socket.write_all(&broken).await;
            while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
        });
    }
}

/// Test, Schema and Update against a server that breaks the protocol once and then goes
/// silent: each ends well within `connect_timeout_s`, saying the server broke the protocol,
/// and the server process serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_ends_in_time_against_a_server_that_breaks_the_protocol_and_goes_silent() {
    const CONNECT_TIMEOUT_S: u64 = 5;
    let field_cut_short = {
        let mut body = 1i16.to_be_bytes().to_vec();
        body.extend(cstring("version"));
        body.extend([0; 9]);
        message(b'T', &body)
    };
    let cases = [
        (
            "a RowDescription counting -1 fields",
            message(b'T', &(-1i16).to_be_bytes()),
        ),
        ("a RowDescription whose field is cut short", field_cut_short),
        ("a ReadyForQuery of unknown status", message(b'Z', b"?")),
        ("a message of unknown type", message(b'x', b"??")),
    ];
    let server = support::ServerProcess::start(&[]);
    let mut client = server.client().await;
    for (what, broken) in cases {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let fake = tokio::spawn(broken_after_sign_in(listener, broken));
        let config: HashMap<String, String> = [
            ("host", "127.0.0.1".to_string()),
            ("port", port.to_string()),
            ("database", "dev".to_string()),
            ("user", "u".to_string()),
            ("password", "p".to_string()),
            ("sslmode", "disable".to_string()),
            ("connect_timeout_s", CONNECT_TIMEOUT_S.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let limit = Duration::from_secs(CONNECT_TIMEOUT_S);
        for test in ["connect", "select"] {
            let failure =
                tokio::time::timeout(limit, support::run_test(&mut client, test, &config))
                    .await
                    .unwrap_or_else(|_| panic!("{what}: Test {test} took longer than {limit:?}"))
                    .expect_err("the test fails");
            assert!(
                failure.contains("protocol"),
                "{what}: Test {test}: {failure}"
            );
        }
        let schema = client.schema(fivetran_source::proto::SchemaRequest {
            configuration: config.clone(),
        });
        let status = tokio::time::timeout(limit, schema)
            .await
            .unwrap_or_else(|_| panic!("{what}: Schema took longer than {limit:?}"))
            .expect_err("Schema fails");
        assert!(
            status.message().contains("protocol"),
            "{what}: Schema: {status:?}"
        );
        let update = support::stream::try_update(&mut client, &config, None, None);
        let update = tokio::time::timeout(limit, update)
            .await
            .unwrap_or_else(|_| panic!("{what}: Update took longer than {limit:?}"));
        let status = update.error.expect("Update fails");
        assert!(
            status.message().contains("protocol"),
            "{what}: Update: {status:?}"
        );
        fake.abort();
    }
    // Still serving.
    client
        .configuration_form(fivetran_source::proto::ConfigurationFormRequest {})
        .await
        .expect("the server process serves on");
}

/// A server that starts SCRAM and then declares the sign-in done without its final message
/// (the one that proves it knows the password) is refused: it could be anyone.
#[tokio::test]
async fn a_scram_exchange_the_server_never_proves_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(serve_then_go_silent(
        listener,
        vec![
            authentication(10, b"SCRAM-SHA-256\0\0"),
            authentication(0, &[]),
            message(b'Z', b"I"),
        ],
        Vec::new(),
    ));
    let (result, _) = session_until_error(port, Duration::from_secs(5)).await;
    server.abort();
    match result {
        Err(WireError::Protocol(reason)) => assert!(reason.contains("SCRAM"), "{reason}"),
        other => panic!("a sign-in without the server's proof ended with {other:?}"),
    }
}
