//! Shared by every integration test (`tests/main.rs`, one binary): one throwaway PostgreSQL server
//! for the run with a Redshift-shaped proxy in front of it, a fresh database per test, and the
//! gRPC server in-process on a free port.
//!
//! ```text
//!  test ── gRPC ──► connector (in-process) ── TLS ──► redshift::RedshiftProxy ──► PostgreSQL
//!   └───────────────────────── admin client (direct, verify-full TLS) ────────────┘
//! ```
//!
//! Every test database is created from a template holding `redshift/emulation.sql` (Redshift's
//! types, functions and `svv_*` views), with `catalog_history` on its search path.
//!
//! The benchmark includes some of these files by `#[path]` and uses only part of them, hence the
//! `dead_code` allowances.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use fivetran_source::debug::local_postgres::LocalPostgres;
use fivetran_source::proto::source_connector_client::SourceConnectorClient;
use fivetran_source::server::MAX_MESSAGE_BYTES;
use tokio::sync::oneshot;
use tonic::transport::{Channel, Endpoint};

#[allow(dead_code)]
pub mod aws;
pub mod interrupt;
#[allow(dead_code)]
pub mod python;
pub mod redshift;
#[allow(dead_code)]
pub mod ssh;
pub mod stream;

use redshift::{RedshiftProxy, Settings};

/// The template database every test database is created from.
const TEMPLATE: &str = "redshift_template";

/// The PostgreSQL server shared by the tests of this binary, started on first use.
///
/// Started with the watchdog: a `static` is never dropped, so without it every test run would
/// leave a server behind. With nextest (a process per test) each test gets its own server.
#[allow(dead_code)]
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
                        .batch_execute(include_str!("redshift/emulation.sql"))
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
#[allow(dead_code)]
pub fn proxy() -> &'static RedshiftProxy {
    static PROXY: OnceLock<RedshiftProxy> = OnceLock::new();
    PROXY.get_or_init(|| RedshiftProxy::start(cluster(), Settings::default()))
}

/// A proxy of a test's own, for settings and faults no other test should see.
#[allow(dead_code)]
pub fn own_proxy(settings: Settings) -> RedshiftProxy {
    RedshiftProxy::start(cluster(), settings)
}

/// A database of its own for one test, with an admin client (straight to PostgreSQL) and the
/// connector configuration (through the Redshift-shaped proxy).
#[allow(dead_code)]
pub struct TestDb {
    pub name: String,
    pub client: tokio_postgres::Client,
    pub config: HashMap<String, String>,
}

/// `public.<name>`: `rows` rows keyed by `id`, a note, and an `updated_at` a second apart.
#[allow(dead_code)]
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
#[allow(dead_code)]
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
#[allow(dead_code)]
pub struct TestServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

#[allow(dead_code)]
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

/// Runs the named Test: `Ok` on success, the failure's text otherwise (never empty). A status
/// instead of an answer fails the calling test: Test answers problems as failures.
#[allow(dead_code)]
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
#[allow(dead_code)]
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
#[allow(dead_code)]
pub struct ServerProcess {
    child: std::process::Child,
    port: u16,
    listening: String,
}

#[allow(dead_code)]
impl ServerProcess {
    /// `env` is all the environment it gets, besides PATH.
    pub fn start(env: &[(&str, &str)]) -> ServerProcess {
        Self::start_with(&["serve", "--port", "0"], env)
    }

    /// Started with the arguments `args` (which must make it listen on a free port).
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> ServerProcess {
        use std::io::{BufRead, BufReader};
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fivetran_source"));
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
        // Pass its log on (the test's output shows it on failure); never block its writes.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                println!("server: {line}");
            }
        });
        ServerProcess {
            child,
            port,
            listening,
        }
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
