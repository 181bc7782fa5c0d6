//! Redshift's side of its SHA-256 password exchange (authentication request 13), for users
//! created with `PASSWORD 'sha256|…'`, as AWS's `redshift_connector` documents it by its client:
//!
//! ```text
//! R  code 13, algorithm 0 (SHA-256), salt (length-prefixed), server nonce (length-prefixed)
//! d  digest (length-prefixed), client nonce (length-prefixed)
//!    digest = SHA256(SHA256(password ‖ salt) ‖ server_nonce ‖ client_nonce)
//! ```
//!
//! Computed here with `sha2` directly, not with the connector's code, so that a mistake there
//! fails the sign-in instead of being repeated on both sides.

use bytes::{BufMut, BytesMut};
use postgres_protocol::authentication::md5_hash;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Asks `client` for the digest of `password` and checks its answer. A wrong answer gets
/// Redshift's FATAL `28P01`, and `false`.
pub async fn sign_in<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut S,
    user: &str,
    password: &str,
) -> std::io::Result<bool> {
    let mut salt = [0u8; 16];
    let mut server_nonce = [0u8; 32];
    getrandom::fill(&mut salt).unwrap();
    getrandom::fill(&mut server_nonce).unwrap();
    let mut request = BytesMut::new();
    request.put_i32(13);
    request.put_i32(0);
    request.put_i32(salt.len() as i32);
    request.put_slice(&salt);
    request.put_i32(server_nonce.len() as i32);
    request.put_slice(&server_nonce);
    client.write_all(&super::frame(b'R', &request)).await?;

    let (tag, body) = read(client).await?;
    let answer = (tag == b'd').then(|| parse_answer(&body)).flatten();
    let expected = |client_nonce: &[u8]| {
        let inner = Sha256::new()
            .chain_update(password.as_bytes())
            .chain_update(salt)
            .finalize();
        Sha256::new()
            .chain_update(inner)
            .chain_update(server_nonce)
            .chain_update(client_nonce)
            .finalize()
            .to_vec()
    };
    match answer {
        Some((digest, client_nonce))
            if !client_nonce.is_empty() && digest == expected(client_nonce) =>
        {
            Ok(true)
        }
        _ => {
            let mut error = BytesMut::new();
            for (field, value) in [
                (b'S', "FATAL"),
                (b'V', "FATAL"),
                (b'C', "28P01"),
                (
                    b'M',
                    &format!("password authentication failed for user \"{user}\""),
                ),
            ] {
                error.put_u8(field);
                super::put_cstring(&mut error, value);
            }
            error.put_u8(0);
            client.write_all(&super::frame(b'E', &error)).await?;
            client.flush().await?;
            Ok(false)
        }
    }
}

/// Answers PostgreSQL's password request for `user` (the harness's servers use MD5, as
/// Redshift's plain passwords do) and tells `client` it is signed in once PostgreSQL says so.
/// Everything PostgreSQL sends after that goes to the client through the relay.
pub async fn sign_in_to_postgres<B, C>(
    backend: &mut B,
    client: &mut C,
    user: &str,
    password: &str,
) -> std::io::Result<()>
where
    B: AsyncRead + AsyncWrite + Unpin,
    C: AsyncWrite + Unpin,
{
    loop {
        let (tag, body) = read(backend).await?;
        let code = body
            .get(..4)
            .map(|c| i32::from_be_bytes(c.try_into().unwrap()));
        match (tag, code) {
            (b'R', Some(0)) => {
                client.write_all(&super::frame(b'R', &body)).await?;
                return Ok(());
            }
            (b'R', Some(5)) => {
                let salt: [u8; 4] = body[4..8].try_into().unwrap();
                let hash = md5_hash(user.as_bytes(), password.as_bytes(), salt);
                let mut message = BytesMut::new();
                super::put_cstring(&mut message, &hash);
                backend.write_all(&super::frame(b'p', &message)).await?;
            }
            _ => {
                // PostgreSQL refused: the client sees why.
                client.write_all(&super::frame(tag, &body)).await?;
                return Err(std::io::Error::other(format!(
                    "PostgreSQL's sign-in for {user} ended with `{}`",
                    char::from(tag)
                )));
            }
        }
    }
}

/// The `d` message's digest and client nonce.
fn parse_answer(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let (digest, rest) = length_prefixed(body)?;
    let (client_nonce, rest) = length_prefixed(rest)?;
    rest.is_empty().then_some((digest, client_nonce))
}

fn length_prefixed(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let length = usize::try_from(i32::from_be_bytes(body.get(..4)?.try_into().ok()?)).ok()?;
    let rest = &body[4..];
    (length <= rest.len()).then(|| rest.split_at(length))
}

async fn read<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<(u8, Vec<u8>)> {
    let tag = stream.read_u8().await?;
    let length = stream.read_i32().await?;
    let length = usize::try_from(length - 4)
        .ok()
        .filter(|&n| n < 1 << 20)
        .ok_or_else(|| std::io::Error::other(format!("message length {length}")))?;
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await?;
    Ok((tag, body))
}
