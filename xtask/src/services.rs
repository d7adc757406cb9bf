//! The servers the runtime's tests use, started for the run and stopped at its end, as a
//! user's CI would: PostgreSQL (one cluster in a temporary folder, each test making a database
//! of its own) and the nats-server binary (each test starting its own). Installed from Debian
//! when missing; bound to 127.0.0.1 only.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{apt_install, run};

/// Whether this process runs as root (PostgreSQL's server refuses to).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The newest Debian PostgreSQL's programs folder, if one is installed.
fn pg_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// A free TCP port on 127.0.0.1 (the server binds it a moment later).
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))
}

/// A PostgreSQL cluster for the run.
pub struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    root: bool,
    /// `postgres://regua@127.0.0.1:PORT/postgres`.
    pub url: String,
}

impl Postgres {
    /// Installs (from Debian, when missing), creates and starts a cluster in a temporary
    /// folder.
    pub fn start() -> Result<Postgres, String> {
        let bin = match pg_bin() {
            Some(bin) => bin,
            None => {
                apt_install(
                    &["postgresql"],
                    "the runtime's tests need PostgreSQL (Debian's postgresql)",
                )?;
                pg_bin().ok_or("postgresql is installed but no /usr/lib/postgresql/*/bin/initdb")?
            }
        };
        let root = is_root();
        let dir = std::env::temp_dir().join(format!("regua-test-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if root {
            // The server will not run as root: Debian's package made the `postgres` user.
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir))?;
        }
        let port = free_port()?;
        let data = dir.join("data");
        let pg = Postgres {
            bin,
            dir,
            root,
            url: format!("postgres://regua@127.0.0.1:{port}/postgres"),
        };
        run(pg
            .command("initdb")
            .args([
                "--username=regua",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data))?;
        // Only for tests: nothing durable (fsync off), room for many services' connections.
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections=400",
            pg.dir.display()
        );
        run(pg
            .command("pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(pg.dir.join("server.log"))
            .arg("start"))?;
        Ok(pg)
    }

    /// A PostgreSQL program, as the `postgres` user when this runs as root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.root {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(path);
            cmd
        } else {
            Command::new(path)
        }
    }

    /// Stops the server and removes its folder.
    pub fn stop(self) -> Result<(), String> {
        let stopped = run(self
            .command("pg_ctl")
            .args(["-w", "-m", "fast", "-D"])
            .arg(self.dir.join("data"))
            .arg("stop"));
        let _ = std::fs::remove_dir_all(&self.dir);
        stopped
    }
}

/// The nats-server binary, installed from Debian when missing.
pub fn nats_server() -> Result<PathBuf, String> {
    let found = |dirs: &[&Path]| {
        dirs.iter()
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
    };
    let usual = [
        Path::new("/usr/sbin"),
        Path::new("/usr/bin"),
        Path::new("/usr/local/bin"),
    ];
    if let Some(p) = found(&usual) {
        return Ok(p);
    }
    apt_install(
        &["nats-server"],
        "the runtime's stream tests need Debian's nats-server",
    )?;
    found(&usual).ok_or_else(|| "nats-server is installed but not in /usr/sbin".into())
}
