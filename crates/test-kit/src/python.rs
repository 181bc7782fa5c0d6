//! The tests' Python tools, in a virtual environment under `target/` built on first use from
//! `requirements.txt` (PyPI only): the hosts' connector SDK for `host_check.py`, and moto, the
//! AWS API emulator of the IAM tests.
//!
//! Test binaries run in parallel and each may be first, so the build holds an exclusive
//! `flock` on a lock file; a marker holding the requirements' text says the environment is
//! complete (an interrupted install leaves no marker and is redone).

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const REQUIREMENTS: &str = include_str!("requirements.txt");

/// The environment's directory; its interpreter is `bin/python`.
pub fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let root = crate::target_tmp_dir();
        fs::create_dir_all(&root).expect("create the target tmp dir");
        let venv = root.join("python-venv");
        let lock = File::create(root.join("python-venv.lock")).expect("create the venv lock file");
        // SAFETY: flock on a file descriptor this function owns for the whole call.
        let locked = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(
            locked,
            0,
            "lock the venv: {}",
            std::io::Error::last_os_error()
        );
        let marker = venv.join("requirements.installed");
        if fs::read_to_string(&marker).ok().as_deref() != Some(REQUIREMENTS) {
            build(&venv);
            fs::write(&marker, REQUIREMENTS).expect("write the venv marker");
        }
        drop(lock);
        venv
    })
}

/// The hosts' conformance checker: `host_check.py`, run with [`python`].
pub fn host_check_script() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src/host_check.py"))
}

/// The environment's interpreter.
pub fn python() -> PathBuf {
    venv().join("bin/python")
}

fn build(venv: &Path) {
    let _ = fs::remove_dir_all(venv);
    run(Command::new("python3").arg("-m").arg("venv").arg(venv));
    let requirements = venv.join("requirements.txt");
    fs::write(&requirements, REQUIREMENTS).expect("write requirements.txt");
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements));
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err} (is python3 installed?)"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}); python3 with venv and PyPI access are needed:\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
