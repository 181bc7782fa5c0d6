//! A PostgreSQL v3 frontend written for Redshift, on the message codec of `postgres-protocol`.
//!
//! Why not a general driver: Redshift's binary encodings can only be trusted for a handful of
//! types, so every client of Redshift (AWS's own drivers among them) asks for results column by
//! column, binary where that is safe and text elsewhere. tokio-postgres asks for binary for
//! every column, which leaves no lossless way to read a 16 MB VARBYTE or SUPER value (every
//! text cast is capped at a VARCHAR's 65,535 bytes). And the sync's hot path wants rows as the
//! bytes that arrived, not as allocated row objects: [`Connection::next_row`] lends each
//! `DataRow` straight out of the read buffer.
//!
//! What it does, and nothing more: TLS (see [`tls`]), the startup and password exchanges
//! (cleartext, MD5, SCRAM-SHA-256, Redshift's SHA-256 digest), simple queries, text queries with parameters, and named
//! statements and portals fetched a row limit at a time. Every other server message that may
//! arrive at any time (notices, parameter changes, notifications) is absorbed here.

pub mod digest;
pub mod error;
pub mod frame;
pub mod net;
pub mod oid;
pub mod ssh;
pub mod tls;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use error::{DbError, WireError};
use net::{Stream, Transport};
use ssh::SshTarget;
use tls::TlsMode;

/// Reads are at least this large, so a stream of small rows costs few system calls.
const READ_CHUNK: usize = 64 * 1024;
/// A read buffer grown past this by one large row is given back once it is empty again.
const READ_BUFFER_KEEP: usize = 4 * 1024 * 1024;
/// How much of a large message's room is reserved at a time: its length alone, if corrupt,
/// must not reserve memory before the bytes arrive.
const RESERVE_STEP: usize = 4 << 20;

/// What it takes to open a session.
pub struct ConnectOptions<'a> {
    pub host: &'a str,
    pub port: u16,
    pub database: &'a str,
    pub user: &'a str,
    pub password: &'a str,
    pub tls: &'a TlsMode,
    /// The whole of connecting: TCP, TLS, authentication, session start. Also how long the
    /// server may stop in the middle of a message: one whose first bytes arrived must go on
    /// arriving, or the session fails instead of hanging. (Time between messages is not
    /// bounded here: a long query sends nothing until its first row.)
    pub timeout: Duration,
    pub application_name: &'a str,
    /// The bastion to tunnel through; `host` and `port` are then as the bastion sees them.
    pub ssh: Option<&'a SshTarget>,
}

/// A result column as the server describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_oid: u32,
}

/// A column's result format in `Bind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text = 0,
    Binary = 1,
}

/// What [`Connection::next_row`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// A row: read it with [`Connection::current_row`].
    Row,
    /// The portal reached the `Execute`'s row limit and has more rows.
    Suspended,
    /// The statement ran to its end (`CommandComplete`): there are no more rows.
    Complete,
}

/// One authenticated session.
pub struct Connection {
    stream: Stream,
    read: BytesMut,
    write: BytesMut,
    /// Bytes at the front of `read` that belong to a row already lent out.
    consumed: usize,
    parameters: Vec<(String, String)>,
    cancel: Option<CancelToken>,
    /// See [`ConnectOptions::timeout`].
    stall_timeout: Duration,
    /// Why the session ended, once the server broke the protocol or the connection failed:
    /// nothing more is sent or awaited on it (a server that sent a malformed message and then
    /// waits would otherwise be waited for without end).
    ended: Option<String>,
}

/// Cancels the statement running on a session, over a connection of its own (the protocol's
/// CancelRequest), to the same address (through the same bastion) and with the same TLS mode.
#[derive(Clone)]
pub struct CancelToken {
    route: Route,
    host: String,
    tls: TlsMode,
    process_id: i32,
    secret_key: i32,
}

/// How a session reached the server, for its cancel requests.
#[derive(Clone)]
enum Route {
    /// The address the session connected to (a cancel must reach the same server, not
    /// another address the name resolves to).
    Direct(SocketAddr),
    Tunnel {
        ssh: Box<SshTarget>,
        port: u16,
        timeout: Duration,
    },
}

impl Route {
    async fn open(&self, host: &str) -> Result<Transport, WireError> {
        match self {
            Route::Direct(peer) => {
                TcpStream::connect(peer)
                    .await
                    .map(Transport::Tcp)
                    .map_err(|source| {
                        WireError::Connect(net::ConnectError::Connect {
                            address: peer.to_string(),
                            source,
                        })
                    })
            }
            Route::Tunnel { ssh, port, timeout } => ssh::open(ssh, host, *port, *timeout)
                .await
                .map(|tunnel| Transport::Ssh(Box::new(tunnel)))
                .map_err(WireError::Ssh),
        }
    }
}

impl Connection {
    /// Connects, negotiates TLS, authenticates and waits until the session is ready.
    pub async fn connect(options: &ConnectOptions<'_>) -> Result<Connection, WireError> {
        tokio::time::timeout(options.timeout, Self::connect_inner(options))
            .await
            .map_err(|_| WireError::ConnectTimeout)?
    }

    async fn connect_inner(options: &ConnectOptions<'_>) -> Result<Connection, WireError> {
        let (transport, route) = match options.ssh {
            None => {
                let tcp = net::connect(options.host, options.port, options.timeout).await?;
                let peer = tcp.peer_addr()?;
                (Transport::Tcp(tcp), Route::Direct(peer))
            }
            Some(target) => {
                let tunnel = ssh::open(target, options.host, options.port, options.timeout)
                    .await
                    .map_err(WireError::Ssh)?;
                let route = Route::Tunnel {
                    ssh: Box::new(target.clone()),
                    port: options.port,
                    timeout: options.timeout,
                };
                (Transport::Ssh(Box::new(tunnel)), route)
            }
        };
        let stream = negotiate_tls(transport, options.host, options.tls).await?;
        let mut connection = Connection {
            stream,
            read: BytesMut::with_capacity(READ_CHUNK),
            write: BytesMut::with_capacity(8 * 1024),
            consumed: 0,
            parameters: Vec::new(),
            cancel: None,
            stall_timeout: options.timeout,
            ended: None,
        };
        let key = connection.startup(options).await?;
        connection.cancel = key.map(|(process_id, secret_key)| CancelToken {
            route,
            host: options.host.to_string(),
            tls: options.tls.clone(),
            process_id,
            secret_key,
        });
        Ok(connection)
    }

    /// A server parameter reported at startup or since (`server_version`, `TimeZone`, ...).
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The handle that cancels this session's running statement, if the server gave a key.
    pub fn cancel_token(&self) -> Option<CancelToken> {
        self.cancel.clone()
    }

    /// The startup message and the authentication exchange. Returns the cancel key.
    async fn startup(
        &mut self,
        options: &ConnectOptions<'_>,
    ) -> Result<Option<(i32, i32)>, WireError> {
        let parameters = [
            ("user", options.user),
            ("database", options.database),
            ("application_name", options.application_name),
            ("client_encoding", "UTF8"),
        ];
        frontend::startup_message(parameters, &mut self.write)?;
        self.flush().await?;

        let mut scram: Option<ScramSha256> = None;
        // A SCRAM exchange proves the server knows the password only with its final message;
        // an AuthenticationOk before it would accept an impostor.
        let mut scram_verified = false;
        let mut key = None;
        loop {
            let (tag, total) = self.next_message().await?;
            let body = &self.read[5..total];
            match tag {
                b'R' => {
                    let method = read_i32(body, 0)?;
                    let data = &body[4..];
                    match method {
                        // AuthenticationOk
                        0 if scram.is_some() && !scram_verified => {
                            return Err(protocol(
                                "the server accepted the sign-in before its SCRAM final message proved it knows the password",
                            ))
                        }
                        0 => {}
                        // Cleartext: only to a server whose certificate was verified, or an
                        // on-path attacker could ask for it and receive the password.
                        3 if !options.tls.verifies() => return Err(WireError::CleartextRefused),
                        3 => frontend::password_message(
                            options.password.as_bytes(),
                            &mut self.write,
                        )?,
                        5 => {
                            let salt: [u8; 4] = data
                                .get(..4)
                                .and_then(|s| s.try_into().ok())
                                .ok_or_else(|| protocol("short MD5 salt"))?;
                            let hash = md5_hash(
                                options.user.as_bytes(),
                                options.password.as_bytes(),
                                salt,
                            );
                            frontend::password_message(hash.as_bytes(), &mut self.write)?;
                        }
                        10 => {
                            let offered = data
                                .split(|&b| b == 0)
                                .any(|m| m == SCRAM_SHA_256.as_bytes());
                            if !offered {
                                return Err(WireError::UnsupportedAuthentication {
                                    method: format!(
                                        "SASL ({})",
                                        String::from_utf8_lossy(data).replace('\0', " ").trim()
                                    ),
                                });
                            }
                            let state = ScramSha256::new(
                                options.password.as_bytes(),
                                ChannelBinding::unsupported(),
                            );
                            frontend::sasl_initial_response(
                                SCRAM_SHA_256,
                                state.message(),
                                &mut self.write,
                            )?;
                            scram = Some(state);
                        }
                        11 => {
                            let state = scram
                                .as_mut()
                                .ok_or_else(|| protocol("SASL continue without a start"))?;
                            state.update(data).map_err(|err| {
                                protocol(&format!("the server's SCRAM message is unusable: {err}"))
                            })?;
                            frontend::sasl_response(state.message(), &mut self.write)?;
                        }
                        12 => {
                            let state = scram
                                .as_mut()
                                .ok_or_else(|| protocol("SASL final without a start"))?;
                            state.finish(data).map_err(|err| {
                                protocol(&format!(
                                    "the server's SCRAM final message does not prove it knows the password: {err}"
                                ))
                            })?;
                            scram_verified = true;
                        }
                        13 => {
                            let request = digest::DigestRequest::parse(data)?;
                            let nonce = digest::client_nonce();
                            let answer = request.digest(options.password.as_bytes(), &nonce);
                            digest::write_response(&answer, &nonce, &mut self.write);
                        }
                        other => {
                            return Err(WireError::UnsupportedAuthentication {
                                method: authentication_method_name(other),
                            })
                        }
                    }
                    self.consume_now(total);
                    if !self.write.is_empty() {
                        self.flush().await?;
                    }
                }
                b'K' => {
                    key = Some((read_i32(body, 0)?, read_i32(body, 4)?));
                    self.consume_now(total);
                }
                b'E' => {
                    let error = DbError::from_fields(body);
                    self.consume_now(total);
                    return Err(WireError::Db(error));
                }
                b'Z' => {
                    self.consume_now(total);
                    return Ok(key);
                }
                other => return Err(unexpected(other, "the startup exchange")),
            }
        }
    }

    /// Runs SQL with the simple protocol (several statements may be separated by `;`) and
    /// discards any rows. For session settings and transaction control.
    pub async fn simple_query(&mut self, sql: &str) -> Result<(), WireError> {
        let result = async {
            frontend::query(sql, &mut self.write)?;
            self.flush().await?;
            let mut error = None;
            loop {
                let (tag, total) = self.next_message().await?;
                match tag {
                    b'C' | b'I' | b'T' | b'D' => {}
                    b'E' => error = Some(DbError::from_fields(&self.read[5..total])),
                    b'Z' => {
                        self.consume_now(total);
                        return error.map_or(Ok(()), |e| Err(WireError::Db(e)));
                    }
                    other => return Err(unexpected(other, "a simple query")),
                }
                self.consume_now(total);
            }
        }
        .await;
        self.settle(result)
    }

    /// Runs one statement with text parameters and returns every row as text (NULL as
    /// `None`): for catalog queries, whose results are small. Parameters are sent as VARCHAR
    /// and results are requested as text, which Redshift encodes like PostgreSQL for all types.
    pub async fn query(
        &mut self,
        sql: &str,
        params: &[&str],
    ) -> Result<Vec<Vec<Option<String>>>, WireError> {
        let result = async {
            frontend::parse(
                "",
                sql,
                params.iter().map(|_| oid::VARCHAR),
                &mut self.write,
            )?;
            bind("", "", params, &[Format::Text], &mut self.write)?;
            frontend::execute("", 0, &mut self.write)?;
            frontend::sync(&mut self.write);
            self.flush().await?;

            let mut rows = Vec::new();
            let mut error = None;
            loop {
                let (tag, total) = self.next_message().await?;
                let body = &self.read[5..total];
                match tag {
                    b'1' | b'2' | b'C' | b'I' | b'n' => {}
                    b'D' if error.is_none() => rows.push(text_row(body)?),
                    b'E' => error = Some(DbError::from_fields(body)),
                    b'Z' => {
                        self.consume_now(total);
                        return match error {
                            Some(error) => Err(WireError::Db(error)),
                            None => Ok(rows),
                        };
                    }
                    other => return Err(unexpected(other, "a query")),
                }
                self.consume_now(total);
            }
        }
        .await;
        self.settle(result)
    }

    /// Parses `sql` as the named statement `name` with parameters of `param_types`, and
    /// returns its result columns (empty for a statement without rows).
    pub async fn prepare(
        &mut self,
        name: &str,
        sql: &str,
        param_types: &[u32],
    ) -> Result<Vec<Column>, WireError> {
        let result = async {
            frontend::parse(name, sql, param_types.iter().copied(), &mut self.write)?;
            frontend::describe(b'S', name, &mut self.write)?;
            frontend::sync(&mut self.write);
            self.flush().await?;

            let mut columns = Vec::new();
            let mut error = None;
            loop {
                let (tag, total) = self.next_message().await?;
                let body = &self.read[5..total];
                match tag {
                    b'1' | b't' | b'n' => {}
                    b'T' => columns = row_description(body)?,
                    b'E' => error = Some(DbError::from_fields(body)),
                    b'Z' => {
                        self.consume_now(total);
                        return match error {
                            Some(error) => Err(WireError::Db(error)),
                            None => Ok(columns),
                        };
                    }
                    other => return Err(unexpected(other, "preparing a statement")),
                }
                self.consume_now(total);
            }
        }
        .await;
        self.settle(result)
    }

    /// Binds `statement` to the named portal `portal` and runs it for at most `max_rows` rows
    /// (0: all of them); read the rows with [`next_row`](Self::next_row). Inside a transaction
    /// the portal survives the `Sync` that ends each round trip, so
    /// [`continue_portal`](Self::continue_portal) fetches on from where it stopped.
    pub async fn start_portal(
        &mut self,
        portal: &str,
        statement: &str,
        params: &[&str],
        formats: &[Format],
        max_rows: i32,
    ) -> Result<(), WireError> {
        bind(portal, statement, params, formats, &mut self.write)?;
        frontend::execute(portal, max_rows, &mut self.write)?;
        frontend::sync(&mut self.write);
        let result = self.flush().await;
        self.settle(result)
    }

    /// The next `max_rows` rows of a suspended portal.
    pub async fn continue_portal(&mut self, portal: &str, max_rows: i32) -> Result<(), WireError> {
        frontend::execute(portal, max_rows, &mut self.write)?;
        frontend::sync(&mut self.write);
        let result = self.flush().await;
        self.settle(result)
    }

    /// The next row of the running `Execute`, or how it ended. The end of a result is the
    /// server's `CommandComplete`, never a short page: Redshift may send fewer rows than asked
    /// and still have more. An error ends the `Execute` (and, in a transaction, aborts it).
    pub async fn next_row(&mut self) -> Result<Fetched, WireError> {
        let result = async {
            loop {
                let (tag, total) = self.next_message().await?;
                match tag {
                    b'D' => {
                        // Lent out: dropped from the buffer at the next read.
                        self.consumed = total;
                        return Ok(Fetched::Row);
                    }
                    b'2' => self.consume_now(total),
                    b's' => {
                        self.consume_now(total);
                        self.ready().await?;
                        return Ok(Fetched::Suspended);
                    }
                    b'C' | b'I' => {
                        self.consume_now(total);
                        self.ready().await?;
                        return Ok(Fetched::Complete);
                    }
                    b'E' => {
                        let error = DbError::from_fields(&self.read[5..total]);
                        self.consume_now(total);
                        self.ready().await?;
                        return Err(WireError::Db(error));
                    }
                    other => return Err(unexpected(other, "fetching rows")),
                }
            }
        }
        .await;
        self.settle(result)
    }

    /// The body of the row [`next_row`](Self::next_row) last found: a 16-bit column count,
    /// then each column's 32-bit length (-1 for NULL) and bytes, straight from the read buffer.
    pub fn current_row(&self) -> &[u8] {
        &self.read[5..self.consumed.max(5)]
    }

    /// Closes named statements (which releases what the server holds for them), in one round
    /// trip.
    pub async fn close_statements(&mut self, names: &[String]) -> Result<(), WireError> {
        for name in names {
            frontend::close(b'S', name, &mut self.write)?;
        }
        frontend::sync(&mut self.write);
        let result = async {
            self.flush().await?;
            self.closed().await
        }
        .await;
        self.settle(result)
    }

    /// Closes a portal (which releases what the server holds for it) without ending the
    /// transaction.
    pub async fn close_portal(&mut self, portal: &str) -> Result<(), WireError> {
        frontend::close(b'P', portal, &mut self.write)?;
        frontend::sync(&mut self.write);
        let result = async {
            self.flush().await?;
            self.closed().await
        }
        .await;
        self.settle(result)
    }

    /// Reads the answers to `Close` messages, up to and including `ReadyForQuery`.
    async fn closed(&mut self) -> Result<(), WireError> {
        let mut error = None;
        loop {
            let (tag, total) = self.next_message().await?;
            match tag {
                b'3' => {}
                b'E' => error = Some(DbError::from_fields(&self.read[5..total])),
                b'Z' => {
                    self.consume_now(total);
                    return error.map_or(Ok(()), |e| Err(WireError::Db(e)));
                }
                other => return Err(unexpected(other, "closing a portal or statement")),
            }
            self.consume_now(total);
        }
    }

    /// Reads up to and including `ReadyForQuery`, which follows every `Sync`.
    async fn ready(&mut self) -> Result<(), WireError> {
        loop {
            let (tag, total) = self.next_message().await?;
            self.consume_now(total);
            match tag {
                b'Z' => return Ok(()),
                // Anything between the end of a result and ReadyForQuery is ignorable.
                b'C' | b'3' | b'2' | b'1' => {}
                other => return Err(unexpected(other, "waiting for ReadyForQuery")),
            }
        }
    }

    /// The session's end, for a result that ended it: a protocol violation or a broken
    /// connection leaves it in no state a next exchange could start from.
    fn settle<T>(&mut self, result: Result<T, WireError>) -> Result<T, WireError> {
        if let Err(err @ (WireError::Protocol(_) | WireError::Io(_))) = &result {
            if self.ended.is_none() {
                self.ended = Some(err.to_string());
            }
        }
        result
    }

    /// `Err` once the session has ended (see [`Self::settle`]): it sends and waits for nothing.
    fn check_open(&self) -> Result<(), WireError> {
        match &self.ended {
            None => Ok(()),
            Some(why) => Err(WireError::Io(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                format!("the session had already ended ({why})"),
            ))),
        }
    }

    async fn flush(&mut self) -> Result<(), WireError> {
        if let Err(err) = self.check_open() {
            self.write.clear();
            return Err(err);
        }
        self.stream.write_all(&self.write).await?;
        self.stream.flush().await?;
        self.write.clear();
        Ok(())
    }

    /// The next message that is not a notice, parameter status or notification, whole at the
    /// front of the read buffer: its tag and total length (tag and length word included).
    async fn next_message(&mut self) -> Result<(u8, usize), WireError> {
        loop {
            let (tag, total) = self.fill().await?;
            match tag {
                b'N' => {
                    let notice = DbError::from_fields(&self.read[5..total]);
                    tracing::debug!(code = %notice.code, message = %notice.message, "server notice");
                }
                b'S' => {
                    let body = &self.read[5..total];
                    let mut parts = body.split(|&b| b == 0);
                    let name = String::from_utf8_lossy(parts.next().unwrap_or_default());
                    let value = String::from_utf8_lossy(parts.next().unwrap_or_default());
                    let (name, value) = (name.into_owned(), value.into_owned());
                    match self.parameters.iter_mut().find(|(key, _)| *key == name) {
                        Some(entry) => entry.1 = value,
                        None => self.parameters.push((name, value)),
                    }
                }
                b'A' => {}
                // The server closes the socket after a FATAL error: it is the answer to
                // whatever was waiting, with its own text and SQLSTATE, not "connection lost".
                b'E' => {
                    let error = DbError::from_fields(&self.read[5..total]);
                    if !error.fatal {
                        return Ok((tag, total));
                    }
                    self.consume_now(total);
                    return Err(WireError::Db(error));
                }
                _ => return Ok((tag, total)),
            }
            self.consume_now(total);
        }
    }

    /// Reads until a whole message is at the front of the buffer.
    async fn fill(&mut self) -> Result<(u8, usize), WireError> {
        self.check_open()?;
        if self.consumed > 0 {
            self.consume_now(self.consumed);
            self.consumed = 0;
        }
        loop {
            match frame::whole_message(&self.read) {
                Ok(Some((tag, total))) => {
                    frame::check(tag, &self.read[5..total])
                        .map_err(|violation| WireError::Protocol(violation.0))?;
                    return Ok((tag, total));
                }
                Ok(None) if self.read.len() >= 5 => {
                    let length = u32::from_be_bytes([
                        self.read[1],
                        self.read[2],
                        self.read[3],
                        self.read[4],
                    ]) as usize;
                    self.read
                        .reserve((length + 1 - self.read.len()).min(RESERVE_STEP));
                }
                Ok(None) => {}
                Err(violation) => return Err(WireError::Protocol(violation.0)),
            }
            if self.read.capacity() - self.read.len() < READ_CHUNK / 4 {
                self.read.reserve(READ_CHUNK);
            }
            let read = if self.read.is_empty() {
                self.stream.read_buf(&mut self.read).await?
            } else {
                tokio::time::timeout(self.stall_timeout, self.stream.read_buf(&mut self.read))
                    .await
                    .map_err(|_| {
                        WireError::Io(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!(
                                "the server stopped in the middle of a message for {} s",
                                self.stall_timeout.as_secs()
                            ),
                        ))
                    })??
            };
            if read == 0 {
                return Err(WireError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )));
            }
        }
    }

    fn consume_now(&mut self, total: usize) {
        self.read.advance(total);
        if self.read.is_empty() && self.read.capacity() > READ_BUFFER_KEEP {
            // One huge row made the buffer grow; do not keep that memory for small ones.
            self.read = BytesMut::with_capacity(READ_CHUNK);
        }
    }
}

impl CancelToken {
    /// Best effort: sends the CancelRequest; whether a statement was running is not reported.
    pub async fn cancel(&self) -> Result<(), WireError> {
        let attempt = async {
            let transport = self.route.open(&self.host).await?;
            let mut stream = negotiate_tls(transport, &self.host, &self.tls).await?;
            let mut message = BytesMut::new();
            frontend::cancel_request(self.process_id, self.secret_key, &mut message);
            stream.write_all(&message).await?;
            stream.flush().await?;
            // The server closes the connection without answering.
            let _ = stream.shutdown().await;
            Ok(())
        };
        tokio::time::timeout(Duration::from_secs(10), attempt)
            .await
            .map_err(|_| WireError::ConnectTimeout)?
    }
}

/// SSLRequest, then the TLS handshake if the server agrees.
async fn negotiate_tls(
    mut tcp: Transport,
    host: &str,
    mode: &TlsMode,
) -> Result<Stream, WireError> {
    let config = match mode {
        TlsMode::Disable => return Ok(Stream::Plain(tcp)),
        TlsMode::Prefer(config) | TlsMode::Require(config) | TlsMode::Verified(config) => {
            config.clone()
        }
    };
    let mut request = BytesMut::new();
    frontend::ssl_request(&mut request);
    tcp.write_all(&request).await?;
    match tcp.read_u8().await? {
        b'S' => {}
        b'N' if matches!(mode, TlsMode::Prefer(_)) => return Ok(Stream::Plain(tcp)),
        b'N' => return Err(WireError::TlsNotOffered),
        other => return Err(unexpected(other, "the SSL request")),
    }
    let name = tls::server_name(host).map_err(WireError::Tls)?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|err| WireError::Tls(super::error_chain(&err)))?;
    Ok(Stream::Tls(Box::new(tls)))
}

/// `Bind` with text parameters and the given result formats (one format for all columns, or
/// one per column).
fn bind(
    portal: &str,
    statement: &str,
    params: &[&str],
    formats: &[Format],
    buf: &mut BytesMut,
) -> Result<(), WireError> {
    let result = frontend::bind(
        portal,
        statement,
        [Format::Text as i16],
        params.iter(),
        |param, buf| {
            buf.put_slice(param.as_bytes());
            Ok(postgres_protocol::IsNull::No)
        },
        formats.iter().map(|&format| format as i16),
        buf,
    );
    match result {
        Ok(()) => Ok(()),
        Err(frontend::BindError::Serialization(err)) => Err(WireError::Io(err)),
        Err(frontend::BindError::Conversion(err)) => Err(protocol(&err.to_string())),
    }
}

fn row_description(body: &[u8]) -> Result<Vec<Column>, WireError> {
    let count = read_i16(body, 0)?;
    let count = usize::try_from(count).map_err(|_| protocol("negative column count"))?;
    // Each field takes at least 19 bytes (an empty name's NUL and 18 bytes of numbers), so a
    // count the body cannot hold is refused before anything is reserved for it.
    if count > body.len().saturating_sub(2) / 19 {
        return Err(protocol("column count larger than the message"));
    }
    let mut columns = Vec::with_capacity(count);
    let mut at = 2;
    for _ in 0..count {
        let rest = body.get(at..).ok_or_else(|| protocol("short message"))?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| protocol("unterminated column name"))?;
        let name = String::from_utf8_lossy(&rest[..end]).into_owned();
        at += end + 1;
        // table oid (4), column number (2), type oid (4), size (2), modifier (4), format (2)
        let type_oid = read_i32(body, at + 6)? as u32;
        read_i16(body, at + 16)?;
        at += 18;
        columns.push(Column { name, type_oid });
    }
    Ok(columns)
}

fn text_row(body: &[u8]) -> Result<Vec<Option<String>>, WireError> {
    let mut values = Vec::new();
    for value in DataRowColumns::new(body)? {
        let value = value?;
        values.push(value.map(|range| String::from_utf8_lossy(&body[range]).into_owned()));
    }
    Ok(values)
}

/// The columns of a `DataRow` body as byte ranges into it (`None` for NULL).
pub struct DataRowColumns<'a> {
    body: &'a [u8],
    at: usize,
    left: u16,
}

impl<'a> DataRowColumns<'a> {
    pub fn new(body: &'a [u8]) -> Result<Self, WireError> {
        let left = read_i16(body, 0)? as u16;
        Ok(Self { body, at: 2, left })
    }
}

impl Iterator for DataRowColumns<'_> {
    type Item = Result<Option<std::ops::Range<usize>>, WireError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let length = match read_i32(self.body, self.at) {
            Ok(length) => length,
            Err(err) => return Some(Err(err)),
        };
        self.at += 4;
        if length < 0 {
            return Some(Ok(None));
        }
        let start = self.at;
        let end = start + length as usize;
        if end > self.body.len() {
            return Some(Err(protocol("a column runs past its row")));
        }
        self.at = end;
        Some(Ok(Some(start..end)))
    }
}

#[inline]
fn read_i32(body: &[u8], at: usize) -> Result<i32, WireError> {
    body.get(at..at + 4)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| protocol("short message"))
}

#[inline]
fn read_i16(body: &[u8], at: usize) -> Result<i16, WireError> {
    body.get(at..at + 2)
        .map(|b| i16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| protocol("short message"))
}

fn protocol(what: &str) -> WireError {
    WireError::Protocol(what.to_string())
}

fn unexpected(tag: u8, during: &str) -> WireError {
    WireError::Protocol(format!(
        "unexpected message `{}` during {during}",
        char::from(tag).escape_default()
    ))
}

/// Authentication request codes PostgreSQL and Redshift define, by name.
fn authentication_method_name(code: i32) -> String {
    match code {
        2 => "Kerberos V5 (2)".to_string(),
        6 => "SCM credentials (6)".to_string(),
        7 | 8 => "GSSAPI (7)".to_string(),
        9 => "SSPI (9)".to_string(),
        14 => "Redshift's identity-provider token (14)".to_string(),
        other => format!("unknown ({other})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, type_oid: u32) -> Vec<u8> {
        let mut out = name.as_bytes().to_vec();
        out.push(0);
        out.extend_from_slice(&0u32.to_be_bytes()); // table oid
        out.extend_from_slice(&0u16.to_be_bytes()); // column number
        out.extend_from_slice(&type_oid.to_be_bytes());
        out.extend_from_slice(&[0; 8]); // size, modifier, format
        out
    }

    #[test]
    fn row_descriptions_are_read_with_bounds_checks() {
        let mut good = 2u16.to_be_bytes().to_vec();
        good.extend(field("id", 20));
        good.extend(field("", 25));
        let columns = row_description(&good).unwrap();
        assert_eq!(columns.len(), 2);
        assert_eq!((columns[0].name.as_str(), columns[0].type_oid), ("id", 20));
        assert_eq!(columns[1].type_oid, 25);
        // A negative count, a count larger than the message, a truncated field, a missing
        // NUL, an empty body: errors, never a panic or a huge allocation.
        let negative = [(-1i16).to_be_bytes().to_vec(), field("a", 23)].concat();
        let too_many = [1000u16.to_be_bytes().to_vec(), field("a", 23)].concat();
        let truncated = good[..good.len() - 3].to_vec();
        let unterminated = [1u16.to_be_bytes().to_vec(), vec![b'a'; 40]].concat();
        for bad in [negative, too_many, truncated, unterminated, Vec::new()] {
            assert!(row_description(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn data_row_columns_are_ranges_and_nulls() {
        // 3 columns: "ab", NULL, ""
        let body = [
            0, 3, 0, 0, 0, 2, b'a', b'b', 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0,
        ];
        let columns: Vec<_> = DataRowColumns::new(&body)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(columns, vec![Some(6..8), None, Some(16..16)]);
    }

    #[test]
    fn a_column_past_the_end_is_a_protocol_error() {
        let body = [0, 1, 0, 0, 0, 9, b'a'];
        let mut columns = DataRowColumns::new(&body).unwrap();
        assert!(matches!(columns.next(), Some(Err(WireError::Protocol(_)))));
    }

    #[test]
    fn redshift_authentication_codes_are_named() {
        assert!(authentication_method_name(14).contains("identity-provider"));
    }
}
