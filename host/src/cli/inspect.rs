use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::LimitArgs;
use crate::Plugin;

/// Print a plugin's metadata: name, kind, version (content hash), ABI, description, parameter
/// defaults.
///
/// Example: regua inspect dist/plugins/rfm.wasm
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The plugin: a path to a .wasm, or a name in --plugins-dir.
    plugin: String,
    /// Folder where plugin names are looked up.
    #[arg(long, value_name = "DIR", default_value = super::DEFAULT_PLUGINS_DIR)]
    plugins_dir: PathBuf,
    #[command(flatten)]
    limits: LimitArgs,
}

impl InspectArgs {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let engine = self.limits.engine()?;
        let path = super::resolve_plugin(&self.plugins_dir, &self.plugin)?;
        let plugin = Plugin::load(&engine, &path)?;
        let m = &plugin.meta;
        let out = json!({
            "name": m.name,
            "kind": m.kind,
            "version": plugin.version,
            "crate_version": m.version,
            "abi": m.abi,
            "description": m.description,
            "params": m.params,
            "reads": m.reads,
            "file": path,
        });
        super::print_json(&out)?;
        Ok(())
    }
}
