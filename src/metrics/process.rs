//! The `process_*` metrics every Prometheus exporter has (client_golang's process
//! collector, on Linux): CPU seconds, resident and virtual memory, open and maximum file
//! descriptors, start time; read from `/proc/self` at each scrape (off the runtime: the
//! caller runs [`encode`] in `spawn_blocking`). Off with `--web.disable-exporter-metrics`.

use std::fmt::Write;

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux; Prometheus's
/// procfs reads it as a constant too).
const USER_HZ: f64 = 100.0;

/// What `/proc/self` says of this process.
#[derive(Debug, Default, PartialEq)]
struct Sample {
    cpu_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    open_fds: f64,
    max_fds: Option<f64>,
    start_time_seconds: Option<f64>,
}

/// The families in the exposition format: text 0.0.4, or OpenMetrics (whose counter family
/// has no `_total` in its name); empty when `/proc` cannot be read (another OS).
#[allow(
    clippy::disallowed_methods,
    reason = "/proc reads, run in spawn_blocking by the /metrics handler"
)]
pub fn encode(openmetrics: bool) -> String {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let (Some(stat), Some(status)) = (read("/proc/self/stat"), read("/proc/self/status")) else {
        return String::new();
    };
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    let sample = sample(
        &stat,
        &status,
        open_fds,
        read("/proc/self/limits").as_deref(),
        read("/proc/stat").as_deref(),
    );
    render(&sample, openmetrics)
}

fn sample(
    stat: &str,
    status: &str,
    open_fds: usize,
    limits: Option<&str>,
    proc_stat: Option<&str>,
) -> Sample {
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // Numbered as in proc(5): field 3 (state) is fields[0].
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|k| k * 1024.0)
    };
    let boot = proc_stat.and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    let max_fds = limits.and_then(|l| {
        l.lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse::<f64>().ok())
    });
    Sample {
        cpu_seconds: (field(14).unwrap_or(0.0) + field(15).unwrap_or(0.0)) / USER_HZ,
        resident_bytes: kib("VmRSS:").unwrap_or(0.0),
        virtual_bytes: kib("VmSize:").unwrap_or(0.0),
        open_fds: open_fds as f64,
        max_fds,
        start_time_seconds: boot.zip(field(22)).map(|(b, t)| b + t / USER_HZ),
    }
}

fn render(s: &Sample, openmetrics: bool) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, value: Option<f64>| {
        let Some(value) = value else { return };
        let (family, sample) = match (kind, openmetrics) {
            ("counter", true) => (name.trim_end_matches("_total"), name),
            _ => (name, name),
        };
        let _ = writeln!(out, "# HELP {family} {help}");
        let _ = writeln!(out, "# TYPE {family} {kind}");
        let _ = writeln!(out, "{sample} {value}");
    };
    family(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        Some(s.cpu_seconds),
    );
    family(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        Some(s.open_fds),
    );
    family(
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors.",
        s.max_fds,
    );
    family(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        Some(s.virtual_bytes),
    );
    family(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        Some(s.resident_bytes),
    );
    family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        s.start_time_seconds,
    );
    out
}

/// `body` with the process families added: before OpenMetrics' closing `# EOF`.
pub fn with_process(body: &[u8], process: &str, openmetrics: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + process.len());
    match body.strip_suffix(b"# EOF\n").filter(|_| openmetrics) {
        Some(head) => {
            out.extend_from_slice(head);
            out.extend_from_slice(process.as_bytes());
            out.extend_from_slice(b"# EOF\n");
        }
        None => {
            out.extend_from_slice(body);
            out.extend_from_slice(process.as_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (tfdrift exp) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 9 0 123400 80000000 3000 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";
    const STATUS: &str = "Name:\ttfdrift\nVmSize:\t   78125 kB\nVmRSS:\t   12000 kB\n";
    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";

    #[test]
    fn proc_is_read_as_the_process_collector_reads_it() {
        let s = sample(
            STAT,
            STATUS,
            12,
            Some(LIMITS),
            Some("cpu 1 2\nbtime 1764000000\n"),
        );
        assert_eq!(s.cpu_seconds, 3.0, "(250 + 50) ticks at 100 Hz");
        assert_eq!(s.resident_bytes, 12_000.0 * 1024.0);
        assert_eq!(s.virtual_bytes, 78_125.0 * 1024.0);
        assert_eq!(s.open_fds, 12.0);
        assert_eq!(s.max_fds, Some(1024.0));
        assert_eq!(s.start_time_seconds, Some(1_764_000_000.0 + 1_234.0));
    }

    #[test]
    fn openmetrics_counters_drop_total_from_the_family_and_eof_stays_last() {
        let s = sample(STAT, STATUS, 12, None, None);
        let text = render(&s, false);
        assert!(
            text.contains(
                "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 3\n"
            )
        );
        assert!(
            !text.contains("process_max_fds"),
            "no limits read, no series"
        );
        let om = render(&s, true);
        assert!(om.contains("# TYPE process_cpu_seconds counter\nprocess_cpu_seconds_total 3\n"));
        let body = with_process(b"# TYPE a gauge\na 1\n# EOF\n", &om, true);
        let body = String::from_utf8(body).unwrap();
        assert!(
            body.ends_with("process_resident_memory_bytes 12288000\n# EOF\n"),
            "{body}"
        );
        assert_eq!(body.matches("# EOF").count(), 1);
    }
}
