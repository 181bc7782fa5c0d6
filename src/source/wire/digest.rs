//! Redshift's own password exchange, authentication request 13 ("extensible digest"), for users
//! whose password was set as `PASSWORD 'sha256|…'`. PostgreSQL has no such request, so no
//! general driver answers it; the layout here follows AWS's `redshift_connector`.
//!
//! The request carries an algorithm (0 = SHA-256, the only one defined), a salt and a server
//! nonce; the answer is a `d` message with `SHA256(SHA256(password ‖ salt) ‖ server_nonce ‖
//! client_nonce)` and the client nonce. Like MD5 it is a challenge and response: the password
//! itself never crosses the network.

use bytes::{BufMut, BytesMut};
use sha2::{Digest, Sha256};

use super::error::WireError;

/// The one digest algorithm request 13 defines.
const SHA256: i32 = 0;
/// No salt or nonce Redshift sends is near this long; a longer one is a corrupt message.
const MAX_FIELD: usize = 1024;

/// What a request 13 asks the client to hash.
#[derive(Debug, PartialEq, Eq)]
pub struct DigestRequest<'a> {
    pub salt: &'a [u8],
    pub server_nonce: &'a [u8],
}

impl<'a> DigestRequest<'a> {
    /// Parses the request's data (what follows the code 13).
    pub fn parse(data: &'a [u8]) -> Result<Self, WireError> {
        let mut rest = data;
        let algorithm = take_i32(&mut rest)?;
        if algorithm != SHA256 {
            return Err(WireError::UnsupportedAuthentication {
                method: format!("Redshift's password digest with algorithm {algorithm} (13)"),
            });
        }
        let salt = take_field(&mut rest, "salt")?;
        let server_nonce = take_field(&mut rest, "server nonce")?;
        Ok(DigestRequest { salt, server_nonce })
    }

    /// The digest of `password` for this request and `client_nonce`.
    pub fn digest(&self, password: &[u8], client_nonce: &[u8]) -> [u8; 32] {
        digest(password, self.salt, self.server_nonce, client_nonce)
    }
}

/// `SHA256(SHA256(password ‖ salt) ‖ server_nonce ‖ client_nonce)`.
fn digest(password: &[u8], salt: &[u8], server_nonce: &[u8], client_nonce: &[u8]) -> [u8; 32] {
    let inner = Sha256::new()
        .chain_update(password)
        .chain_update(salt)
        .finalize();
    Sha256::new()
        .chain_update(inner)
        .chain_update(server_nonce)
        .chain_update(client_nonce)
        .finalize()
        .into()
}

/// A client nonce as AWS's driver makes it: the milliseconds since the epoch, in decimal. (The
/// server nonce is what makes each exchange fresh; this one only has to differ per attempt.)
pub fn client_nonce() -> Vec<u8> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    millis.to_string().into_bytes()
}

/// Appends the `d` message that answers a request 13.
pub fn write_response(digest: &[u8], client_nonce: &[u8], out: &mut BytesMut) {
    let length = 4 + 4 + digest.len() + 4 + client_nonce.len();
    out.put_u8(b'd');
    out.put_i32(length as i32);
    out.put_i32(digest.len() as i32);
    out.put_slice(digest);
    out.put_i32(client_nonce.len() as i32);
    out.put_slice(client_nonce);
}

fn take_i32(rest: &mut &[u8]) -> Result<i32, WireError> {
    let (head, tail) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| WireError::Protocol("short SHA-256 digest request".into()))?;
    *rest = tail;
    Ok(i32::from_be_bytes(*head))
}

fn take_field<'a>(rest: &mut &'a [u8], what: &str) -> Result<&'a [u8], WireError> {
    let length = usize::try_from(take_i32(rest)?)
        .ok()
        .filter(|&n| n <= MAX_FIELD && n <= rest.len())
        .ok_or_else(|| WireError::Protocol(format!("bad {what} length in a SHA-256 request")))?;
    let (field, tail) = rest.split_at(length);
    *rest = tail;
    Ok(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(algorithm: i32, salt: &[u8], nonce: &[u8]) -> Vec<u8> {
        let mut out = algorithm.to_be_bytes().to_vec();
        out.extend((salt.len() as i32).to_be_bytes());
        out.extend(salt);
        out.extend((nonce.len() as i32).to_be_bytes());
        out.extend(nonce);
        out
    }

    #[test]
    fn a_request_is_parsed_and_answered_as_aws_driver_does() {
        let data = request(0, b"salt", b"server-nonce");
        let parsed = DigestRequest::parse(&data).unwrap();
        assert_eq!(parsed.salt, b"salt");
        assert_eq!(parsed.server_nonce, b"server-nonce");
        // Python's hashlib, as AWS's driver computes it:
        // sha256(sha256(b"secret" + b"salt").digest() + b"server-nonce" + b"1700000000000")
        let expected = "0d44f560fb69c23b0d20c5797c5c826d2f8257067b2607d9ce0ba1c14672e6df";
        assert_eq!(hex(&parsed.digest(b"secret", b"1700000000000")), expected);
    }

    #[test]
    fn the_response_has_the_drivers_layout() {
        let mut out = BytesMut::new();
        write_response(&[7; 32], b"123", &mut out);
        assert_eq!(out[0], b'd');
        assert_eq!(
            i32::from_be_bytes(out[1..5].try_into().unwrap()),
            4 + 4 + 32 + 4 + 3
        );
        assert_eq!(i32::from_be_bytes(out[5..9].try_into().unwrap()), 32);
        assert_eq!(&out[9..41], &[7; 32]);
        assert_eq!(i32::from_be_bytes(out[41..45].try_into().unwrap()), 3);
        assert_eq!(&out[45..], b"123");
    }

    #[test]
    fn corrupt_or_unknown_requests_are_errors() {
        assert!(matches!(
            DigestRequest::parse(&request(1, b"s", b"n")),
            Err(WireError::UnsupportedAuthentication { .. })
        ));
        let mut truncated = request(0, b"salt", b"nonce");
        truncated.truncate(truncated.len() - 1);
        assert!(matches!(
            DigestRequest::parse(&truncated),
            Err(WireError::Protocol(_))
        ));
        let mut negative = 0i32.to_be_bytes().to_vec();
        negative.extend((-1i32).to_be_bytes());
        assert!(matches!(
            DigestRequest::parse(&negative),
            Err(WireError::Protocol(_))
        ));
        assert!(matches!(
            DigestRequest::parse(&[0, 0]),
            Err(WireError::Protocol(_))
        ));
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
