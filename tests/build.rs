//! Builds every example plugin and every test plugin to wasm once, exactly as `regua build`
//! does, for all the integration tests to share.

#[path = "../host/src/wasm_build.rs"]
#[allow(dead_code)]
mod wasm_build;

use std::path::{Path, PathBuf};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned();
    for watched in [
        "plugins",
        "sdk/src",
        "sdk/Cargo.toml",
        "tests/plugins",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("plugins");
    // A target folder of its own: the outer cargo holds the workspace's.
    let target = root.join("target/test-plugins");
    let mut crates =
        wasm_build::find_plugin_crates(&root.join("plugins")).expect("example plugins");
    crates
        .extend(wasm_build::find_plugin_crates(&root.join("tests/plugins")).expect("test plugins"));
    if let Err(e) = wasm_build::build(&crates, &out, Some(&target)) {
        panic!("building the plugins for the tests failed: {e}");
    }
    println!("cargo:rustc-env=REGUA_TEST_PLUGINS={}", out.display());
    println!("cargo:rustc-env=REGUA_TEST_TARGET={}", target.display());
}
