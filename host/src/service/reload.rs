//! Hot reload: watch the plugins folder (and, in dev mode, the plugin crates' sources) and swap
//! plugins in as files land. Compilation runs on the watcher's thread, never on a request's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};

use crate::authoring::build as wasm_build;
use crate::service::metrics::Metrics;
pub use crate::service::registry::Change;
use crate::service::registry::{Registry, is_wasm};

/// How long a file must be quiet before it is loaded, so a file still being written is not.
pub const PLUGIN_DEBOUNCE: Duration = Duration::from_millis(25);

/// How long sources must be quiet before a rebuild (editors save in bursts).
pub const SOURCE_DEBOUNCE: Duration = Duration::from_millis(300);

/// Live watchers; dropping this stops them.
pub struct Watchers {
    _plugins: Debouncer<RecommendedWatcher>,
    _sources: Option<RecommendedWatcher>,
}

impl std::fmt::Debug for Watchers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watchers")
    }
}

/// Applies a change of `path` to the registry, with logs and metrics.
pub fn apply(registry: &Registry, metrics: &Metrics, path: &Path) {
    let started = Instant::now();
    match registry.reload(path) {
        Change::Loaded { name, version } => {
            metrics.reload("loaded");
            tracing::info!(plugin = %name, %version, file = %path.display(), ms = started.elapsed().as_millis() as u64, "plugin loaded");
        }
        Change::Failed(error) => {
            metrics.reload("failed");
            tracing::warn!(file = %path.display(), "plugin not loaded; the last good version keeps serving: {error}");
        }
        Change::Removed(name) => {
            metrics.reload("removed");
            tracing::info!(plugin = %name, file = %path.display(), "plugin unloaded: its file is gone");
        }
        Change::Unchanged => {}
    }
}

/// Loads every plugin of the registry's folder, with logs and metrics (at start).
pub fn load_all(registry: &Registry, metrics: &Metrics) {
    load_files(registry, metrics, registry.wasm_files());
}

/// How many files load at once: a module slow to compile holds up one loader, not the rest.
const LOADERS: usize = 2;

/// Applies the changes of `files`, on [`LOADERS`] threads.
fn load_files(registry: &Registry, metrics: &Metrics, files: Vec<PathBuf>) {
    let queue = std::sync::Mutex::new(files.into_iter());
    let next = || queue.lock().expect("load queue").next();
    std::thread::scope(|scope| {
        for _ in 0..LOADERS {
            scope.spawn(|| {
                while let Some(file) = next() {
                    apply(registry, metrics, &file);
                }
            });
        }
    });
}

/// Watches the registry's folder. Each burst of changes loads on threads of its own, so the
/// watcher never waits for a compiler and a later change is not held up by an earlier one.
fn watch_plugins(
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
) -> notify::Result<Debouncer<RecommendedWatcher>> {
    let dir = registry.dir().to_owned();
    let mut debouncer =
        new_debouncer(PLUGIN_DEBOUNCE, move |res: DebounceEventResult| match res {
            Ok(events) => {
                let files: Vec<PathBuf> = events
                    .iter()
                    .filter(|e| is_wasm(&e.path))
                    .map(|e| e.path.clone())
                    .collect();
                if files.is_empty() {
                    return;
                }
                let (registry, metrics) = (registry.clone(), metrics.clone());
                let spawned = std::thread::Builder::new()
                    .name("regua-load".into())
                    .spawn(move || load_files(&registry, &metrics, files));
                if let Err(e) = spawned {
                    tracing::error!("cannot start a thread to load changed plugins: {e}");
                }
            }
            Err(e) => tracing::warn!("watching the plugins folder: {e}"),
        })?;
    debouncer
        .watcher()
        .watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(debouncer)
}

/// The plugin crate under `root` (a crate, or a folder of crates) that `path` belongs to.
fn crate_of(root: &Path, path: &Path) -> Option<PathBuf> {
    let relative = path.strip_prefix(root).ok()?;
    if relative.components().any(|c| c.as_os_str() == "target") {
        return None;
    }
    if wasm_build::is_plugin_crate(root) {
        return Some(root.to_owned());
    }
    let first = relative.components().next()?;
    let dir = root.join(first);
    wasm_build::is_plugin_crate(&dir).then_some(dir)
}

/// What dev mode watches and how it builds.
#[derive(Clone, Debug)]
pub struct DevSources {
    /// The folder of plugin crates.
    pub root: PathBuf,
    /// Cargo's target folder for the rebuilds (default: each crate's workspace's).
    pub target_dir: Option<PathBuf>,
}

/// Rebuilds the crate at `dir` into the registry's folder; a failure is listed on the plugin.
/// Whether it built.
pub fn rebuild(registry: &Registry, dir: &Path, target_dir: Option<&Path>) -> bool {
    let source = dir.display().to_string();
    let name = wasm_build::package_name(dir).ok();
    tracing::info!(crate_dir = %source, "sources changed: rebuilding");
    match wasm_build::build(&[dir.to_owned()], registry.dir(), target_dir) {
        // The plugins watcher loads the new file.
        Ok(_) => {
            registry.clear_failure(&source, name.as_deref());
            true
        }
        Err(e) => {
            tracing::warn!(crate_dir = %source, "build failed; the last good version keeps serving:\n{e}");
            registry.record_failure(&source, name.as_deref(), e);
            false
        }
    }
}

/// Whether an event changes what a build would read: a file written, made, removed or renamed.
/// Not a file opened, read or closed unwritten, nor its times changed: a build opens every
/// source, and reacting to that would make each build start the next.
fn changes_sources(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, ModifyKind};
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Name(_) | ModifyKind::Any) => true,
        // A file closed after writing (editors that write in place).
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        _ => false,
    }
}

/// Watches plugin crates' sources and rebuilds the crate that changed, once the writes have been
/// quiet for [`SOURCE_DEBOUNCE`]. Only writes count (see [`changes_sources`]): an idle `--dev`
/// service builds nothing, and one save builds once.
fn watch_sources(
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    dev: DevSources,
) -> notify::Result<RecommendedWatcher> {
    use notify::Watcher as _;
    let root = dev.root.canonicalize().unwrap_or(dev.root);
    let watched = root.clone();
    let target_dir = dev.target_dir;
    let (tx, rx) = std::sync::mpsc::channel::<PathBuf>();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(event) if changes_sources(&event.kind) => {
                for path in event.paths {
                    let _ = tx.send(path);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("watching plugin sources: {e}"),
        })?;
    watcher.watch(&watched, RecursiveMode::Recursive)?;
    // Ends when the watcher is dropped (its sender goes with it).
    std::thread::spawn(move || {
        use std::sync::mpsc::RecvTimeoutError;
        while let Ok(first) = rx.recv() {
            let mut paths = vec![first];
            loop {
                match rx.recv_timeout(SOURCE_DEBOUNCE) {
                    Ok(path) => paths.push(path),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            let mut crates: Vec<PathBuf> =
                paths.iter().filter_map(|p| crate_of(&root, p)).collect();
            crates.sort();
            crates.dedup();
            for dir in crates {
                let ok = rebuild(&registry, &dir, target_dir.as_deref());
                metrics.dev_build(ok);
            }
        }
    });
    Ok(watcher)
}

/// Starts watching: the plugins folder always, the plugin crates' sources in dev mode.
pub fn watch(
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    sources: Option<DevSources>,
) -> notify::Result<Watchers> {
    Ok(Watchers {
        _plugins: watch_plugins(registry.clone(), metrics.clone())?,
        _sources: sources
            .map(|s| watch_sources(registry, metrics, s))
            .transpose()?,
    })
}
