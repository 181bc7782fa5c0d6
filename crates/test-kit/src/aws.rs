//! The AWS side of IAM sign-in for the tests: moto, the AWS API emulator (from PyPI, in the
//! tests' venv), behind a small HTTP front that the connector is pointed at
//! (`aws_endpoint_url`).
//!
//! ```text
//!  connector ── AWS API (SigV4) ──► front ──► moto (IAM users and policies enforced)
//!                                     └── installs each temporary password in PostgreSQL
//! ```
//!
//! moto authenticates every call and checks it against the IAM users `aws_setup.py` created,
//! so AccessDenied is moto's own answer. The front does what moto cannot:
//! - a password moto hands out must work on the database, so the front creates (or alters)
//!   that database user in PostgreSQL, `VALID UNTIL` the expiration it returns, before it
//!   answers; PostgreSQL then refuses it once it has expired, as Redshift does;
//! - [`FrontSettings`] shortens lifetimes and can install a password already expired;
//! - `DescribeClusters` names the test proxy as the cluster's endpoint;
//! - moto has no Redshift Serverless and no `GetClusterCredentialsWithIAM`: the front answers
//!   those itself, in AWS's documented shapes, allowing the `syncer` user only.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::data_api::{Answer, DataApi, DatabaseLogin};
use crate::local_postgres::LocalPostgres;

pub const REGION: &str = "us-east-1";
pub const CLUSTER: &str = "sync-cluster";
pub const WORKGROUP: &str = "sync-workgroup";

/// An IAM user's access key, as the standard credential chain would find it.
#[derive(Debug, Clone)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
}

/// The environment a host gives the connector: an access key and nothing else to find.
pub fn credentials_env(key: &AccessKey, home: &Path) -> Vec<(String, String)> {
    let mut env = isolated_env(home);
    env.push(("AWS_ACCESS_KEY_ID".into(), key.id.clone()));
    env.push(("AWS_SECRET_ACCESS_KEY".into(), key.secret.clone()));
    env
}

/// No credentials anywhere: no profile files (`HOME` is `home`, an empty temporary directory),
/// no instance metadata service to wait for.
pub fn isolated_env(home: &Path) -> Vec<(String, String)> {
    vec![
        ("HOME".into(), home.display().to_string()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ]
}

/// How the front bends the answers, for one test.
#[derive(Debug, Clone, Default)]
pub struct FrontSettings {
    /// Temporary passwords expire this long after they are handed out (AWS: 15-60 minutes).
    pub lifetime: Option<Duration>,
    /// The next this-many passwords are installed already expired in the database, while the
    /// answer still says they are valid: the database refuses a password the connector
    /// believes good.
    pub expired_in_database: u32,
}

struct Shared {
    postgres: &'static LocalPostgres,
    moto: SocketAddr,
    /// The port `DescribeClusters` and `GetWorkgroup` give as the endpoint's.
    database_port: u16,
    settings: Mutex<FrontSettings>,
    /// Calls per action, counted as they arrive.
    calls: Mutex<HashMap<String, usize>>,
    /// Access key id -> IAM user name, for the answers the front gives itself.
    users: HashMap<String, String>,
    /// The Redshift Data API, emulated here (moto's runs no SQL).
    data_api: Arc<DataApi>,
    /// The one identity the Data API serves: it reads a `SecretArn`'s secret as the caller,
    /// as the service does.
    syncer: AccessKey,
}

/// moto and its front; both stop when this is dropped.
pub struct AwsEmulator {
    moto: Child,
    front: SocketAddr,
    shared: Arc<Shared>,
    pub syncer: AccessKey,
    pub outsider: AccessKey,
    /// Stands in for the cluster's IAM role in UNLOAD (see `aws_setup.py`).
    pub unloader: AccessKey,
    /// The connector's permissions less `s3:DeleteObject`.
    pub keeper: AccessKey,
    /// The account's administrator of Secrets Manager: creates and rotates secrets.
    pub rotator: AccessKey,
}

impl AwsEmulator {
    /// Starts moto, sets up its account, and starts the front. Endpoints it reports point
    /// at `database_port` on localhost (the test's Redshift-shaped proxy).
    /// [`AwsEmulator::start`] on the test's PostgreSQL ([`crate::cluster`]), off the async
    /// workers (moto takes seconds to start).
    pub async fn launch(database_port: u16) -> AwsEmulator {
        tokio::task::spawn_blocking(move || Self::start(crate::cluster(), database_port))
            .await
            .expect("the emulator's start")
    }

    pub fn start(postgres: &'static LocalPostgres, database_port: u16) -> AwsEmulator {
        let python = super::python::python();
        let moto_port = free_port();
        let moto = Command::new(super::python::venv().join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &moto_port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto_addr: SocketAddr = ([127, 0, 0, 1], moto_port).into();
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(moto_addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let output = Command::new(python)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/src/aws_setup.py"))
            .arg(format!("http://{moto_addr}"))
            .output()
            .expect("run aws_setup.py");
        assert!(
            output.status.success(),
            "aws_setup.py failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let keys: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("aws_setup.py prints JSON");
        let key = |user: &str| AccessKey {
            id: keys[user]["access_key_id"].as_str().unwrap().to_string(),
            secret: keys[user]["secret_access_key"]
                .as_str()
                .unwrap()
                .to_string(),
        };
        let (syncer, outsider, unloader, keeper, rotator) = (
            key("syncer"),
            key("outsider"),
            key("unloader"),
            key("keeper"),
            key("rotator"),
        );
        let shared = Arc::new(Shared {
            postgres,
            moto: moto_addr,
            database_port,
            settings: Mutex::new(FrontSettings::default()),
            calls: Mutex::new(HashMap::new()),
            users: HashMap::from([
                (syncer.id.clone(), "syncer".to_string()),
                (outsider.id.clone(), "outsider".to_string()),
            ]),
            data_api: Arc::new(DataApi::default()),
            syncer: syncer.clone(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the front");
        listener.set_nonblocking(true).unwrap();
        let front = listener.local_addr().unwrap();
        let serving = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("aws-front".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the front's runtime");
                runtime.block_on(serve(serving, listener));
            })
            .expect("the front's thread");
        AwsEmulator {
            moto,
            front,
            shared,
            syncer,
            outsider,
            unloader,
            keeper,
            rotator,
        }
    }

    /// Creates the Secrets Manager secret `name` holding `value` (or, if it exists, puts
    /// `value` as its current version: a rotation), as the account's administrator would; its
    /// ARN.
    pub async fn put_secret(&self, name: &str, value: &str) -> String {
        use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
        let config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(self.endpoint_url())
            .credentials_provider(Credentials::new(
                &self.rotator.id,
                &self.rotator.secret,
                None,
                None,
                "test",
            ))
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https(),
            )
            .build();
        let client = aws_sdk_secretsmanager::Client::from_conf(config);
        match client
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
        {
            Ok(out) => out.arn.expect("a new secret's ARN"),
            Err(_) => client
                .put_secret_value()
                .secret_id(name)
                .secret_string(value)
                .send()
                .await
                .unwrap_or_else(|err| panic!("put secret {name}: {err:?}"))
                .arn
                .expect("the secret's ARN"),
        }
    }

    /// moto itself: its S3 (the front serves only the Redshift APIs).
    pub fn moto_url(&self) -> String {
        format!("http://{}", self.shared.moto)
    }

    /// What the connector's `aws_endpoint_url` is set to.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.front)
    }

    /// The emulated Redshift Data API: its settings, sessions and the statements it ran.
    pub fn data_api(&self) -> Arc<DataApi> {
        Arc::clone(&self.shared.data_api)
    }

    pub fn set(&self, settings: FrontSettings) {
        *self.shared.settings.lock().unwrap() = settings;
    }

    /// How many calls of `action` (e.g. `GetClusterCredentials`) arrived so far.
    pub fn calls(&self, action: &str) -> usize {
        self.shared
            .calls
            .lock()
            .unwrap()
            .get(action)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for AwsEmulator {
    fn drop(&mut self) {
        let _ = self.moto.kill();
        let _ = self.moto.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap().port()
}

async fn serve(shared: Arc<Shared>, listener: std::net::TcpListener) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(handle(&shared, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A request as it arrived: enough to forward it unchanged (its signature stays valid).
struct Received {
    parts: hyper::http::request::Parts,
    body: Bytes,
}

impl Received {
    /// The Query protocol's form parameters (Redshift's API).
    fn form(&self) -> HashMap<String, String> {
        String::from_utf8_lossy(&self.body)
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (percent_decode(k), percent_decode(v)))
            .collect()
    }

    /// Whether this is a call of Secrets Manager's API (moto answers it: the front passes it on).
    fn secrets_manager(&self) -> bool {
        self.parts
            .headers
            .get("x-amz-target")
            .and_then(|target| target.to_str().ok())
            .is_some_and(|target| target.starts_with("secretsmanager."))
    }

    /// Whether this is a call of the Redshift Data API (the front answers it: see [`crate::data_api`]).
    fn data_api(&self) -> bool {
        self.parts
            .headers
            .get("x-amz-target")
            .and_then(|target| target.to_str().ok())
            .is_some_and(|target| target.starts_with("RedshiftData."))
    }

    /// The JSON protocol's operation (Redshift Serverless's API), from `X-Amz-Target`.
    fn json_target(&self) -> Option<String> {
        let target = self.parts.headers.get("x-amz-target")?.to_str().ok()?;
        target.split_once('.').map(|(_, op)| op.to_string())
    }

    /// The IAM user whose access key signed the request.
    fn user(&self, shared: &Shared) -> Option<String> {
        let auth = self.parts.headers.get("authorization")?.to_str().ok()?;
        let key = auth.split("Credential=").nth(1)?.split('/').next()?;
        shared.users.get(key).cloned()
    }
}

async fn handle(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    let received = Received { parts, body };
    let (action, json) = match received.json_target() {
        Some(op) => (op, true),
        None => (
            received.form().get("Action").cloned().unwrap_or_default(),
            false,
        ),
    };
    *shared
        .calls
        .lock()
        .unwrap()
        .entry(action.clone())
        .or_default() += 1;
    if received.secrets_manager() {
        let (status, body) = forward(shared, &received).await;
        return reply(status, "application/x-amz-json-1.1", body);
    }
    if received.data_api() {
        return answer_data_api(shared, &received, &action).await;
    }
    match (json, action.as_str()) {
        (true, _) | (false, "GetClusterCredentialsWithIAM") => {
            answer_emulated(shared, &received, &action).await
        }
        _ => {
            let (status, body) = forward(shared, &received).await;
            if status != 200 {
                // moto wraps Query-protocol errors in <Errors>, which AWS does not (and the
                // Rust SDK then finds no error code): give the documented shape.
                let text = String::from_utf8_lossy(&body)
                    .replace("<Errors><Error>", "<Error>")
                    .replace("</Error></Errors>", "</Error>");
                return reply(status, "text/xml", text.into());
            }
            let text = String::from_utf8_lossy(&body).into_owned();
            let text = match action.as_str() {
                "GetClusterCredentials" => {
                    let form = received.form();
                    let database = form.get("DbName").cloned().unwrap_or_default();
                    issue_xml(shared, &text, &database).await
                }
                "DescribeClusters" => replace_element(
                    &replace_element(&text, "Address", "localhost"),
                    "Port",
                    &shared.database_port.to_string(),
                ),
                _ => text,
            };
            reply(200, "text/xml", text.into())
        }
    }
}

/// Sends the request to moto as it came, and returns moto's status and body.
async fn forward(shared: &Shared, received: &Received) -> (u16, Bytes) {
    let stream = tokio::net::TcpStream::connect(shared.moto)
        .await
        .expect("connect to moto");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .expect("HTTP to moto");
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(received.parts.method.clone())
        .uri(received.parts.uri.clone());
    for (name, value) in &received.parts.headers {
        request = request.header(name, value);
    }
    let response = sender
        .send_request(request.body(Full::new(received.body.clone())).unwrap())
        .await
        .expect("moto answers");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

/// Takes the temporary credentials out of a `GetClusterCredentials` answer, installs them in
/// the database, and returns the answer with the expiration the settings call for.
async fn issue_xml(shared: &Shared, xml: &str, database: &str) -> String {
    let user = element(xml, "DbUser").expect("DbUser in the answer");
    let password = element(xml, "DbPassword").expect("DbPassword in the answer");
    let expires = install(shared, &user, &password, database).await;
    replace_element(xml, "Expiration", &rfc3339(expires))
}

/// Creates or updates the database user with `password`, valid until the expiration it
/// returns (or already expired, if the settings ask for that).
async fn install(shared: &Shared, user: &str, password: &str, database: &str) -> SystemTime {
    let expires = {
        let mut settings = shared.settings.lock().unwrap();
        let expires = SystemTime::now() + settings.lifetime.unwrap_or(Duration::from_secs(900));
        if settings.expired_in_database > 0 {
            settings.expired_in_database -= 1;
            (expires, SystemTime::now() - Duration::from_secs(3600))
        } else {
            (expires, expires)
        }
    };
    let (answered, valid_until) = expires;
    let admin = shared
        .postgres
        .connect(database)
        .await
        .expect("admin connection for the new user");
    let quoted = user.replace('"', "\"\"");
    let password = password.replace('\'', "''");
    let until = rfc3339(valid_until);
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{}') THEN
                 CREATE ROLE \"{quoted}\" LOGIN;
               END IF;
             END $$;
             ALTER ROLE \"{quoted}\" PASSWORD '{password}' VALID UNTIL '{until}';
             GRANT pg_read_all_data TO \"{quoted}\";",
            user.replace('\'', "''")
        ))
        .await
        .expect("install the temporary user");
    answered
}

/// The operations moto lacks, answered here in AWS's shapes. Only `syncer` is allowed.
async fn answer_emulated(
    shared: &Shared,
    received: &Received,
    action: &str,
) -> Response<Full<Bytes>> {
    let Some(user) = received.user(shared) else {
        return reply(403, "application/json", r#"{"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid."}"#.into());
    };
    if user != "syncer" {
        let message = format!(
            "User: arn:aws:iam::123456789012:user/{user} is not authorized to perform: {action}"
        );
        return if action == "GetClusterCredentialsWithIAM" {
            reply(403, "text/xml", format!("<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>{message}</Message></Error><RequestId>front</RequestId></ErrorResponse>").into())
        } else {
            reply(
                400,
                "application/x-amz-json-1.1",
                format!(r#"{{"__type":"AccessDeniedException","message":"{message}"}}"#).into(),
            )
        };
    }
    let json: serde_json::Value = serde_json::from_slice(&received.body).unwrap_or_default();
    match action {
        "GetClusterCredentialsWithIAM" => {
            let database = received.form().get("DbName").cloned().unwrap_or_default();
            let db_user = format!("IAM:{user}");
            let password = random_password();
            let expires = install(shared, &db_user, &password, &database).await;
            reply(200, "text/xml", format!(
                "<GetClusterCredentialsWithIAMResponse xmlns=\"http://redshift.amazonaws.com/doc/2012-12-01/\"><GetClusterCredentialsWithIAMResult><DbUser>{db_user}</DbUser><DbPassword>{password}</DbPassword><Expiration>{}</Expiration></GetClusterCredentialsWithIAMResult><ResponseMetadata><RequestId>front</RequestId></ResponseMetadata></GetClusterCredentialsWithIAMResponse>",
                rfc3339(expires)
            ).into())
        }
        "GetCredentials" | "GetWorkgroup" if json["workgroupName"] != WORKGROUP => reply(
            400,
            "application/x-amz-json-1.1",
            r#"{"__type":"ResourceNotFoundException","message":"Workgroup not found"}"#.into(),
        ),
        "GetCredentials" => {
            let database = json["dbName"].as_str().unwrap_or("dev").to_string();
            let db_user = format!("IAM:{user}");
            let password = random_password();
            let expires = install(shared, &db_user, &password, &database).await;
            let body = serde_json::json!({
                "dbUser": db_user,
                "dbPassword": password,
                "expiration": expires.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            });
            reply(200, "application/x-amz-json-1.1", body.to_string().into())
        }
        "GetWorkgroup" => {
            let body = serde_json::json!({ "workgroup": {
                "workgroupName": WORKGROUP,
                "status": "AVAILABLE",
                "endpoint": { "address": "localhost", "port": shared.database_port },
            }});
            reply(200, "application/x-amz-json-1.1", body.to_string().into())
        }
        _ => reply(
            400,
            "application/x-amz-json-1.1",
            r#"{"__type":"UnknownOperationException"}"#.into(),
        ),
    }
}

/// The Redshift Data API's calls: only `syncer` may make them.
async fn answer_data_api(
    shared: &Shared,
    received: &Received,
    action: &str,
) -> Response<Full<Bytes>> {
    shared.data_api.latency().await;
    let json = "application/x-amz-json-1.1";
    let Some(user) = received.user(shared) else {
        return reply(403, json, r#"{"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid."}"#.into());
    };
    if user != "syncer" {
        let message = format!(
            "User: arn:aws:iam::123456789012:user/{user} is not authorized to perform: redshift-data:{action}"
        );
        return reply(
            400,
            json,
            serde_json::json!({ "__type": "AccessDeniedException", "message": message })
                .to_string()
                .into(),
        );
    }
    let request: serde_json::Value = serde_json::from_slice(&received.body).unwrap_or_default();
    let data_api = &shared.data_api;
    let (status, body) = match action {
        "ExecuteStatement" | "BatchExecuteStatement" => {
            data_api
                .execute(
                    &request,
                    data_api_login(shared, &request, &user),
                    shared.database_port,
                )
                .await
        }
        "DescribeStatement" => data_api.describe(&request).await,
        "GetStatementResult" => data_api.result(&request),
        "CancelStatement" => data_api.cancel(&request).await,
        _ => (400, r#"{"__type":"UnknownOperationException"}"#.to_string()),
    };
    reply(status, json, body.into())
}

/// Who a new Data API session signs in as: the secret's user, the `DbUser` or the IAM
/// identity (these two with a temporary password installed, as `GetClusterCredentials` does).
async fn data_api_login(
    shared: &Shared,
    request: &serde_json::Value,
    iam_user: &str,
) -> Result<DatabaseLogin, Answer> {
    let refuse = |code: &str, message: &str| {
        Err((
            400,
            serde_json::json!({ "__type": code, "message": message }).to_string(),
        ))
    };
    let Some(database) = request["Database"].as_str() else {
        return refuse("ValidationException", "Database is required");
    };
    match (
        request["ClusterIdentifier"].as_str(),
        request["WorkgroupName"].as_str(),
    ) {
        (Some(CLUSTER), None) | (None, Some(WORKGROUP)) => {}
        (Some(cluster), None) => {
            return refuse(
                "ValidationException",
                &format!("Redshift endpoint doesn't exist in this region: cluster {cluster}"),
            )
        }
        (None, Some(workgroup)) => {
            return refuse(
                "ResourceNotFoundException",
                &format!("Workgroup {workgroup} not found"),
            )
        }
        _ => {
            return refuse(
                "ValidationException",
                "Either ClusterIdentifier or WorkgroupName is required",
            )
        }
    }
    if shared.postgres.connect(database).await.is_err() {
        return refuse(
            "DatabaseConnectionException",
            &format!("Database connection failed: FATAL: database \"{database}\" does not exist"),
        );
    }
    if let Some(arn) = request["SecretArn"].as_str() {
        let Some(secret) = read_secret(shared, arn).await else {
            return refuse(
                "ValidationException",
                "Secrets Manager can't find the specified secret.",
            );
        };
        let value: serde_json::Value = serde_json::from_str(&secret).unwrap_or_default();
        return Ok(DatabaseLogin {
            user: value["username"].as_str().unwrap_or_default().to_string(),
            password: value["password"].as_str().unwrap_or_default().to_string(),
            database: database.to_string(),
        });
    }
    let user = match request["DbUser"].as_str() {
        Some(db_user) => db_user.to_string(),
        None => data_api_identity_user(iam_user, database),
    };
    let password = random_password();
    install(shared, &user, &password, database).await;
    Ok(DatabaseLogin {
        user,
        password,
        database: database.to_string(),
    })
}

/// The database user the Data API signs an IAM identity in as: `IAM:<user>` as AWS names it,
/// followed by `/<database>`, because the tests run at once on one PostgreSQL, each in a
/// database of its own, and PostgreSQL keeps one password a role: two tests (or an IAM sign-in
/// test) signing `IAM:syncer` in at once would replace each other's temporary password.
pub fn data_api_identity_user(iam_user: &str, database: &str) -> String {
    format!("IAM:{iam_user}/{database}")
}

/// A secret's current value, read from moto as the caller (`syncer`), as the Data API reads it.
async fn read_secret(shared: &Shared, arn: &str) -> Option<String> {
    use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(format!("http://{}", shared.moto))
        .credentials_provider(Credentials::new(
            &shared.syncer.id,
            &shared.syncer.secret,
            None,
            None,
            "test",
        ))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_secretsmanager::Client::from_conf(config)
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .ok()?
        .secret_string
}

fn reply(status: u16, content_type: &str, body: Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("x-amzn-requestid", "front")
        .body(Full::new(body))
        .unwrap()
}

fn element(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..end].to_string())
}

fn replace_element(xml: &str, name: &str, value: &str) -> String {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    match (xml.find(&open), xml.find(&close)) {
        (Some(start), Some(end)) => format!("{}{open}{value}{}", &xml[..start], &xml[end..]),
        _ => xml.to_string(),
    }
}

fn rfc3339(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn random_password() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).unwrap();
    hex::encode(bytes)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
