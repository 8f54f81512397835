//! The security model, checked against the real demo process: socket
//! permissions, peer credentials, never stealing a live socket, replacing a
//! stale one, loopback-only TCP, and clear start-up errors.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::process::Command;

use common::{Demo, run_with_input, set_mode, shared_tempdir, stderr, stdout, wait_for};

/// Checks that user `nobody` was told why it was refused, and got no prompt.
fn assert_nobody_refused(output: &std::process::Output, over: &str) {
    let text = stdout(output);
    assert!(
        text.starts_with("*** ispyd: uid 65534 may not inspect this process; only root may.\n"),
        "{over}: {text:?} / {}",
        stderr(output)
    );
    assert!(
        !text.contains("(ispyd:"),
        "{over}: a refused peer got a prompt: {text}"
    );
}

/// Connects to `address` (a socat address: `UNIX-CONNECT:PATH`,
/// `TCP:HOST:PORT`) as user `nobody` with socat. With no input, socat only
/// reads (`-u`), so it shows what the server says before closing.
fn as_nobody_socat(address: &str, input: &[u8]) -> std::process::Output {
    let mut command = Command::new("setpriv");
    command.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "socat",
    ]);
    if input.is_empty() {
        command.args(["-u", address, "-"]);
    } else {
        command.args(["-", address]);
    }
    run_with_input(command, input)
}

/// The socat address of the UNIX socket `path`.
fn unix(path: &std::path::Path) -> String {
    format!("UNIX-CONNECT:{}", path.display())
}

#[test]
fn unix_socket_is_created_with_mode_0600() {
    let demo = Demo::start("");
    let mode = std::fs::metadata(demo.socket())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
}

#[test]
fn other_user_is_stopped_by_the_socket_permissions() {
    let demo = Demo::start("");
    let output = as_nobody_socat(&unix(demo.socket()), b"shell process\npid\n");
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("Permission denied"),
        "{}",
        stderr(&output)
    );
    assert!(!stdout(&output).contains(&demo.pid.to_string()));
}

#[test]
fn other_user_is_refused_by_peer_credentials_even_if_the_file_is_opened_up() {
    let demo = Demo::start("");
    set_mode(demo.socket(), 0o666);
    assert_nobody_refused(
        &as_nobody_socat(&unix(demo.socket()), b""),
        "the UNIX socket",
    );
    demo.assert_responsive();
}

#[test]
fn another_user_on_loopback_tcp_is_refused_as_on_a_unix_socket() {
    let demo = Demo::start_tcp();
    let port = demo.port.unwrap();
    for address in [
        format!("TCP4:127.0.0.1:{port}"),
        format!("TCP:localhost:{port}"),
    ] {
        assert_nobody_refused(&as_nobody_socat(&address, b""), &address);
    }
    // The owner (root here) still gets in over the same port.
    let mut own = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Write::write_all(&mut own, b"exit\n").unwrap();
    let mut greeting = String::new();
    std::io::Read::read_to_string(&mut own, &mut greeting).unwrap();
    assert!(greeting.contains("(ispyd:"), "{greeting:?}");
}

#[test]
fn live_socket_is_never_stolen() {
    let dir = shared_tempdir();
    let listen = format!("listen = {}/fixed.sock", dir.path().display());
    let first = Demo::start_with(dir.path(), &listen);
    let socket = dir.path().join("fixed.sock");
    wait_for(|| socket.exists(), "the first demo's socket");
    let mut first = first;
    first.socket = Some(socket.clone());

    let mut second = Demo::start_with(dir.path(), &listen);
    let output = second.stop_after_exit();
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains(&socket.display().to_string()) && message.contains("in use"),
        "{message}"
    );
    first.assert_responsive();
}

#[test]
fn stale_socket_is_replaced() {
    let dir = shared_tempdir();
    let socket = dir.path().join("fixed.sock");
    drop(UnixListener::bind(&socket).unwrap());
    assert!(socket.exists(), "a dropped std listener leaves its file");
    let mut demo = Demo::start_with(dir.path(), &format!("listen = {}", socket.display()));
    demo.socket = Some(socket.clone());
    wait_for(
        || std::os::unix::net::UnixStream::connect(&socket).is_ok(),
        "the demo to take over the stale socket",
    );
    demo.assert_responsive();
}

#[test]
fn tcp_on_a_public_address_needs_allow_remote() {
    let dir = shared_tempdir();
    let mut demo = Demo::start_with(dir.path(), "listen = 0.0.0.0:1");
    let output = demo.stop_after_exit();
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains("[ispyd] listen") && message.contains("allow_remote"),
        "{message}"
    );
}

#[test]
fn bad_configuration_names_file_section_and_key() {
    let dir = shared_tempdir();
    let mut demo = Demo::start_with(dir.path(), "listen = /tmp/x.sock\nmax_sessions = lots");
    let output = demo.stop_after_exit();
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains(".ini: [ispyd] max_sessions: 'lots' is not a whole number"),
        "{message}"
    );
}

#[test]
fn unknown_key_is_reported_at_start_up() {
    let dir = shared_tempdir();
    let demo = Demo::start_with(
        dir.path(),
        &format!("listen = {}/w.sock\nmax_session = 3", dir.path().display()),
    );
    let socket = dir.path().join("w.sock");
    wait_for(|| socket.exists(), "the demo's socket");
    let mut demo = demo;
    let output = demo.stop();
    let message = stderr(&output);
    assert!(
        message.contains("ispyd: warning: ")
            && message.contains("[ispyd] max_session: unknown key"),
        "{message}"
    );
}

#[test]
fn another_user_is_told_the_socket_folder_cannot_be_read_and_why() {
    // The sockets in a 0700 folder of the program's user, the client
    // configuration where anyone can read it.
    let shared = shared_tempdir();
    let private = shared.path().join("private");
    std::fs::create_dir(&private).unwrap();
    let listen = format!("listen = {}/ispyd-%(pid)s.sock", private.display());
    let demo = Demo::start_with(&private, &listen);
    wait_for(
        || private.join(format!("ispyd-{}.sock", demo.pid)).exists(),
        "the demo's socket",
    );
    set_mode(&private, 0o700);
    let config = shared.path().join("client.ini");
    std::fs::write(&config, format!("[ispyd]\n{listen}\n")).unwrap();
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(common::ispy_bin())
        .arg(&config);
    let output = run_with_input(command, b"servers\n");
    assert!(
        stdout(&output).contains("No servers to connect to."),
        "{}",
        stdout(&output)
    );
    let said = stderr(&output);
    assert!(
        said.contains(&format!(
            "cannot read {} (owner uid {}, mode 0700)",
            private.display(),
            // SAFETY: geteuid has no preconditions.
            unsafe { libc::geteuid() }
        )),
        "{said}"
    );
    assert!(said.contains("Permission denied"), "{said}");
}

#[test]
fn environ_masks_values_that_look_secret_until_revealed() {
    let demo = Demo::start_env(
        "",
        &[
            ("DEMO_API_TOKEN", "tok-7f3a9c"),
            ("DATABASE_URL", "postgres://app:pw-4f1e@db.internal/app"),
            ("DEMO_PLAIN", "nothing to hide"),
        ],
    );
    let socket = demo.socket().display().to_string();
    let masked = stdout(&common::ispy_piped(
        &socket,
        "connect\nshell process\nenviron\n",
    ));
    assert!(
        !masked.contains("tok-7f3a9c") && !masked.contains("pw-4f1e"),
        "{masked}"
    );
    assert!(
        masked.contains("DEMO_API_TOKEN = ******** (masked)\n"),
        "{masked}"
    );
    assert!(
        masked.contains(
            "DATABASE_URL = 'postgres://app:********@db.internal/app' (password masked)\n"
        ),
        "{masked}"
    );
    assert!(
        masked.contains("DEMO_PLAIN = 'nothing to hide'\n"),
        "{masked}"
    );
    assert!(
        masked.contains("'environ --reveal' shows them."),
        "{masked}"
    );

    let revealed = stdout(&common::ispy_piped(
        &socket,
        "connect\nshell process\nenviron --reveal\n",
    ));
    assert!(
        revealed.contains("DEMO_API_TOKEN = 'tok-7f3a9c'\n"),
        "{revealed}"
    );
    assert!(
        revealed.contains("DATABASE_URL = 'postgres://app:pw-4f1e@db.internal/app'\n"),
        "{revealed}"
    );

    let json = common::ispy(&[&socket, "--json", "-c", "shell process", "-c", "environ"]);
    let data = stdout(&json);
    let environ = data.lines().last().unwrap_or_default();
    let environ: serde_json::Value = serde_json::from_str(environ).expect("a JSON line");
    assert_eq!(
        environ["data"]["environ"]["DEMO_API_TOKEN"], "********",
        "{data}"
    );
    assert_eq!(
        environ["data"]["masked"],
        serde_json::json!(["DATABASE_URL", "DEMO_API_TOKEN"])
    );
    assert!(data.contains("\"masked\""), "{data}");
}

/// An IPv4 address of this machine that is not loopback (a peer connecting
/// to it is "on another machine" as far as the address tells), from
/// getifaddrs(3). A machine with none cannot run the test: it says so.
fn own_non_loopback_ipv4() -> std::net::Ipv4Addr {
    let mut found = None;
    // SAFETY: getifaddrs fills a list that is read while it lives and
    // freed once with freeifaddrs; each ifa_addr is checked for null and
    // read as sockaddr_in only when its family says AF_INET.
    unsafe {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        assert_eq!(libc::getifaddrs(&mut list), 0, "getifaddrs failed");
        let mut at = list;
        while !at.is_null() {
            let addr = (*at).ifa_addr;
            if !addr.is_null() && i32::from((*addr).sa_family) == libc::AF_INET {
                let v4 = &*(addr as *const libc::sockaddr_in);
                let ip = std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
                if !ip.is_loopback() && found.is_none() {
                    found = Some(ip);
                }
            }
            at = (*at).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found.expect(
        "this machine has no non-loopback IPv4 address to reach the demo from 'another machine'",
    )
}

/// Runs `input` in text mode over TCP from `from` to `to:port`, and
/// returns everything the server said.
fn tcp_session(to: std::net::IpAddr, port: u16, input: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect((to, port)).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    stream.write_all(input.as_bytes()).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut said = String::new();
    stream.read_to_string(&mut said).expect("read the session");
    said
}

#[test]
fn a_peer_from_another_address_gets_gated_commands_only_with_allow_remote_gated() {
    let ip = own_non_loopback_ipv4();
    for allowed in [false, true] {
        let dir = shared_tempdir();
        let port = common::free_port();
        let mut demo = Demo::start_with(
            dir.path(),
            &format!(
                "listen = 0.0.0.0:{port}\nallow_remote = true\nallow_remote_gated = {allowed}\n\n\
                 [demo:reset]\nenabled = true"
            ),
        );
        wait_for(
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "the demo's TCP port to accept",
        );
        let input = "shell demo\nreset\nstats\nexit\nexit\n";
        let remote = tcp_session(ip.into(), port, input);
        let local = tcp_session([127, 0, 0, 1].into(), port, input);
        assert!(
            local.contains("counters reset"),
            "loopback, allowed = {allowed}: {local}"
        );
        if allowed {
            assert!(remote.contains("counters reset"), "{remote}");
        } else {
            assert!(
                remote.contains("not available over a remote connection")
                    && remote.contains("allow_remote_gated")
                    && !remote.contains("counters reset"),
                "{remote}"
            );
            assert!(
                remote.contains("hashed bytes"),
                "ungated commands still work remotely: {remote}"
            );
        }
        let stopped = demo.stop();
        let warned = stderr(&stopped);
        assert!(
            warned.contains("0.0.0.0"),
            "a non-loopback listen warns at start-up: {warned}"
        );
    }
}
