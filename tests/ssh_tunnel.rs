//! SSH tunnels through a real OpenSSH `sshd` on the loopback (`support::ssh`), in front of the
//! Redshift-shaped proxy: every session goes through the bastion, its host key is checked
//! against `ssh_host_key`, and each failure names the hop that failed.

use crate::support;

use std::collections::BTreeSet;

use support::ssh::{Bastion, PASSPHRASE};
use support::{interrupt, run_test, stream};

async fn bastion() -> Bastion {
    tokio::task::spawn_blocking(Bastion::start).await.unwrap()
}

fn ids(log: &stream::UpdateLog) -> Vec<i32> {
    log.upserts()
        .iter()
        .map(|row| row["id"].parse().expect("an INT id"))
        .collect()
}

/// Ed25519 in OpenSSH format, RSA in PEM, and an encrypted key with its passphrase all sign
/// in; Test and Update go through the bastion (sshd logs each sign-in).
#[tokio::test(flavor = "multi_thread")]
async fn sessions_reach_the_cluster_through_the_bastion_with_each_key_format() {
    let db = support::fresh_database().await;
    interrupt::create_items(&db.client).await;
    let bastion = bastion().await;
    let server = support::TestServer::start().await;
    let mut client = server.client().await;

    for key in [&bastion.key, &bastion.rsa_pem_key, &bastion.encrypted_key] {
        let mut config = bastion.configuration(&db.config, key);
        if std::ptr::eq(key, &bastion.encrypted_key) {
            config.insert("ssh_private_key_passphrase".into(), PASSPHRASE.into());
        }
        let before = bastion.sign_ins();
        for test in ["connect", "select"] {
            run_test(&mut client, test, &config)
                .await
                .unwrap_or_else(|reason| panic!("{test} with {}: {reason}", key.public));
        }
        assert!(bastion.sign_ins() >= before + 2, "{}", bastion.log());
    }

    let config = bastion.configuration(&db.config, &bastion.key);
    let before = bastion.sign_ins();
    let log = stream::update_ok(&mut client, &config, None, None).await;
    let synced: BTreeSet<i32> = ids(&log).into_iter().collect();
    assert_eq!(synced, (1..=interrupt::ROWS).collect::<BTreeSet<i32>>());
    assert!(
        bastion.sign_ins() > before,
        "the Update went through the bastion"
    );

    // A wrong passphrase is a configuration error naming its key, before anything connects.
    let mut config = bastion.configuration(&db.config, &bastion.encrypted_key);
    config.insert("ssh_private_key_passphrase".into(), "not-it".into());
    let reason = run_test(&mut client, "connect", &config).await.unwrap_err();
    assert!(reason.contains("`ssh_private_key_passphrase`"), "{reason}");
    config.remove("ssh_private_key_passphrase");
    let reason = run_test(&mut client, "connect", &config).await.unwrap_err();
    assert!(reason.contains("`ssh_private_key_passphrase`"), "{reason}");
    assert!(!reason.contains("OPENSSH PRIVATE KEY-----\n"), "{reason}");
}

/// A bastion that presents another host key than `ssh_host_key` gets nothing: no sign-in is
/// attempted (sshd logs none), Test names both keys' fingerprints, Update ends with a Task.
#[tokio::test(flavor = "multi_thread")]
async fn a_bastion_with_another_host_key_is_refused() {
    let db = support::fresh_database().await;
    interrupt::create_items(&db.client).await;
    let bastion = bastion().await;
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let mut config = bastion.configuration(&db.config, &bastion.key);
    config.insert("ssh_host_key".into(), bastion.other_host_key.clone());

    let reason = run_test(&mut client, "connect", &config).await.unwrap_err();
    assert!(reason.contains("host key"), "{reason}");
    assert!(reason.contains("`ssh_host_key`"), "{reason}");
    assert!(reason.contains("SHA256:"), "{reason}");
    assert!(
        reason.contains(&format!("127.0.0.1:{}", bastion.port())),
        "{reason}"
    );
    assert_eq!(bastion.sign_ins(), 0, "{}", bastion.log());

    let outcome = stream::try_update(&mut client, &config, None, None).await;
    let tasks = outcome.log.tasks();
    assert!(
        tasks.iter().any(|task| task.contains("host key")),
        "{tasks:?} {:?}",
        outcome.error
    );
}

/// A key the bastion does not authorize is refused, naming the bastion and the user.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_the_bastion_does_not_know_is_refused_naming_the_user() {
    let db = support::fresh_database().await;
    let bastion = bastion().await;
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = bastion.configuration(&db.config, &bastion.stranger_key);
    let reason = run_test(&mut client, "connect", &config).await.unwrap_err();
    assert!(reason.contains("refused user"), "{reason}");
    assert!(reason.contains(&format!("`{}`", bastion.user)), "{reason}");
    assert!(reason.contains("authorized_keys"), "{reason}");
}

/// The bastion down, or the bastion unable to reach the cluster: each failure names its hop.
#[tokio::test(flavor = "multi_thread")]
async fn each_unreachable_hop_is_named() {
    let db = support::fresh_database().await;
    let mut bastion = bastion().await;
    let server = support::TestServer::start().await;
    let mut client = server.client().await;

    // The cluster's port closed, as the bastion sees it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut config = bastion.configuration(&db.config, &bastion.key);
    config.insert("port".into(), closed_port.to_string());
    config.insert("connect_timeout_s".into(), "5".into());
    let reason = run_test(&mut client, "connect", &config).await.unwrap_err();
    assert!(reason.contains("cannot reach the cluster"), "{reason}");
    assert!(reason.contains(&closed_port.to_string()), "{reason}");
    assert!(reason.contains("SSH bastion"), "{reason}");

    // A bastion whose name does not resolve (a typo in `ssh_host`): the user's to fix, as a
    // host that does not resolve is; never retried for `retry_timeout_s`. Update ends at once
    // with a Task naming the key.
    let mut config = bastion.configuration(&db.config, &bastion.key);
    config.insert("ssh_host".into(), "no-such-bastion.invalid".into());
    let reason = run_test(&mut client, "connect", &config).await.unwrap_err();
    assert!(reason.contains("`ssh_host`"), "{reason}");
    assert!(reason.contains("no-such-bastion.invalid"), "{reason}");
    let started = std::time::Instant::now();
    let outcome = stream::try_update(&mut client, &config, None, None).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "Update took {:?}",
        started.elapsed()
    );
    let tasks = outcome.log.tasks();
    assert!(
        tasks.len() == 1 && tasks[0].contains("`ssh_host`"),
        "{tasks:?} {:?}",
        outcome.error
    );

    // The bastion itself down.
    let config = bastion.configuration(&db.config, &bastion.key);
    let port = bastion.port();
    tokio::task::block_in_place(|| bastion.stop());
    let reason = run_test(&mut client, "connect", &config).await.unwrap_err();
    assert!(
        reason.contains(&format!("cannot reach the SSH bastion 127.0.0.1:{port}")),
        "{reason}"
    );
}

/// Every tunnel dies in the middle of a table's scan (sshd's connection processes killed, as
/// a bastion reboot or a dropped NAT flow does): the session reconnects through a new tunnel
/// and the sync resumes after the last row sent, every row once.
#[tokio::test(flavor = "multi_thread")]
async fn a_tunnel_killed_mid_sync_reconnects_and_the_sync_resumes() {
    let db = support::fresh_database().await;
    interrupt::create_items(&db.client).await;
    let bastion = bastion().await;
    let config = interrupt::small_batches(&bastion.configuration(&db.config, &bastion.key));
    let (log, killed) = interrupt::update_interrupted(&config, || async {
        tokio::task::block_in_place(|| bastion.kill_tunnels())
    })
    .await;
    assert!(killed > 0, "a tunnel was open to kill");
    interrupt::assert_each_row_once(&log);
    assert!(bastion.sign_ins() >= 2, "a new tunnel: {}", bastion.log());
}
