//! Hot reload: watch the plugins folder (and, in dev mode, the plugin crates' sources) and swap
//! plugins in as files land. Compilation runs on the watcher's thread, never on a request's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};

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
    _plugins: RecommendedWatcher,
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

/// Whether an event says a file landed whole: renamed into place (as `regua build` and any
/// careful deployment write), so it needs no quiet period before it is read.
fn landed_whole(kind: &notify::EventKind) -> bool {
    use notify::event::{ModifyKind, RenameMode};
    matches!(
        kind,
        notify::EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
    )
}

/// Watches the registry's folder. A file renamed into place loads at once; any other change
/// loads once the file has been quiet for [`PLUGIN_DEBOUNCE`], so a file still being written is
/// not read. Each burst of changes loads on threads of its own, so the watcher never waits for
/// a compiler and a later change is not held up by an earlier one.
fn watch_plugins(
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
) -> notify::Result<RecommendedWatcher> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(tx)?;
    watcher.watch(registry.dir(), RecursiveMode::NonRecursive)?;
    let load = move |files: Vec<PathBuf>| {
        let (registry, metrics) = (registry.clone(), metrics.clone());
        let spawned = std::thread::Builder::new()
            .name("regua-load".into())
            .spawn(move || load_files(&registry, &metrics, files));
        if let Err(e) = spawned {
            tracing::error!("cannot start a thread to load changed plugins: {e}");
        }
    };
    let watching = std::thread::Builder::new()
        .name("regua-watch".into())
        .spawn(move || {
            // Files changed but not yet quiet, with their last change.
            let mut pending: std::collections::HashMap<PathBuf, Instant> = Default::default();
            loop {
                let wait = pending
                    .values()
                    .map(|at| (*at + PLUGIN_DEBOUNCE).saturating_duration_since(Instant::now()))
                    .min()
                    .unwrap_or(Duration::from_secs(3600));
                let mut events = match rx.recv_timeout(wait) {
                    Ok(event) => vec![event],
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => vec![],
                    // The watcher was dropped: the service is stopping.
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                };
                events.extend(rx.try_iter());
                let mut ready: Vec<PathBuf> = Vec::new();
                for event in events {
                    let event: notify::Event = match event {
                        Ok(event) => event,
                        Err(e) => {
                            tracing::warn!("watching the plugins folder: {e}");
                            continue;
                        }
                    };
                    let whole = landed_whole(&event.kind);
                    // A rename's event names the old path first, the new one last.
                    let landed = event.paths.last().cloned();
                    for path in event.paths.into_iter().filter(|p| is_wasm(p)) {
                        if whole && Some(&path) == landed.as_ref() {
                            pending.remove(&path);
                            if !ready.contains(&path) {
                                ready.push(path);
                            }
                        } else {
                            pending.insert(path, Instant::now());
                        }
                    }
                }
                let now = Instant::now();
                pending.retain(|path, at| {
                    let quiet = now.duration_since(*at) >= PLUGIN_DEBOUNCE;
                    if quiet && !ready.contains(path) {
                        ready.push(path.clone());
                    }
                    !quiet
                });
                if !ready.is_empty() {
                    load(ready);
                }
            }
        });
    if let Err(e) = watching {
        tracing::error!("cannot start the thread that watches the plugins folder: {e}");
    }
    Ok(watcher)
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
