//! Compiled plugins kept on disk, so `regua eval`, `regua batch` and a service restart reuse the
//! machine code instead of compiling every start.
//!
//! An entry is keyed by the SHA-256 of the `.wasm` and by the engine's compatibility hash (the
//! wasmtime version and every setting that changes the machine code). Its header repeats both,
//! and a SHA-256 over header and code is checked before the code is handed to wasmtime. An entry
//! that does not match in any way (another plugin's, another engine's, truncated, flipped bits)
//! is removed and the plugin compiled again; wasmtime itself also refuses code from another
//! version or configuration. Every check of the plugin (ABI, imports, exports, metadata) runs
//! on a cached plugin exactly as on a fresh one.
//!
//! Why not wasmtime's own cache (`Config::cache`): it checks no digest of what it reads back
//! before deserializing, and it brings a background worker with a configuration file of its own.
//!
//! What the cache cannot protect against: whoever can write to the cache folder can also write
//! an entry with a matching digest, and that code runs outside the sandbox. The folder must be
//! writable only by the user running Régua (SECURITY.md).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

/// The start of every entry; the last byte is the entry format's version.
const MAGIC: &[u8; 16] = b"regua-compiled\0\x01";
/// Magic, the `.wasm`'s SHA-256, the engine key, the SHA-256 of everything before and after it.
const HEADER: usize = 16 + 32 + 8 + 32;
/// Entries kept; past this the least recently used go.
const MAX_ENTRIES: usize = 200;

/// A folder of compiled plugins.
#[derive(Clone, Debug)]
pub struct ModuleCache {
    dir: PathBuf,
}

impl ModuleCache {
    /// A cache in `dir` (created when the first entry is written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ModuleCache { dir: dir.into() }
    }

    /// The folder used when none is given: `$REGUA_CACHE_DIR`, else `$XDG_CACHE_HOME/regua/
    /// compiled`, else `~/.cache/regua/compiled`; `None` when none of them is set.
    pub fn default_dir() -> Option<PathBuf> {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(dir) = var("REGUA_CACHE_DIR") {
            return Some(dir.into());
        }
        let base = var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| Path::new(&h).join(".cache")))?;
        Some(base.join("regua").join("compiled"))
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, wasm_digest: &[u8; 32], engine_key: u64) -> PathBuf {
        let name = format!("{}-{engine_key:016x}.bin", hex::encode(&wasm_digest[..16]));
        self.dir.join(name)
    }

    /// The compiled code of `wasm` for the engine `engine_key`, checked; `None` when there is
    /// no entry, or one that does not match (which is removed).
    pub(crate) fn get(&self, wasm_digest: &[u8; 32], engine_key: u64) -> Option<Vec<u8>> {
        let path = self.path(wasm_digest, engine_key);
        let mut bytes = std::fs::read(&path).ok()?;
        if !valid(&bytes, wasm_digest, engine_key) {
            tracing::warn!(path = %path.display(), "a compiled entry does not match; compiling again");
            let _ = std::fs::remove_file(&path);
            return None;
        }
        // Most recently used: the entries to drop when the cache is full are the oldest.
        if let Ok(file) = std::fs::File::options().append(true).open(&path) {
            let _ = file.set_modified(SystemTime::now());
        }
        bytes.drain(..HEADER);
        Some(bytes)
    }

    /// Removes the entry for `wasm` (deserializing it failed).
    pub(crate) fn reject(&self, wasm_digest: &[u8; 32], engine_key: u64) {
        let _ = std::fs::remove_file(self.path(wasm_digest, engine_key));
    }

    /// Stores `code` for `wasm`; a failure only costs a compile next time.
    pub(crate) fn put(&self, wasm_digest: &[u8; 32], engine_key: u64, code: &[u8]) {
        if let Err(e) = self.write(wasm_digest, engine_key, code) {
            tracing::debug!(dir = %self.dir.display(), "cannot keep the compiled plugin: {e}");
        }
    }

    fn write(&self, wasm_digest: &[u8; 32], engine_key: u64, code: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path(wasm_digest, engine_key);
        // Unique to this process and this write, so two writers never share a temporary file.
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let tmp = self.dir.join(format!(
            ".{}.{}-{}.tmp",
            path.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id(),
            WRITES.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = std::fs::File::create(&tmp)?;
        let mut head = Vec::with_capacity(HEADER);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(wasm_digest);
        head.extend_from_slice(&engine_key.to_le_bytes());
        let digest = Sha256::new()
            .chain_update(&head)
            .chain_update(code)
            .finalize();
        head.extend_from_slice(&digest);
        file.write_all(&head)?;
        file.write_all(code)?;
        // No fsync: a load waits on this write, and an entry torn by a crash fails its digest
        // and is compiled again.
        drop(file);
        // Whole or not at all: a reader never sees a half-written entry.
        std::fs::rename(&tmp, &path)?;
        self.trim();
        Ok(())
    }

    /// Keeps the newest [`MAX_ENTRIES`] entries.
    fn trim(&self) {
        let Ok(read) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(SystemTime, PathBuf)> = read
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".bin"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if entries.len() <= MAX_ENTRIES {
            return;
        }
        entries.sort();
        for (_, path) in &entries[..entries.len() - MAX_ENTRIES] {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn valid(bytes: &[u8], wasm_digest: &[u8; 32], engine_key: u64) -> bool {
    if bytes.len() < HEADER || &bytes[..16] != MAGIC {
        return false;
    }
    let (head, code) = bytes.split_at(HEADER);
    if &head[16..48] != wasm_digest || head[48..56] != engine_key.to_le_bytes() {
        return false;
    }
    let digest = Sha256::new()
        .chain_update(&head[..56])
        .chain_update(code)
        .finalize();
    digest[..] == head[56..88]
}
