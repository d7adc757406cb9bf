//! Compiled plugins kept between runs: reused when they match, compiled again when they do not.

use std::path::{Path, PathBuf};

use regua_host::runtime::cache::ModuleCache;
use regua_host::{Engine, Limits, Plugin};
use regua_tests::wasm;

use crate::cli::{regua, text};
use crate::{eval, run_batch};

fn cached_engine(dir: &Path, limits: Limits) -> Engine {
    Engine::new(limits)
        .unwrap()
        .with_cache(Some(ModuleCache::new(dir)))
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    found.retain(|p| p.extension().is_some_and(|x| x == "bin"));
    found.sort();
    found
}

/// Loads `name` with a fresh engine over `dir`: whether it came from the cache, and its answers
/// over a few customers.
fn load_and_answer(dir: &Path, name: &str) -> (bool, Vec<serde_json::Value>) {
    let engine = cached_engine(dir, Limits::default());
    let plugin = Plugin::load(&engine, &wasm(name)).unwrap();
    let input = "{\"id\":\"a\"}\n{\"id\":\"b\",\"transactions\":[{\"id\":\"t\",\"at\":\"2025-03-01T00:00:00Z\",\"kind\":\"purchase\",\"amount\":3}]}\n";
    let (lines, _) = run_batch(&[eval(&plugin, "{}")], input, 1);
    (plugin.cached, lines)
}

#[test]
fn a_compiled_plugin_is_reused_and_answers_as_a_fresh_one() {
    let dir = tempfile::tempdir().unwrap();
    let (cached, fresh) = load_and_answer(dir.path(), "lapsed");
    assert!(!cached, "nothing to reuse the first time");
    assert_eq!(entries(dir.path()).len(), 1, "one entry written");
    let (cached, again) = load_and_answer(dir.path(), "lapsed");
    assert!(cached, "the second load reuses the compiled code");
    assert_eq!(again, fresh);
}

#[test]
fn a_corrupt_or_truncated_entry_is_compiled_again_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fresh) = load_and_answer(dir.path(), "lapsed");
    let entry = entries(dir.path()).remove(0);
    let good = std::fs::read(&entry).unwrap();

    let mut flipped = good.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x40;
    let truncated = good[..good.len() - 100].to_vec();
    let mut header_only = good.clone();
    header_only.truncate(40);
    for (what, bytes) in [
        ("one flipped bit in the code", flipped),
        ("truncated", truncated),
        ("cut inside the header", header_only),
        ("empty", Vec::new()),
    ] {
        std::fs::write(&entry, &bytes).unwrap();
        let (cached, answers) = load_and_answer(dir.path(), "lapsed");
        assert!(!cached, "{what}: the entry must not be trusted");
        assert_eq!(answers, fresh, "{what}");
        assert_eq!(std::fs::read(&entry).unwrap(), good, "{what}: replaced");
        assert!(
            load_and_answer(dir.path(), "lapsed").0,
            "{what}: reused after"
        );
    }
}

#[test]
fn another_plugins_or_another_engines_entry_is_never_used() {
    let dir = tempfile::tempdir().unwrap();
    load_and_answer(dir.path(), "lapsed");
    load_and_answer(dir.path(), "birthday-today");
    let [a, b] = &entries(dir.path())[..] else {
        panic!("two entries")
    };
    // Another plugin's code under this plugin's name: its header names the other `.wasm`.
    let lapsed_entry = if a.to_string_lossy().contains(&version_prefix("lapsed")) {
        a
    } else {
        b
    };
    let other = if lapsed_entry == a { b } else { a };
    std::fs::copy(other, lapsed_entry).unwrap();
    let engine = cached_engine(dir.path(), Limits::default());
    let plugin = Plugin::load(&engine, &wasm("lapsed")).unwrap();
    assert!(!plugin.cached);
    assert_eq!(plugin.name(), "lapsed");

    assert!(
        load_and_answer(dir.path(), "lapsed").0,
        "replaced by its own"
    );

    // Entries that pass the digest but are not this engine's: written by hand, as a stale entry
    // of another engine configuration or another wasmtime would be.
    let good = std::fs::read(lapsed_entry).unwrap();
    let (head, code) = good.split_at(88);
    let mut other_key = head[..56].to_vec();
    other_key[48] ^= 1;
    let garbage = vec![0x7f; 4096];
    for (what, head, code) in [
        ("another engine's key", other_key, code),
        (
            "code wasmtime does not take",
            head[..56].to_vec(),
            &garbage[..],
        ),
    ] {
        std::fs::write(lapsed_entry, sealed(&head, code)).unwrap();
        let (cached, _) = load_and_answer(dir.path(), "lapsed");
        assert!(!cached, "{what}: not used");
        assert_eq!(
            std::fs::read(lapsed_entry).unwrap(),
            good,
            "{what}: replaced"
        );
    }
}

/// An entry with `head` (magic, `.wasm` digest, engine key) and `code`, its digest made right.
fn sealed(head: &[u8], code: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    let digest = sha2::Sha256::new()
        .chain_update(head)
        .chain_update(code)
        .finalize();
    [head, &digest[..], code].concat()
}

/// The start of a plugin's entry names: the first hex digits of its `.wasm`'s SHA-256.
fn version_prefix(name: &str) -> String {
    regua_host::runtime::plugin::version_of(&std::fs::read(wasm(name)).unwrap())
}

#[test]
fn the_cli_keeps_compiled_plugins_where_told_or_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("compiled");
    let lapsed = wasm("lapsed");
    let customer = r#"{"id":"c"}"#;
    let args = |extra: &[&str]| {
        let mut a = vec!["eval", lapsed.to_str().unwrap(), "--customer", "-"];
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        regua(&a, customer)
    };
    let first = run(&["--cache-dir", cache.to_str().unwrap()]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert_eq!(entries(&cache).len(), 1);
    let second = run(&["--cache-dir", cache.to_str().unwrap()]);
    assert_eq!(second.stdout, first.stdout);

    // $REGUA_CACHE_DIR is the default folder; --no-cache reads and writes none.
    let from_env = dir.path().join("from-env");
    let with_env = |extra: &[&str]| {
        std::process::Command::new(regua_tests::regua_bin())
            .args(args(extra))
            .env("REGUA_CACHE_DIR", &from_env)
            .stdin(std::fs::File::open(wasm_customer(dir.path(), customer)).unwrap())
            .output()
            .unwrap()
    };
    let out = with_env(&["--no-cache"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout, first.stdout);
    assert!(!from_env.exists(), "--no-cache writes nothing");
    let out = with_env(&[]);
    assert_eq!(out.stdout, first.stdout);
    assert_eq!(entries(&from_env).len(), 1);
    let both = run(&["--no-cache", "--cache-dir", cache.to_str().unwrap()]);
    assert!(
        !both.status.success(),
        "the two flags contradict each other"
    );
}

fn wasm_customer(dir: &Path, customer: &str) -> PathBuf {
    let path = dir.join("customer.json");
    std::fs::write(&path, customer).unwrap();
    path
}

#[test]
fn a_refused_plugin_takes_no_place_in_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let engine = cached_engine(dir.path(), Limits::default());
    // Compiles, then is refused: it imports a function the host does not give, and its
    // metadata call returns nothing readable.
    let bytes = wat::parse_str(
        r#"(module
            (@custom "regua-abi" "\03\00\00\00\01")
            (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "regua_alloc") (param i32) (result i32) i32.const 0)
            (func (export "regua_metadata") (result i64) i64.const 0)
            (func (export "regua_evaluate") (param i32 i32 i32 i32) (result i64) i64.const 0))"#,
    )
    .unwrap();
    assert!(Plugin::from_bytes(&engine, "probe.wasm", &bytes).is_err());
    let no_import = wat::parse_str(
        r#"(module
            (@custom "regua-abi" "\03\00\00\00\01")
            (memory (export "memory") 1)
            (func (export "regua_alloc") (param i32) (result i32) i32.const 0)
            (func (export "regua_metadata") (result i64) i64.const 0)
            (func (export "regua_evaluate") (param i32 i32 i32 i32) (result i64) i64.const 0))"#,
    )
    .unwrap();
    assert!(Plugin::from_bytes(&engine, "probe.wasm", &no_import).is_err());
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}
