use std::path::PathBuf;

use clap::Args;

use crate::authoring::build as wasm_build;

/// Build plugin crates to .wasm, written as <plugin-name>.wasm into one folder.
///
/// Installs the wasm32-unknown-unknown target with rustup when it is missing. The output folder
/// is the one `regua batch --all` and a plugins directory of the service read.
///
/// Example: regua build plugins/ --out dist/plugins
#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// Plugin crates, or folders of plugin crates.
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
        for p in &self.paths {
            crates.extend(wasm_build::find_plugin_crates(p).map_err(anyhow::Error::msg)?);
        }
        let written = wasm_build::build(&crates, &self.out, self.target_dir.as_deref())
            .map_err(anyhow::Error::msg)?;
        for w in &written {
            let size = std::fs::metadata(w).map(|m| m.len()).unwrap_or(0);
            eprintln!("built {} ({} KiB)", w.display(), size / 1024);
        }
        Ok(())
    }
}
