//! The Wasm engine every plugin is compiled for, with the sandbox's limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;

/// How much a plugin may use. Every limit is on by default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time a plugin may spend on one record (reset at each record of a batch).
    pub time_per_record: Duration,
    /// Linear memory a plugin instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// Output a plugin may return per record of a call, in bytes (averaged over the call).
    pub output_bytes_per_record: usize,
    /// Wasm stack a call may use, in bytes (deep recursion traps past it).
    pub stack_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            time_per_record: Duration::from_millis(100),
            memory_bytes: 64 << 20,
            output_bytes_per_record: 64 << 10,
            stack_bytes: 512 << 10,
        }
    }
}

/// How often the epoch advances; time budgets are rounded up to whole ticks.
pub(crate) const TICK: Duration = Duration::from_millis(5);

struct Ticker {
    stop: Arc<AtomicBool>,
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
    pub(crate) limits: Arc<Limits>,
    _ticker: Arc<Ticker>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("limits", &self.limits)
            .finish()
    }
}

impl Engine {
    /// An engine enforcing `limits`.
    pub fn new(limits: Limits) -> anyhow::Result<Engine> {
        let mut config = wasmtime::Config::new();
        // Epochs rather than fuel: a wall-clock budget at almost no cost per instruction.
        config.epoch_interruption(true);
        config.max_wasm_stack(limits.stack_bytes);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        // For profiling plugins with `perf`: names the compiled plugin functions in /tmp/perf-*.map.
        if std::env::var_os("REGUA_PERF_MAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        // The default on-demand allocator rather than the pooling one: each worker keeps a warm
        // instance per plugin, so instantiation happens once per worker (and after a trap), not
        // per call, and pooling would only reserve address space for slots we never cycle.
        let wasm = wasmtime::Engine::new(&config)
            .map_err(|e| anyhow::anyhow!("cannot set up the Wasm engine: {e:#}"))?;

        let stop = Arc::new(AtomicBool::new(false));
        let (engine, flag) = (wasm.clone(), stop.clone());
        std::thread::Builder::new()
            .name("regua-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .context("cannot start the epoch thread")?;
        Ok(Engine {
            wasm,
            limits: Arc::new(limits),
            _ticker: Arc::new(Ticker { stop }),
        })
    }

    /// The limits this engine enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The time budget per record, in epoch ticks (at least two, so a tick that lands just after
    /// the deadline is set cannot cut a record short).
    pub(crate) fn deadline_ticks(&self) -> u64 {
        let ticks = self
            .limits
            .time_per_record
            .as_nanos()
            .div_ceil(TICK.as_nanos());
        (ticks as u64).max(1) + 1
    }
}
