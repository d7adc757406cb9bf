//! One live plugin instance: its store, limits, host functions, and the call protocol of
//! `docs/ABI.md`. A worker keeps one warm instance per plugin and replaces it after a trap.

use std::sync::Arc;

use regua_sdk::Metadata;
use wasmtime::{
    AsContextMut, Caller, InstancePre, Linker, Memory, ResourceLimiter, Store, Trap, TypedFunc,
};

use crate::engine::Engine;
use crate::error::LoadError;
use crate::plugin::Plugin;

/// Longest panic or log message kept from a plugin, in bytes.
const MAX_MESSAGE: usize = 16 << 10;

/// What a store knows about its plugin and the call in progress.
pub(crate) struct StoreState {
    plugin: Arc<str>,
    memory_cap: usize,
    memory_hit: bool,
    deadline_ticks: u64,
    /// The record the plugin said it was evaluating (`regua.item`).
    cursor: Option<u32>,
    /// The message of the plugin's last panic (`regua.panic`).
    panic: Option<String>,
}

impl ResourceLimiter for StoreState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.memory_hit = true;
            return Err(wasmtime::Error::msg("memory cap reached"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

fn guest_text(caller: &mut Caller<'_, StoreState>, ptr: u32, len: u32) -> String {
    let Some(memory) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return String::from("<no memory>");
    };
    let data = memory.data(&*caller);
    let start = ptr as usize;
    let end = start.saturating_add((len as usize).min(MAX_MESSAGE));
    match data.get(start..end.min(data.len())) {
        Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        None => String::from("<message out of bounds>"),
    }
}

/// Defines `regua.log`, `regua.item` and `regua.panic`.
pub(crate) fn define_host_functions(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "regua",
        "log",
        |mut caller: Caller<'_, StoreState>, level: u32, ptr: u32, len: u32| {
            let text = guest_text(&mut caller, ptr, len);
            let plugin = caller.data().plugin.clone();
            match level {
                1 => tracing::error!(target: "regua::plugin", plugin = %plugin, "{text}"),
                2 => tracing::warn!(target: "regua::plugin", plugin = %plugin, "{text}"),
                3 => tracing::info!(target: "regua::plugin", plugin = %plugin, "{text}"),
                4 => tracing::debug!(target: "regua::plugin", plugin = %plugin, "{text}"),
                _ => tracing::trace!(target: "regua::plugin", plugin = %plugin, "{text}"),
            }
        },
    )?;
    linker.func_wrap(
        "regua",
        "item",
        |mut caller: Caller<'_, StoreState>, index: u32| {
            // Each record gets the whole time budget.
            let ticks = caller.data().deadline_ticks;
            caller.data_mut().cursor = Some(index);
            caller.as_context_mut().set_epoch_deadline(ticks);
        },
    )?;
    linker.func_wrap(
        "regua",
        "panic",
        |mut caller: Caller<'_, StoreState>, ptr: u32, len: u32| {
            let text = guest_text(&mut caller, ptr, len);
            caller.data_mut().panic = Some(text.replace('\n', " "));
        },
    )?;
    Ok(())
}

/// Why a call produced no answer.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The record being evaluated when it failed, as the plugin reported it.
    pub index: Option<u32>,
    /// What happened, in words.
    pub cause: String,
    /// Whether the instance must be replaced (it trapped).
    pub trapped: bool,
}

/// A warm instance of one plugin.
pub(crate) struct Instance {
    store: Store<StoreState>,
    memory: Memory,
    alloc: TypedFunc<u32, u32>,
    evaluate: TypedFunc<(u32, u32, u32, u32), u64>,
    metadata: TypedFunc<(), u64>,
    output_per_record: usize,
}

impl Instance {
    fn create(
        engine: &Engine,
        pre: &InstancePre<StoreState>,
        name: &str,
    ) -> wasmtime::Result<Self> {
        let limits = &engine.limits;
        let state = StoreState {
            plugin: Arc::from(name),
            memory_cap: limits.memory_bytes,
            memory_hit: false,
            deadline_ticks: engine.deadline_ticks(),
            cursor: None,
            panic: None,
        };
        let mut store = Store::new(&engine.wasm, state);
        store.limiter(|s| s as &mut dyn ResourceLimiter);
        store.set_epoch_deadline(engine.deadline_ticks());
        let instance = pre.instantiate(&mut store)?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| wasmtime::Error::msg("no memory export"))?;
        Ok(Instance {
            alloc: instance.get_typed_func(&mut store, "regua_alloc")?,
            evaluate: instance.get_typed_func(&mut store, "regua_evaluate")?,
            metadata: instance.get_typed_func(&mut store, "regua_metadata")?,
            memory,
            store,
            output_per_record: limits.output_bytes_per_record,
        })
    }

    /// A fresh instance of `plugin`.
    pub(crate) fn new(plugin: &Plugin) -> Result<Self, String> {
        Instance::create(&plugin.engine, &plugin.pre, plugin.name())
            .map_err(|e| format!("cannot instantiate: {e:#}"))
    }

    fn reset(&mut self) {
        let ticks = self.store.data().deadline_ticks;
        let state = self.store.data_mut();
        state.cursor = None;
        state.panic = None;
        state.memory_hit = false;
        self.store.set_epoch_deadline(ticks);
    }

    fn failure(&self, error: wasmtime::Error) -> Failure {
        let state = self.store.data();
        let cause = if state.memory_hit {
            format!(
                "exceeded the memory cap of {} MiB",
                state.memory_cap as f64 / (1 << 20) as f64
            )
        } else if let Some(message) = &state.panic {
            message.clone()
        } else {
            match error.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => format!(
                    "exceeded its time budget of {} ticks of {} ms per record (infinite loop?)",
                    state.deadline_ticks,
                    crate::engine::TICK.as_millis()
                ),
                Some(Trap::StackOverflow) => "exhausted its stack (recursion too deep)".into(),
                Some(trap) => format!("trapped: {trap}"),
                None => format!("failed: {error}"),
            }
        };
        Failure {
            index: state.cursor,
            cause,
            trapped: true,
        }
    }

    fn write(&mut self, parts: &[&[u8]]) -> Result<(u32, u32), Failure> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let len32 = u32::try_from(len).map_err(|_| Failure {
            index: None,
            cause: format!("input of {len} bytes does not fit a 32-bit plugin"),
            trapped: false,
        })?;
        let ptr = self
            .alloc
            .call(&mut self.store, len32)
            .map_err(|e| self.failure(e))?;
        let mut at = ptr as usize;
        for part in parts {
            self.memory
                .write(&mut self.store, at, part)
                .map_err(|_| Failure {
                    index: None,
                    cause: format!("regua_alloc returned {ptr:#x}, outside its memory"),
                    trapped: true,
                })?;
            at += part.len();
        }
        Ok((ptr, len32))
    }

    fn read_output(&mut self, packed: u64, records: usize) -> Result<Vec<u8>, Failure> {
        let (ptr, len) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
        let cap = self.output_per_record.saturating_mul(records.max(1)) + 64;
        if len > cap {
            return Err(Failure {
                index: None,
                cause: format!(
                    "returned {len} bytes for {records} record(s), over the output cap of {cap} bytes"
                ),
                trapped: false,
            });
        }
        self.memory
            .data(&self.store)
            .get(ptr..ptr + len)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| Failure {
                index: None,
                cause: format!("returned an output at {ptr:#x}+{len}, outside its memory"),
                trapped: true,
            })
    }

    /// One `regua_evaluate` call: the call context and the batch (given in parts, written
    /// back to back) in, the raw answer out.
    pub(crate) fn call(
        &mut self,
        ctx: &[u8],
        batch: &[&[u8]],
        records: usize,
    ) -> Result<Vec<u8>, Failure> {
        self.reset();
        let (cp, cl) = self.write(&[ctx])?;
        let (bp, bl) = self.write(batch)?;
        let packed = self
            .evaluate
            .call(&mut self.store, (cp, cl, bp, bl))
            .map_err(|e| self.failure(e))?;
        self.read_output(packed, records)
    }

    fn call_metadata(&mut self) -> Result<Vec<u8>, Failure> {
        self.reset();
        let packed = self
            .metadata
            .call(&mut self.store, ())
            .map_err(|e| self.failure(e))?;
        self.read_output(packed, 1)
    }
}

/// Instantiates a plugin once and reads its metadata.
pub(crate) fn read_metadata(
    engine: &Engine,
    pre: &InstancePre<StoreState>,
    what: &str,
) -> Result<Metadata, LoadError> {
    let bad = |detail: String| LoadError::BadMetadata {
        what: what.to_owned(),
        detail,
    };
    let mut instance = Instance::create(engine, pre, what)
        .map_err(|e| bad(format!("cannot instantiate: {e:#}")))?;
    let bytes = instance.call_metadata().map_err(|f| bad(f.cause))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("not metadata JSON: {e}")))
}
