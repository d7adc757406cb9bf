use std::path::PathBuf;

use clap::Args;

use crate::authoring::build as wasm_build;
use crate::runtime::engine::{Engine, Limits};
use crate::runtime::plugin::Plugin;

/// Build plugin crates to .wasm, written as <plugin-name>.wasm into one folder.
///
/// Installs the wasm32-unknown-unknown target with rustup when it is missing. The output folder
/// is the one `regua batch --all` and a plugins directory of the service read. A `.wat` file is
/// a plugin written in WebAssembly text (docs/ABI.md): it is assembled into <file-stem>.wasm.
///
/// Crates are built for size and speed whatever their own profile says (release, LTO, one
/// codegen unit, panic=abort), and the function names are left out of the .wasm: answers and
/// errors never show them.
///
/// Example: regua build plugins/ examples/wat/big-spender.wat --out dist/plugins
#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// Plugin crates, folders of plugin crates, or `.wat` files.
    #[arg(default_value = "plugins")]
    paths: Vec<PathBuf>,
    /// Where the .wasm files go.
    #[arg(long, value_name = "DIR", default_value = super::DEFAULT_PLUGINS_DIR)]
    out: PathBuf,
    /// Cargo's target folder (default: the workspace's).
    #[arg(long, value_name = "DIR")]
    target_dir: Option<PathBuf>,
}

impl BuildArgs {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let mut crates = Vec::new();
        let mut written = Vec::new();
        // Loads each assembled module as the host would (an instruction without its operands,
        // a missing export are caught here); made once, for the first `.wat`.
        let mut engine = None;
        for p in &self.paths {
            if p.extension().is_some_and(|e| e == "wat") {
                let engine = match &mut engine {
                    Some(e) => e,
                    None => engine.insert(Engine::new(Limits::default())?),
                };
                let check = |bytes: &[u8]| {
                    let what = p.display().to_string();
                    Plugin::from_bytes(engine, &what, bytes)
                        .map(drop)
                        .map_err(|e| e.to_string())
                };
                written
                    .push(wasm_build::assemble(p, &self.out, check).map_err(anyhow::Error::msg)?);
                continue;
            }
            crates.extend(wasm_build::find_plugin_crates(p).map_err(anyhow::Error::msg)?);
        }
        if !crates.is_empty() {
            written.extend(
                wasm_build::build(&crates, &self.out, self.target_dir.as_deref())
                    .map_err(anyhow::Error::msg)?,
            );
        }
        for w in &written {
            let size = std::fs::metadata(w).map(|m| m.len()).unwrap_or(0);
            eprintln!("built {} ({} KiB)", w.display(), size / 1024);
        }
        Ok(())
    }
}
