//! A PostgreSQL wire-protocol proxy that behaves like Amazon Redshift where the connector
//! depends on it, in front of the harness's PostgreSQL. Integration tests connect through it
//! by default (see `support::fresh_database`).
//!
//! ```text
//!  connector ──TLS──► proxy (this) ──TCP──► PostgreSQL 15 (+ emulation.sql in every database)
//! ```
//!
//! What it does, message by message:
//! - reports `server_version` 8.0.2, as Redshift does;
//! - judges every statement with PostgreSQL's own parser and refuses what Redshift refuses
//!   (see [`sql`]), translating the Redshift-only syntax the connector uses and folding quoted
//!   identifiers unless the session set `enable_case_sensitive_identifier`;
//! - while a portal is suspended, refuses any message but Execute, Close and Sync
//!   ("Invalid protocol sequence 'P' while in PortalSuspended state");
//! - ignores the row limit of an `Execute` on the unnamed portal (Redshift returns all rows);
//! - refuses binary results for every type but those whose binary form Redshift shares with
//!   PostgreSQL;
//! - in single-node mode, refuses fetches of more than 1000 rows;
//! - loses a named portal after its first batch when its query reads only catalog relations
//!   (directly or through views), as Redshift's leader node does;
//! - signs in the users given to [`RedshiftProxy::add_sha256_user`] itself, with Redshift's
//!   SHA-256 password digest (authentication request 13), and then signs them in to PostgreSQL
//!   with MD5 on their behalf;
//! - on demand: returns short pages, and injects faults at the Nth fetch (`XX000`/`1023`
//!   serializable isolation violation, a dropped connection, a connection that goes silent).
//!
//! A refused message is not answered by the proxy itself: it is replaced by one PostgreSQL
//! refuses too (so the session's transaction fails exactly as on Redshift), and PostgreSQL's
//! error is rewritten into Redshift's.

mod sha256;
pub mod sql;
pub mod unload;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::local_postgres::LocalPostgres;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// Redshift's types, functions and `svv_*` views over PostgreSQL, installed in every test
/// database (through the template) and the benchmark's.
pub const EMULATION_SQL: &str = include_str!("emulation.sql");

/// What Redshift reports as its version.
pub const SERVER_VERSION: &str = "8.0.2";
/// Redshift's single-node fetch limit.
const SINGLE_NODE_FETCH_LIMIT: i32 = 1000;
/// A statement and a portal name that never exist: messages that must fail are pointed at them.
const REFUSED: &str = "redshift_proxy_refused";

/// Faults the proxy injects, counted over the fetches (`Execute` messages) of all its sessions.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// At this fetch, Redshift's serializable isolation violation (`XX000`, `1023`).
    pub serializable_violation_at: Option<u64>,
    /// At this fetch, the connection drops.
    pub drop_at: Option<u64>,
    /// At this fetch, the connection goes silent in both directions, sockets open.
    pub silence_at: Option<u64>,
}

/// How the proxy behaves; [`RedshiftProxy::settings`] changes it while it runs.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// A single-node cluster: fetches of more than 1000 rows are refused.
    pub single_node: bool,
    /// Pages of at most this many rows, whatever the `Execute` asks (Redshift may send fewer
    /// rows than asked and still have more).
    pub page_cap: Option<i32>,
    /// A query monitoring rule that aborts a query once it has returned more rows than this
    /// (`return_row_count`; WLM checks between fetches here, every 10 s on Redshift).
    pub max_returned_rows: Option<u64>,
    pub faults: Faults,
    /// UNLOAD to S3 (see [`unload`]); `None`: refused.
    pub unload: Option<unload::UnloadEmulation>,
}

struct Shared {
    postgres: &'static LocalPostgres,
    tls: tokio_rustls::TlsAcceptor,
    settings: Mutex<Settings>,
    fetches: AtomicU64,
    /// What Redshift refused, in order: the tests' evidence of what the connector sent.
    refusals: Mutex<Vec<String>>,
    /// Sessions that got as far as a startup message.
    sessions: AtomicU64,
    /// The SQL of every Query and Parse, as the connector sent it, in order.
    sql: Mutex<Vec<String>>,
    /// Result column types of statements, by database and SQL (for the binary-format rule).
    described: Mutex<HashMap<(String, String), Vec<u32>>>,
    /// Relations that run on the leader node, by database and name.
    leader_node: Mutex<HashMap<(String, String, String), bool>>,
    /// Users whose password Redshift keeps as a SHA-256 digest: user, password.
    sha256_users: Mutex<HashMap<String, String>>,
    /// Sign-ins by SHA-256 digest that succeeded.
    sha256_sign_ins: AtomicU64,
}

/// A running proxy, on its own runtime (it outlives any one test's runtime).
pub struct RedshiftProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

#[allow(dead_code)]
impl RedshiftProxy {
    /// Starts a proxy in front of `postgres` on a free loopback port.
    pub fn start(postgres: &'static LocalPostgres, settings: Settings) -> RedshiftProxy {
        let (cert, key) = postgres
            .server_certificate_pem()
            .expect("the test server's certificate");
        let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<Vec<_>, _>>()
            .expect("a PEM certificate");
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(&key).expect("a PEM key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("a usable certificate");
        let shared = Arc::new(Shared {
            postgres,
            tls: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            settings: Mutex::new(settings),
            fetches: AtomicU64::new(0),
            refusals: Mutex::new(Vec::new()),
            sessions: AtomicU64::new(0),
            sql: Mutex::new(Vec::new()),
            described: Mutex::new(HashMap::new()),
            leader_node: Mutex::new(HashMap::new()),
            sha256_users: Mutex::new(HashMap::new()),
            sha256_sign_ins: AtomicU64::new(0),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepting = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("redshift-proxy".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("the proxy's runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).unwrap();
                    loop {
                        let Ok((client, _)) = listener.accept().await else {
                            continue;
                        };
                        let shared = Arc::clone(&accepting);
                        tokio::spawn(async move {
                            if let Err(err) = serve(shared, client).await {
                                tracing::debug!(error = %err, "proxy session ended");
                            }
                        });
                    }
                });
            })
            .expect("the proxy's thread");
        RedshiftProxy { addr, shared }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Changes how the proxy behaves from now on (fetch counting starts over).
    pub fn set(&self, settings: Settings) {
        *self.shared.settings.lock().unwrap() = settings;
        self.shared.fetches.store(0, Ordering::SeqCst);
    }

    /// Everything the proxy refused so far, as Redshift would have.
    pub fn refusals(&self) -> Vec<String> {
        self.shared.refusals.lock().unwrap().clone()
    }

    /// Sessions opened through the proxy so far (counted at their startup message).
    pub fn sessions(&self) -> u64 {
        self.shared.sessions.load(Ordering::SeqCst)
    }

    /// From now on `user` signs in as a Redshift user created with `PASSWORD 'sha256|…'`:
    /// the proxy asks for the SHA-256 digest of `password` and refuses any other answer. The
    /// user must exist in PostgreSQL with that password (as MD5), which the proxy then uses.
    pub fn add_sha256_user(&self, user: &str, password: &str) {
        let mut users = self.shared.sha256_users.lock().unwrap();
        users.insert(user.to_string(), password.to_string());
    }

    /// Sign-ins by SHA-256 digest that succeeded so far.
    pub fn sha256_sign_ins(&self) -> u64 {
        self.shared.sha256_sign_ins.load(Ordering::SeqCst)
    }

    /// The SQL of every statement the connector sent so far, in order.
    pub fn sql(&self) -> Vec<String> {
        self.shared.sql.lock().unwrap().clone()
    }

    /// The connector's configuration for `database` through this proxy.
    pub fn connector_configuration(&self, database: &str) -> HashMap<String, String> {
        let mut config = self.shared.postgres.connector_configuration(database);
        config.insert("port".into(), self.port().to_string());
        config
    }
}

type Stream = Box<dyn AsyncStream>;
trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncStream for T {}

/// One client session: TLS and startup, then the two directions of the relay.
async fn serve(shared: Arc<Shared>, client: TcpStream) -> std::io::Result<()> {
    // Every message is its own write: without this, Nagle's algorithm and delayed ACKs cost
    // 40 ms a round trip.
    client.set_nodelay(true)?;
    let mut client: Stream = Box::new(client);
    let startup = loop {
        let length = client.read_i32().await? as usize;
        let mut packet = vec![0u8; length.saturating_sub(4)];
        client.read_exact(&mut packet).await?;
        let code = i32::from_be_bytes(packet[..4].try_into().unwrap());
        match code {
            80_877_103 => {
                // SSLRequest: Redshift offers TLS.
                client.write_all(b"S").await?;
                let accepted = shared.tls.accept(client).await?;
                client = Box::new(accepted);
            }
            80_877_104 => client.write_all(b"N").await?, // GSSENCRequest
            80_877_102 => {
                // CancelRequest: pass it on as it is.
                let mut backend = TcpStream::connect(("127.0.0.1", shared.postgres.port())).await?;
                backend.write_all(&(length as i32).to_be_bytes()).await?;
                backend.write_all(&packet).await?;
                return Ok(());
            }
            _ => break packet,
        }
    };
    shared.sessions.fetch_add(1, Ordering::SeqCst);
    let database = startup_parameter(&startup, "database").unwrap_or_default();
    let user = startup_parameter(&startup, "user").unwrap_or_default();
    let sha256_password = shared.sha256_users.lock().unwrap().get(&user).cloned();
    if let Some(password) = &sha256_password {
        if !sha256::sign_in(&mut client, &user, password).await? {
            return Ok(());
        }
        shared.sha256_sign_ins.fetch_add(1, Ordering::SeqCst);
    }
    let mut backend = TcpStream::connect(("127.0.0.1", shared.postgres.port())).await?;
    backend.set_nodelay(true)?;
    backend
        .write_all(&((startup.len() + 4) as i32).to_be_bytes())
        .await?;
    backend.write_all(&startup).await?;
    if let Some(password) = &sha256_password {
        // PostgreSQL's own exchange, answered here; the client already signed in to us.
        sha256::sign_in_to_postgres(&mut backend, &mut client, &user, password).await?;
    }

    let session = Arc::new(Mutex::new(Session {
        database,
        ..Session::default()
    }));
    let (client_read, client_write) = tokio::io::split(client);
    let (backend_read, backend_write) = tokio::io::split(Box::new(backend) as Stream);
    let client_write = Arc::new(tokio::sync::Mutex::new(client_write));
    let forward = frontend(
        Arc::clone(&shared),
        Arc::clone(&session),
        client_read,
        backend_write,
    );
    let backward = backend_to_client(Arc::clone(&session), backend_read, client_write);
    // Either direction ending ends the session (both sockets close).
    tokio::select! {
        result = forward => result,
        result = backward => result,
    }
}

fn startup_parameter(packet: &[u8], name: &str) -> Option<String> {
    let mut fields = packet[4..].split(|&b| b == 0);
    while let Some(key) = fields.next() {
        let value = fields.next()?;
        if key == name.as_bytes() {
            return Some(String::from_utf8_lossy(value).into_owned());
        }
    }
    None
}

/// What the proxy knows of one session.
#[derive(Default)]
struct Session {
    database: String,
    case_sensitive: bool,
    /// Named statements: their SQL as sent to PostgreSQL, and whether they read only catalog
    /// relations (so run on Redshift's leader node).
    statements: HashMap<String, (String, bool)>,
    /// Portals: leader-node, and fetched from at least once.
    portals: HashMap<String, (bool, bool)>,
    /// Rows each portal returned so far.
    returned: HashMap<String, u64>,
    /// The portal left suspended by the last batch, if any.
    suspended: Option<String>,
    /// Portals of the `Execute`s sent since the last ReadyForQuery, in order.
    executing: VecDeque<String>,
    /// Redshift's errors for PostgreSQL's next errors (for refused messages).
    rewrites: VecDeque<(String, String, Option<String>)>,
    silent: bool,
}

/// A frontend message: tag and body.
async fn read_message(read: &mut ReadHalf<Stream>) -> std::io::Result<(u8, BytesMut)> {
    let tag = read.read_u8().await?;
    let length = read.read_i32().await? as usize;
    let mut body = BytesMut::zeroed(length.saturating_sub(4));
    read.read_exact(&mut body).await?;
    Ok((tag, body))
}

fn frame(tag: u8, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() + 5);
    out.put_u8(tag);
    out.put_i32(body.len() as i32 + 4);
    out.put_slice(body);
    out.freeze()
}

fn cstring(body: &mut BytesMut) -> String {
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    let text = String::from_utf8_lossy(&body[..end]).into_owned();
    body.advance((end + 1).min(body.len()));
    text
}

fn put_cstring(out: &mut BytesMut, text: &str) {
    out.put_slice(text.as_bytes());
    out.put_u8(0);
}

/// What to do with a frontend message.
enum Verdict {
    Forward(Bytes),
    /// Refuse it as Redshift would: SQLSTATE, message, detail.
    Refuse(&'static str, String, Option<String>),
    Drop,
    Silence,
}

/// Client to PostgreSQL: every message inspected, some rewritten or refused.
async fn frontend(
    shared: Arc<Shared>,
    session: Arc<Mutex<Session>>,
    mut client: ReadHalf<Stream>,
    mut backend: WriteHalf<Stream>,
) -> std::io::Result<()> {
    loop {
        let (tag, body) = read_message(&mut client).await?;
        if session.lock().unwrap().silent {
            return std::future::pending().await;
        }
        let verdict = inspect(&shared, &session, tag, body).await;
        match verdict {
            Verdict::Forward(message) => backend.write_all(&message).await?,
            Verdict::Refuse(code, message, detail) => {
                shared
                    .refusals
                    .lock()
                    .unwrap()
                    .push(format!("{code}: {message}"));
                session
                    .lock()
                    .unwrap()
                    .rewrites
                    .push_back((code.to_string(), message, detail));
                backend.write_all(&refused(tag)).await?;
            }
            Verdict::Drop => return Ok(()),
            Verdict::Silence => {
                session.lock().unwrap().silent = true;
                return std::future::pending().await;
            }
        }
    }
}

/// A message PostgreSQL refuses in place of one Redshift refuses, so that the session's state
/// (an error, skipping to Sync, a failed transaction) is what Redshift's would be.
fn refused(tag: u8) -> Bytes {
    let mut body = BytesMut::new();
    if tag == b'Q' {
        put_cstring(&mut body, &format!("SELECT {REFUSED}()"));
        frame(b'Q', &body)
    } else {
        body.put_u8(b'S');
        put_cstring(&mut body, REFUSED);
        frame(b'D', &body)
    }
}

async fn inspect(
    shared: &Shared,
    session: &Mutex<Session>,
    tag: u8,
    mut body: BytesMut,
) -> Verdict {
    let original = frame(tag, &body);
    {
        let state = session.lock().unwrap();
        if let Some(portal) = &state.suspended {
            if !matches!(tag, b'E' | b'C' | b'S' | b'X') {
                return Verdict::Refuse(
                    "08P01",
                    format!(
                        "Invalid protocol sequence '{}' while in PortalSuspended state",
                        char::from(tag)
                    ),
                    Some(format!("portal \"{portal}\" is suspended")),
                );
            }
        }
    }
    match tag {
        b'Q' => {
            let text = cstring(&mut body);
            shared.sql.lock().unwrap().push(text.clone());
            if unload::is_unload(&text) {
                let emulation = shared.settings.lock().unwrap().unload.clone();
                let Some(emulation) = emulation else {
                    return Verdict::Refuse(
                        "0A000",
                        "UNLOAD is not set up in this test".to_string(),
                        None,
                    );
                };
                let database = session.lock().unwrap().database.clone();
                return match unload::run(&emulation, shared.postgres, &database, &text).await {
                    // What PostgreSQL answers in its place completes the statement, as
                    // Redshift's UNLOAD does, and leaves the session as it was.
                    Ok(()) => {
                        let mut out = BytesMut::new();
                        put_cstring(&mut out, "DO $$BEGIN END$$");
                        Verdict::Forward(frame(b'Q', &out))
                    }
                    Err((code, message)) => Verdict::Refuse(code, message, None),
                };
            }
            let judged = judge(session, &text);
            if let Some(rejection) = judged.rejection {
                return Verdict::Refuse(rejection.code, rejection.message, None);
            }
            let mut out = BytesMut::new();
            put_cstring(&mut out, &judged.sql);
            Verdict::Forward(frame(b'Q', &out))
        }
        b'P' => {
            let name = cstring(&mut body);
            let text = cstring(&mut body);
            shared.sql.lock().unwrap().push(text.clone());
            let judged = judge(session, &text);
            if let Some(rejection) = judged.rejection {
                return Verdict::Refuse(rejection.code, rejection.message, None);
            }
            let database = session.lock().unwrap().database.clone();
            let leader = leader_node(shared, &database, &judged.relations).await;
            session
                .lock()
                .unwrap()
                .statements
                .insert(name.clone(), (judged.sql.clone(), leader));
            let mut out = BytesMut::new();
            put_cstring(&mut out, &name);
            put_cstring(&mut out, &judged.sql);
            out.put_slice(&body); // parameter types, as sent
            Verdict::Forward(frame(b'P', &out))
        }
        b'B' => {
            let portal = cstring(&mut body);
            let statement = cstring(&mut body);
            let formats = result_formats(&body);
            let (sql, leader, database) = {
                let state = session.lock().unwrap();
                let (sql, leader) = state
                    .statements
                    .get(&statement)
                    .cloned()
                    .unwrap_or_default();
                (sql, leader, state.database.clone())
            };
            if formats.contains(&1) && !sql.is_empty() {
                let types = describe(shared, &database, &sql).await;
                for (i, oid) in types.iter().enumerate() {
                    let binary = match formats.len() {
                        1 => formats[0] == 1,
                        _ => formats.get(i) == Some(&1),
                    };
                    if binary && !fivetran_source::source::wire::oid::binary_is_trusted(*oid) {
                        return Verdict::Refuse(
                            "0A000",
                            format!("binary format is not supported for result column {} of type {oid}; request it as text", i + 1),
                            None,
                        );
                    }
                }
            }
            let mut state = session.lock().unwrap();
            state.returned.insert(portal.clone(), 0);
            state.portals.insert(portal, (leader, false));
            Verdict::Forward(original)
        }
        b'E' => {
            let portal = cstring(&mut body);
            let max_rows = body.get_i32();
            let fetch = shared.fetches.fetch_add(1, Ordering::SeqCst) + 1;
            let settings = shared.settings.lock().unwrap().clone();
            if settings.faults.drop_at == Some(fetch) {
                return Verdict::Drop;
            }
            if settings.faults.silence_at == Some(fetch) {
                return Verdict::Silence;
            }
            if settings.faults.serializable_violation_at == Some(fetch) {
                return Verdict::Refuse(
                    "XX000",
                    "1023".to_string(),
                    Some("Serializable isolation violation on table - 100167, transactions forming the cycle are: 55705701, 55705754 (pid:16606)".to_string()),
                );
            }
            let mut state = session.lock().unwrap();
            let returned = state.returned.get(&portal).copied().unwrap_or(0);
            if settings.max_returned_rows.is_some_and(|max| returned > max) {
                return Verdict::Refuse(
                    "57014",
                    "Query (4242) cancelled by WLM abort action of Query Monitoring Rule \"return_row_count\".".to_string(),
                    None,
                );
            }
            let max_rows = if portal.is_empty() {
                // Redshift honours the row limit only on named portals.
                0
            } else {
                if settings.single_node && (max_rows == 0 || max_rows > SINGLE_NODE_FETCH_LIMIT) {
                    return Verdict::Refuse(
                        "XX000",
                        format!("Fetch size {max_rows} exceeds the limit of 1000 for a single node configuration. Reduce the client fetch/cache size or upgrade to a multi node installation."),
                        None,
                    );
                }
                if let Some((leader, fetched)) = state.portals.get_mut(&portal) {
                    if *leader && *fetched && max_rows > 0 {
                        return Verdict::Refuse(
                            "34000",
                            format!("portal \"{portal}\" does not exist"),
                            None,
                        );
                    }
                    *fetched = true;
                }
                match settings.page_cap {
                    Some(cap) if max_rows == 0 || max_rows > cap => cap,
                    _ => max_rows,
                }
            };
            state.executing.push_back(portal.clone());
            let mut out = BytesMut::new();
            put_cstring(&mut out, &portal);
            out.put_i32(max_rows);
            Verdict::Forward(frame(b'E', &out))
        }
        b'C' => {
            let kind = body.first().copied();
            let mut rest = body.clone();
            rest.advance(1);
            let name = cstring(&mut rest);
            let mut state = session.lock().unwrap();
            if kind == Some(b'P') && state.suspended.as_deref() == Some(&name) {
                state.suspended = None;
            }
            Verdict::Forward(original)
        }
        _ => Verdict::Forward(original),
    }
}

/// The result formats of a Bind body (after portal and statement names).
fn result_formats(body: &[u8]) -> Vec<i16> {
    let mut body = Bytes::copy_from_slice(body);
    let count = body.get_i16() as usize;
    body.advance(count * 2);
    let params = body.get_i16();
    for _ in 0..params {
        let length = body.get_i32();
        if length > 0 {
            body.advance(length as usize);
        }
    }
    let formats = body.get_i16() as usize;
    (0..formats).map(|_| body.get_i16()).collect()
}

fn judge(session: &Mutex<Session>, text: &str) -> sql::Judged {
    let mut state = session.lock().unwrap();
    let judged = sql::judge(text, state.case_sensitive);
    if let Some(on) = judged.sets_case_sensitive {
        state.case_sensitive = on;
    }
    judged
}

/// The result column types of `sql`, prepared on an admin connection to the same database.
async fn describe(shared: &Shared, database: &str, sql: &str) -> Vec<u32> {
    let key = (database.to_string(), sql.to_string());
    if let Some(types) = shared.described.lock().unwrap().get(&key) {
        return types.clone();
    }
    let Ok(client) = shared.postgres.connect(database).await else {
        return Vec::new();
    };
    let types: Vec<u32> = match client.prepare(sql).await {
        Ok(statement) => statement
            .columns()
            .iter()
            .map(|c| c.type_().oid())
            .collect(),
        Err(_) => return Vec::new(),
    };
    shared.described.lock().unwrap().insert(key, types.clone());
    types
}

/// Whether a query reading `relations` runs on the leader node: every relation is a catalog,
/// or a view with no user table below it. (PostgreSQL records no dependency on its pinned
/// catalogs, so a view over catalog tables depends on nothing at all.)
async fn leader_node(shared: &Shared, database: &str, relations: &[(String, String)]) -> bool {
    if relations.is_empty() {
        return false;
    }
    let mut unknown = Vec::new();
    for (schema, name) in relations {
        if sql::is_catalog(schema, name) {
            continue;
        }
        let key = (database.to_string(), schema.clone(), name.clone());
        match shared.leader_node.lock().unwrap().get(&key) {
            Some(false) => return false,
            Some(true) => continue,
            None => unknown.push(key),
        }
    }
    if unknown.is_empty() {
        return true;
    }
    let Ok(client) = shared.postgres.connect(database).await else {
        return false;
    };
    let mut all = true;
    for key in unknown {
        let qualified = if key.1.is_empty() {
            format!("\"{}\"", key.2.replace('"', "\"\""))
        } else {
            format!(
                "\"{}\".\"{}\"",
                key.1.replace('"', "\"\""),
                key.2.replace('"', "\"\"")
            )
        };
        let leader: bool = client
            .query_one(
                "WITH RECURSIVE relation(oid) AS (
                     SELECT to_regclass($1)::oid
                   UNION
                     SELECT d.refobjid FROM relation
                     JOIN pg_rewrite r ON r.ev_class = relation.oid
                     JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                      AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> relation.oid)
                 SELECT to_regclass($1) IS NOT NULL AND NOT EXISTS (
                     SELECT 1 FROM relation JOIN pg_class c ON c.oid = relation.oid
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE c.relkind <> 'v'
                       AND n.nspname NOT IN ('pg_catalog', 'information_schema'))",
                &[&qualified],
            )
            .await
            .map(|row| row.get(0))
            .unwrap_or(false);
        shared.leader_node.lock().unwrap().insert(key, leader);
        all &= leader;
    }
    all
}

/// PostgreSQL's text of a cancelled statement is not Redshift's: Redshift reports a statement
/// timeout as "Query (N) cancelled on user's request".
fn redshift_error_text(tag: u8, body: BytesMut) -> Bytes {
    let error = fivetran_source::source::wire::DbError::from_fields(&body);
    if error.code != "57014" || !error.message.contains("statement timeout") {
        return frame(tag, &body);
    }
    let mut out = BytesMut::new();
    for (field, value) in [
        (b'S', "ERROR"),
        (b'C', "57014"),
        (b'M', "Query (4242) cancelled on user's request"),
    ] {
        out.put_u8(field);
        put_cstring(&mut out, value);
    }
    out.put_u8(0);
    frame(b'E', &out)
}

/// PostgreSQL to client: the version reported as Redshift's, errors of refused messages
/// rewritten as Redshift's, and portal states tracked.
async fn backend_to_client(
    session: Arc<Mutex<Session>>,
    mut backend: ReadHalf<Stream>,
    client: Arc<tokio::sync::Mutex<WriteHalf<Stream>>>,
) -> std::io::Result<()> {
    loop {
        let (tag, body) = read_message(&mut backend).await?;
        if session.lock().unwrap().silent {
            return std::future::pending().await;
        }
        let out = {
            let mut state = session.lock().unwrap();
            match tag {
                b'S' => {
                    let mut fields = body.clone();
                    let name = cstring(&mut fields);
                    if name == "server_version" {
                        let mut out = BytesMut::new();
                        put_cstring(&mut out, &name);
                        put_cstring(&mut out, SERVER_VERSION);
                        frame(b'S', &out)
                    } else {
                        frame(tag, &body)
                    }
                }
                b'D' => {
                    if let Some(portal) = state.executing.front().cloned() {
                        *state.returned.entry(portal).or_default() += 1;
                    }
                    frame(tag, &body)
                }
                b's' => {
                    state.suspended = state.executing.pop_front();
                    frame(tag, &body)
                }
                b'C' => {
                    if let Some(portal) = state.executing.pop_front() {
                        if state.suspended.as_deref() == Some(&portal) {
                            state.suspended = None;
                        }
                    }
                    frame(tag, &body)
                }
                b'E' => match state.rewrites.pop_front() {
                    Some((code, message, detail)) => {
                        let mut out = BytesMut::new();
                        for (field, value) in [
                            (b'S', "ERROR"),
                            (b'V', "ERROR"),
                            (b'C', code.as_str()),
                            (b'M', message.as_str()),
                        ] {
                            out.put_u8(field);
                            put_cstring(&mut out, value);
                        }
                        if let Some(detail) = &detail {
                            out.put_u8(b'D');
                            put_cstring(&mut out, detail);
                        }
                        out.put_u8(0);
                        frame(b'E', &out)
                    }
                    None => redshift_error_text(tag, body),
                },
                b'Z' => {
                    state.rewrites.clear();
                    state.executing.clear();
                    frame(tag, &body)
                }
                _ => frame(tag, &body),
            }
        };
        let mut client = client.lock().await;
        client.write_all(&out).await?;
        // A TLS stream's write may leave its records in the TLS buffer when the socket is
        // full (a slow reader): without a flush they stay there, and the connector waits for
        // them forever.
        client.flush().await?;
    }
}
