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
