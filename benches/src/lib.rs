//! Benchmark harness support. The micro-benchmarks live in `benches/`; the
//! measuring tools in `src/bin/`.
#![forbid(unsafe_code)]

/// Peak (VmHWM) and current (VmRSS) resident set size of a process, in KiB,
/// read from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}
