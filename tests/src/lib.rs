//! Shared helpers for the integration tests in `tests/all`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use regua_host::{Engine, Limits, Plugin};

/// The folder holding every example and test plugin, built to wasm by the build script.
pub fn plugins_dir() -> &'static Path {
    Path::new(env!("REGUA_TEST_PLUGINS"))
}

/// The cargo target folder the plugins were built in (reused by tests that build more).
pub fn plugin_target_dir() -> &'static Path {
    Path::new(env!("REGUA_TEST_TARGET"))
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_owned()
}

/// The built `.wasm` of plugin `name`.
pub fn wasm(name: &str) -> PathBuf {
    plugins_dir().join(format!("{name}.wasm"))
}

/// An engine with the default limits.
pub fn engine() -> Engine {
    Engine::new(Limits::default()).expect("engine")
}

/// Loads plugin `name`.
pub fn load(engine: &Engine, name: &str) -> Arc<Plugin> {
    Plugin::load(engine, &wasm(name)).unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// The `regua` binary built for this test run.
pub fn regua_bin() -> PathBuf {
    // Test binaries live in target/<profile>/deps; the CLI in target/<profile>.
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile folder");
    let bin = dir.join(format!("regua{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p regua-host` (the README's test command does)",
        bin.display()
    );
    bin
}

/// The tests' own Python (target/py, the virtual environment `cargo xtask test` makes and
/// installs into; `REGUA_TEST_PYTHON` names another).
pub fn python() -> PathBuf {
    let python = std::env::var_os("REGUA_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/py/bin/python"));
    assert!(
        python.is_file(),
        "{} is missing: the tests' Python environment is made by `cargo xtask test`",
        python.display()
    );
    python
}

/// A command-line tool installed in the tests' Python environment.
pub fn python_tool(name: &str) -> PathBuf {
    let tool = python().with_file_name(name);
    assert!(
        tool.is_file(),
        "{} is missing from the tests' Python environment (`cargo xtask test` installs it)",
        tool.display()
    );
    tool
}

/// A process a test started, in a process group of its own, with everything it starts in turn:
/// dropping it (when the test ends, passed or failed) kills the whole group and the whole tree,
/// found through the processes' parents and, for those re-parented already, through `marker`, a
/// string unique to this test that their command lines carry (a browser's profile folder, say).
#[derive(Debug)]
pub struct ProcessTree {
    pub child: std::process::Child,
    marker: Option<String>,
}

impl ProcessTree {
    pub fn spawn(cmd: &mut std::process::Command, marker: Option<String>) -> ProcessTree {
        use std::os::unix::process::CommandExt;
        let child = cmd
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        ProcessTree { child, marker }
    }

    /// Kills everything the process started (and the process too, if it still runs).
    pub fn end(&mut self) {
        let root = self.child.id();
        kill_tree(root, self.marker.as_deref());
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{root}")])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProcessTree {
    fn drop(&mut self) {
        self.end();
    }
}

mod procs;
use procs::processes;

/// Kills `root`'s descendants (not `root` itself) and every process whose command line holds
/// `marker`, until none is left. The whole tree is found before anything is killed, so no
/// process is re-parented out of sight half-way.
pub fn kill_tree(root: u32, marker: Option<&str>) {
    let me = std::process::id();
    for _ in 0..20 {
        let all = processes();
        let mut doomed: Vec<u32> = all
            .iter()
            .filter(|(pid, _, cmd)| *pid != me && marker.is_some_and(|m| cmd.contains(m)))
            .map(|(pid, _, _)| *pid)
            .collect();
        let mut parents = vec![root];
        while let Some(parent) = parents.pop() {
            for (pid, ppid, _) in &all {
                if *ppid == parent && !doomed.contains(pid) {
                    doomed.push(*pid);
                    parents.push(*pid);
                }
            }
        }
        doomed.retain(|pid| *pid != root && *pid != me);
        if doomed.is_empty() {
            return;
        }
        let mut kill = std::process::Command::new("kill");
        kill.arg("-KILL");
        kill.args(doomed.iter().map(u32::to_string));
        let _ = kill.stderr(std::process::Stdio::null()).status();
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Runs `cmd` to its end in a process group of its own and returns its output; whatever it
/// started and left running (a JVM, a worker) is killed when it exits, or when the test panics
/// while it runs.
pub fn output_then_reap(cmd: &mut std::process::Command) -> std::process::Output {
    use std::io::Read;
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut tree = ProcessTree::spawn(cmd, None);
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = vec![];
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = read(Box::new(tree.child.stdout.take().unwrap()));
    let stderr = read(Box::new(tree.child.stderr.take().unwrap()));
    let status = tree.child.wait().expect("the command ends");
    // What is left of its group holds the pipes open: end it before reading them to the end.
    tree.end();
    std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// A database of its own on the PostgreSQL server `cargo xtask test` started (its URL in
/// `REGUA_TEST_POSTGRES`): the URL of a fresh, empty database.
pub fn postgres_db() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let admin = std::env::var("REGUA_TEST_POSTGRES").expect(
        "REGUA_TEST_POSTGRES is not set: run the tests with `cargo xtask test`, which starts \
         PostgreSQL for them",
    );
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("t{}_{n}", std::process::id());
    let url = match admin.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => panic!("REGUA_TEST_POSTGRES `{admin}` does not end with /DATABASE"),
    };
    // The synchronous client runs a runtime of its own: on a thread of its own, so this is
    // callable from async tests too.
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&admin, postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot reach the tests' PostgreSQL at {admin}: {e}"));
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
    })
    .join()
    .unwrap();
    url
}

/// Runs one SQL query on a database (from any thread, async tests included): its rows, each
/// column read as text (NULL as `None`).
pub fn sql(url: &str, query: &str) -> Vec<Vec<Option<String>>> {
    let (url, query) = (url.to_owned(), query.to_owned());
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client
            .simple_query(&query)
            .unwrap()
            .into_iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_owned))
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    })
    .join()
    .unwrap()
}

/// A nats-server with JetStream, on 127.0.0.1 with its data in a temporary folder, for one
/// test (the binary `cargo xtask test` found or installed: `REGUA_TEST_NATS_SERVER`); stopped
/// when dropped.
pub struct Nats {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
}

impl Nats {
    /// Starts it; returns once it accepts connections.
    pub fn start() -> Nats {
        let bin = std::env::var("REGUA_TEST_NATS_SERVER").expect(
            "REGUA_TEST_NATS_SERVER is not set: run the tests with `cargo xtask test`, which \
             installs nats-server for them",
        );
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(&bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "nats-server did not listen on 127.0.0.1:{port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Nats {
            child,
            _dir: dir,
            url: format!("nats://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
