//! A throwaway PostgreSQL server for the demo, the integration tests and the benchmarks.
//!
//! Redshift cannot run locally, but it speaks the PostgreSQL wire protocol, so a private
//! PostgreSQL server stands in for it. It is configured like Redshift wherever the connector's
//! code paths depend on it, so the tests exercise what production does:
//!
//! - **MD5 passwords.** `password_encryption = md5` and every TCP `pg_hba.conf` line uses `md5`,
//!   so clients go through the same MD5 authentication exchange Redshift asks for (PostgreSQL's
//!   default would be SCRAM, which Redshift never uses).
//! - **TLS with a private CA.** A CA and a server certificate are generated at every start; the
//!   server certificate names only `DNS:localhost`. Clients that trust [`LocalPostgres::ca_cert_path`]
//!   can prove `verify-full` works for host `localhost` *and* fails for `127.0.0.1`, a name the
//!   certificate does not carry. Plain TCP is accepted too, as on a cluster without `require_SSL`.
//! - **UTC and UTF-8**, as Redshift sessions are.
//!
//! Everything lives in one temporary directory, removed when the [`LocalPostgres`] is dropped:
//!
//! ```text
//! redshift-sync-pg-XXXXXX/      0755  owned by the server user
//! ├── ca.pem                    0644  the CA clients trust (sslrootcert)
//! ├── postgres.log                    the server's log (its tail is quoted in startup errors)
//! ├── socket/                   0700  the unix socket (nobody else may even try to connect)
//! ├── tls/                      0700  server.crt, server.key (0600: PostgreSQL insists)
//! └── data/                     0700  the cluster (initdb), plus redshift_sync.conf
//! ```
//!
//! `initdb` refuses to run as root, and CI machines run as root: then every server program runs
//! as the `postgres` OS user through `runuser`, and the directory is handed to that user.
//!
//! The admin role (`sync_admin`, a superuser) is created by `initdb` itself from a password file
//! holding the *MD5 hash* of a random password: PostgreSQL stores a pre-hashed password as-is, so
//! the role has an MD5 password from the first moment without any bootstrap connection, and the
//! plain password never appears on a command line or on disk.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio_postgres_rustls::MakeRustlsConnect;

use fivetran_source::config::{keys, Secret};

/// The host name clients must use: the only name the server certificate carries.
pub const HOST: &str = "localhost";
/// The superuser role clients log in as (with an MD5 password).
pub const ADMIN_USER: &str = "sync_admin";
/// The OS user the server runs as when the current process is root.
pub const SERVER_OS_USER: &str = "postgres";

/// How often a port conflict (another process took the probed port first) is retried.
const START_ATTEMPTS: usize = 5;
/// Lines of the server log quoted in a startup error.
const LOG_TAIL_LINES: usize = 40;
/// Validity of the generated certificates; the server lives minutes, a long demo hours.
const CERTIFICATE_DAYS: u32 = 30;

/// Why the local server could not be started or used. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum LocalPostgresError {
    #[error(
        "the PostgreSQL server programs `initdb` and `pg_ctl` were not found on PATH nor under \
         {searched}; install PostgreSQL (Debian/Ubuntu: `sudo apt-get install postgresql`, \
         macOS: `brew install postgresql@15`) or put the directory holding `initdb` and `pg_ctl` \
         on PATH"
    )]
    BinariesNotFound { searched: String },
    #[error(
        "running as root, but there is no `{SERVER_OS_USER}` OS user to run the server as \
         (initdb refuses to run as root); install the `postgresql` package, which creates it, \
         or `sudo useradd --system --user-group {SERVER_OS_USER}`, or run as an unprivileged user"
    )]
    NoServerUser,
    #[error(
        "running as root, but `runuser` (util-linux) was not found to run the server as the \
         `{SERVER_OS_USER}` OS user; install util-linux or run as an unprivileged user"
    )]
    NoRunuser,
    #[error(
        "the `{SERVER_OS_USER}` OS user cannot reach `{}`; set TMPDIR to a directory every \
         user can traverse, such as /tmp",
        dir.display()
    )]
    DirectoryUnreachable { dir: PathBuf },
    #[error("cannot {action} `{}`", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot generate the server's TLS certificates")]
    Certificates(#[source] rcgen::Error),
    #[error("cannot draw random bytes for the admin password")]
    Random(#[source] getrandom::Error),
    #[error("`{command}` failed ({status}); its output:\n{output}")]
    CommandFailed {
        command: String,
        status: ExitStatus,
        output: String,
    },
    #[error(
        "the PostgreSQL server did not start; the end of its log `{}`:\n{tail}",
        log.display()
    )]
    Startup { log: PathBuf, tail: String },
    #[error("cannot set up TLS for a client of the local server")]
    ClientTls(#[source] rustls::Error),
    #[error("cannot connect to database `{database}` of the local server as `{ADMIN_USER}`")]
    Connect {
        database: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("cannot create database `{database}` on the local server")]
    CreateDatabase {
        database: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl LocalPostgresError {
    fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}

/// A running PostgreSQL server in a temporary directory, stopped and deleted on drop.
///
/// `Debug` never shows the password.
#[derive(Debug)]
pub struct LocalPostgres {
    port: u16,
    password: Secret,
    ca_pem: Vec<u8>,
    programs: Programs,
    run_as: RunAs,
    /// Kept so that `Drop` can end it: a dropped server needs no watchdog any more.
    watchdog: Option<Child>,
    /// Declared last: fields drop after `Drop::drop` has stopped the server, and in order, so
    /// the directory goes only once nothing else refers to it.
    dir: tempfile::TempDir,
}

impl LocalPostgres {
    /// Starts a server that lives until this value is dropped.
    ///
    /// Blocks for a second or two (initdb and startup); from async code call it through
    /// `tokio::task::spawn_blocking`.
    pub fn start() -> Result<Self, LocalPostgresError> {
        Self::start_inner(None)
    }

    /// Starts a server that also stops, and deletes its directory, within about a second after
    /// the current process exits, however it exits.
    ///
    /// Needed wherever `Drop` may never run: a server held in a `static` (statics are never
    /// dropped, so one server per test binary would otherwise outlive every test run), or a
    /// program killed by a signal. A detached `sh` loop polls the process id and then runs
    /// `pg_ctl stop -m immediate` and `rm -rf`; it sits in its own process group, so a Ctrl-C
    /// aimed at the terminal's foreground job does not take it down before it has cleaned up.
    pub fn start_with_watchdog() -> Result<Self, LocalPostgresError> {
        Self::start_inner(Some(std::process::id()))
    }

    /// Like [`start_with_watchdog`](Self::start_with_watchdog), but the server's lifetime is
    /// tied to the process `pid` instead of the current one (e.g. a child that owns the run).
    pub fn start_with_watchdog_on(pid: u32) -> Result<Self, LocalPostgresError> {
        Self::start_inner(Some(pid))
    }

    fn start_inner(watch_pid: Option<u32>) -> Result<Self, LocalPostgresError> {
        let programs = Programs::find()?;
        let run_as = RunAs::detect()?;
        let dir = tempfile::Builder::new()
            .prefix("redshift-sync-pg-")
            .tempdir()
            .map_err(LocalPostgresError::io(
                "create a temporary directory in",
                std::env::temp_dir(),
            ))?;
        let password = Secret::new(random_hex(16)?);
        // From here on, an early return drops `server`, which stops whatever was started and
        // deletes the directory.
        let mut server = Self {
            port: 0,
            password,
            ca_pem: Vec::new(),
            programs,
            run_as,
            watchdog: None,
            dir,
        };
        if let Some(pid) = watch_pid {
            // Before anything is started, so that no window exists in which a dying process
            // leaves a server behind.
            server.watchdog = Some(server.spawn_watchdog(pid)?);
        }
        server.prepare_directory()?;
        server.init_cluster()?;
        server.start_server()?;
        tracing::info!(
            port = server.port,
            dir = %server.dir.path().display(),
            user = ADMIN_USER,
            "local postgres started"
        );
        Ok(server)
    }

    /// The host name to connect to: `localhost`, the only name the certificate is valid for.
    pub fn host(&self) -> &str {
        HOST
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser role clients log in as.
    pub fn admin_user(&self) -> &str {
        ADMIN_USER
    }

    /// The admin role's password (random per server). Never log it.
    pub fn admin_password(&self) -> &str {
        self.password.expose()
    }

    /// The PEM file of the CA that signed the server certificate (what `sslrootcert` names).
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The same CA certificate, in memory.
    pub fn ca_cert_pem(&self) -> &[u8] {
        &self.ca_pem
    }

    /// The temporary directory holding everything (see the module documentation).
    pub fn directory(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log file, for a look when a test behaves strangely.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The server certificate (for `localhost`) and its private key, PEM: what a stand-in
    /// server in front of this one (the tests' Redshift-shaped proxy) presents to clients.
    pub fn server_certificate_pem(&self) -> Result<(Vec<u8>, Vec<u8>), LocalPostgresError> {
        let read = |name: &str| {
            let path = self.tls_dir().join(name);
            fs::read(&path).map_err(LocalPostgresError::io("read", path))
        };
        Ok((read("server.crt")?, read("server.key")?))
    }

    /// A TLS connector that trusts only this server's CA and checks host names (`verify-full`).
    pub fn tls_connector(&self) -> Result<MakeRustlsConnect, LocalPostgresError> {
        let mut roots = rustls::RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(&self.ca_pem) {
            let certificate = certificate.map_err(|err| {
                LocalPostgresError::ClientTls(rustls::Error::General(err.to_string()))
            })?;
            roots
                .add(certificate)
                .map_err(LocalPostgresError::ClientTls)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(LocalPostgresError::ClientTls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }

    /// Client settings for the admin role over TCP with TLS required; pair them with
    /// [`tls_connector`](Self::tls_connector). Tests may change them before connecting, except
    /// the host: `tokio_postgres::Config::host` *adds* a host to try after the first one, so use
    /// [`client_config_for_host`](Self::client_config_for_host) for another host name.
    pub fn client_config(&self, database: &str) -> tokio_postgres::Config {
        self.client_config_for_host(HOST, database)
    }

    /// [`client_config`](Self::client_config) with another host name or address for the same
    /// server, e.g. `127.0.0.1`, which the certificate does not name.
    pub fn client_config_for_host(&self, host: &str, database: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(host)
            .port(self.port)
            .user(ADMIN_USER)
            .password(self.password.expose())
            .dbname(database)
            .ssl_mode(tokio_postgres::config::SslMode::Require)
            .application_name("redshift-sync local_postgres")
            .connect_timeout(Duration::from_secs(10));
        config
    }

    /// Connects to `database` as the admin with `verify-full` TLS; the connection is driven by a
    /// task spawned on the current Tokio runtime.
    pub async fn connect(
        &self,
        database: &str,
    ) -> Result<tokio_postgres::Client, LocalPostgresError> {
        let tls = self.tls_connector()?;
        let (client, connection) =
            self.client_config(database)
                .connect(tls)
                .await
                .map_err(|source| LocalPostgresError::Connect {
                    database: database.to_string(),
                    source,
                })?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "local postgres connection ended with an error");
            }
        });
        Ok(client)
    }

    /// Creates an empty database named `name` (any name: it is quoted as an identifier).
    pub async fn create_database(&self, name: &str) -> Result<(), LocalPostgresError> {
        let client = self.connect("postgres").await?;
        client
            .batch_execute(&format!("CREATE DATABASE {}", quote_identifier(name)))
            .await
            .map_err(|source| LocalPostgresError::CreateDatabase {
                database: name.to_string(),
                source,
            })
    }

    /// The connector's configuration map for `database`: the admin over `verify-full` TLS,
    /// trusting this server's CA.
    pub fn connector_configuration(&self, database: &str) -> HashMap<String, String> {
        [
            (keys::HOST, HOST.to_string()),
            (keys::PORT, self.port.to_string()),
            (keys::DATABASE, database.to_string()),
            (keys::USER, ADMIN_USER.to_string()),
            (keys::PASSWORD, self.password.expose().to_string()),
            (keys::SSLMODE, "verify-full".to_string()),
            (
                keys::SSLROOTCERT,
                self.ca_cert_path().to_string_lossy().into_owned(),
            ),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    fn tls_dir(&self) -> PathBuf {
        self.dir.path().join("tls")
    }

    fn password_file(&self) -> PathBuf {
        self.dir.path().join("admin.pwfile")
    }

    /// Creates the layout, certificates and initdb's password file, owned by the server user.
    fn prepare_directory(&mut self) -> Result<(), LocalPostgresError> {
        let root = self.dir.path().to_path_buf();
        set_mode(&root, 0o755)?;
        for dir in [self.socket_dir(), self.tls_dir()] {
            fs::create_dir(&dir).map_err(LocalPostgresError::io("create", &dir))?;
            set_mode(&dir, 0o700)?;
        }

        let tls = generate_certificates().map_err(LocalPostgresError::Certificates)?;
        write_file(&self.ca_cert_path(), &tls.ca_pem, 0o644)?;
        write_file(&self.tls_dir().join("server.crt"), &tls.cert_pem, 0o644)?;
        write_file(&self.tls_dir().join("server.key"), &tls.key_pem, 0o600)?;
        self.ca_pem = tls.ca_pem;

        let hash = md5_password_hash(ADMIN_USER, self.password.expose());
        write_file(&self.password_file(), hash.as_bytes(), 0o600)?;

        self.run_as.hand_over(&root)?;
        if let RunAs::ServerUser { .. } = self.run_as {
            // initdb would fail later with a less helpful message (a parent directory of
            // TMPDIR that the server user cannot traverse, e.g. /root/tmp).
            let status = self
                .run_as
                .command(Path::new("test"))
                .arg("-w")
                .arg(&root)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(LocalPostgresError::io("run", "runuser"))?;
            if !status.success() {
                return Err(LocalPostgresError::DirectoryUnreachable { dir: root });
            }
        }
        Ok(())
    }

    /// Runs initdb, then writes Redshift-like authentication and the server settings.
    fn init_cluster(&mut self) -> Result<(), LocalPostgresError> {
        let data = self.data_dir();
        let pwfile = self.password_file();
        let mut initdb = self.run_as.command(&self.programs.initdb());
        initdb
            .arg("--pgdata")
            .arg(&data)
            .arg(format!("--username={ADMIN_USER}"))
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--auth-local=md5", "--auth-host=md5"])
            // C locale: English server messages (matched below) and byte-order collation.
            .args(["--encoding=UTF8", "--locale=C", "--no-sync"]);
        run(initdb, self.dir.path())?;
        fs::remove_file(&pwfile).map_err(LocalPostgresError::io("remove", &pwfile))?;

        // No `trust` anywhere: every connection authenticates with the MD5 password. The
        // `hostssl` lines document intent; the `host` lines admit plain TCP as well, as a
        // Redshift cluster without `require_SSL` does.
        let hba = "\
# Written by redshift-sync's local_postgres: MD5 passwords only, as on Amazon Redshift.
# TYPE   DATABASE  USER  ADDRESS       METHOD
local    all       all                 md5
hostssl  all       all   127.0.0.1/32  md5
hostssl  all       all   ::1/128       md5
host     all       all   127.0.0.1/32  md5
host     all       all   ::1/128       md5
";
        let hba_path = data.join("pg_hba.conf");
        write_file(&hba_path, hba.as_bytes(), 0o600)?;

        // Our settings live in their own file so that a retry on another port rewrites it whole.
        let conf_path = data.join("postgresql.conf");
        let mut conf = OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .map_err(LocalPostgresError::io("open", &conf_path))?;
        conf.write_all(b"\ninclude 'redshift_sync.conf'\n")
            .map_err(LocalPostgresError::io("write", &conf_path))?;
        self.run_as.hand_over(&data)
    }

    fn write_settings(&self, port: u16, ipv6: bool) -> Result<(), LocalPostgresError> {
        let listen = if ipv6 { "127.0.0.1,::1" } else { "127.0.0.1" };
        let tls = self.tls_dir();
        let settings = format!(
            "\
# Written by redshift-sync's local_postgres.
listen_addresses = '{listen}'
port = {port}
unix_socket_directories = {socket}
unix_socket_permissions = 0700
# As on Redshift: MD5 passwords, TLS offered, UTC.
password_encryption = md5
ssl = on
ssl_cert_file = {cert}
ssl_key_file = {key}
timezone = 'UTC'
log_timezone = 'UTC'
# A disposable server: durability buys nothing, speed does.
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
shared_buffers = 32MB
",
            socket = quote_literal(&self.socket_dir().to_string_lossy()),
            cert = quote_literal(&tls.join("server.crt").to_string_lossy()),
            key = quote_literal(&tls.join("server.key").to_string_lossy()),
        );
        let path = self.data_dir().join("redshift_sync.conf");
        write_file(&path, settings.as_bytes(), 0o600)?;
        self.run_as.hand_over(&path)
    }

    /// Starts the server on a free port, retrying when another process takes the port between
    /// the probe and the server's bind.
    fn start_server(&mut self) -> Result<(), LocalPostgresError> {
        let log = self.log_path();
        for attempt in 1..=START_ATTEMPTS {
            let (port, ipv6) = free_port()?;
            self.write_settings(port, ipv6)?;
            let log_start = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
            let started = run(self.pg_ctl_start(), self.dir.path());
            let new_log = read_from(&log, log_start);
            // PostgreSQL starts when at least one listen address binds; a server that lost
            // one of them to another process would be reached only some of the time.
            let lost_port = new_log.contains("could not bind")
                || new_log.contains("could not create any TCP/IP sockets");
            match started {
                Ok(()) if !lost_port => {
                    self.port = port;
                    return Ok(());
                }
                Ok(()) => self.stop(),
                Err(err) if !lost_port => {
                    return Err(match err {
                        LocalPostgresError::CommandFailed { output, .. } => {
                            LocalPostgresError::Startup {
                                tail: tail(&format!("{new_log}{output}"), LOG_TAIL_LINES),
                                log,
                            }
                        }
                        other => other,
                    })
                }
                Err(_) => {}
            }
            tracing::debug!(port, attempt, "local postgres port taken, retrying");
        }
        Err(LocalPostgresError::Startup {
            tail: tail(&read_from(&log, 0), LOG_TAIL_LINES),
            log,
        })
    }

    /// Stops the server as a cluster reboot does (`pg_ctl stop -m fast`: every session ends
    /// with FATAL 57P01, new connections are refused), keeping its data, so that tests can show
    /// what a sync does while its database is away. [`start_again`](Self::start_again) brings
    /// it back on the same port. Blocks until the server is down.
    pub fn stop_for_outage(&self) -> Result<(), LocalPostgresError> {
        run(self.pg_ctl_stop("fast", 60), self.dir.path())
    }

    /// Starts a server stopped by [`stop_for_outage`](Self::stop_for_outage) again, on the
    /// same port and with the same data. Blocks until it accepts connections.
    pub fn start_again(&self) -> Result<(), LocalPostgresError> {
        run(self.pg_ctl_start(), self.dir.path())
    }

    /// `pg_ctl start`, waiting until the server accepts connections.
    fn pg_ctl_start(&self) -> Command {
        let mut pg_ctl = self.run_as.command(&self.programs.pg_ctl());
        pg_ctl
            .arg("--pgdata")
            .arg(self.data_dir())
            .arg("--log")
            .arg(self.log_path())
            .args(["--wait", "--timeout=60", "--silent", "start"]);
        pg_ctl
    }

    /// `pg_ctl stop` in `mode`, waiting at most `timeout_s` seconds.
    fn pg_ctl_stop(&self, mode: &str, timeout_s: u32) -> Command {
        let mut pg_ctl = self.run_as.command(&self.programs.pg_ctl());
        pg_ctl
            .arg("--pgdata")
            .arg(self.data_dir())
            .arg(format!("--mode={mode}"))
            .arg(format!("--timeout={timeout_s}"))
            .args(["--wait", "--silent", "stop"]);
        pg_ctl
    }

    /// `pg_ctl stop -m immediate`: the data is about to be deleted, so no checkpoint is needed.
    fn stop_command(&self) -> Command {
        self.pg_ctl_stop("immediate", 30)
    }

    fn stop(&self) {
        if !self.data_dir().join("postmaster.pid").exists() {
            return;
        }
        let mut stop = self.stop_command();
        stop.current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match stop.status() {
            Ok(status) if status.success() => {}
            Ok(status) => tracing::warn!(%status, "pg_ctl stop failed for the local postgres"),
            Err(err) => {
                tracing::warn!(error = %err, "cannot run pg_ctl stop for the local postgres");
            }
        }
    }

    /// A detached shell loop that waits for `pid` to exit, then stops the server and deletes the
    /// directory. Arguments travel as positional parameters, so no path needs shell quoting.
    fn spawn_watchdog(&self, pid: u32) -> Result<Child, LocalPostgresError> {
        use std::os::unix::process::CommandExt;
        let stop = self.stop_command();
        let script = r#"pid=$1; dir=$2; shift 2
while kill -0 "$pid" 2>/dev/null; do sleep 1; done
"$@" >/dev/null 2>&1
rm -rf "$dir""#;
        let mut watchdog = Command::new("sh");
        watchdog
            .arg("-c")
            .arg(script)
            .arg("redshift-sync-pg-watchdog")
            .arg(pid.to_string())
            .arg(self.dir.path())
            .arg(stop.get_program())
            .args(stop.get_args())
            .current_dir("/")
            // Null, not inherited: a test runner reading our stdout until EOF must not wait
            // for the watchdog.
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        watchdog
            .spawn()
            .map_err(LocalPostgresError::io("run", "sh"))
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        // `dir` (a TempDir) removes the directory when the fields drop, right after this.
    }
}

/// Where `initdb` and `pg_ctl` live.
#[derive(Debug, Clone)]
struct Programs {
    bin: PathBuf,
}

impl Programs {
    /// PATH first (an explicit choice of the user), then the versioned directories of
    /// Debian/Ubuntu packages and Homebrew kegs (not on PATH by default), highest version first.
    fn find() -> Result<Self, LocalPostgresError> {
        let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
        if let Some(dir) = std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .find(|dir| has_both(dir))
        {
            return Ok(Self { bin: dir });
        }
        const VERSIONED: &[(&str, &str, &str)] = &[
            ("/usr/lib/postgresql", "", "bin"),
            ("/opt/homebrew/opt", "postgresql@", "bin"),
            ("/usr/local/opt", "postgresql@", "bin"),
        ];
        let mut candidates: Vec<(Vec<u32>, PathBuf)> = Vec::new();
        for (parent, prefix, bin) in VERSIONED {
            let Ok(entries) = fs::read_dir(parent) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(version) = name.strip_prefix(prefix).and_then(parse_version) else {
                    continue;
                };
                let dir = entry.path().join(bin);
                if has_both(&dir) {
                    candidates.push((version, dir));
                }
            }
        }
        candidates.sort();
        match candidates.pop() {
            Some((_, bin)) => Ok(Self { bin }),
            None => Err(LocalPostgresError::BinariesNotFound {
                searched: VERSIONED
                    .iter()
                    .map(|(parent, prefix, bin)| format!("{parent}/{prefix}*/{bin}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    fn initdb(&self) -> PathBuf {
        self.bin.join("initdb")
    }

    fn pg_ctl(&self) -> PathBuf {
        self.bin.join("pg_ctl")
    }
}

/// `15` -> [15], `9.6` -> [9, 6]; anything else is not a version directory.
pub fn parse_version(text: &str) -> Option<Vec<u32>> {
    text.split('.').map(|part| part.parse().ok()).collect()
}

/// Which OS user the server programs run as.
#[derive(Debug, Clone)]
enum RunAs {
    /// Not root: the server runs as us and the files are already ours.
    CurrentUser,
    /// Root: initdb refuses root, so the programs run as `postgres` through `runuser`.
    ServerUser {
        runuser: PathBuf,
        uid: u32,
        gid: u32,
    },
}

impl RunAs {
    fn detect() -> Result<Self, LocalPostgresError> {
        if id(&["-u"])?.as_deref() != Some("0") {
            return Ok(Self::CurrentUser);
        }
        let (Some(uid), Some(gid)) = (
            id(&["-u", SERVER_OS_USER])?.and_then(|s| s.parse().ok()),
            id(&["-g", SERVER_OS_USER])?.and_then(|s| s.parse().ok()),
        ) else {
            return Err(LocalPostgresError::NoServerUser);
        };
        // Root's PATH does not always include the sbin directories.
        let runuser = std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
            .map(|dir| dir.join("runuser"))
            .find(|path| path.is_file())
            .ok_or(LocalPostgresError::NoRunuser)?;
        Ok(Self::ServerUser { runuser, uid, gid })
    }

    fn command(&self, program: &Path) -> Command {
        match self {
            Self::CurrentUser => Command::new(program),
            Self::ServerUser { runuser, .. } => {
                let mut command = Command::new(runuser);
                command.args(["-u", SERVER_OS_USER, "--"]).arg(program);
                command
            }
        }
    }

    /// Gives `path` (recursively) to the server user: PostgreSQL insists on owning its data
    /// directory and its private key.
    fn hand_over(&self, path: &Path) -> Result<(), LocalPostgresError> {
        let Self::ServerUser { uid, gid, .. } = self else {
            return Ok(());
        };
        std::os::unix::fs::lchown(path, Some(*uid), Some(*gid))
            .map_err(LocalPostgresError::io("change the owner of", path))?;
        if path.is_dir() && !path.is_symlink() {
            for entry in fs::read_dir(path).map_err(LocalPostgresError::io("list", path))? {
                let entry = entry.map_err(LocalPostgresError::io("list", path))?;
                self.hand_over(&entry.path())?;
            }
        }
        Ok(())
    }
}

/// `id ARGS`: Ok(None) when it fails (no such user), Err only when `id` cannot run at all.
fn id(args: &[&str]) -> Result<Option<String>, LocalPostgresError> {
    let output = Command::new("id")
        .args(args)
        .stderr(Stdio::null())
        .output()
        .map_err(LocalPostgresError::io("run", "id"))?;
    Ok(output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string()))
}

/// Runs a server program to completion; a failure carries its (password-free) output.
fn run(mut command: Command, cwd: &Path) -> Result<(), LocalPostgresError> {
    // The current directory may be one the server user cannot enter (e.g. /root).
    command.current_dir(cwd).stdin(Stdio::null());
    let output = command
        .output()
        .map_err(LocalPostgresError::io("run", command.get_program()))?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Err(LocalPostgresError::CommandFailed {
        command: std::iter::once(command.get_program())
            .chain(command.get_args())
            .map(|arg| arg.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
        status: output.status,
        output: tail(&text, LOG_TAIL_LINES),
    })
}

/// A port that is free on 127.0.0.1 right now, and whether ::1 is usable with it.
fn free_port() -> Result<(u16, bool), LocalPostgresError> {
    let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(LocalPostgresError::io("bind a port on", "127.0.0.1"))?;
    let port = probe
        .local_addr()
        .map_err(LocalPostgresError::io("bind a port on", "127.0.0.1"))?
        .port();
    let ipv6 = TcpListener::bind((Ipv6Addr::LOCALHOST, port)).is_ok();
    Ok((port, ipv6))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), LocalPostgresError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(LocalPostgresError::io("set the permissions of", path))
}

/// Writes a file with `mode` from the start (a key is never readable by others, not even
/// briefly), replacing any previous content.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), LocalPostgresError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(LocalPostgresError::io("create", path))?;
    file.write_all(contents)
        .map_err(LocalPostgresError::io("write", path))?;
    set_mode(path, mode)
}

/// The log from byte `offset` on, or nothing if it cannot be read yet.
fn read_from(path: &Path, offset: u64) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A double-quoted SQL identifier.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A single-quoted string for postgresql.conf.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn random_hex(bytes: usize) -> Result<String, LocalPostgresError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(LocalPostgresError::Random)?;
    Ok(hex::encode(buffer))
}

/// PostgreSQL's stored MD5 form, `md5` + md5(password + user): given to initdb, it is stored
/// as-is, whatever `password_encryption` says during bootstrap.
pub fn md5_password_hash(user: &str, password: &str) -> String {
    postgres_protocol::password::md5(password.as_bytes(), user)
}

struct GeneratedTls {
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

/// A fresh CA and a server certificate it signs, valid for `DNS:localhost` only.
///
/// P-256 keys: generated in microseconds. The server's common name is deliberately not a host
/// name, so only the subjectAltName decides which names verify. Valid from an hour ago (clock
/// skew) for [`CERTIFICATE_DAYS`].
fn generate_certificates() -> Result<GeneratedTls, rcgen::Error> {
    let now = time::OffsetDateTime::now_utc();
    let validity = |params: &mut CertificateParams| {
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(i64::from(CERTIFICATE_DAYS));
    };

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name = name("redshift-sync local test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca_params);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let server_key = KeyPair::generate()?;
    let mut server_params = CertificateParams::new(vec![HOST.to_string()])?;
    server_params.distinguished_name = name("redshift-sync local test server");
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server_params.use_authority_key_identifier_extension = true;
    validity(&mut server_params);
    let server = server_params.signed_by(&server_key, &ca)?;

    Ok(GeneratedTls {
        ca_pem: ca.as_ref().pem().into_bytes(),
        cert_pem: server.pem().into_bytes(),
        key_pem: server_key.serialize_pem().into_bytes(),
    })
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "redshift-sync");
    name.push(DnType::CommonName, common_name);
    name
}
