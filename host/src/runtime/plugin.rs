//! Loading a plugin: read, check the ABI before anything runs, compile once, read its metadata.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use regua_sdk::wire::{
    ABI_SECTION, ABI_VERSION, AbiFunction, HOST_FUNCTIONS, IMPORT_MODULE, MEMORY, PLUGIN_FUNCTIONS,
    WasmType,
};
use regua_sdk::{Kind, Metadata};
use sha2::{Digest, Sha256};
use std::sync::RwLock;

use wasmtime::{ExternType, InstancePre, Linker, Module, ValType};

use crate::runtime::engine::Limits;

use crate::runtime::engine::Engine;
use crate::runtime::error::LoadError;
use crate::runtime::instance::{self, StoreState};

/// A loaded, validated, compiled plugin. Share it with `Arc`; instances are made per worker.
pub struct Plugin {
    /// What the plugin says about itself.
    pub meta: Metadata,
    /// Content hash of the `.wasm` (first 16 hex digits of its SHA-256): the version every
    /// answer names.
    pub version: String,
    /// Where it was loaded from, if from a file.
    pub source: Option<PathBuf>,
    /// Whether its compiled code came from the module cache rather than the compiler.
    pub cached: bool,
    pub(crate) engine: Engine,
    /// Time spent evaluating customers with this version, on every path.
    pub time: EvalTime,
    /// The code instances are made from: the baseline compile of a tiered engine until the
    /// optimised code replaces it, else the optimised code.
    code: Arc<RwLock<Code>>,
}

/// Customers a plugin version evaluated and the time it took, on every path (plugin endpoints,
/// batches, campaigns): the service's per-plugin latency. Two relaxed atomic adds per call of a
/// batch, nothing per customer.
#[derive(Debug, Default)]
pub struct EvalTime {
    nanos: std::sync::atomic::AtomicU64,
    customers: std::sync::atomic::AtomicU64,
}

impl EvalTime {
    /// Adds one call over `customers` that took `spent`.
    pub fn add(&self, customers: usize, spent: std::time::Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        self.nanos.fetch_add(spent.as_nanos() as u64, Relaxed);
        self.customers.fetch_add(customers as u64, Relaxed);
    }

    /// Takes what was added since the last take: (customers, seconds).
    pub fn take(&self) -> (u64, f64) {
        use std::sync::atomic::Ordering::Relaxed;
        let nanos = self.nanos.swap(0, Relaxed);
        (self.customers.swap(0, Relaxed), nanos as f64 / 1e9)
    }
}

/// A plugin's compiled code, ready to instantiate.
struct Code {
    pre: Arc<InstancePre<StoreState>>,
    optimised: bool,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.meta.name)
            .field("kind", &self.meta.kind)
            .field("version", &self.version)
            .finish()
    }
}

impl Plugin {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.meta.name
    }

    /// What the plugin declares it reads of a customer.
    pub fn fields(&self) -> regua_sdk::Fields {
        regua_sdk::Fields::of(&self.meta.reads)
    }

    /// The plugin's kind.
    pub fn kind(&self) -> Kind {
        self.meta.kind
    }

    /// Loads a `.wasm` file.
    pub fn load(engine: &Engine, path: &Path) -> Result<Arc<Plugin>, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut plugin = Plugin::from_bytes(engine, &path.display().to_string(), &bytes)?;
        plugin.source = Some(path.to_owned());
        Ok(Arc::new(plugin))
    }

    /// Loads a plugin from its bytes; `what` names it in errors. On a tiered engine
    /// ([`Engine::tiered`]) a plugin not in the cache is served from its baseline compile at
    /// once, and from the optimised code as soon as a background compile has it.
    pub fn from_bytes(engine: &Engine, what: &str, bytes: &[u8]) -> Result<Plugin, LoadError> {
        let kind = check_module(what, bytes, engine.limits())?;
        let compiled = match engine.cached_module(bytes) {
            Some(module) => Ok((module, true, true)),
            None => match engine.compile_baseline(bytes) {
                Some(module) => Ok((module, false, false)),
                None => engine
                    .compile_fresh(bytes)
                    .map(|module| (module, false, true)),
            },
        };
        let (module, cached, optimised) = compiled.map_err(|detail| LoadError::Compile {
            what: what.to_owned(),
            detail,
        })?;
        check_imports(what, &module)?;
        check_exports(what, &module)?;
        let pre = prepare(what, &module)?;
        let version = version_of(bytes);
        let meta = instance::read_metadata(engine, &pre, what)?;
        if meta.kind != kind {
            return Err(LoadError::BadMetadata {
                what: what.to_owned(),
                detail: format!(
                    "its `regua-abi` section says {kind} but its metadata says {}",
                    meta.kind
                ),
            });
        }
        if meta.abi != ABI_VERSION {
            return Err(LoadError::AbiMismatch {
                what: what.to_owned(),
                found: meta.abi,
                supported: ABI_VERSION,
            });
        }
        check_name(&meta.name).map_err(|detail| LoadError::BadMetadata {
            what: what.to_owned(),
            detail: format!("its name {detail}"),
        })?;
        let code = Arc::new(RwLock::new(Code {
            pre: Arc::new(pre),
            optimised,
        }));
        if optimised && !cached {
            engine.keep(bytes, &module);
        } else if !optimised && engine.optimise {
            optimise_later(engine, what, bytes, &code);
        }
        Ok(Plugin {
            meta,
            version,
            source: None,
            cached,
            time: EvalTime::default(),
            engine: engine.clone(),
            code,
        })
    }

    /// The code to make an instance from.
    /// A fresh instance for one call over `customers` customers, with that call's budget.
    pub(crate) fn instance_for_call(
        &self,
        customers: usize,
    ) -> Result<instance::Instance, instance::Failure> {
        let budget = instance::Budget::call(&self.engine.limits, customers);
        instance::Instance::create(&self.engine, &self.pre(), self.name(), budget)
    }

    pub(crate) fn pre(&self) -> Arc<InstancePre<StoreState>> {
        self.code
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .pre
            .clone()
    }

    /// Whether this plugin runs its optimised code (always, on an engine that is not tiered; on a
    /// tiered one, once the background compile has replaced the baseline code).
    pub fn is_optimised(&self) -> bool {
        self.code
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .optimised
    }
}

/// Links `module` against the host functions, ready to instantiate.
fn prepare(what: &str, module: &Module) -> Result<InstancePre<StoreState>, LoadError> {
    let compile_error = |e: wasmtime::Error| LoadError::Compile {
        what: what.to_owned(),
        detail: format!("{e:#}"),
    };
    let mut linker = Linker::new(module.engine());
    instance::define_host_functions(&mut linker).map_err(compile_error)?;
    linker.instantiate_pre(module).map_err(compile_error)
}

/// Compiles `bytes` optimised on a thread of its own and swaps the code in when it is ready (and
/// keeps it in the cache). Instances already running finish on the baseline code; if the
/// optimised compile fails, the plugin stays on the baseline code, which passed every check.
fn optimise_later(engine: &Engine, what: &str, bytes: &[u8], code: &Arc<RwLock<Code>>) {
    let (engine, what, bytes) = (engine.clone(), what.to_owned(), bytes.to_vec());
    let code = Arc::downgrade(code);
    let spawned = std::thread::Builder::new()
        .name("regua-optimise".into())
        .spawn(move || {
            let started = std::time::Instant::now();
            let module = match engine.compile_fresh(&bytes) {
                Ok(module) => module,
                Err(e) => {
                    tracing::warn!("plugin `{what}` stays on its baseline code: {e}");
                    return;
                }
            };
            let pre = match prepare(&what, &module) {
                Ok(pre) => pre,
                Err(e) => {
                    tracing::warn!("plugin `{what}` stays on its baseline code: {e}");
                    return;
                }
            };
            engine.keep(&bytes, &module);
            // The plugin may have been replaced or unloaded meanwhile: then nobody needs it.
            if let Some(code) = code.upgrade() {
                *code.write().unwrap_or_else(|p| p.into_inner()) = Code {
                    pre: Arc::new(pre),
                    optimised: true,
                };
                tracing::debug!(
                    "plugin `{what}` runs its optimised code ({} ms after its load)",
                    started.elapsed().as_millis()
                );
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("a plugin stays on its baseline code: cannot start a thread: {e}");
    }
}

/// The version of a plugin: the first 16 hex digits of the SHA-256 of its `.wasm`.
pub fn version_of(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

/// Longest plugin name.
pub const MAX_NAME: usize = 64;

/// Checks a plugin name: a short slug, `[a-z0-9][a-z0-9-_]*`, at most [`MAX_NAME`] characters.
/// Names key results, log lines, metric labels, files and URLs, so nothing else is accepted.
/// The error completes a sentence that starts with the name's role ("its name …").
pub fn check_name(name: &str) -> Result<(), String> {
    let shown = crate::runtime::instance::escape_controls(name);
    let allowed = "is a short slug: a lowercase letter or digit, then lowercase letters, digits, \
                   `-` or `_`, at most 64 characters";
    if name.is_empty() {
        return Err(format!("is empty; a plugin name {allowed}"));
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "is {} characters long; a plugin name {allowed}",
            name.len()
        ));
    }
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(format!("`{shown}` is not allowed; a plugin name {allowed}"))
    }
}

/// Checks what can be checked without compiling or running anything: the magic, the size and
/// shape limits, one memory and at most one table, and the `regua-abi` custom section, whose
/// kind it returns.
fn check_module(what: &str, bytes: &[u8], limits: &Limits) -> Result<Kind, LoadError> {
    let not_wasm = |detail: String| LoadError::NotWasm {
        what: what.to_owned(),
        detail,
    };
    let too_big = |detail: String| LoadError::TooLarge {
        what: what.to_owned(),
        detail,
    };
    if !bytes.starts_with(b"\0asm") {
        return Err(not_wasm("it does not start with the `\\0asm` magic".into()));
    }
    if bytes.len() > limits.module_bytes {
        return Err(too_big(format!(
            "it is {} bytes; the limit is {} bytes",
            bytes.len(),
            limits.module_bytes
        )));
    }
    let mut found = None;
    let (mut memories, mut tables) = (0usize, 0usize);
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        use wasmparser::{Payload, TypeRef};
        match payload.map_err(|e| not_wasm(e.to_string()))? {
            Payload::CustomSection(section) if section.name() == ABI_SECTION => {
                if found.is_some() {
                    return Err(LoadError::BadAbiSection {
                        what: what.to_owned(),
                        detail: "it appears more than once".into(),
                    });
                }
                found = Some(section.data().to_vec());
            }
            Payload::ImportSection(imports) => {
                for import in imports.into_imports() {
                    match import.map_err(|e| not_wasm(e.to_string()))?.ty {
                        TypeRef::Memory(_) => memories += 1,
                        TypeRef::Table(_) => tables += 1,
                        _ => {}
                    }
                }
            }
            Payload::MemorySection(section) => memories += section.count() as usize,
            Payload::TableSection(section) => tables += section.count() as usize,
            Payload::FunctionSection(section) => {
                let functions = section.count() as usize;
                if functions > limits.functions {
                    return Err(too_big(format!(
                        "it defines {functions} functions; the limit is {}",
                        limits.functions
                    )));
                }
            }
            Payload::CodeSectionEntry(body) => {
                let size = body.range().len();
                if size > limits.function_bytes {
                    return Err(too_big(format!(
                        "a function's body is {size} bytes; the limit is {}",
                        limits.function_bytes
                    )));
                }
                let mut locals = 0u64;
                for group in body
                    .get_locals_reader()
                    .map_err(|e| not_wasm(e.to_string()))?
                {
                    locals += u64::from(group.map_err(|e| not_wasm(e.to_string()))?.0);
                }
                if locals > limits.locals_per_function as u64 {
                    return Err(too_big(format!(
                        "a function declares {locals} locals; the limit is {}",
                        limits.locals_per_function
                    )));
                }
            }
            _ => {}
        }
    }
    let data = found.ok_or_else(|| LoadError::NoAbiSection {
        what: what.to_owned(),
    })?;
    let [a, b, c, d, kind] = data[..] else {
        return Err(LoadError::BadAbiSection {
            what: what.to_owned(),
            detail: format!("it is {} bytes long, not 5", data.len()),
        });
    };
    let abi = u32::from_le_bytes([a, b, c, d]);
    if abi != ABI_VERSION {
        return Err(LoadError::AbiMismatch {
            what: what.to_owned(),
            found: abi,
            supported: ABI_VERSION,
        });
    }
    let kind = Kind::from_code(kind).ok_or_else(|| LoadError::BadAbiSection {
        what: what.to_owned(),
        detail: format!("kind byte {kind} is not 1 (segment), 2 (journey) or 3 (rest)"),
    })?;
    if memories != 1 {
        return Err(LoadError::BadExport {
            what: what.to_owned(),
            detail: format!(
                "has {memories} memories; a plugin has exactly one (the exported `memory`)"
            ),
        });
    }
    if tables > 1 {
        return Err(LoadError::BadExport {
            what: what.to_owned(),
            detail: format!("has {tables} tables; a plugin has at most one"),
        });
    }
    Ok(kind)
}

fn check_imports(what: &str, module: &Module) -> Result<(), LoadError> {
    for import in module.imports() {
        let allowed = import.module() == IMPORT_MODULE
            && HOST_FUNCTIONS.iter().any(|abi| {
                abi.name == import.name()
                    && matches!(import.ty(), ExternType::Func(f) if same_sig(&f, abi))
            });
        if !allowed {
            return Err(LoadError::ForbiddenImport {
                what: what.to_owned(),
                module: import.module().to_owned(),
                name: import.name().to_owned(),
            });
        }
    }
    Ok(())
}

fn check_exports(what: &str, module: &Module) -> Result<(), LoadError> {
    let bad = |detail: String| LoadError::BadExport {
        what: what.to_owned(),
        detail,
    };
    match module.get_export(MEMORY) {
        Some(ExternType::Memory(m)) if !m.is_64() => {}
        Some(_) => return Err(bad("exports `memory` but not as a 32-bit memory".into())),
        None => return Err(bad("does not export `memory`".into())),
    }
    for abi in PLUGIN_FUNCTIONS {
        let name = abi.name;
        match module.get_export(name) {
            Some(ExternType::Func(f)) if same_sig(&f, &abi) => {}
            Some(_) => {
                return Err(bad(format!(
                    "exports `{name}` with the wrong type; the ABI needs ({}) -> ({})",
                    sig_text(abi.params),
                    sig_text(abi.results)
                )));
            }
            None => return Err(bad(format!("does not export `{name}`"))),
        }
    }
    Ok(())
}

fn val_type(t: WasmType) -> ValType {
    match t {
        WasmType::I32 => ValType::I32,
        WasmType::I64 => ValType::I64,
    }
}

fn same_sig(f: &wasmtime::FuncType, abi: &AbiFunction) -> bool {
    let eq = |a: ValType, b: &WasmType| ValType::eq(&a, &val_type(*b));
    f.params().len() == abi.params.len()
        && f.results().len() == abi.results.len()
        && f.params().zip(abi.params).all(|(a, b)| eq(a, b))
        && f.results().zip(abi.results).all(|(a, b)| eq(a, b))
}

fn sig_text(types: &[WasmType]) -> String {
    types
        .iter()
        .map(|t| val_type(*t).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
