//! Building plugin crates to `.wasm` with cargo. Std and serde_json only: the test crate's build
//! script includes this file too, so tests build plugins exactly as `regua build` does.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The target plugins are built for.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Installs the wasm32 target with rustup when it is missing.
pub fn ensure_wasm_target() -> Result<(), String> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    if Path::new(&sysroot)
        .join("lib/rustlib")
        .join(WASM_TARGET)
        .exists()
    {
        return Ok(());
    }
    eprintln!("installing the {WASM_TARGET} target with rustup (once per toolchain)");
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .map_err(|e| format!("the {WASM_TARGET} target is missing and rustup cannot run: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`rustup target add {WASM_TARGET}` failed ({status})"
        ))
    }
}

/// Whether `dir` holds a plugin crate (a Cargo.toml whose library is a `cdylib`).
pub fn is_plugin_crate(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .map(|toml| toml.contains("cdylib"))
        .unwrap_or(false)
}

/// The plugin crates at `path`: the crate itself, or every plugin crate directly inside it.
pub fn find_plugin_crates(path: &Path) -> Result<Vec<PathBuf>, String> {
    if is_plugin_crate(path) {
        return Ok(vec![path.to_owned()]);
    }
    let entries =
        std::fs::read_dir(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let mut crates: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_plugin_crate(p))
        .collect();
    crates.sort();
    if crates.is_empty() {
        return Err(format!(
            "`{}` is not a plugin crate and has none inside (a plugin crate's Cargo.toml has crate-type = [\"cdylib\", …])",
            path.display()
        ));
    }
    Ok(crates)
}

fn workspace_root(crate_dir: &Path) -> Result<PathBuf, String> {
    let out = Command::new("cargo")
        .args(["locate-project", "--workspace", "--message-format", "plain"])
        .arg("--manifest-path")
        .arg(crate_dir.join("Cargo.toml"))
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` is not a buildable crate: {}",
            crate_dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The `[package] name` of the crate at `crate_dir`.
pub fn package_name(crate_dir: &Path) -> Result<String, String> {
    let toml = std::fs::read_to_string(crate_dir.join("Cargo.toml")).map_err(|e| {
        format!(
            "cannot read `{}`: {e}",
            crate_dir.join("Cargo.toml").display()
        )
    })?;
    let mut in_package = false;
    for line in toml.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(rest) = line.strip_prefix("name") {
            let value = rest.trim_start().trim_start_matches('=').trim();
            return Ok(value.trim_matches('"').to_owned());
        }
    }
    Err(format!(
        "`{}` has no [package] name",
        crate_dir.join("Cargo.toml").display()
    ))
}

/// Builds the plugin crates in `crate_dirs` to wasm (release, LTO) and copies each artifact to
/// `out_dir/<package-name>.wasm`. Crates of one workspace are built in one cargo invocation.
/// Returns the written files in the order of `crate_dirs`' packages.
pub fn build(
    crate_dirs: &[PathBuf],
    out_dir: &Path,
    target_dir: Option<&Path>,
) -> Result<Vec<PathBuf>, String> {
    ensure_wasm_target()?;
    std::fs::create_dir_all(out_dir)
        .map_err(|e| format!("cannot create `{}`: {e}", out_dir.display()))?;
    let mut groups: BTreeMap<PathBuf, Vec<(PathBuf, String)>> = BTreeMap::new();
    for dir in crate_dirs {
        let root = workspace_root(dir)?;
        groups
            .entry(root)
            .or_default()
            .push((dir.clone(), package_name(dir)?));
    }
    let mut written = Vec::new();
    for (root, members) in groups {
        let mut cmd = Command::new("cargo");
        cmd.args(["build", "--lib", "--release", "--target", WASM_TARGET])
            .args(["--message-format", "json-render-diagnostics"])
            .arg("--manifest-path")
            .arg(&root);
        for (_, name) in &members {
            cmd.args(["-p", name]);
        }
        if let Some(t) = target_dir {
            cmd.arg("--target-dir").arg(t);
        }
        // Small, fast plugins whatever the crate's own profile says.
        cmd.env("CARGO_PROFILE_RELEASE_LTO", "true")
            .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
            .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
            .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "3")
            .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("cannot run cargo: {e}"))?;
        // Cargo's messages go on to our stderr as they come, and are kept for the error.
        let stderr = child.stderr.take().expect("piped");
        let echo = std::thread::spawn(move || {
            let mut kept = Vec::new();
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("{line}");
                kept.push(line);
            }
            kept
        });
        let mut artifacts = BTreeMap::new();
        let stdout = child.stdout.take().expect("piped");
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.map_err(|e| format!("cannot read cargo's output: {e}"))?;
            let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if msg["reason"] != "compiler-artifact" {
                continue;
            }
            let Some(files) = msg["filenames"].as_array() else {
                continue;
            };
            let package = msg["package_id"].as_str().unwrap_or_default().to_owned();
            for f in files.iter().filter_map(|f| f.as_str()) {
                if f.ends_with(".wasm") {
                    artifacts.insert(package.clone(), PathBuf::from(f));
                }
            }
        }
        let status = child
            .wait()
            .map_err(|e| format!("cargo did not finish: {e}"))?;
        let messages = echo.join().unwrap_or_default();
        if !status.success() {
            let names: Vec<_> = members.iter().map(|(_, n)| n.as_str()).collect();
            // From the first error on, at most 60 lines.
            let first = messages
                .iter()
                .position(|l| l.starts_with("error"))
                .unwrap_or(0);
            let errors: Vec<&str> = messages[first..]
                .iter()
                .take(60)
                .map(String::as_str)
                .collect();
            return Err(format!(
                "building {} failed:\n{}",
                names.join(", "),
                errors.join("\n")
            ));
        }
        for (dir, name) in &members {
            let artifact = artifacts
                .iter()
                .find(|(id, _)| package_id_names(id, name))
                .map(|(_, f)| f.clone())
                .ok_or_else(|| {
                    format!(
                        "cargo built no .wasm for `{name}` ({}): is its crate-type \"cdylib\"?",
                        dir.display()
                    )
                })?;
            let dest = out_dir.join(format!("{name}.wasm"));
            let module = std::fs::read(&artifact)
                .map_err(|e| format!("cannot read `{}`: {e}", artifact.display()))?;
            let module = without_names(&module)
                .map_err(|e| format!("`{}` is not a module: {e}", artifact.display()))?;
            // Write then rename, so a service watching `out_dir` never sees half a file.
            let tmp = out_dir.join(format!(".{name}.wasm.tmp"));
            std::fs::write(&tmp, module)
                .and_then(|_| std::fs::rename(&tmp, &dest))
                .map_err(|e| format!("cannot write `{}`: {e}", dest.display()))?;
            written.push(dest);
        }
    }
    Ok(written)
}

/// The module without its `name` section, every other section as it was. A plugin's answers and
/// errors never show its function names (a trap is reported by its cause and the rule's panic
/// message), and they are about a seventh of a small plugin's file. (Read by hand: the test
/// suite's build script compiles this file on its own, without the host's crates.)
fn without_names(module: &[u8]) -> Result<Vec<u8>, String> {
    fn leb(bytes: &[u8], at: &mut usize) -> Result<usize, String> {
        let (mut value, mut shift) = (0usize, 0);
        loop {
            let byte = *bytes.get(*at).ok_or("a section runs past the end")?;
            *at += 1;
            value |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
            if shift > 28 {
                return Err("a section length is not a u32".into());
            }
        }
    }
    if module.len() < 8 || &module[..4] != b"\0asm" {
        return Err("no WebAssembly header".into());
    }
    let mut out = module[..8].to_vec();
    let mut at = 8;
    while at < module.len() {
        let start = at;
        let id = module[at];
        at += 1;
        let len = leb(module, &mut at)?;
        let end = at
            .checked_add(len)
            .filter(|&end| end <= module.len())
            .ok_or("a section runs past the end")?;
        let is_names = id == 0 && {
            let mut name_at = at;
            let name_len = leb(module, &mut name_at)?;
            module.get(name_at..name_at + name_len) == Some(b"name".as_slice())
        };
        if !is_names {
            out.extend_from_slice(&module[start..end]);
        }
        at = end;
    }
    Ok(out)
}

/// Assembles a plugin written in WebAssembly text (`NAME.wat`) into `out_dir/NAME.wasm`, written
/// then renamed like a crate's build; an error names the line and column. `check` judges the
/// module's bytes first (text that assembles can still be no plugin), so nothing that fails it
/// ever lands in a folder a service may be watching.
pub fn assemble(
    wat_file: &Path,
    out_dir: &Path,
    check: impl FnOnce(&[u8]) -> Result<(), String>,
) -> Result<PathBuf, String> {
    let name = wat_file
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| format!("`{}` has no file name", wat_file.display()))?;
    let binary = wat::parse_file(wat_file).map_err(|e| {
        // wat's errors name the file, line and column already.
        format!("cannot assemble `{}`: {e}", wat_file.display())
    })?;
    // The check's error names the file and what it lacks.
    check(&binary)?;
    std::fs::create_dir_all(out_dir)
        .map_err(|e| format!("cannot create `{}`: {e}", out_dir.display()))?;
    let dest = out_dir.join(format!("{name}.wasm"));
    let tmp = out_dir.join(format!(".{name}.wasm.tmp"));
    std::fs::write(&tmp, binary)
        .and_then(|_| std::fs::rename(&tmp, &dest))
        .map_err(|e| format!("cannot write `{}`: {e}", dest.display()))?;
    Ok(dest)
}

/// Whether a cargo package id (`path+file:///…/name#0.1.0` or `…#name@0.1.0`) is package `name`.
fn package_id_names(id: &str, name: &str) -> bool {
    let tail = id.rsplit('/').next().unwrap_or(id);
    let (path_part, frag) = tail.split_once('#').unwrap_or((tail, ""));
    frag.split('@').next() == Some(name) || (path_part == name && !frag.contains('@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom_sections(module: &[u8]) -> Vec<String> {
        wasmparser::Parser::new(0)
            .parse_all(module)
            .filter_map(|p| match p.unwrap() {
                wasmparser::Payload::CustomSection(c) => Some(c.name().to_owned()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_build_keeps_every_section_but_the_function_names() {
        let module = wat::parse_str(
            r#"(module
                 (@custom "regua-abi" "\03")
                 (memory (export "memory") 1)
                 (func $answer (export "answer") (result i32) (i32.const 42))
                 (data (i32.const 0) "kept"))"#,
        )
        .unwrap();
        assert_eq!(custom_sections(&module), ["regua-abi", "name"]);
        let stripped = without_names(&module).unwrap();
        assert_eq!(custom_sections(&stripped), ["regua-abi"]);
        wasmparser::Validator::new()
            .validate_all(&stripped)
            .unwrap();
        // The rest byte for byte: the module minus the name section's header and contents.
        let name = wasmparser::Parser::new(0)
            .parse_all(&module)
            .find_map(|p| match p.unwrap() {
                wasmparser::Payload::CustomSection(c) if c.name() == "name" => Some(c.range()),
                _ => None,
            })
            .unwrap();
        let header = 2; // id, and a one-byte length for a section this small
        let mut want = module[..name.start - header].to_vec();
        want.extend_from_slice(&module[name.end..]);
        assert_eq!(stripped, want);
        assert!(without_names(b"\0asm\x01\0\0\0\x0bgarbage").is_err());
    }
}
