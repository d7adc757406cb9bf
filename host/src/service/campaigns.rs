//! The campaigns the service runs: loaded from a folder, checked against the plugins the
//! registry serves, and reloaded when a file changes. A file that breaks keeps its last good
//! version serving, with the error listed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};

use crate::pipeline::campaign::definition::{is_campaign_file, is_company_file};
use crate::pipeline::campaign::{Campaigns, FileError, Plan, RunInputs};
use crate::runtime::worker::Worker;
use crate::service::registry::Registry;

/// The campaigns being served.
pub struct CampaignStore {
    dir: Option<PathBuf>,
    registry: Arc<Registry>,
    default_tz: String,
    served: RwLock<Arc<Campaigns>>,
    /// What the folder's files were at the last load ([`fingerprint`]).
    loaded: std::sync::Mutex<Option<u64>>,
    /// Notified after each reload (the journey runtime sets the scheduled campaigns' timers).
    pub reloaded: tokio::sync::Notify,
}

impl std::fmt::Debug for CampaignStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CampaignStore")
            .field("dir", &self.dir)
            .finish()
    }
}

impl CampaignStore {
    /// A store for the campaigns in `dir` (none: the service runs no campaigns), whose plugins
    /// come from `registry`. Call [`CampaignStore::reload`] to load them.
    pub fn new(dir: Option<PathBuf>, registry: Arc<Registry>, default_tz: &str) -> Arc<Self> {
        Arc::new(CampaignStore {
            dir,
            registry,
            default_tz: default_tz.to_owned(),
            served: RwLock::new(Arc::new(Campaigns::default())),
            loaded: std::sync::Mutex::new(None),
            reloaded: tokio::sync::Notify::new(),
        })
    }

    /// The campaigns folder, if the service has one.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The campaigns served now.
    pub fn current(&self) -> Arc<Campaigns> {
        self.served.read().expect("campaigns lock").clone()
    }

    /// Reads the folder again. A campaign whose file now fails keeps its last good version
    /// serving (while the file exists), and the error says so.
    pub fn reload(&self) {
        let Some(dir) = &self.dir else { return };
        *self.loaded.lock().unwrap_or_else(|e| e.into_inner()) = fingerprint(dir);
        let mut fresh = match Campaigns::load_dir(dir) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("{e}");
                return;
            }
        };
        let previous = self.current();
        if fresh.company_failed {
            // The company's rest policy and global holdout keep holding while the file is fixed.
            fresh.company = previous.company.clone();
            for e in &mut fresh.errors {
                if is_company_file(Path::new(&e.file)) {
                    e.error
                        .push_str("; the last good company settings keep applying");
                }
            }
        }
        let now = crate::wall_clock();
        let registry = self.registry.clone();
        let lookup = move |name: &str| {
            registry
                .get(name)
                .ok_or_else(|| format!("no plugin `{name}` is loaded"))
        };
        fresh.check_plugins(&lookup, &mut Worker::new(), now, &self.default_tz);
        let mut kept = Vec::new();
        let mut errors = std::mem::take(&mut fresh.errors);
        for error in &mut errors {
            let still_there = Path::new(&error.file).is_file();
            let last_good = previous.campaigns.iter().find(|c| c.file == error.file);
            if let Some(good) = last_good
                && still_there
                && fresh.get(&good.def.code).is_none()
                && !fresh.campaigns.iter().any(|c| c.file == good.file)
            {
                error
                    .error
                    .push_str("; the last good version keeps serving");
                kept.push(good.clone());
            }
        }
        fresh.errors = errors;
        for e in &fresh.errors {
            tracing::warn!(file = %e.file, "campaign not loaded: {}", e.error);
        }
        fresh.campaigns.extend(kept);
        fresh
            .campaigns
            .sort_by(|a, b| (a.def.priority, &a.def.code).cmp(&(b.def.priority, &b.def.code)));
        tracing::info!(
            campaigns = fresh.campaigns.len(),
            errors = fresh.errors.len(),
            "campaigns loaded"
        );
        *self.served.write().expect("campaigns lock") = Arc::new(fresh);
        self.reloaded.notify_one();
    }

    /// Problems of the campaigns served now.
    pub fn errors(&self) -> Vec<FileError> {
        self.current().errors.clone()
    }

    /// A plan over the campaigns served now (or only `code`), with plugins from the registry
    /// as they are at each call.
    pub fn plan(&self, only: Option<&str>, inputs: RunInputs) -> Option<Plan> {
        let mut campaigns = self.current();
        if let Some(code) = only {
            // A copy for one campaign only; every campaign shares the one served.
            let mut one = (*campaigns).clone();
            one.campaigns.retain(|c| c.def.code == code);
            if one.campaigns.is_empty() {
                return None;
            }
            campaigns = Arc::new(one);
        }
        let registry = self.registry.clone();
        Some(Plan::new(
            campaigns,
            Arc::new(move |name: &str| registry.get(name)),
            inputs,
        ))
    }

    /// Watches the campaigns folder, reloading when a campaign file or `company.toml` changes.
    pub fn watch(self: &Arc<Self>) -> notify::Result<Option<Debouncer<RecommendedWatcher>>> {
        let Some(dir) = self.dir.clone() else {
            return Ok(None);
        };
        let store = self.clone();
        let dir_of_store = dir.clone();
        let mut debouncer = new_debouncer(
            crate::service::reload::PLUGIN_DEBOUNCE,
            move |res: DebounceEventResult| match res {
                Ok(events) => {
                    let ours = events
                        .iter()
                        .any(|e| is_campaign_file(&e.path) || is_company_file(&e.path));
                    // The watcher also reports files being read (by this service's own load,
                    // or by another service on the same folder, which would then answer with
                    // a load of its own, and so on): only a change of the files reloads.
                    let changed = || {
                        let last = *store.loaded.lock().unwrap_or_else(|e| e.into_inner());
                        last.is_none() || fingerprint(&dir_of_store) != last
                    };
                    if ours && changed() {
                        store.reload();
                    }
                }
                Err(e) => tracing::warn!("watching the campaigns folder: {e}"),
            },
        )?;
        debouncer
            .watcher()
            .watch(&dir, RecursiveMode::NonRecursive)?;
        Ok(Some(debouncer))
    }
}

/// The campaign and company files of `dir`, names and contents, as one hash; `None` if the
/// folder cannot be read.
fn fingerprint(dir: &Path) -> Option<u64> {
    let mut files: Vec<(std::ffi::OsString, Vec<u8>)> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| is_campaign_file(p) || is_company_file(p))
        .map(|p| {
            // A file that cannot be read hashes as its error: a load reports it.
            let bytes = std::fs::read(&p).unwrap_or_else(|e| e.to_string().into_bytes());
            (p.file_name().unwrap_or_default().to_owned(), bytes)
        })
        .collect();
    files.sort();
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for (name, bytes) in &files {
        hasher.update(name.as_encoded_bytes());
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    Some(hasher.digest())
}
