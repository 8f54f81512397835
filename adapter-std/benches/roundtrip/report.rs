//! What a measuring child reports to the parent (one tab-separated record
//! a line on its standard output), and the Markdown tables the parent
//! prints from the records.

use std::time::Duration;

use crate::common::task::Counters;

/// Summary of a set of durations, in microseconds.
pub struct Stats {
    pub count: usize,
    pub median: f64,
    pub p90: f64,
    pub p99: f64,
    pub mean: f64,
}

impl Stats {
    /// Summarises `samples` (which it sorts).
    pub fn of(samples: &mut [Duration]) -> Stats {
        assert!(!samples.is_empty(), "no samples");
        samples.sort_unstable();
        let n = samples.len();
        let at = |percent: usize| micros(samples[(n * percent / 100).min(n - 1)]);
        let total: Duration = samples.iter().sum();
        Stats {
            count: n,
            median: at(50),
            p90: at(90),
            p99: at(99),
            mean: micros(total) / n as f64,
        }
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One record from a child.
pub enum Record {
    /// The latency of one measurement against one server.
    Latency {
        what: String,
        placement: String,
        server: String,
        stats: Stats,
    },
    /// What one thread did over all the timed round trips against one
    /// server.
    Thread {
        placement: String,
        server: String,
        role: String,
        rounds: usize,
        counted: Counters,
    },
}

impl Record {
    /// The record as one line for the parent.
    pub fn line(&self) -> String {
        match self {
            Record::Latency {
                what,
                placement,
                server,
                stats: s,
            } => format!(
                "LATENCY\t{what}\t{placement}\t{server}\t{}\t{}\t{}\t{}\t{}",
                s.count, s.median, s.p90, s.p99, s.mean
            ),
            Record::Thread {
                placement,
                server,
                role,
                rounds,
                counted: c,
            } => format!(
                "THREAD\t{placement}\t{server}\t{role}\t{rounds}\t{}\t{}\t{}\t{}",
                optional(c.cpu_ns),
                c.voluntary,
                c.involuntary,
                optional(c.migrations)
            ),
        }
    }

    /// Reads a line written by [`Record::line`]; `None` for anything else.
    pub fn parse(line: &str) -> Option<Record> {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            [
                "LATENCY",
                what,
                placement,
                server,
                count,
                median,
                p90,
                p99,
                mean,
            ] => Some(Record::Latency {
                what: (*what).to_owned(),
                placement: (*placement).to_owned(),
                server: (*server).to_owned(),
                stats: Stats {
                    count: count.parse().ok()?,
                    median: median.parse().ok()?,
                    p90: p90.parse().ok()?,
                    p99: p99.parse().ok()?,
                    mean: mean.parse().ok()?,
                },
            }),
            [
                "THREAD",
                placement,
                server,
                role,
                rounds,
                cpu_ns,
                vol,
                invol,
                migrations,
            ] => Some(Record::Thread {
                placement: (*placement).to_owned(),
                server: (*server).to_owned(),
                role: (*role).to_owned(),
                rounds: rounds.parse().ok()?,
                counted: Counters {
                    ticks: 0,
                    cpu_ns: cpu_ns.parse().ok(),
                    voluntary: vol.parse().ok()?,
                    involuntary: invol.parse().ok()?,
                    migrations: migrations.parse().ok(),
                },
            }),
            _ => None,
        }
    }
}

fn optional(n: Option<u64>) -> String {
    n.map_or("-".to_owned(), |n| n.to_string())
}

/// Prints the latency table, with ispyd's ratio to echo beside each ispyd
/// row, then the per-thread table.
pub fn print_tables(records: &[Record]) {
    println!();
    println!(
        "| measurement | placement | server | n | median µs | p90 µs | p99 µs | mean µs | ispyd ÷ echo (median / mean) |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---|");
    for record in records {
        let Record::Latency {
            what,
            placement,
            server,
            stats: s,
        } = record
        else {
            continue;
        };
        let echo = records.iter().find_map(|other| match other {
            Record::Latency {
                what: w,
                placement: p,
                server: e,
                stats,
            } if e == "echo" && w == what && p == placement => Some(stats),
            _ => None,
        });
        let ratio = match echo {
            Some(echo) if server == "ispyd" => format!(
                "{:.2}× / {:.2}×",
                s.median / echo.median,
                s.mean / echo.mean
            ),
            _ => String::new(),
        };
        println!(
            "| {what} | {placement} | {server} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {ratio} |",
            s.count, s.median, s.p90, s.p99, s.mean
        );
    }

    println!();
    println!(
        "| placement | server | thread | CPU µs / round trip | voluntary switches / round trip | involuntary switches / round trip | migrations / round trip |"
    );
    println!("|---|---|---|---:|---:|---:|---:|");
    for record in records {
        let Record::Thread {
            placement,
            server,
            role,
            rounds,
            counted: c,
        } = record
        else {
            continue;
        };
        let per = |n: u64| n as f64 / *rounds as f64;
        let per_optional = |n: Option<u64>, scale: f64, digits: usize| {
            n.map_or("n/a".to_owned(), |n| format!("{:.digits$}", per(n) * scale))
        };
        println!(
            "| {placement} | {server} | {role} | {} | {:.2} | {:.2} | {} |",
            per_optional(c.cpu_ns, 1e-3, 1),
            per(c.voluntary),
            per(c.involuntary),
            per_optional(c.migrations, 1.0, 2),
        );
    }
}
