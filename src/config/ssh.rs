//! The SSH bastion every session goes through, for clusters reachable only from inside their
//! VPC: `ssh_host`, `ssh_port`, `ssh_user`, `ssh_private_key` (with
//! `ssh_private_key_passphrase` when it is encrypted) and `ssh_host_key`.
//!
//! The bastion's host key is required, never learned on first use: a tunnel to an unverified
//! host hands the database session (and the password exchange) to whoever answers. Keys are
//! decoded here, so a malformed key or a wrong passphrase is `INVALID_ARGUMENT` naming the key
//! before anything connects, and never quoted.

use std::fmt;
use std::sync::Arc;

use russh::keys::{HashAlg, PrivateKey, PublicKey};

use super::reader::MapReader;
use super::{keys, shorten, ConfigError};

pub const DEFAULT_SSH_PORT: u16 = 22;

/// How sessions reach the cluster through a bastion.
#[derive(Clone)]
pub struct SshConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub private_key: Arc<PrivateKey>,
    /// The key the bastion must present.
    pub host_key: PublicKey,
}

impl fmt::Debug for SshConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("private_key", &"***")
            .field(
                "host_key",
                &self.host_key.fingerprint(HashAlg::Sha256).to_string(),
            )
            .finish()
    }
}

/// The `ssh_*` keys: `None` without `ssh_host`.
pub(super) fn parse(reader: &MapReader<'_>) -> Result<Option<SshConfig>, ConfigError> {
    let Some(host) = reader.optional(keys::SSH_HOST) else {
        // `ssh_port` alone is left alone: a form's default value for it is no mistake.
        let stray = [
            keys::SSH_USER,
            keys::SSH_PRIVATE_KEY,
            keys::SSH_PRIVATE_KEY_PASSPHRASE,
            keys::SSH_HOST_KEY,
        ]
        .into_iter()
        .find(|key| reader.optional(key).is_some());
        return match stray {
            Some(key) => Err(ConfigError::new(
                key,
                "needs `ssh_host` (the bastion to tunnel through); leave every ssh_ key empty to connect directly",
            )),
            None => Ok(None),
        };
    };
    if host.contains(char::is_whitespace) || host.contains('/') || host.contains('@') {
        return Err(ConfigError::new(
            keys::SSH_HOST,
            "must be the bastion's host name or IP address (no user, scheme or path; the port goes in `ssh_port`)",
        ));
    }
    if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
        return Err(ConfigError::new(
            keys::SSH_HOST,
            format!(
                "`{}` includes a port; give the host alone and the port in `ssh_port`",
                shorten(&host)
            ),
        ));
    }
    let port = match reader.optional(keys::SSH_PORT) {
        None => DEFAULT_SSH_PORT,
        Some(text) => text
            .parse::<u16>()
            .ok()
            .filter(|&port| port > 0)
            .ok_or_else(|| {
                ConfigError::new(
                    keys::SSH_PORT,
                    "must be a TCP port number between 1 and 65535 (SSH's default is 22)",
                )
            })?,
    };
    let user = reader.optional(keys::SSH_USER).ok_or_else(|| {
        ConfigError::new(
            keys::SSH_USER,
            "is required with `ssh_host`: the bastion's login user",
        )
    })?;
    let key_text = reader.optional(keys::SSH_PRIVATE_KEY).ok_or_else(|| {
        ConfigError::new(
            keys::SSH_PRIVATE_KEY,
            "is required with `ssh_host`: the text of a private key the bastion accepts for `ssh_user` (OpenSSH or PEM)",
        )
    })?;
    let passphrase = reader.optional(keys::SSH_PRIVATE_KEY_PASSPHRASE);
    let private_key = decode_private_key(&key_text, passphrase.as_deref())?;
    let host_key_text = reader.optional(keys::SSH_HOST_KEY).ok_or_else(|| {
        ConfigError::new(
            keys::SSH_HOST_KEY,
            "is required with `ssh_host`: the bastion's public host key (e.g. the contents of its /etc/ssh/ssh_host_ed25519_key.pub, or a line of `ssh-keyscan`); it is never trusted on first use",
        )
    })?;
    let host_key = parse_host_key(&host_key_text)?;
    Ok(Some(SshConfig {
        host,
        port,
        user,
        private_key: Arc::new(private_key),
        host_key,
    }))
}

/// A private key in OpenSSH or PEM (PKCS#1, PKCS#8) text. Forms paste multi-line values with
/// literal `\n` at times: those are read as line breaks.
fn decode_private_key(text: &str, passphrase: Option<&str>) -> Result<PrivateKey, ConfigError> {
    let text = if text.contains('\n') {
        text.to_string()
    } else {
        text.replace("\\n", "\n")
    };
    let encrypted = text.contains("ENCRYPTED") || {
        // OpenSSH keys say whether they are encrypted only inside their base64 body.
        matches!(
            russh::keys::decode_secret_key(&text, None),
            Err(russh::keys::Error::KeyIsEncrypted)
        )
    };
    if encrypted && passphrase.is_none() {
        return Err(ConfigError::new(
            keys::SSH_PRIVATE_KEY_PASSPHRASE,
            "is required: `ssh_private_key` is encrypted",
        ));
    }
    russh::keys::decode_secret_key(&text, passphrase).map_err(|_| match passphrase {
        Some(_) if encrypted => ConfigError::new(
            keys::SSH_PRIVATE_KEY_PASSPHRASE,
            "does not decrypt `ssh_private_key`",
        ),
        _ => ConfigError::new(
            keys::SSH_PRIVATE_KEY,
            "must be a private key's text: OpenSSH (-----BEGIN OPENSSH PRIVATE KEY-----) or PEM (-----BEGIN RSA PRIVATE KEY----- or -----BEGIN PRIVATE KEY-----), Ed25519, ECDSA or RSA",
        ),
    })
}

/// `ssh-ed25519 AAAA… [comment]`, a `known_hosts` line (`host ssh-ed25519 AAAA…`), or the
/// base64 blob alone.
fn parse_host_key(text: &str) -> Result<PublicKey, ConfigError> {
    text.split_whitespace()
        .filter(|token| token.len() >= 32)
        .find_map(|token| russh::keys::parse_public_key_base64(token).ok())
        .ok_or_else(|| {
            ConfigError::new(
                keys::SSH_HOST_KEY,
                "must be an SSH public key such as `ssh-ed25519 AAAAC3Nz…` (the bastion's host key, from its /etc/ssh/ssh_host_*_key.pub or `ssh-keyscan`)",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Generated for these tests only (`ssh-keygen -t ed25519 -N ''`).
    const ED25519: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACAFG5xt+Fi5Ya8k4eZmFd2qCSr2EsS1HL2Qktm3SJDoNQAAAJj5TB6J+Uwe
iQAAAAtzc2gtZWQyNTUxOQAAACAFG5xt+Fi5Ya8k4eZmFd2qCSr2EsS1HL2Qktm3SJDoNQ
AAAEA3xSRrDqQ4PHqxKe79b6pacQwYnCfHmo6XJJK1lAkuNQUbnG34WLlhryTh5mYV3aoJ
KvYSxLUcvZCS2bdIkOg1AAAAEnRlc3RAcmVkc2hpZnQtc3luYwECAw==
-----END OPENSSH PRIVATE KEY-----
";
    const ED25519_PUBLIC: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAUbnG34WLlhryTh5mYV3aoJKvYSxLUcvZCS2bdIkOg1 test@redshift-sync";

    #[test]
    fn keys_are_decoded_and_never_shown() {
        let key = decode_private_key(ED25519, None).unwrap();
        let host_key = parse_host_key(ED25519_PUBLIC).unwrap();
        assert_eq!(key.public_key().key_data(), host_key.key_data());
        let config = SshConfig {
            host: "bastion".into(),
            port: 22,
            user: "tunnel".into(),
            private_key: Arc::new(key),
            host_key,
        };
        let shown = format!("{config:?}");
        assert!(shown.contains("SHA256:"), "{shown}");
        assert!(!shown.contains("AAAA"), "{shown}");
    }

    #[test]
    fn pasted_keys_with_escaped_line_breaks_are_read() {
        let escaped = ED25519.replace('\n', "\\n");
        assert!(decode_private_key(&escaped, None).is_ok());
    }

    #[test]
    fn host_keys_come_in_the_usual_shapes() {
        let blob = ED25519_PUBLIC.split_whitespace().nth(1).unwrap();
        for text in [
            ED25519_PUBLIC.to_string(),
            format!("bastion.example.com,10.0.0.5 {blob}"),
            format!("[bastion]:2222 ssh-ed25519 {blob}"),
            blob.to_string(),
        ] {
            assert!(parse_host_key(&text).is_ok(), "{text}");
        }
        assert!(parse_host_key("ssh-ed25519 not-a-key").is_err());
    }

    #[test]
    fn a_malformed_key_is_named_without_its_text() {
        let err = decode_private_key(
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAsecret\n-----END OPENSSH PRIVATE KEY-----",
            None,
        )
        .unwrap_err();
        assert_eq!(err.key, keys::SSH_PRIVATE_KEY);
        assert!(!err.rule.contains("AAAAsecret"), "{}", err.rule);
    }
}
