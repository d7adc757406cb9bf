//! Loading a plugin: read, check the ABI before anything runs, compile once, read its metadata.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use regua_sdk::wire::{ABI_SECTION, ABI_VERSION, IMPORT_MODULE};
use regua_sdk::{Kind, Metadata};
use sha2::{Digest, Sha256};
use wasmtime::{ExternType, InstancePre, Linker, Module, ValType};

use crate::engine::Engine;
use crate::error::LoadError;
use crate::instance::{self, StoreState};

/// Imports the host provides: name and (params, results) as wasm types.
const HOST_IMPORTS: [(&str, &[ValType], &[ValType]); 3] = [
    ("log", &[ValType::I32, ValType::I32, ValType::I32], &[]),
    ("item", &[ValType::I32], &[]),
    ("panic", &[ValType::I32, ValType::I32], &[]),
];

/// Exports the ABI requires: name and (params, results).
const REQUIRED_EXPORTS: [(&str, &[ValType], &[ValType]); 3] = [
    ("regua_alloc", &[ValType::I32], &[ValType::I32]),
    ("regua_metadata", &[], &[ValType::I64]),
    (
        "regua_evaluate",
        &[ValType::I32, ValType::I32, ValType::I32, ValType::I32],
        &[ValType::I64],
    ),
];

/// A loaded, validated, compiled plugin. Share it with `Arc`; instances are made per worker.
pub struct Plugin {
    /// What the plugin says about itself.
    pub meta: Metadata,
    /// Content hash of the `.wasm` (first 16 hex digits of its SHA-256): the version every
    /// answer names.
    pub version: String,
    /// Where it was loaded from, if from a file.
    pub source: Option<PathBuf>,
    pub(crate) engine: Engine,
    pub(crate) pre: InstancePre<StoreState>,
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

    /// Loads a plugin from its bytes; `what` names it in errors.
    pub fn from_bytes(engine: &Engine, what: &str, bytes: &[u8]) -> Result<Plugin, LoadError> {
        let kind = check_abi(what, bytes)?;
        let module = Module::new(&engine.wasm, bytes).map_err(|e| LoadError::Compile {
            what: what.to_owned(),
            detail: format!("{e:#}"),
        })?;
        check_imports(what, &module)?;
        check_exports(what, &module)?;

        let mut linker = Linker::new(&engine.wasm);
        instance::define_host_functions(&mut linker).map_err(|e| LoadError::Compile {
            what: what.to_owned(),
            detail: format!("{e:#}"),
        })?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| LoadError::Compile {
                what: what.to_owned(),
                detail: format!("{e:#}"),
            })?;
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
        if meta.name.is_empty() {
            return Err(LoadError::BadMetadata {
                what: what.to_owned(),
                detail: "its name is empty".into(),
            });
        }
        Ok(Plugin {
            meta,
            version,
            source: None,
            engine: engine.clone(),
            pre,
        })
    }
}

/// The version of a plugin: the first 16 hex digits of the SHA-256 of its `.wasm`.
pub fn version_of(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

/// Reads the `regua-abi` custom section without compiling or running anything.
fn check_abi(what: &str, bytes: &[u8]) -> Result<Kind, LoadError> {
    let not_wasm = |detail: String| LoadError::NotWasm {
        what: what.to_owned(),
        detail,
    };
    if !bytes.starts_with(b"\0asm") {
        return Err(not_wasm("it does not start with the `\\0asm` magic".into()));
    }
    let mut found = None;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| not_wasm(e.to_string()))?;
        if let wasmparser::Payload::CustomSection(section) = payload
            && section.name() == ABI_SECTION
        {
            if found.is_some() {
                return Err(LoadError::BadAbiSection {
                    what: what.to_owned(),
                    detail: "it appears more than once".into(),
                });
            }
            found = Some(section.data().to_vec());
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
    Kind::from_code(kind).ok_or_else(|| LoadError::BadAbiSection {
        what: what.to_owned(),
        detail: format!("kind byte {kind} is not 1 (segment), 2 (journey) or 3 (rest)"),
    })
}

fn check_imports(what: &str, module: &Module) -> Result<(), LoadError> {
    for import in module.imports() {
        let allowed = import.module() == IMPORT_MODULE
            && HOST_IMPORTS.iter().any(|(name, params, results)| {
                *name == import.name()
                    && matches!(import.ty(), ExternType::Func(f) if same_sig(&f, params, results))
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
    match module.get_export("memory") {
        Some(ExternType::Memory(m)) if !m.is_64() => {}
        Some(_) => return Err(bad("exports `memory` but not as a 32-bit memory".into())),
        None => return Err(bad("does not export `memory`".into())),
    }
    for (name, params, results) in REQUIRED_EXPORTS {
        match module.get_export(name) {
            Some(ExternType::Func(f)) if same_sig(&f, params, results) => {}
            Some(_) => {
                return Err(bad(format!(
                    "exports `{name}` with the wrong type; the ABI needs ({}) -> ({})",
                    sig_text(params),
                    sig_text(results)
                )));
            }
            None => return Err(bad(format!("does not export `{name}`"))),
        }
    }
    Ok(())
}

fn same_sig(f: &wasmtime::FuncType, params: &[ValType], results: &[ValType]) -> bool {
    let eq = |a: ValType, b: &ValType| ValType::eq(&a, b);
    f.params().len() == params.len()
        && f.results().len() == results.len()
        && f.params().zip(params).all(|(a, b)| eq(a, b))
        && f.results().zip(results).all(|(a, b)| eq(a, b))
}

fn sig_text(types: &[ValType]) -> String {
    types
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
