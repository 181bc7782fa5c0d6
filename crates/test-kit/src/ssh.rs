//! A real OpenSSH `sshd` on the loopback, as the bastion host in front of a private cluster:
//! public-key sign-in only, TCP forwarding on, keys made for each run by `ssh-keygen`. The
//! user is whoever runs the tests (root in CI). `.ci/run` installs `openssh-server`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private key and its public half, in OpenSSH text.
pub struct KeyPair {
    pub private: String,
    pub public: String,
}

/// A running sshd; stopped when dropped.
pub struct Bastion {
    dir: tempfile::TempDir,
    child: Option<Child>,
    port: u16,
    pub user: String,
    /// The bastion's host key (public), as `ssh_host_key` takes it.
    pub host_key: String,
    /// Authorized for `user`: Ed25519 in OpenSSH format.
    pub key: KeyPair,
    /// Authorized for `user`: RSA in PEM (PKCS#1) format.
    pub rsa_pem_key: KeyPair,
    /// Authorized for `user`: Ed25519, encrypted with [`PASSPHRASE`].
    pub encrypted_key: KeyPair,
    /// Not authorized anywhere.
    pub stranger_key: KeyPair,
    /// A host key of no bastion.
    pub other_host_key: String,
}

pub const PASSPHRASE: &str = "tunnel-Passphrase-31";

fn sshd_path() -> PathBuf {
    ["/usr/sbin/sshd", "/usr/bin/sshd", "/usr/local/sbin/sshd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("OpenSSH's sshd (Debian: apt-get install openssh-server; .ci/run does)")
}

fn keygen(dir: &Path, name: &str, args: &[&str]) -> KeyPair {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-C", name, "-f"])
        .arg(&path)
        .args(args)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen (openssh-client)");
    assert!(status.success(), "ssh-keygen {name}");
    KeyPair {
        private: std::fs::read_to_string(&path).unwrap(),
        public: std::fs::read_to_string(path.with_extension("pub"))
            .unwrap()
            .trim()
            .to_string(),
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn current_user() -> String {
    let output = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

impl Bastion {
    pub fn start() -> Bastion {
        let dir = tempfile::Builder::new()
            .prefix("redshift-sync-sshd-")
            .tempdir()
            .unwrap();
        let host = keygen(dir.path(), "host_ed25519", &["-t", "ed25519", "-N", ""]);
        let other_host = keygen(dir.path(), "other_host", &["-t", "ed25519", "-N", ""]);
        let key = keygen(dir.path(), "client_ed25519", &["-t", "ed25519", "-N", ""]);
        let rsa_pem_key = keygen(
            dir.path(),
            "client_rsa",
            &["-t", "rsa", "-b", "2048", "-m", "PEM", "-N", ""],
        );
        let encrypted_key = keygen(
            dir.path(),
            "client_encrypted",
            &["-t", "ed25519", "-N", PASSPHRASE],
        );
        let stranger_key = keygen(dir.path(), "stranger", &["-t", "ed25519", "-N", ""]);
        let authorized = dir.path().join("authorized_keys");
        std::fs::write(
            &authorized,
            format!(
                "{}\n{}\n{}\n",
                key.public, rsa_pem_key.public, encrypted_key.public
            ),
        )
        .unwrap();
        // Root's sshd wants its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");

        let user = current_user();
        let mut bastion = Bastion {
            host_key: host.public,
            other_host_key: other_host.public,
            key,
            rsa_pem_key,
            encrypted_key,
            stranger_key,
            user,
            port: 0,
            child: None,
            dir,
        };
        bastion.listen();
        bastion
    }

    /// Starts sshd on a free port (again, after [`stop`](Self::stop)) and waits until it
    /// accepts connections.
    pub fn listen(&mut self) {
        for _ in 0..5 {
            let port = if self.port == 0 {
                free_port()
            } else {
                self.port
            };
            let config = self.dir.path().join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {pid}\n\
                     AuthorizedKeysFile {authorized}\nStrictModes no\nUsePAM no\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     PubkeyAuthentication yes\nPermitRootLogin prohibit-password\n\
                     AllowTcpForwarding yes\nPermitOpen any\nLogLevel VERBOSE\n",
                    host_key = self.dir.path().join("host_ed25519").display(),
                    pid = self.dir.path().join("sshd.pid").display(),
                    authorized = self.dir.path().join("authorized_keys").display(),
                ),
            )
            .unwrap();
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log_path())
                .unwrap();
            let child = Command::new(sshd_path())
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start sshd");
            self.child = Some(child);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    self.port = port;
                    return;
                }
                if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                    eprintln!("sshd exited with {status}: {}", self.log());
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            self.stop();
            self.port = 0;
        }
        panic!("sshd did not start: {}", self.log());
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("sshd.log")
    }

    /// What sshd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Sign-ins sshd accepted so far.
    pub fn sign_ins(&self) -> usize {
        self.log().matches("Accepted publickey").count()
    }

    /// Kills every connection's process (each tunnel dies, as when a bastion reboots or a NAT
    /// drops the flow) and leaves the listener running. How many there were.
    pub fn kill_tunnels(&self) -> usize {
        let Some(child) = &self.child else { return 0 };
        let sessions = descendants(child.id());
        for pid in &sessions {
            // A process may have ended meanwhile: that is fine.
            let _ = Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        sessions.len()
    }

    /// Stops sshd and every connection it serves: the bastion is down.
    pub fn stop(&mut self) {
        self.kill_tunnels();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `base` (a connector configuration whose `host`/`port` the bastion can reach) through
    /// this bastion with `key`.
    pub fn configuration(
        &self,
        base: &HashMap<String, String>,
        key: &KeyPair,
    ) -> HashMap<String, String> {
        let mut config = base.clone();
        config.insert("ssh_host".into(), "127.0.0.1".into());
        config.insert("ssh_port".into(), self.port.to_string());
        config.insert("ssh_user".into(), self.user.clone());
        config.insert("ssh_private_key".into(), key.private.clone());
        config.insert("ssh_host_key".into(), self.host_key.clone());
        config
    }
}

/// Every process below `pid` (sshd's per-connection processes and theirs).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents = HashMap::<u32, Vec<u32>>::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces, so parse after its `)`.
        let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            continue;
        };
        if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parents.entry(ppid).or_default().push(child);
        }
    }
    let mut found = Vec::new();
    let mut stack = vec![pid];
    while let Some(parent) = stack.pop() {
        for &child in parents.get(&parent).into_iter().flatten() {
            found.push(child);
            stack.push(child);
        }
    }
    found
}

impl Drop for Bastion {
    fn drop(&mut self) {
        self.stop();
    }
}
