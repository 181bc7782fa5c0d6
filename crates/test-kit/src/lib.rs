//! redshift-sync's test kit, shared by the integration tests (`tests/main.rs`, one binary), the
//! benchmarks and the demo, and never linked into the executable hosts run: one throwaway
//! PostgreSQL server for the run ([`local_postgres`]) with a Redshift-shaped proxy in front of it
//! ([`redshift`]), a fresh database per test, the gRPC server in-process on a free port or the
//! executable as a host starts it ([`ServerProcess`]), the AWS emulator ([`aws`]), an SSH bastion
//! ([`ssh`]), and readers of the Update stream ([`stream`], [`interrupt`]).
//!
//! ```text
//!  test ── gRPC ──► connector (in-process) ── TLS ──► redshift::RedshiftProxy ──► PostgreSQL
//!   └───────────────────────── admin client (direct, verify-full TLS) ────────────┘
//! ```
//!
//! Every test database is created from a template holding `redshift/emulation.sql` (Redshift's
//! types, functions and `svv_*` views), with `catalog_history` on its search path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::local_postgres::LocalPostgres;
use fivetran_source::proto::source_connector_client::SourceConnectorClient;
use fivetran_source::server::MAX_MESSAGE_BYTES;
use tokio::sync::oneshot;
use tonic::transport::{Channel, Endpoint};

pub use local_postgres;

pub mod aws;
pub mod data_api;
pub mod interrupt;
pub mod python;
pub mod redshift;
pub mod ssh;
pub mod stream;

use redshift::{RedshiftProxy, Settings};

/// The template database every test database is created from.
const TEMPLATE: &str = "redshift_template";

/// The PostgreSQL server shared by the tests of this binary, started on first use.
///
/// Started with the watchdog: a `static` is never dropped, so without it every test run would
/// leave a server behind. With nextest (a process per test) each test gets its own server.
pub fn cluster() -> &'static LocalPostgres {
    static CLUSTER: OnceLock<LocalPostgres> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        hang_watchdog();
        let postgres = LocalPostgres::start_with_watchdog().unwrap_or_else(|err| {
            panic!("cannot start the test PostgreSQL server: {}", chain(&err))
        });
        install_redshift_template(&postgres);
        postgres
    })
}

/// No test binary here needs more than a few minutes; one that runs for [`HANG_LIMIT`] has a
/// test waiting for something that will not come. It then fails, naming the binary, instead
/// of holding CI until its time limit (`TEST_HANG_LIMIT_S` changes the limit).
const HANG_LIMIT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

fn hang_watchdog() {
    let limit = std::env::var("TEST_HANG_LIMIT_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(HANG_LIMIT, std::time::Duration::from_secs);
    std::thread::Builder::new()
        .name("hang-watchdog".into())
        .spawn(move || {
            std::thread::sleep(limit);
            eprintln!(
                "{} has run for {} s: a test is waiting for something that will not come (a lost wakeup, a stalled peer); failing instead of hanging",
                std::env::args().next().unwrap_or_default(),
                limit.as_secs()
            );
            std::process::exit(101);
        })
        .expect("the watchdog's thread");
}

/// Creates the template database with Redshift's emulation, on a runtime of its own (the
/// caller may be inside a test's runtime).
fn install_redshift_template(postgres: &LocalPostgres) {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    postgres
                        .create_database(TEMPLATE)
                        .await
                        .unwrap_or_else(|err| panic!("{}", chain(&err)));
                    let client = postgres
                        .connect(TEMPLATE)
                        .await
                        .unwrap_or_else(|err| panic!("{}", chain(&err)));
                    client
                        .batch_execute(redshift::EMULATION_SQL)
                        .await
                        .unwrap_or_else(|err| {
                            panic!("installing the Redshift emulation: {}", chain(&err))
                        });
                });
            })
            .join()
            .expect("the template's thread");
    });
}

/// The Redshift-shaped proxy the tests of this binary share (default settings: a multi-node
/// cluster, no faults). Tests that change its behaviour start their own with [`own_proxy`].
pub fn proxy() -> &'static RedshiftProxy {
    static PROXY: OnceLock<RedshiftProxy> = OnceLock::new();
    PROXY.get_or_init(|| RedshiftProxy::start(cluster(), Settings::default()))
}

/// A proxy of a test's own, for settings and faults no other test should see.
pub fn own_proxy(settings: Settings) -> RedshiftProxy {
    RedshiftProxy::start(cluster(), settings)
}

/// A database of its own for one test, with an admin client (straight to PostgreSQL) and the
/// connector configuration (through the Redshift-shaped proxy).
pub struct TestDb {
    pub name: String,
    pub client: tokio_postgres::Client,
    pub config: HashMap<String, String>,
}

/// `public.<name>`: `rows` rows keyed by `id`, a note, and an `updated_at` a second apart.
pub async fn create_items(db: &TestDb, name: &str, rows: i32) {
    db.client
        .batch_execute(&format!(
            "CREATE TABLE public.{name} (id INTEGER PRIMARY KEY, note VARCHAR(20), updated_at TIMESTAMP);
             INSERT INTO public.{name}
               SELECT g, 'note ' || g, TIMESTAMP '2024-01-01' + g * INTERVAL '1 second'
               FROM generate_series(1, {rows}) g;"
        ))
        .await
        .unwrap_or_else(|err| panic!("create public.{name}: {}", chain(&err)));
}

/// Creates a new, empty database on [`cluster`]: tests never see each other's tables.
pub async fn fresh_database() -> TestDb {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let cluster = cluster();
    let admin = cluster
        .connect("postgres")
        .await
        .unwrap_or_else(|err| panic!("{}", chain(&err)));
    // One statement per call: CREATE DATABASE cannot run in a multi-statement batch.
    for statement in [
        format!("CREATE DATABASE \"{name}\" TEMPLATE {TEMPLATE}"),
        format!("ALTER DATABASE \"{name}\" SET search_path = \"$user\", public, catalog_history, pg_catalog"),
    ] {
        admin
            .batch_execute(&statement)
            .await
            .unwrap_or_else(|err| panic!("{statement}: {}", chain(&err)));
    }
    let client = cluster
        .connect(&name)
        .await
        .unwrap_or_else(|err| panic!("{}", chain(&err)));
    TestDb {
        config: proxy().connector_configuration(&name),
        name,
        client,
    }
}

/// The connector's gRPC server running in this process on 127.0.0.1 and a free port; it shuts
/// down when dropped.
pub struct TestServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("local address of the listener");
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async {
                // A dropped sender also means stop.
                let _ = stopped.await;
            };
            if let Err(err) = fivetran_source::server::serve(listener, shutdown).await {
                eprintln!("test gRPC server failed: {}", chain(&err));
            }
        });
        TestServer {
            addr,
            shutdown: Some(shutdown),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A channel to the server (connected once; cloning it is cheap).
    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("a valid endpoint URI")
            .connect()
            .await
            .unwrap_or_else(|err| panic!("cannot connect to the test gRPC server: {}", chain(&err)))
    }

    /// A SourceConnector client with the hosts' 128 MiB message limits.
    pub async fn client(&self) -> SourceConnectorClient<Channel> {
        SourceConnectorClient::new(self.channel().await)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// An error with all its causes on one line, for panic messages.
#[allow(unused_imports)]
pub use fivetran_source::source::error_chain as chain;

/// The form's fields as a host fills them in: those of a conditional group in its place (the
/// group itself is no key).
pub fn form_leaves(
    fields: &[fivetran_source::proto::FormField],
) -> Vec<fivetran_source::proto::FormField> {
    use fivetran_source::proto::form_field::Type;
    let mut out = Vec::new();
    for field in fields {
        match &field.r#type {
            Some(Type::ConditionalFields(group)) => out.extend(form_leaves(&group.fields)),
            _ => out.push(field.clone()),
        }
    }
    out
}

/// The form's default values, every field's (shown or not): what a host may send for fields
/// the user never touched.
pub async fn form_defaults(client: &mut SourceConnectorClient<Channel>) -> HashMap<String, String> {
    let form = client
        .configuration_form(fivetran_source::proto::ConfigurationFormRequest {})
        .await
        .expect("ConfigurationForm")
        .into_inner();
    form_leaves(&form.fields)
        .into_iter()
        .filter_map(|field| Some((field.name, field.default_value?)))
        .collect()
}

/// Runs the named Test: `Ok` on success, the failure's text otherwise (never empty). A status
/// instead of an answer fails the calling test: Test answers problems as failures.
pub async fn run_test(
    client: &mut SourceConnectorClient<Channel>,
    name: &str,
    config: &HashMap<String, String>,
) -> Result<(), String> {
    use fivetran_source::proto::{test_response, TestRequest};
    let response = client
        .test(TestRequest {
            name: name.to_string(),
            configuration: config.clone(),
        })
        .await
        .unwrap_or_else(|status| {
            panic!("Test `{name}` answered a status instead of a result: {status:?}")
        })
        .into_inner();
    match response.response {
        Some(test_response::Response::Success(true)) => Ok(()),
        Some(test_response::Response::Failure(reason)) => {
            assert!(!reason.trim().is_empty(), "an empty failure reason");
            Err(reason)
        }
        other => panic!("Test `{name}` answered {other:?}"),
    }
}

/// Runs the `connect` test, which must fail, and returns its failure message (Test answers
/// problems with the configuration or the cluster as a failure for the user to read).
pub async fn connect_test_failure(
    client: &mut SourceConnectorClient<Channel>,
    config: &HashMap<String, String>,
) -> String {
    use fivetran_source::proto::{test_response, TestRequest};
    let response = client
        .test(TestRequest {
            name: "connect".into(),
            configuration: config.clone(),
        })
        .await
        .unwrap_or_else(|status| panic!("Test answered a status, not a failure: {status:?}"))
        .into_inner();
    match response.response {
        Some(test_response::Response::Failure(failure)) => failure,
        other => panic!("the connect test did not fail: {other:?}"),
    }
}

/// The connector's executable serving on a free port, as a host starts it, with an
/// environment of the test's choosing (AWS credentials, say); killed when dropped.
pub struct ServerProcess {
    child: std::process::Child,
    port: u16,
    listening: String,
    /// Its log lines after the one that said where it listens.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// `env` is all the environment it gets, besides PATH.
    pub fn start(env: &[(&str, &str)]) -> ServerProcess {
        Self::start_with(&["serve", "--port", "0"], env)
    }

    /// As [`ServerProcess::start`], with an environment of owned pairs (as
    /// [`aws::credentials_env`] builds).
    pub fn start_in(env: &[(String, String)]) -> ServerProcess {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Self::start(&env)
    }

    /// Started with the arguments `args` (which must make it listen on a free port); its log
    /// is passed on to this process's output (a test's output shows it on failure).
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> ServerProcess {
        Self::spawn(args, env, true)
    }

    /// As [`ServerProcess::start_with`], its log read and dropped (a benchmark's report stays
    /// readable).
    pub fn start_silent(args: &[&str], env: &[(&str, &str)]) -> ServerProcess {
        Self::spawn(args, env, false)
    }

    fn spawn(args: &[&str], env: &[(&str, &str)], forward_log: bool) -> ServerProcess {
        use std::io::{BufRead, BufReader};
        let mut command = std::process::Command::new(server_executable());
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start the connector");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (listening, port) = loop {
            let line = lines
                .next()
                .expect("the server exited before listening")
                .expect("read the server's log");
            if let Some(addr) = line.split("addr=").nth(1) {
                let addr: String = addr
                    .chars()
                    .take_while(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '[' | ']' | '.'))
                    .collect();
                let port = addr
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("no port in {line}"));
                break (addr, port);
            }
        };
        // Read its log to the end either way, so that its writes never block on a full pipe;
        // kept for tests that check what it says (and never says).
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if forward_log {
                    println!("server: {line}");
                }
                kept.lock().unwrap().push(line);
            }
        });
        ServerProcess {
            child,
            port,
            listening,
            log,
        }
    }

    /// Its log so far (stdout; the lines after the one saying where it listens).
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Its process id (for `/proc/<pid>/...`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The address it logged it listens on.
    pub fn listening(&self) -> &str {
        &self.listening
    }

    /// Sends SIGTERM, as a host or an orchestrator stopping the process does.
    pub fn terminate(&self) {
        let pid = i32::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) with a pid this test started and a valid signal number.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM could not be sent");
    }

    /// Waits up to `limit` for the process to exit; its status, or `None` if it did not.
    pub fn wait_for_exit(
        &mut self,
        limit: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("the server's status") {
                return Some(status);
            }
            if started.elapsed() > limit {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where it listens: `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The most resident memory the process has had (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server's /proc status");
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("VmHWM in /proc status");
        kib / 1024
    }

    pub async fn client(&self) -> SourceConnectorClient<Channel> {
        let channel = Endpoint::from_shared(format!("http://127.0.0.1:{}", self.port))
            .expect("a valid endpoint URI")
            .connect()
            .await
            .expect("connect to the server process");
        SourceConnectorClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The connector's executable as Cargo built it for the running test or benchmark: beside the
/// `deps/` directory the test binary runs from (`CARGO_BIN_EXE_*` is known only to the
/// package's own test targets, not to a crate they link).
pub fn server_executable() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the running test's path");
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("a test binary runs from <target>/<profile>/deps");
    let server = profile_dir.join("fivetran_source");
    assert!(
        server.is_file(),
        "{} is not built: run the tests with `cargo test` (which builds it)",
        server.display()
    );
    server
}

/// The target directory's `tmp/` (Cargo's `CARGO_TARGET_TMPDIR`, which only the package's own
/// test targets are told): the directory holding Cargo's `CACHEDIR.TAG` above the running
/// binary, so tests and benchmarks share what is kept there (the Python environment).
pub fn target_tmp_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the running test's path");
    let target = exe
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .unwrap_or_else(|| panic!("{} is not under a Cargo target directory", exe.display()));
    target.join("tmp")
}
