//! The TCP side of a connection: name resolution, connecting, keepalives, and the byte stream
//! that TLS may wrap.
//!
//! Keepalives matter here more than for most clients: a scan can wait minutes for Redshift to
//! sort before the first byte arrives, and NATs, load balancers and firewalls drop flows that
//! stay idle that long ("Query hangs" in Redshift's troubleshooting guide). Linux's default
//! keepalive starts probing after two hours, which makes a dropped flow a two-hour hang. With
//! keepalives after [`KEEPALIVE_IDLE`] a dead peer is detected within [`DEAD_PEER_AFTER`],
//! while a live but busy server is never mistaken for a dead one (its kernel answers the probes).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Why a TCP connection could not be opened: shared by the direct path and the SSH tunnel's
/// way to its bastion, so each keeps its kind (an unknown name is the user's to fix, a refused
/// or timed-out connection may pass) instead of being flattened to text.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The host name does not resolve; `permanent` unless the resolver itself failed
    /// (a temporary DNS failure is worth a retry, an unknown name is not).
    #[error("cannot resolve host name `{host}`: {source}")]
    Resolve {
        host: String,
        permanent: bool,
        #[source]
        source: io::Error,
    },
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: io::Error,
    },
    #[error("connecting timed out")]
    Timeout,
    /// The connected socket could not be given its options.
    #[error("cannot set up the connection: {0}")]
    Socket(#[source] io::Error),
}

impl ConnectError {
    /// A name that does not resolve: retrying cannot help, the configuration must change.
    pub fn is_unknown_host(&self) -> bool {
        matches!(
            self,
            Self::Resolve {
                permanent: true,
                ..
            }
        )
    }
}

/// Idle time before the first probe, then the interval between probes and their number:
/// a silent peer is given up after `30 + 3 * 10` seconds.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
pub const KEEPALIVE_PROBES: u32 = 3;
/// The time after which an unanswered peer counts as gone: also the TCP user timeout, so data
/// we send into a dead flow is given up on after the same time.
pub const DEAD_PEER_AFTER: Duration = Duration::from_secs(60);

fn keepalive() -> TcpKeepalive {
    TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES)
}

/// How the bytes travel: a TCP connection to the cluster, or a channel through an SSH bastion.
pub enum Transport {
    Tcp(TcpStream),
    Ssh(Box<super::ssh::Tunnel>),
}

/// The connection's bytes: the transport, or TLS over it.
pub enum Stream {
    Plain(Transport),
    Tls(Box<TlsStream<Transport>>),
}

/// Forwards the async I/O traits to whichever variant an enum holds.
macro_rules! forward_io {
    ($type:ident, $($variant:ident => $inner:ident $access:expr),+) => {
        impl AsyncRead for $type {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $($type::$variant($inner) => Pin::new($access).poll_read(cx, buf),)+
                }
            }
        }

        impl AsyncWrite for $type {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $($type::$variant($inner) => Pin::new($access).poll_write(cx, buf),)+
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $($type::$variant($inner) => Pin::new($access).poll_flush(cx),)+
                }
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $($type::$variant($inner) => Pin::new($access).poll_shutdown(cx),)+
                }
            }
        }
    };
}

forward_io!(Transport, Tcp => s s, Ssh => s s.as_mut());
forward_io!(Stream, Plain => s s, Tls => s s.as_mut());

/// Resolves `host` and connects to the first address that answers, within `timeout` overall.
pub async fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let attempt = async {
        let addresses = resolve(host, port).await?;
        let mut last_error = None;
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(stream) => return Ok(stream),
                Err(source) => {
                    last_error = Some(ConnectError::Connect {
                        address: address.to_string(),
                        source,
                    });
                }
            }
        }
        Err(last_error.unwrap_or_else(|| ConnectError::Resolve {
            host: host.to_string(),
            permanent: true,
            source: io::Error::new(io::ErrorKind::NotFound, "no address"),
        }))
    };
    let stream = tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| ConnectError::Timeout)??;
    configure(&stream).map_err(ConnectError::Socket)?;
    Ok(stream)
}

/// The addresses of `host`. An unknown name is permanent; a resolver that could not answer
/// (EAI_AGAIN: "Temporary failure in name resolution") is worth a retry.
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, ConnectError> {
    match tokio::net::lookup_host((host, port)).await {
        Ok(addresses) => Ok(addresses.collect()),
        Err(source) => {
            let text = source.to_string();
            let permanent = !(text.contains("Temporary failure") || text.contains("try again"));
            Err(ConnectError::Resolve {
                host: host.to_string(),
                permanent,
                source,
            })
        }
    }
}

/// No Nagle delay (every message is already one write), and keepalives that find a dead peer
/// within [`DEAD_PEER_AFTER`].
fn configure(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let socket = SockRef::from(stream);
    socket.set_tcp_keepalive(&keepalive())?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket.set_tcp_user_timeout(Some(DEAD_PEER_AFTER))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_peer_is_given_up_within_a_minute() {
        let probing = KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_PROBES;
        assert!(probing <= DEAD_PEER_AFTER, "{probing:?}");
    }

    #[tokio::test]
    async fn connected_sockets_carry_the_keepalive_settings() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stream = connect("127.0.0.1", port, Duration::from_secs(5))
            .await
            .unwrap();
        let socket = SockRef::from(&stream);
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(socket.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), KEEPALIVE_PROBES);
        assert!(socket.tcp_nodelay().unwrap());
    }

    #[tokio::test]
    async fn an_unknown_host_name_is_a_permanent_failure() {
        let err = resolve("no-such-host.invalid", 5439).await.unwrap_err();
        assert!(
            matches!(
                err,
                ConnectError::Resolve {
                    permanent: true,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
