//! What the kernel counts for each thread of this process, read from
//! `/proc/self/task/TID/`.
//!
//! Reading another thread's counters does not wake it, so a sleeping
//! thread can be watched without disturbing it.

use std::fs;

/// A thread of this process.
pub struct Task {
    /// Its thread id.
    pub tid: u32,
    /// Its name as the kernel keeps it (`comm`: at most 15 bytes).
    pub name: String,
}

/// The threads of this process now.
pub fn tasks() -> Vec<Task> {
    let entries = fs::read_dir("/proc/self/task").expect("cannot list /proc/self/task");
    let mut tasks: Vec<Task> = entries
        .flatten()
        .filter_map(|entry| {
            let tid = entry.file_name().to_str()?.parse().ok()?;
            let name = read(tid, "comm")?.trim_end().to_owned();
            Some(Task { tid, name })
        })
        .collect();
    tasks.sort_by_key(|task| task.tid);
    tasks
}

/// The calling thread's id.
pub fn current_tid() -> u32 {
    // SAFETY: gettid(2) has no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    u32::try_from(tid).expect("a thread id is positive")
}

/// Where the thread sleeps (`wchan`), when the kernel says.
pub fn wchan(tid: u32) -> Option<String> {
    read(tid, "wchan").filter(|name| !name.is_empty() && name != "0")
}

/// One thread's counters at one moment, or their growth over a while.
#[derive(Clone, Copy)]
pub struct Counters {
    /// CPU time in clock ticks (`USER_HZ`, 10 ms): `utime + stime` from
    /// `stat`.
    pub ticks: u64,
    /// CPU time in nanoseconds, from `schedstat`, when the kernel keeps it.
    pub cpu_ns: Option<u64>,
    /// Times the thread gave up the CPU to wait (`voluntary_ctxt_switches`).
    pub voluntary: u64,
    /// Times it was preempted (`nonvoluntary_ctxt_switches`).
    pub involuntary: u64,
    /// Times it moved to another CPU (`se.nr_migrations` from `sched`,
    /// which only kernels with scheduler debugging have).
    pub migrations: Option<u64>,
}

impl Default for Counters {
    /// Nothing counted yet, to add to.
    fn default() -> Counters {
        Counters {
            ticks: 0,
            cpu_ns: Some(0),
            voluntary: 0,
            involuntary: 0,
            migrations: Some(0),
        }
    }
}

impl Counters {
    /// The thread's counters now; `None` once it has exited.
    pub fn read(tid: u32) -> Option<Counters> {
        let stat = read(tid, "stat")?;
        // The name in parentheses may hold spaces and ')': fields are
        // counted from after the last ')', where field 3 (state) begins.
        let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        let ticks = field(14)? + field(15)?;

        let status = read(tid, "status")?;
        let status_value = |key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
                .and_then(|value| value.trim().parse::<u64>().ok())
        };
        let voluntary = status_value("voluntary_ctxt_switches")?;
        let involuntary = status_value("nonvoluntary_ctxt_switches")?;

        let cpu_ns =
            read(tid, "schedstat").and_then(|text| text.split_whitespace().next()?.parse().ok());
        let migrations = read(tid, "sched").and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("se.nr_migrations"))
                .and_then(|rest| rest.trim_start_matches([' ', ':']).trim().parse().ok())
        });
        Some(Counters {
            ticks,
            cpu_ns,
            voluntary,
            involuntary,
            migrations,
        })
    }

    /// Voluntary and involuntary switches together.
    pub fn switches(&self) -> u64 {
        self.voluntary + self.involuntary
    }

    /// How much each counter grew from `start` to `self`.
    pub fn since(&self, start: &Counters) -> Counters {
        let minus = |end: Option<u64>, start: Option<u64>| Some(end?.saturating_sub(start?));
        Counters {
            ticks: self.ticks.saturating_sub(start.ticks),
            cpu_ns: minus(self.cpu_ns, start.cpu_ns),
            voluntary: self.voluntary.saturating_sub(start.voluntary),
            involuntary: self.involuntary.saturating_sub(start.involuntary),
            migrations: minus(self.migrations, start.migrations),
        }
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Counters) {
        let plus = |a: Option<u64>, b: Option<u64>| Some(a? + b?);
        self.ticks += other.ticks;
        self.cpu_ns = plus(self.cpu_ns, other.cpu_ns);
        self.voluntary += other.voluntary;
        self.involuntary += other.involuntary;
        self.migrations = plus(self.migrations, other.migrations);
    }
}

fn read(tid: u32, file: &str) -> Option<String> {
    fs::read_to_string(format!("/proc/self/task/{tid}/{file}")).ok()
}
