//! Start-up errors and signals, through the real binary.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{output_within, KillOnDrop, Lines, Percore, EXIT_WAIT};

const BIN: &str = env!("CARGO_BIN_EXE_percore");

/// Runs the binary expecting a start-up failure; returns its stderr.
fn fails(args: &[&str]) -> String {
    let output = output_within(Command::new(BIN).args(args), EXIT_WAIT);
    assert!(!output.status.success(), "{args:?} should fail");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line, got: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn temp_config(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("percore-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn unknown_key_names_the_key_and_the_file() {
    let path = temp_config("unknown", "[server]\nport = 0\nworkerz = 3\n");
    let stderr = fails(&["--config", path.to_str().unwrap()]);
    assert!(stderr.contains("workerz"), "{stderr}");
    assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
}

/// A value of the wrong type names its file, line and key (as `nginx -t` names the
/// directive), in every table, at start-up and in check mode alike.
#[test]
fn a_wrong_type_names_the_file_the_line_and_the_key() {
    let cases = [
        (
            "[server]\nport = \"eighty\"\n",
            "line 2: server.port: invalid type: string \"eighty\", expected u16",
        ),
        (
            "[http]\nmax_headers = true\n",
            "line 2: http.max_headers: invalid type: boolean `true`",
        ),
        ("[report]\n\ninterval_ms = \"1s\"\n", "line 3: report.interval_ms: "),
        ("[runtime]\nrecv_buffers = 1.5\n", "line 2: runtime.recv_buffers: "),
        ("[static]\nroot = 7\n", "line 2: static.root: "),
        ("[log]\nformat = [1]\n", "line 2: log.format: "),
        (
            "[tls]\nport = 8443\ncertificate = \"c.pem\"\nprivate_key = false\n",
            "line 4: tls.private_key: ",
        ),
        (
            "[tls]\nport = 1\ncertificate = \"c\"\nprivate_key = \"k\"\n[[tls.sni]]\nnames = \"a\"\n",
            "line 6: tls.sni[0].names: ",
        ),
    ];
    for (i, (text, expected)) in cases.into_iter().enumerate() {
        let path = temp_config(&format!("type-{i}"), text);
        let file = path.to_str().unwrap();
        let started = fails(&["--config", file]);
        let (ok, _, checked) = check(&["--config", file]);
        let _ = std::fs::remove_file(&path);
        assert!(!ok, "check mode accepted {text:?}");
        for stderr in [&started, &checked] {
            assert!(
                stderr.contains(&format!("{file} {expected}")),
                "{text:?}: expected {expected:?} in {stderr}"
            );
        }
    }
}

#[test]
fn unavailable_core_lists_the_usable_ones() {
    let usable = percore::internals::format_cores(&percore::internals::usable_cores());
    let stderr = fails(&["--port", "0", "--cores", "4000"]);
    assert!(
        stderr.contains(&format!(
            "core 4000 is not available; usable cores: {usable}"
        )),
        "{stderr}"
    );
    let stderr = fails(&["--port", "0", "--workers", "5000"]);
    assert!(stderr.contains("--workers 5000"), "{stderr}");
}

#[test]
fn port_in_use_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let stderr = fails(&["--port", &port, "--workers", "1"]);
    assert!(stderr.contains("already in use"), "{stderr}");
}

#[test]
fn sigterm_after_serving_exits_zero() {
    let mut server = Percore::spawn(&["--port", "0", "--workers", "1"]);
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(b"GET /echo?name=bye HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.ends_with("Hi, bye!"), "{reply}");
    server.stop_with(libc::SIGTERM);
}

/// Runs `percore --check` with `args`; returns (exit success, stdout, stderr).
fn check(args: &[&str]) -> (bool, String, String) {
    let output = output_within(Command::new(BIN).arg("--check").args(args), EXIT_WAIT);
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// `--check` (`-t`) says "configuration ok" for the shipped file and, for each kind of bad
/// input, exits 1 with the one line start-up would print, never serving.
#[test]
fn check_mode_validates_without_serving() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/percore.toml");
    let (ok, stdout, stderr) = check(&["--config", shipped]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "configuration ok\n");
    // `--root ""` turns the shipped file's static root off (its directory need not exist).
    let (ok, stdout, stderr) = check(&["--config", shipped, "--root", ""]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "configuration ok\n");
    // The shipped port may be taken by a running percore: -t still passes beside it.
    let mut running = Percore::spawn(&["--port", "0", "--workers", "1"]);
    let port = running.addr.rsplit(':').next().unwrap().to_string();
    let output = output_within(Command::new(BIN).args(["-t", "--port", &port]), EXIT_WAIT);
    assert!(output.status.success(), "{output:?}");

    let unknown = temp_config("check-unknown", "[server]\nworkerz = 3\n");
    let bad_limit = temp_config("check-limit", "[http]\nmax_headers = 0\n");
    let bad_type = temp_config("check-type", "[server]\nport = \"eighty\"\n");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port().to_string();
    for (args, expected) in [
        (vec!["--config", unknown.to_str().unwrap()], "workerz"),
        (
            vec!["--config", bad_limit.to_str().unwrap()],
            "http.max_headers",
        ),
        (vec!["--config", bad_type.to_str().unwrap()], "line 2"),
        (
            vec!["--config", "/nonexistent/percore.toml"],
            "cannot read config",
        ),
        (vec!["--cores", "4000"], "core 4000 is not available"),
        (
            vec!["--host", "192.0.2.1"],
            "no such address on this machine",
        ),
        (vec!["--port", &taken_port], "already in use"),
        (
            vec!["--root", "/nonexistent/site"],
            "static.root /nonexistent/site",
        ),
    ] {
        let (ok, stdout, stderr) = check(&args);
        assert!(!ok, "{args:?} passed the check");
        assert!(stdout.is_empty(), "{stdout}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("percore: error: "), "{stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    running.stop_with(libc::SIGTERM);
}

/// The PID file appears once the server serves, names it, and goes when it stops.
#[test]
fn pid_file_is_written_while_serving_and_removed_at_exit() {
    let path = std::env::temp_dir().join(format!("percore-{}-test.pid", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut server = Percore::spawn(&[
        "--port",
        "0",
        "--workers",
        "1",
        "--pid-file",
        path.to_str().unwrap(),
    ]);
    let written = std::fs::read_to_string(&path).expect("the PID file exists once serving");
    assert_eq!(written.trim(), server.child.id().to_string());
    server.stop_with(libc::SIGTERM);
    assert!(!path.exists(), "the PID file outlived the server");
}

/// systemd socket activation: the listening socket passed as descriptor 3 with `LISTEN_FDS`
/// and `LISTEN_PID` is the one served (on every core, shared when it lacks SO_REUSEPORT).
#[test]
fn socket_activation_serves_the_passed_socket() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fd = listener.as_raw_fd();
    let workers = percore::internals::usable_cores().len().min(2).to_string();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("export LISTEN_PID=$$ LISTEN_FDS=1; exec \"$0\" --workers \"$1\" --port 9")
        .arg(BIN)
        .arg(&workers)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: only dup2 and fcntl between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // dup2 onto itself would leave close-on-exec set.
            let result = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if result < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = KillOnDrop(command.spawn().unwrap());
    drop(listener);
    let stderr = Lines::new(std::io::BufReader::new(child.0.stderr.take().unwrap()));
    let line = stderr.next("the start-up line");
    // The passed socket wins over the port given (9): systemd's socket is the address.
    assert!(
        line.contains(&format!("listening on http://{addr} ")),
        "{line}"
    );
    for n in 0..20 {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        write!(
            stream,
            "GET /echo?name={n} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        assert!(reply.ends_with(&format!("Hi, {n}!")), "{reply}");
    }
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let status = common::wait_child(&mut child.0, EXIT_WAIT, "exit after SIGTERM");
    assert!(status.success(), "{status}");
}

/// The test helpers leave nothing behind: a `Percore` the test lets go of (as a failing test
/// does) takes its process with it, and a `TestServer` dropped stops serving and closes its
/// connections.
#[test]
fn dropped_test_servers_stop() {
    let server = Percore::spawn(&["--port", "0", "--workers", "1"]);
    let pid = server.child.id();
    drop(server);
    // Killed and reaped: not even a zombie is left.
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "percore (pid {pid}) outlived its Percore"
    );

    let server = common::TestServer::with(|c| c.server.drain_idle_grace_ms = 100);
    let addr = server.addr;
    let mut client = server.client();
    assert_eq!(client.get("/echo?name=x").text(), "Hi, x!");
    // Dropped on a thread: the drain closes the idle connection in order and then waits for
    // the client's side to close too.
    let dropping = std::thread::spawn(move || drop(server));
    assert!(client.is_closed(), "a connection outlived its TestServer");
    drop(client);
    dropping.join().unwrap();
    assert!(TcpStream::connect(addr).is_err(), "still accepting");
}
