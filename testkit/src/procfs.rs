//! What a process costs, read by pid: its CPU clock, `/proc/PID/{stat,status,task,fd,smaps}`,
//! and the file-descriptor limit that children inherit.

use crate::Result;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::time::{clock_gettime, ClockId};
use nix::unistd::{sysconf, Pid, SysconfVar};
use std::collections::BTreeMap;
use std::fs;

/// The whole process's CPU time (user + system, every thread, live and exited), in ns.
pub fn cpu_ns(pid: u32) -> Result<u64> {
    let raw = i32::try_from(pid).map_err(|_| "pid out of range")?;
    let clock = ClockId::pid_cpu_clock_id(Pid::from_raw(raw))
        .map_err(|e| format!("clock_getcpuclockid({pid}): {e}"))?;
    let now = clock_gettime(clock).map_err(|e| format!("clock_gettime(cpu of {pid}): {e}"))?;
    Ok(now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64)
}

/// (utime, stime) from /proc/PID/stat, in clock ticks ([`clock_ticks_per_second`]).
pub fn ticks(pid: u32) -> Result<(u64, u64)> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let after_name = text.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); `fields[0]` is field 3.
    let parse = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (parse(11), parse(12)) {
        (Some(utime), Some(stime)) => Ok((utime, stime)),
        _ => Err(format!("{path}: unexpected format")),
    }
}

pub fn clock_ticks_per_second() -> u64 {
    sysconf(SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// A number from /proc/PID/status: `VmHWM`, `VmRSS`, `RssAnon`, `RssFile` (KiB), `Threads`.
pub fn status(pid: u32, key: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("{path}: no {key}"))
}

/// Threads of the process now: the entries of /proc/PID/task.
pub fn threads(pid: u32) -> Result<u64> {
    count_entries(&format!("/proc/{pid}/task"))
}

/// The names of the process's threads now (`/proc/PID/task/TID/comm`, at most 15 bytes each).
pub fn thread_names(pid: u32) -> Result<Vec<String>> {
    let path = format!("/proc/{pid}/task");
    let dir = fs::read_dir(&path).map_err(|e| format!("{path}: {e}"))?;
    Ok(dir
        .filter_map(|e| e.ok())
        .filter_map(|e| fs::read_to_string(e.path().join("comm")).ok())
        .map(|name| name.trim_end().to_string())
        .collect())
}

/// Open file descriptors of the process now: the entries of /proc/PID/fd.
pub fn fds(pid: u32) -> Result<u64> {
    count_entries(&format!("/proc/{pid}/fd"))
}

fn count_entries(path: &str) -> Result<u64> {
    let dir = fs::read_dir(path).map_err(|e| format!("{path}: {e}"))?;
    Ok(dir.filter(|e| e.is_ok()).count() as u64)
}

/// The 1, 5 and 15 minute load averages, as /proc/loadavg spells them.
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Raises this process's soft limit on open files to its hard limit (children inherit it);
/// returns the new soft limit.
pub fn raise_fd_limit() -> Result<u64> {
    let (soft, hard) =
        getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| format!("getrlimit(NOFILE): {e}"))?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
            .map_err(|e| format!("setrlimit(NOFILE, {hard}): {e}"))?;
    }
    Ok(hard)
}

/// Resident memory of one kind of mapping, summed.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub kind: String,
    pub mappings: usize,
    pub rss_kib: u64,
    pub pss_kib: u64,
    pub private_kib: u64,
}

/// /proc/PID/smaps summed by kind of mapping, largest RSS first; `exe` is the executable's
/// file name, whose mappings are labelled as the binary's code and data.
pub fn smaps(pid: u32, exe: &str) -> Result<Vec<Mapping>> {
    let path = format!("/proc/{pid}/smaps");
    let text = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let mut kinds: BTreeMap<String, Mapping> = BTreeMap::new();
    let mut current = String::new();
    let kib = |line: &str| {
        line.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
    };
    for line in text.lines() {
        let first = line.split(' ').next().unwrap_or_default();
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let perms = fields.get(1).copied().unwrap_or_default();
            let name = fields.get(5..).map(|f| f.join(" ")).unwrap_or_default();
            let (start, end) = first.split_once('-').unwrap_or_default();
            let hex = |h: &str| u64::from_str_radix(h, 16).unwrap_or(0);
            let size_kib = hex(end).saturating_sub(hex(start)) / 1024;
            current = mapping_kind(&name, perms, size_kib, exe);
            kinds
                .entry(current.clone())
                .or_insert_with(|| Mapping {
                    kind: current.clone(),
                    mappings: 0,
                    rss_kib: 0,
                    pss_kib: 0,
                    private_kib: 0,
                })
                .mappings += 1;
        } else if let Some(m) = kinds.get_mut(&current) {
            if line.starts_with("Rss:") {
                m.rss_kib += kib(line);
            } else if line.starts_with("Pss:") {
                m.pss_kib += kib(line);
            } else if line.starts_with("Private_Clean:") || line.starts_with("Private_Dirty:") {
                m.private_kib += kib(line);
            }
        }
    }
    let mut list: Vec<Mapping> = kinds.into_values().filter(|m| m.rss_kib > 0).collect();
    list.sort_by_key(|m| std::cmp::Reverse(m.rss_kib));
    Ok(list)
}

/// What a mapping is; anonymous ones are told apart by size only, so the labels say "e.g.".
fn mapping_kind(name: &str, perms: &str, size_kib: u64, exe: &str) -> String {
    let name = name.trim_end_matches(" (deleted)");
    let file = name.rsplit('/').next().unwrap_or(name);
    match name {
        "" if perms.starts_with("---") => "anonymous, no access (guard pages, reserved)".into(),
        "" if size_kib <= 256 => {
            "anonymous ≤ 256 KiB (e.g. the 256 KiB probe-thread stacks, signal stacks)".into()
        }
        "" if (2040..=2056).contains(&size_kib) => {
            "anonymous 2 MiB (e.g. default thread stacks: the DNS lookup thread of a probe by host name, \
             kept in glibc's stack cache)"
                .into()
        }
        "" => "anonymous, other sizes (e.g. glibc malloc arena heaps, large allocations)".into(),
        "[heap]" => "[heap] (brk)".into(),
        "[stack]" => "[stack] (main thread)".into(),
        "[vdso]" | "[vvar]" | "[vsyscall]" | "[vvar_vclock]" => "kernel ([vdso], [vvar])".into(),
        _ if file.contains(".so") => format!("shared library {file}"),
        _ if file == exe && perms.contains('x') => format!("{exe} binary: code"),
        _ if file == exe => format!("{exe} binary: read-only data, relocations, .data"),
        _ => format!("mapped file {file}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_can_be_measured() {
        let me = std::process::id();
        assert!(cpu_ns(me).unwrap() > 0, "the test has used some CPU");
        assert!(status(me, "VmRSS").unwrap() > 0, "and some memory");
        assert!(threads(me).unwrap() >= 1, "at least the main thread");
        assert!(!thread_names(me).unwrap().is_empty(), "and its name");
        assert!(fds(me).unwrap() >= 3, "stdin, stdout, stderr at least");
        ticks(me).expect("stat parses");
        assert!(smaps(me, "x").unwrap().iter().any(|m| m.kind.starts_with("shared library")));
    }
}
