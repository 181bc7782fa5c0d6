//! Shared by every integration test binary (`mod support;`): one throwaway PostgreSQL server per
//! binary, a fresh database per test, and the gRPC server in-process on a free port.
//!
//! Each test binary uses only some of these helpers, hence the `dead_code` allowances.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use fivetran_source::local_postgres::LocalPostgres;
use fivetran_source::proto::source_connector_client::SourceConnectorClient;
use fivetran_source::server::MAX_MESSAGE_BYTES;
use tokio::sync::oneshot;
use tonic::transport::{Channel, Endpoint};

pub mod stream;

/// The PostgreSQL server shared by the tests of this binary, started on first use.
///
/// Started with the watchdog: a `static` is never dropped, so without it every test run would
/// leave a server behind. With nextest (a process per test) each test gets its own server.
#[allow(dead_code)]
pub fn cluster() -> &'static LocalPostgres {
    static CLUSTER: OnceLock<LocalPostgres> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        LocalPostgres::start_with_watchdog().unwrap_or_else(|err| {
            panic!("cannot start the test PostgreSQL server: {}", chain(&err))
        })
    })
}

/// A database of its own for one test, with an admin client and the connector configuration.
#[allow(dead_code)]
pub struct TestDb {
    pub name: String,
    pub client: tokio_postgres::Client,
    pub config: HashMap<String, String>,
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
    cluster
        .create_database(&name)
        .await
        .unwrap_or_else(|err| panic!("{}", chain(&err)));
    let client = cluster
        .connect(&name)
        .await
        .unwrap_or_else(|err| panic!("{}", chain(&err)));
    TestDb {
        config: cluster.connector_configuration(&name),
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
