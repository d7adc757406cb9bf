//! Errors the host reports, each naming what is wrong and where.

use std::path::PathBuf;

use regua_sdk::Kind;

/// A plugin file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin `{}`: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not WebAssembly at all.
    #[error("`{what}` is not a WebAssembly module: {detail}")]
    NotWasm {
        /// The file or name.
        what: String,
        /// The parser's words.
        detail: String,
    },
    /// Built without the SDK's export macro, or for another host.
    #[error(
        "`{what}` is not a Régua plugin: it has no `regua-abi` section (build it with regua-sdk's export_segment!, export_journey! or export_rest!)"
    )]
    NoAbiSection {
        /// The file or name.
        what: String,
    },
    /// The ABI section is malformed or names an unknown kind.
    #[error("`{what}` has a malformed `regua-abi` section: {detail}")]
    BadAbiSection {
        /// The file or name.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// Built for another ABI version.
    #[error(
        "plugin `{what}` targets ABI {found}; this host supports {supported} (rebuild it against this regua-sdk)"
    )]
    AbiMismatch {
        /// The file or name.
        what: String,
        /// The plugin's version.
        found: u32,
        /// The host's version.
        supported: u32,
    },
    /// Imports something the host does not provide.
    #[error(
        "plugin `{what}` imports `{module}.{name}`, which the host does not provide (plugins may import only regua.log, regua.item, regua.panic and regua.zone: no WASI, files, network, clock or randomness)"
    )]
    ForbiddenImport {
        /// The file or name.
        what: String,
        /// Import module.
        module: String,
        /// Import name.
        name: String,
    },
    /// Lacks an export the ABI requires, or has it with the wrong type.
    #[error("plugin `{what}` {detail} (see docs/ABI.md)")]
    BadExport {
        /// The file or name.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// The metadata export failed or returned something unreadable.
    #[error("plugin `{what}` returned unusable metadata: {detail}")]
    BadMetadata {
        /// The file or name.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// Over a loading limit: size, functions, function body, locals.
    #[error("plugin `{what}` is over a loading limit: {detail}")]
    TooLarge {
        /// The file or name.
        what: String,
        /// Which limit, and by how much.
        detail: String,
    },
    /// Compilation failed.
    #[error("cannot compile plugin `{what}`: {detail}")]
    Compile {
        /// The file or name.
        what: String,
        /// The compiler's words.
        detail: String,
    },
}

/// A call that did not produce answers for every record it was given.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The plugin refused the whole call (for instance, invalid parameters).
    #[error("plugin `{plugin}` version {version} refused the call: {message}")]
    Refused {
        /// Plugin name.
        plugin: String,
        /// Content hash.
        version: String,
        /// The plugin's words.
        message: String,
    },
    /// A rest policy was called without the message it judges.
    #[error(
        "the proposed `message` is missing: plugin `{plugin}` is a rest policy and judges a \
         proposed message (channel, category, …)"
    )]
    NoMessage {
        /// Plugin name.
        plugin: String,
    },
    /// The plugin is of another kind than the call needs.
    #[error("plugin `{plugin}` is a {found} plugin; this call needs a {expected} plugin")]
    WrongKind {
        /// Plugin name.
        plugin: String,
        /// The plugin's kind.
        found: Kind,
        /// The kind the call needs.
        expected: Kind,
    },
    /// The plugin failed the call as a whole (it trapped before any customer, or its answer
    /// does not decode).
    #[error("plugin `{plugin}` version {version} failed: {message}")]
    Failed {
        /// Plugin name.
        plugin: String,
        /// Content hash.
        version: String,
        /// What happened.
        message: String,
    },
    /// The host could not set the call up (instance creation failed, …).
    #[error("plugin `{plugin}` version {version}: {message}")]
    Host {
        /// Plugin name.
        plugin: String,
        /// Content hash.
        version: String,
        /// What failed.
        message: String,
    },
}
