//! The plugins a service serves: loaded from a folder, swapped atomically when a file changes.
//!
//! A lookup clones an `Arc<Plugin>`, so a request keeps the version it started with however many
//! swaps happen meanwhile. A file that fails to load leaves the last good version serving and the
//! error listed; a deleted file unloads its plugin.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use regua_sdk::Timestamp;
use serde::Serialize;

use crate::runtime::engine::Engine;
use crate::runtime::plugin::Plugin;

/// A served plugin and its history.
#[derive(Clone, Debug)]
pub struct Slot {
    /// The version serving now.
    pub plugin: Arc<Plugin>,
    /// When it was loaded.
    pub loaded_at: Timestamp,
    /// Why the newest file for this plugin could not be loaded, if it could not.
    pub last_error: Option<LoadFailure>,
}

/// A file that could not be loaded.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct LoadFailure {
    /// The file (or the crate, for a failed build in dev mode).
    pub source: String,
    /// What went wrong.
    pub error: String,
    /// When.
    pub at: Timestamp,
}

#[derive(Default)]
struct State {
    plugins: BTreeMap<String, Slot>,
    /// Which plugin each file holds.
    files: BTreeMap<PathBuf, String>,
    /// Failures of files (or crates) that hold no serving plugin.
    orphan_errors: BTreeMap<String, LoadFailure>,
    /// What each file was when last read.
    stamps: BTreeMap<PathBuf, Stamp>,
    /// The content that last failed to load from each file, so the same bytes seen again (a
    /// watcher reports one write as several events) are not compiled and reported twice.
    failed_versions: BTreeMap<PathBuf, String>,
}

/// A file's identity and content marks: a file replaced by a rename or rewritten gets new ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let inode = 0;
        Stamp {
            inode,
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

/// What a reload did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A plugin was loaded or replaced.
    Loaded {
        /// Its name.
        name: String,
        /// Its new version.
        version: String,
    },
    /// The file holds the version already serving.
    Unchanged,
    /// The file could not be loaded; the last good version (if any) keeps serving.
    Failed(String),
    /// The file is gone and its plugin unloaded.
    Removed(String),
}

/// The plugins of a folder.
pub struct Registry {
    engine: Engine,
    dir: PathBuf,
    state: RwLock<State>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("dir", &self.dir).finish()
    }
}

impl Registry {
    /// An empty registry for `dir`. The folder is made absolute, so the paths the file watcher
    /// reports and the paths listed at start name the same files.
    pub fn new(engine: Engine, dir: &Path) -> Registry {
        Registry {
            engine,
            dir: dir.canonicalize().unwrap_or_else(|_| dir.to_owned()),
            state: RwLock::new(State::default()),
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The engine plugins are compiled for.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The `.wasm` files of the folder, sorted.
    pub fn wasm_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| is_wasm(p))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    /// The plugin named `name`, if served.
    pub fn get(&self, name: &str) -> Option<Arc<Plugin>> {
        let state = self.state.read().expect("registry lock");
        state.plugins.get(name).map(|s| s.plugin.clone())
    }

    /// Every served plugin, by name.
    pub fn slots(&self) -> Vec<(String, Slot)> {
        let state = self.state.read().expect("registry lock");
        state
            .plugins
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect()
    }

    /// Failures of files that hold no serving plugin.
    pub fn orphan_errors(&self) -> Vec<LoadFailure> {
        let state = self.state.read().expect("registry lock");
        state.orphan_errors.values().cloned().collect()
    }

    /// Loads (or unloads) the plugin in `path` after it changed. Compilation happens before the
    /// lock is taken, so lookups never wait for it.
    ///
    /// A file whose identity (inode, size, modification time) is what it was when last read is
    /// not read again: reading a file makes the watcher report it once more, and the same bytes
    /// must not be compiled again, least of all while their first compilation runs.
    pub fn reload(&self, path: &Path) -> Change {
        let Ok(meta) = std::fs::metadata(path) else {
            return self.remove_file(path);
        };
        let stamp = Stamp::of(&meta);
        {
            let mut state = self.state.write().expect("registry lock");
            if state.stamps.get(path) == Some(&stamp) {
                return Change::Unchanged;
            }
            state.stamps.insert(path.to_owned(), stamp);
        }
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => return self.fail(path, None, format!("cannot read: {e}")),
        };
        self.install(path, &bytes)
    }

    /// Loads `bytes` as the content of `path` (which the caller has written or will write).
    pub fn install(&self, path: &Path, bytes: &[u8]) -> Change {
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        if let Err(detail) = crate::runtime::plugin::check_name(stem.as_deref().unwrap_or_default())
        {
            return self.fail(path, None, format!("the file name {detail}"));
        }
        let version = crate::runtime::plugin::version_of(bytes);
        {
            let mut guard = self.state.write().expect("registry lock");
            let state = &mut *guard;
            if state.failed_versions.get(path) == Some(&version) {
                return Change::Unchanged;
            }
            if let Some(name) = state.files.get(path)
                && let Some(slot) = state.plugins.get_mut(name)
                && slot.plugin.version == version
            {
                // The file is back to the version serving: a failure listed for it is over.
                state.failed_versions.remove(path);
                let source = path.display().to_string();
                if slot.last_error.as_ref().is_some_and(|f| f.source == source) {
                    slot.last_error = None;
                }
                return Change::Unchanged;
            }
        }
        let what = path.display().to_string();
        match Plugin::from_bytes(&self.engine, &what, bytes) {
            Ok(mut plugin) => {
                plugin.source = Some(path.to_owned());
                let plugin = Arc::new(plugin);
                let name = plugin.name().to_owned();
                let mut state = self.state.write().expect("registry lock");
                // Deleted or rewritten while it compiled (`delete` removes files under this lock):
                // stale, and the event of the newer change will follow.
                let current = std::fs::read(path).map(|b| crate::runtime::plugin::version_of(&b));
                if current.ok().as_deref() != Some(version.as_str()) {
                    return Change::Unchanged;
                }
                if let Some(other) = state
                    .files
                    .iter()
                    .find(|(f, n)| **n == name && f.as_path() != path)
                    .map(|(f, _)| f.clone())
                {
                    drop(state);
                    return self.fail(
                        path,
                        Some(&name),
                        format!(
                            "a plugin named `{name}` is already served from {}",
                            other.display()
                        ),
                    );
                }
                if let Some(previous) = state.files.insert(path.to_owned(), name.clone())
                    && previous != name
                {
                    state.plugins.remove(&previous);
                }
                state.orphan_errors.remove(&what);
                state.failed_versions.remove(path);
                let version = plugin.version.clone();
                state.plugins.insert(
                    name.clone(),
                    Slot {
                        plugin,
                        loaded_at: crate::wall_clock(),
                        last_error: None,
                    },
                );
                Change::Loaded { name, version }
            }
            Err(e) => {
                let mut state = self.state.write().expect("registry lock");
                state.failed_versions.insert(path.to_owned(), version);
                drop(state);
                self.fail(path, None, e.to_string())
            }
        }
    }

    /// Records that `source` (a file, or a crate in dev mode) failed; the plugin it holds, if
    /// known, keeps serving its last good version.
    pub fn record_failure(&self, source: &str, plugin: Option<&str>, error: String) {
        let failure = LoadFailure {
            source: source.to_owned(),
            error,
            at: crate::wall_clock(),
        };
        let mut state = self.state.write().expect("registry lock");
        match plugin.and_then(|p| state.plugins.get_mut(p)) {
            Some(slot) => slot.last_error = Some(failure),
            None => {
                state.orphan_errors.insert(source.to_owned(), failure);
            }
        }
    }

    /// Clears a failure recorded with [`Registry::record_failure`] (the source builds again).
    pub fn clear_failure(&self, source: &str, plugin: Option<&str>) {
        let mut state = self.state.write().expect("registry lock");
        state.orphan_errors.remove(source);
        if let Some(slot) = plugin.and_then(|p| state.plugins.get_mut(p))
            && slot.last_error.as_ref().is_some_and(|f| f.source == source)
        {
            slot.last_error = None;
        }
    }

    fn fail(&self, path: &Path, name: Option<&str>, error: String) -> Change {
        let known = {
            let state = self.state.read().expect("registry lock");
            name.map(str::to_owned)
                .or_else(|| state.files.get(path).cloned())
        };
        self.record_failure(&path.display().to_string(), known.as_deref(), error.clone());
        Change::Failed(error)
    }

    fn remove_file(&self, path: &Path) -> Change {
        let mut state = self.state.write().expect("registry lock");
        state.orphan_errors.remove(&path.display().to_string());
        state.failed_versions.remove(path);
        state.stamps.remove(path);
        match state.files.remove(path) {
            Some(name) => {
                state.plugins.remove(&name);
                Change::Removed(name)
            }
            None => Change::Unchanged,
        }
    }

    /// Unloads plugin `name` and deletes its file.
    pub fn delete(&self, name: &str) -> std::io::Result<bool> {
        // The file goes under the lock, so a reload compiling it meanwhile cannot bring it back.
        let mut state = self.state.write().expect("registry lock");
        let Some(file) = state
            .files
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(f, _)| f.clone())
        else {
            return Ok(false);
        };
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        state.files.remove(&file);
        state.plugins.remove(name);
        state.orphan_errors.remove(&file.display().to_string());
        state.failed_versions.remove(&file);
        state.stamps.remove(&file);
        Ok(true)
    }
}

/// Whether `path` names a `.wasm` file (not a hidden temporary one).
pub fn is_wasm(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "wasm")
        && !path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'))
}
