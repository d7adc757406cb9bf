//! Builds every example plugin and every test plugin to wasm once, exactly as `regua build`
//! does, for all the integration tests to share.

#[path = "../host/src/authoring/build.rs"]
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
        "tests/wat",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("plugins");
    // A target folder of its own (the outer cargo holds the workspace's), the one `cargo xtask
    // serve` builds the plugins in too, so after it the tests build no plugin again.
    let target = root.join("target/plugins");
    // The examples in one cargo invocation of exactly the crates `regua build plugins` names, so
    // what `cargo xtask serve` built is fresh here; the test plugins in another.
    for folder in ["plugins", "tests/plugins"] {
        let crates = wasm_build::find_plugin_crates(&root.join(folder))
            .unwrap_or_else(|e| panic!("the plugin crates of {folder}: {e}"));
        if let Err(e) = wasm_build::build(&crates, &out, Some(&target)) {
            panic!("building the plugins of {folder} for the tests failed: {e}");
        }
    }
    build_wat(&root.join("tests/wat"), &out);
    println!("cargo:rustc-env=REGUA_TEST_PLUGINS={}", out.display());
    println!("cargo:rustc-env=REGUA_TEST_TARGET={}", target.display());
}

/// Assembles the hand-written plugins of `tests/wat`: each file is wrapped in `(module …)` after
/// `prelude.wat`, with `@NAME@` standing for the file's name.
fn build_wat(dir: &Path, out: &Path) {
    let prelude = std::fs::read_to_string(dir.join("prelude.wat")).expect("tests/wat/prelude.wat");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("tests/wat")
        .map(|e| e.expect("tests/wat entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wat") && !p.ends_with("prelude.wat"))
        .collect();
    files.sort();
    for file in files {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let body = std::fs::read_to_string(&file).unwrap();
        let text = format!("(module\n{}\n{body})", prelude.replace("@NAME@", &name));
        let bytes = wat::parse_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        std::fs::write(out.join(format!("{name}.wasm")), bytes).unwrap();
    }
}
