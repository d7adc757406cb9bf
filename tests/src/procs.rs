//! The processes of this machine, read from `/proc`: shared by the test helpers (which end what
//! a test started) and `cargo xtask test` (which names what the tests left running), so both
//! see the same tree.

/// (pid, parent pid, command line) of every process; empty where there is no `/proc`.
pub fn processes() -> Vec<(u32, u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "pid (comm) state ppid …": comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        Some((pid, ppid, cmdline.trim().to_owned()))
    })
    .collect()
}
