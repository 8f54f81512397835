//! The process plugin's `profile`: the machine stacks of the threads that
//! use CPU, sampled on SIGPROF (`setitimer(ITIMER_PROF)`) by the `pprof`
//! crate, which unwinds in the signal handler and symbolises (demangled)
//! when the profile ends.
//!
//! Safe to leave built in: nothing is installed until a profile starts (no
//! SIGPROF handler, no timer), and when it ends the timer is disarmed and
//! SIGPROF is given back its default disposition, as before. A program
//! that handles or ignores SIGPROF itself, or runs a profiling timer, is
//! refused: ispyd would take its signal over.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ispyd_core::{PluginError, Progress};

use super::{Place, Samples};

/// Libraries pprof does not unwind through: unwinding from a signal
/// handler that interrupted them can deadlock (pprof's own advice).
const BLOCKLIST: &[&str] = &["libc", "libgcc", "pthread", "vdso"];

/// What `profile` was asked: `[SECONDS] [--hz N] [--thread NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// How long to sample.
    pub seconds: f64,
    /// Samples per second of CPU time.
    pub hz: u32,
    /// Only the threads of this name.
    pub thread: Option<String>,
}

const USAGE: &str = "Usage: profile [SECONDS] [--hz N] [--thread NAME]";

impl Request {
    /// Parses the command's arguments.
    pub fn parse(args: &str) -> Result<Request, PluginError> {
        let mut request = Request {
            seconds: 10.0,
            hz: 100,
            thread: None,
        };
        let mut words = args.split_whitespace();
        let mut seconds_given = false;
        while let Some(word) = words.next() {
            match word {
                "--hz" | "--thread" => {
                    let Some(value) = words.next() else {
                        return Err(PluginError::new(format!("{word} needs a value. {USAGE}")));
                    };
                    if word == "--thread" {
                        request.thread = Some(value.to_owned());
                        continue;
                    }
                    request.hz = value
                        .parse()
                        .ok()
                        .filter(|hz| (1..=1000).contains(hz))
                        .ok_or_else(|| {
                            PluginError::new(format!("--hz takes 1 to 1000 (got '{value}')"))
                        })?;
                }
                "--idle" => {
                    return Err(PluginError::new(
                        "--idle: a native profile samples CPU time (SIGPROF), so threads that \
                         wait are never in it",
                    ));
                }
                _ if !seconds_given && !word.starts_with('-') => {
                    request.seconds = word
                        .parse()
                        .ok()
                        .filter(|s: &f64| *s > 0.0 && *s <= 3600.0)
                        .ok_or_else(|| {
                            PluginError::new(format!(
                                "'{word}' is not a number of seconds from 0 to 3600. {USAGE}"
                            ))
                        })?;
                    seconds_given = true;
                }
                _ => {
                    return Err(PluginError::new(format!(
                        "unknown argument '{word}'. {USAGE}"
                    )));
                }
            }
        }
        Ok(request)
    }
}

/// Samples as `request` says, reporting to `progress` each second and
/// stopping early when it asks: the stacks, and the seconds it took.
pub fn sample(request: &Request, progress: &Progress) -> Result<(Samples, f64), PluginError> {
    let _claim = super::claim()?;
    sigprof_is_free()?;
    run(request, progress)
}

fn run(request: &Request, progress: &Progress) -> Result<(Samples, f64), PluginError> {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(i32::try_from(request.hz).unwrap_or(100))
        .blocklist(BLOCKLIST)
        .build();
    let guard = match guard {
        Ok(guard) => guard,
        Err(err) => {
            give_sigprof_back();
            return Err(PluginError::new(format!(
                "cannot start the profiler: {err}"
            )));
        }
    };
    let started = Instant::now();
    let total = Duration::from_secs_f64(request.seconds);
    let mut reported = 0;
    while started.elapsed() < total && !progress.stop_requested() {
        let left = total.saturating_sub(started.elapsed());
        std::thread::sleep(left.min(Duration::from_millis(100)));
        let elapsed = started.elapsed().as_secs();
        if elapsed > reported {
            reported = elapsed;
            progress.report(&format!("profiling: {elapsed} s of {}", request.seconds));
        }
    }
    let took = started.elapsed().as_secs_f64();
    let report = guard.report().build();
    // Disarms the timer, then sets SIGPROF to SIG_IGN (which discards one
    // still pending); the default goes back after.
    drop(guard);
    give_sigprof_back();
    let report =
        report.map_err(|err| PluginError::new(format!("cannot read the profile: {err}")))?;
    let mut samples = Samples::default();
    let mut places: HashMap<(String, String, Option<u32>), u32> = HashMap::new();
    let mut functions: HashMap<String, u64> = HashMap::new();
    let mut stack = Vec::new();
    for (frames, count) in &report.data {
        if request
            .thread
            .as_ref()
            .is_some_and(|wanted| *wanted != frames.thread_name)
        {
            continue;
        }
        stack.clear();
        // The innermost frames are the sampler's own unwinding.
        let own = frames
            .frames
            .iter()
            .take_while(|frame| frame.iter().all(|symbol| is_sampler(&symbol.name())))
            .count();
        // Outermost first; a frame's inlined functions innermost first.
        for frame in frames.frames[own..].iter().rev() {
            for symbol in frame.iter().rev() {
                let name = symbol.name();
                let file = symbol.filename().into_owned();
                let key = (name, file, symbol.lineno);
                let at = match places.get(&key) {
                    Some(&at) => at,
                    None => {
                        let next = functions.len() as u64;
                        let function_id = *functions.entry(key.0.clone()).or_insert(next);
                        let at = samples.add_place(Place {
                            function_id,
                            function: key.0.clone(),
                            file: key.1.clone(),
                            first_line: None,
                            line: key.2.map(i64::from),
                        });
                        places.insert(key, at);
                        at
                    }
                };
                stack.push(at);
            }
        }
        samples.count(&stack, u64::try_from(*count).unwrap_or(0));
    }
    Ok((samples, took))
}

/// True for the functions that unwind a sample, not the program's.
fn is_sampler(name: &str) -> bool {
    ["pprof::", "<pprof::", "backtrace::", "<backtrace::"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// Refuses when SIGPROF or the profiling timer is already someone's.
fn sigprof_is_free() -> Result<(), PluginError> {
    // SAFETY: reads the disposition and the timer into zeroed structs.
    let (action, timer) = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGPROF, std::ptr::null(), &mut action);
        let mut timer: libc::itimerval = std::mem::zeroed();
        libc::getitimer(libc::ITIMER_PROF, &mut timer);
        (action, timer)
    };
    if action.sa_sigaction != libc::SIG_DFL {
        return Err(PluginError::new(
            "this program handles or ignores SIGPROF itself (a profiler of its own?); \
             ispyd's profile needs that signal, so it is refused",
        ));
    }
    if timer.it_value.tv_sec != 0 || timer.it_value.tv_usec != 0 {
        return Err(PluginError::new(
            "this program runs a profiling timer (ITIMER_PROF) of its own; ispyd's profile \
             needs it, so it is refused",
        ));
    }
    Ok(())
}

/// SIGPROF's default disposition, as it was before the profile.
fn give_sigprof_back() {
    // SAFETY: installs SIG_DFL with an empty mask: plain data.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGPROF, &action, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_that_uses_sigprof_itself_is_refused_and_keeps_its_disposition() {
        extern "C" fn its_own(_: libc::c_int) {}
        // SAFETY: installs and later removes a handler that does nothing;
        // no other test of this binary touches SIGPROF.
        let previous =
            unsafe { libc::signal(libc::SIGPROF, its_own as *const () as libc::sighandler_t) };
        let refused = sample(&Request::parse("1").unwrap(), &Progress::new()).unwrap_err();
        // SAFETY: reads the disposition back, then restores the one before.
        let kept = unsafe { libc::signal(libc::SIGPROF, previous) };
        assert!(
            refused.message().contains("handles or ignores SIGPROF"),
            "{refused}"
        );
        assert_eq!(
            kept, its_own as *const () as libc::sighandler_t,
            "its handler stays"
        );
    }

    #[test]
    fn arguments_parse_and_bad_ones_are_explained() {
        assert_eq!(
            Request::parse("2 --hz 500 --thread hasher").unwrap(),
            Request {
                seconds: 2.0,
                hz: 500,
                thread: Some("hasher".into())
            }
        );
        assert_eq!(Request::parse("").unwrap().seconds, 10.0);
        for (args, message) in [
            ("--hz 0", "1 to 1000"),
            ("--hz", "needs a value"),
            ("soon", "not a number of seconds"),
            ("1 2", "unknown argument"),
            ("--idle", "CPU time"),
        ] {
            let err = Request::parse(args).unwrap_err();
            assert!(err.message().contains(message), "{args}: {err}");
        }
    }
}
