//! SSH tunnels: a session's bytes through a bastion host, for clusters that live in a private
//! subnet. Each database session (each table's, each reconnect, each cancel request) opens an
//! SSH connection of its own and one `direct-tcpip` channel in it; PostgreSQL's TLS then runs
//! inside the channel, end to end with the cluster, so the bastion sees only ciphertext.
//!
//! A connection per session rather than one shared by all: a tunnel that dies takes down only
//! the sessions inside it, and their reconnects (which the sync does anyway) make new tunnels,
//! with no shared state to repair. Sessions are long-lived and reused from table to table, so
//! the cost, one SSH handshake per database session, is a few milliseconds per table at most.
//!
//! Through russh with its `ring` backend: pure Rust, no OpenSSL, so the binary stays static.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use russh::client::{self, Handle, Msg};
use russh::keys::{Algorithm, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelStream, Preferred};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// SSH-level keepalives: a bastion that stops answering is given up after about a minute, as
/// a direct connection's TCP keepalives do (see `net`).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEPALIVE_MAX: usize = 3;

/// Where the tunnel goes and how it signs in.
#[derive(Clone)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub private_key: Arc<PrivateKey>,
    /// The only host key the bastion may present.
    pub host_key: PublicKey,
}

impl SshTarget {
    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Why a tunnel could not be opened, by hop: the bastion itself, or the bastion's way on to
/// the cluster.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("the SSH bastion's host name `{host}` does not resolve; check `ssh_host`")]
    UnknownBastion { host: String },
    #[error("cannot reach the SSH bastion {bastion}: {source}")]
    Unreachable {
        bastion: String,
        #[source]
        source: super::net::ConnectError,
    },
    #[error("the SSH bastion {bastion} presented host key {offered}, not the one in `ssh_host_key` ({expected}); if the bastion's key really changed, set the new one")]
    HostKeyMismatch {
        bastion: String,
        offered: String,
        expected: String,
    },
    #[error("the SSH bastion {bastion} refused user `{user}` with the key in `ssh_private_key`; check `ssh_user` and that the key's public half is in that user's authorized_keys")]
    Rejected { bastion: String, user: String },
    #[error("the SSH bastion {bastion} refuses to forward to {target} ({reason}); allow TCP forwarding for `{user}` there (AllowTcpForwarding, PermitOpen)")]
    ForwardingRefused {
        bastion: String,
        user: String,
        target: String,
        reason: String,
    },
    #[error("the SSH bastion {bastion} cannot reach the cluster at {target} ({reason}); check `host` and `port` as the bastion resolves them, and the cluster's security group")]
    TargetUnreachable {
        bastion: String,
        target: String,
        reason: String,
    },
    #[error("the SSH session with the bastion {bastion} failed: {source}")]
    Session {
        bastion: String,
        #[source]
        source: russh::Error,
    },
    /// No cipher, MAC or key exchange both sides support: retrying cannot help.
    #[error("the SSH bastion {bastion} and this connector share no algorithm: {source}")]
    Incompatible {
        bastion: String,
        #[source]
        source: russh::Error,
    },
}

impl SshError {
    /// Worth a retry: the bastion or the cluster may be restarting.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. } | Self::TargetUnreachable { .. } | Self::Session { .. }
        )
    }
}

/// A tunnel to the cluster: the channel's byte stream, and the SSH connection it lives in
/// (which closes when this is dropped).
pub struct Tunnel {
    stream: ChannelStream<Msg>,
    _connection: Handle<HostKeyCheck>,
}

impl fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tunnel")
    }
}

/// Connects to the bastion, checks its host key, signs in and opens a channel to
/// `target_host:target_port` (as the bastion resolves it). The caller bounds the time.
pub async fn open(
    target: &SshTarget,
    target_host: &str,
    target_port: u16,
    connect_timeout: Duration,
) -> Result<Tunnel, SshError> {
    let bastion = target.address();
    let tcp = super::net::connect(&target.host, target.port, connect_timeout)
        .await
        .map_err(|source| {
            if source.is_unknown_host() {
                SshError::UnknownBastion {
                    host: target.host.clone(),
                }
            } else {
                SshError::Unreachable {
                    bastion: bastion.clone(),
                    source,
                }
            }
        })?;
    let offered = Arc::new(Mutex::new(None));
    let check = HostKeyCheck {
        expected: target.host_key.clone(),
        offered: Arc::clone(&offered),
    };
    let config = Arc::new(client::Config {
        preferred: Preferred {
            // Ask for the configured key's algorithm only: a bastion has several host keys,
            // and the one it would pick first may not be the one the user gave.
            key: host_key_algorithms(&target.host_key).into(),
            ..Preferred::default()
        },
        keepalive_interval: Some(KEEPALIVE_INTERVAL),
        keepalive_max: KEEPALIVE_MAX,
        nodelay: true,
        ..client::Config::default()
    });
    let mut connection = client::connect_stream(config, tcp, check)
        .await
        .map_err(|err| {
            let offered = offered.lock().expect("host key lock").take();
            let mismatch = |offered| SshError::HostKeyMismatch {
                bastion: bastion.clone(),
                offered,
                expected: fingerprint(&target.host_key),
            };
            match (err, offered) {
                (russh::Error::UnknownKey, Some(offered)) => mismatch(offered),
                (
                    russh::Error::NoCommonAlgo {
                        kind: russh::AlgorithmKind::Key,
                        theirs,
                        ..
                    },
                    _,
                ) => mismatch(format!("only keys of type {}", theirs.join(", "))),
                (err @ russh::Error::NoCommonAlgo { .. }, _) => SshError::Incompatible {
                    bastion: bastion.clone(),
                    source: err,
                },
                (err, _) => SshError::Session {
                    bastion: bastion.clone(),
                    source: err,
                },
            }
        })?;

    let session_error = |err: russh::Error| SshError::Session {
        bastion: bastion.clone(),
        source: err,
    };
    let hash = match target.private_key.algorithm() {
        // RSA keys sign with the SHA-2 hash the server accepts (never SHA-1 if it can).
        Algorithm::Rsa { .. } => connection
            .best_supported_rsa_hash()
            .await
            .map_err(session_error)?
            .flatten()
            .or(Some(HashAlg::Sha256)),
        _ => None,
    };
    let key = PrivateKeyWithHashAlg::new(Arc::clone(&target.private_key), hash);
    let signed_in = connection
        .authenticate_publickey(target.user.clone(), key)
        .await
        .map_err(session_error)?;
    if !signed_in.success() {
        return Err(SshError::Rejected {
            bastion,
            user: target.user.clone(),
        });
    }

    let destination = if target_host.contains(':') {
        format!("[{target_host}]:{target_port}")
    } else {
        format!("{target_host}:{target_port}")
    };
    let channel = connection
        .channel_open_direct_tcpip(target_host, u32::from(target_port), "127.0.0.1", 0)
        .await
        .map_err(|err| match err {
            russh::Error::ChannelOpenFailure(reason) => {
                let text = format!("{reason:?}");
                if matches!(
                    reason,
                    russh::ChannelOpenFailure::AdministrativelyProhibited
                ) {
                    SshError::ForwardingRefused {
                        bastion: bastion.clone(),
                        user: target.user.clone(),
                        target: destination.clone(),
                        reason: text,
                    }
                } else {
                    SshError::TargetUnreachable {
                        bastion: bastion.clone(),
                        target: destination.clone(),
                        reason: text,
                    }
                }
            }
            other => session_error(other),
        })?;
    Ok(Tunnel {
        stream: channel.into_stream(),
        _connection: connection,
    })
}

/// The host key algorithms to ask for, given the key the bastion must present.
fn host_key_algorithms(key: &PublicKey) -> Vec<Algorithm> {
    match key.algorithm() {
        Algorithm::Rsa { .. } => vec![
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha512),
            },
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha256),
            },
        ],
        other => vec![other],
    }
}

fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Accepts the configured host key and nothing else, remembering what was offered.
pub struct HostKeyCheck {
    expected: PublicKey,
    offered: Arc<Mutex<Option<String>>>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = server_key else {
            *self.offered.lock().expect("host key lock") = Some("a certificate".to_string());
            return Ok(false);
        };
        let matches = key.key_data() == self.expected.key_data();
        if !matches {
            *self.offered.lock().expect("host key lock") = Some(fingerprint(key));
        }
        Ok(matches)
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
