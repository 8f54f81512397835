//! `profile` in the process plugin, on the demo: the hasher's function is
//! in it, the files reach ispy (or, for a text-mode client, the socket's
//! folder), a second profile at once is refused, and no SIGPROF handler
//! is there before or after — only while it runs.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Demo, Text, ispy_bin, stdout, wait_for};

/// SIGPROF's bit in `/proc/PID/status` signal masks.
const SIGPROF_BIT: u64 = 1 << (libc::SIGPROF - 1);

/// The demo's `SigCgt` / `SigIgn` / `SigBlk` masks.
fn signal_masks(pid: u32) -> [u64; 3] {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    ["SigCgt:", "SigIgn:", "SigBlk:"].map(|key| {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        u64::from_str_radix(line[key.len()..].trim(), 16).unwrap()
    })
}

/// `ispy --out DIR SOCKET -c 'shell process' -c 'profile ARGS'`, started.
fn profile(demo: &Demo, out: &Path, args: &str) -> std::process::Child {
    Command::new(ispy_bin())
        .arg("--out")
        .arg(out)
        .arg(demo.socket())
        .args(["-c", "shell process", "-c", &format!("profile {args}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The paths ispy says it saved.
fn saved(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| line.strip_prefix("saved "))
        .map(|rest| PathBuf::from(rest.rsplit_once(" (").unwrap().0))
        .collect()
}

#[test]
fn the_hashers_function_is_in_the_profile_and_sigprof_is_untouched_before_and_after() {
    let demo = Demo::start("");
    let out = tempfile::tempdir().unwrap();
    let before = signal_masks(demo.pid);
    assert_eq!(before[0] & SIGPROF_BIT, 0, "no SIGPROF handler before");
    let first = profile(&demo, out.path(), "3 --hz 1000");
    // While it runs, SIGPROF is caught: the check below could fail.
    wait_for(
        || signal_masks(demo.pid)[0] & SIGPROF_BIT != 0,
        "the profile's SIGPROF handler",
    );
    let second = profile(&demo, out.path(), "1").wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("a profile is already running"),
        "{second:?}"
    );
    let first = first.wait_with_output().unwrap();
    let text = stdout(&first);
    assert!(first.status.success(), "{first:?}");
    assert_eq!(
        signal_masks(demo.pid),
        before,
        "SIGPROF given back as it was"
    );

    let header = text.lines().next().unwrap();
    assert!(
        header.starts_with(&format!("Profile of pid {}: ", demo.pid)),
        "{text}"
    );
    let files = saved(&text);
    assert_eq!(files.len(), 2, "{text}");
    let read = |ext: &str| {
        let path = files
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == ext));
        std::fs::read_to_string(path.unwrap()).unwrap()
    };
    let (folded, svg) = (read("folded"), read("svg"));
    let count = |line: &str| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
    let samples: u64 = folded.lines().map(count).sum();
    let hashing: u64 = folded
        .lines()
        .filter(|line| line.contains("fnv1a_hash"))
        .map(count)
        .sum();
    assert!(samples > 0 && svg.contains("fnv1a_hash"), "{text}");
    // Demangled (`demo::` or `demo_mio::`, whichever engine's demo runs), and a real
    // share of the CPU the demo uses.
    assert!(folded.contains("::demo_app::fnv1a_hash"), "{folded}");
    assert!(hashing * 20 >= samples, "{hashing} of {samples}: {folded}");
    assert!(
        !folded.contains("pprof::"),
        "the sampler's own frames are left out"
    );
    for file in &files {
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }
}

#[test]
fn a_text_mode_client_gets_the_files_beside_the_socket() {
    let demo = Demo::start("");
    let mut text = Text::new(UnixStream::connect(demo.socket()).unwrap());
    text.send("shell process\nprofile 1 --hz 1000\n");
    let reply = text.read_until("Folded stacks: ");
    let rest = text.read_until("\n");
    assert!(reply.contains("Flame graph: "), "{reply}");
    let folded = PathBuf::from(rest.trim());
    assert_eq!(folded.parent(), demo.socket().parent());
    let mode = std::fs::metadata(&folded).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        std::fs::read_to_string(&folded)
            .unwrap()
            .contains("::demo_app::")
    );
}
