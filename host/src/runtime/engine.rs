//! The Wasm engine every plugin is compiled for, with the sandbox's limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use sha2::{Digest, Sha256};

pub use crate::runtime::cache::ModuleCache;

/// How much a plugin may use. Every limit is on by default, and every example plugin fits well
/// within each default (the largest has about 980 functions, 900 KiB of code, a 37 KiB function
/// and 77 locals in one function).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time a plugin may spend on one customer. A call over `n` customers may take at
    /// most `n` times this (once, for a call over none), and `regua.item` moves the budget on
    /// only once per customer, in order.
    pub time_per_record: Duration,
    /// Wall-clock time for loading: instantiating (data segments and the `start` function) and
    /// `regua_metadata`. Nothing extends it.
    pub time_to_load: Duration,
    /// Memory a plugin instance may hold, in bytes: its linear memory and its table together.
    pub memory_bytes: usize,
    /// Output a plugin may return per record of a call, in bytes (averaged over the call).
    pub output_bytes_per_record: usize,
    /// Wasm stack a call may use, in bytes (deep recursion traps past it).
    pub stack_bytes: usize,
    /// Largest `.wasm` accepted, in bytes.
    pub module_bytes: usize,
    /// Most functions a module may define.
    pub functions: usize,
    /// Largest function body, in bytes of code.
    pub function_bytes: usize,
    /// Most locals one function may declare.
    pub locals_per_function: usize,
    /// Longest a module may take to compile; past it the load fails (the compiler finishes in
    /// the background, bounded by the size limits above).
    pub compile_time: Duration,
    /// Log lines a plugin may write per call; past them, one "log truncated" line.
    pub log_lines_per_call: usize,
    /// Log bytes a plugin may write per call.
    pub log_bytes_per_call: usize,
    /// Instances alive at once in the whole process (every call has its own).
    pub instances: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            time_per_record: Duration::from_millis(100),
            time_to_load: Duration::from_secs(1),
            memory_bytes: 64 << 20,
            output_bytes_per_record: 64 << 10,
            stack_bytes: 512 << 10,
            module_bytes: 8 << 20,
            functions: 10_000,
            function_bytes: 256 << 10,
            locals_per_function: 512,
            compile_time: Duration::from_secs(10),
            log_lines_per_call: 100,
            log_bytes_per_call: 16 << 10,
            instances: 256,
        }
    }
}

/// How often the epoch advances; time budgets are rounded up to whole ticks.
pub(crate) const TICK: Duration = Duration::from_millis(5);

/// Bytes a table element is counted as against the memory cap (a function reference).
pub(crate) const TABLE_ELEMENT_BYTES: usize = 8;

/// Most elements a table may hold (also counted against the memory cap).
pub(crate) const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Bytes of a pooled memory slot kept resident between instances (zeroed on reuse).
const KEEP_RESIDENT: usize = 2 << 20;

/// Most compilations that ran past the compile-time limit and are still running, in one
/// process: past it, loads are refused, so such modules cannot pile up.
const MAX_RUNAWAY: usize = 4;

/// The thread that moves an engine's epoch on every [`TICK`], until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(engine: &wasmtime::Engine) -> anyhow::Result<Ticker> {
        let stop = Arc::new(AtomicBool::new(false));
        let (engine, flag) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("regua-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .context("cannot start the epoch thread")?;
        Ok(Ticker { stop })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A compiled-code cache and the sandbox configuration. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Engine {
    pub(crate) wasm: wasmtime::Engine,
    /// The baseline (Winch) engine of a tiered engine ([`Engine::tiered`]), with its own epochs.
    baseline: Option<(wasmtime::Engine, Arc<Ticker>)>,
    /// Whether plugins compiled by the baseline compiler move on to optimised code.
    pub(crate) optimise: bool,
    pub(crate) limits: Arc<Limits>,
    /// Where compiled plugins are kept between runs, if anywhere.
    cache: Option<ModuleCache>,
    /// This engine's compatibility hash: compiled code is reused only by an engine with the same.
    key: u64,
    /// Compilations past the time limit still running.
    pub(crate) runaway: Arc<AtomicUsize>,
    _ticker: Arc<Ticker>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("limits", &self.limits)
            .finish()
    }
}

/// Ticks covering `time`, plus one, so a tick that lands just after a budget starts cannot cut
/// it short.
pub(crate) fn ticks(time: Duration) -> u64 {
    (time.as_nanos().div_ceil(TICK.as_nanos()) as u64).max(1) + 1
}

impl Engine {
    /// An engine enforcing `limits`.
    pub fn new(limits: Limits) -> anyhow::Result<Engine> {
        let config = wasm_config(&limits, wasmtime::Strategy::Cranelift);
        let wasm = wasmtime::Engine::new(&config)
            .map_err(|e| anyhow::anyhow!("cannot set up the Wasm engine: {e:#}"))?;

        Ok(Engine {
            key: compatibility_key(&wasm),
            cache: None,
            _ticker: Arc::new(Ticker::start(&wasm)?),
            wasm,
            baseline: None,
            optimise: true,
            limits: Arc::new(limits),
            runaway: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// This engine, serving a plugin that is not in the cache first from a quick baseline compile
    /// (wasmtime's Winch) and then from Cranelift's optimised code once that is ready (see
    /// [`crate::runtime::Plugin::is_optimised`]): for the service, where a new build should answer
    /// as soon as it lands. The sandbox is the same for both: the same limits, epochs and checks.
    pub fn tiered(mut self) -> anyhow::Result<Engine> {
        let wasm = wasmtime::Engine::new(&wasm_config(&self.limits, wasmtime::Strategy::Winch))
            .map_err(|e| anyhow::anyhow!("cannot set up the baseline Wasm engine: {e:#}"))?;
        let ticker = Ticker::start(&wasm)?;
        self.baseline = Some((wasm, Arc::new(ticker)));
        Ok(self)
    }

    /// A tiered engine whose plugins stay on their baseline code: to test that the sandbox holds,
    /// and answers are the same, under both compilers.
    #[doc(hidden)]
    pub fn baseline_only(self) -> anyhow::Result<Engine> {
        let mut engine = self.tiered()?;
        engine.optimise = false;
        Ok(engine)
    }

    /// Compiles `bytes` with the baseline compiler, when this engine is tiered; `None` when it is
    /// not, or when the baseline compiler does not take this module (then the caller compiles it
    /// optimised, as an untiered engine does).
    pub(crate) fn compile_baseline(&self, bytes: &[u8]) -> Option<wasmtime::Module> {
        let (baseline, _) = self.baseline.as_ref()?;
        match self.compile_on(baseline, bytes) {
            Ok(module) => Some(module),
            Err(e) => {
                tracing::debug!(
                    "the baseline compiler does not take this module ({e}); optimising"
                );
                None
            }
        }
    }

    /// The limits this engine enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// This engine, keeping compiled plugins in `cache` and reusing them ([`ModuleCache`]).
    pub fn with_cache(mut self, cache: Option<ModuleCache>) -> Engine {
        self.cache = cache;
        self
    }

    /// The module cache, if there is one.
    pub fn cache(&self) -> Option<&ModuleCache> {
        self.cache.as_ref()
    }

    /// The compiled module for `bytes` from the cache, when it holds a matching entry (an entry
    /// that does not load is dropped, and the caller compiles).
    pub(crate) fn cached_module(&self, bytes: &[u8]) -> Option<wasmtime::Module> {
        let cache = self.cache.as_ref()?;
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let code = cache.get(&digest, self.key)?;
        // SAFETY: the bytes are what `Module::serialize` wrote for this very `.wasm` and an
        // engine of the same compatibility hash: the entry's header names both, and its
        // SHA-256 over header and code was checked just now, on these bytes in memory.
        match unsafe { wasmtime::Module::deserialize(&self.wasm, &code) } {
            Ok(module) => Some(module),
            Err(e) => {
                tracing::warn!("a compiled entry does not load ({e:#}); compiling again");
                cache.reject(&digest, self.key);
                None
            }
        }
    }

    /// Keeps the compiled `module` of `bytes` in the cache: called once the plugin has passed
    /// every check, so a module that is refused never takes a place there.
    pub(crate) fn keep(&self, bytes: &[u8], module: &wasmtime::Module) {
        if let Some(cache) = &self.cache
            && let Ok(code) = module.serialize()
        {
            cache.put(&Sha256::digest(bytes).into(), self.key, &code);
        }
    }

    /// Compiles `bytes` on a thread of its own, waiting at most the compile-time limit, so a
    /// module that is slow to compile fails its load instead of holding up its caller. The
    /// compiler cannot be stopped: a compilation past the limit goes on in the background, and
    /// while [`MAX_RUNAWAY`] of them do, loads are refused rather than piling up more.
    pub(crate) fn compile_fresh(&self, bytes: &[u8]) -> Result<wasmtime::Module, String> {
        self.compile_on(&self.wasm, bytes)
    }

    /// [`Engine::compile_fresh`] with the compiler of `engine`.
    fn compile_on(
        &self,
        engine: &wasmtime::Engine,
        bytes: &[u8],
    ) -> Result<wasmtime::Module, String> {
        const RUNNING: u8 = 0;
        const DONE: u8 = 1;
        const ABANDONED: u8 = 2;
        if self.runaway.load(Ordering::SeqCst) >= MAX_RUNAWAY {
            return Err(format!(
                "{MAX_RUNAWAY} modules that ran past the compile-time limit are still compiling; \
                 try again once they are done"
            ));
        }
        let status = Arc::new(AtomicU8::new(RUNNING));
        let (tx, rx) = std::sync::mpsc::channel();
        let (engine, bytes) = (engine.clone(), bytes.to_vec());
        let (thread_status, runaway) = (status.clone(), self.runaway.clone());
        std::thread::Builder::new()
            .name("regua-compile".into())
            .spawn(move || {
                let result = wasmtime::Module::new(&engine, &bytes).map_err(|e| format!("{e:#}"));
                let swapped = thread_status.compare_exchange(
                    RUNNING,
                    DONE,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
                if swapped == Err(ABANDONED) {
                    runaway.fetch_sub(1, Ordering::SeqCst);
                }
                let _ = tx.send(result);
            })
            .map_err(|e| format!("cannot start a compiler thread: {e}"))?;
        let limit = self.limits.compile_time;
        match rx.recv_timeout(limit) {
            Ok(result) => result,
            Err(_) => {
                self.runaway.fetch_add(1, Ordering::SeqCst);
                let swapped =
                    status.compare_exchange(RUNNING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst);
                if swapped.is_err() {
                    // It finished just now: not a runaway after all.
                    self.runaway.fetch_sub(1, Ordering::SeqCst);
                }
                Err(format!(
                    "compiling took longer than the limit of {} s (a module this slow to compile \
                     is refused; make its functions smaller)",
                    limit.as_secs_f64()
                ))
            }
        }
    }
}

/// The wasmtime configuration of the sandbox, for the compiler `strategy`.
fn wasm_config(limits: &Limits, strategy: wasmtime::Strategy) -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.strategy(strategy);
    // Epochs rather than fuel: a wall-clock budget at almost no cost per instruction.
    config.epoch_interruption(true);
    config.max_wasm_stack(limits.stack_bytes);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    // One linear memory per plugin: the memory cap is then the instance's total.
    config.wasm_multi_memory(false);
    config.wasm_memory64(false);
    // For profiling plugins with `perf`: names the compiled plugin functions in /tmp/perf-*.map.
    if std::env::var_os("REGUA_PERF_MAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    // Every call gets a fresh instance, so no state crosses customers or callers. The pooling
    // allocator with copy-on-write memory images makes that cost microseconds (BENCHMARKS.md),
    // and returns a slot's memory to the system when the instance goes, so an unloaded
    // plugin keeps nothing resident.
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.total_core_instances(limits.instances)
        .total_memories(limits.instances)
        .total_tables(limits.instances)
        .max_memories_per_module(1)
        .max_tables_per_module(1)
        .max_memory_size(limits.memory_bytes)
        .table_elements(MAX_TABLE_ELEMENTS)
        // A slot keeps its first pages resident and zeroes them on reuse rather than
        // returning them to the system: the next call then takes no page faults there.
        // Above this, memory goes back to the system when the instance goes.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT / 16)
        // Where the kernel has PAGEMAP_SCAN (Linux 6.7+), only the pages a call dirtied are
        // reset, rather than the whole resident part: a call on one customer (the journey
        // runtime, `/v1/decide`) then no longer pays a 2 MiB memset (BENCHMARKS.md).
        .pagemap_scan(wasmtime::Enabled::Auto);
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    config.memory_init_cow(true);
    config
}

/// The engine's compatibility hash as a number that is the same in every process (the standard
/// hashers are seeded per process).
fn compatibility_key(engine: &wasmtime::Engine) -> u64 {
    use std::hash::{Hash, Hasher};
    struct Digesting(Sha256);
    impl Hasher for Digesting {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            let digest = self.0.clone().finalize();
            u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
        }
    }
    let mut hasher = Digesting(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.finish()
}
