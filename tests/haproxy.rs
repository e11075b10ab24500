//! End to end behind HAProxy (CI installs Debian's; elsewhere the test says it skipped): the
//! shipped `config/haproxy.cfg` in front of two percore processes speaking the PROXY
//! protocol; both serve, then one is stopped with SIGTERM in the middle of a keep-alive load
//! and no request is lost.

#[path = "common/clients.rs"]
mod clients;
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use clients::{keep_alive_client, new_connection_client, Load, StopOnDrop};
use common::{KillOnDrop, Percore, TempDir};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// HAProxy's view of one server of the `percore` backend, from `show stat`.
#[derive(Debug)]
struct Backend {
    /// `UP`, `DOWN`, `MAINT`, `UP 1/2` (going up)…
    status: String,
    /// Responses with a 2xx status it returned to clients (health checks not counted).
    answered_2xx: u64,
}

/// `show stat` on HAProxy's stats socket: the servers of the `percore` backend by name.
fn backends(socket: &Path) -> Vec<(String, Backend)> {
    let mut stream = UnixStream::connect(socket).expect("HAProxy's stats socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(b"show stat\n").unwrap();
    let mut csv = String::new();
    stream
        .read_to_string(&mut csv)
        .expect("HAProxy answers on its stats socket");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines
        .next()
        .and_then(|l| l.strip_prefix("# "))
        .unwrap_or_else(|| panic!("no CSV header in {csv:?}"))
        .split(',')
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|&c| c == name)
            .unwrap_or_else(|| panic!("no {name} column in {header:?}"))
    };
    let (proxy, server, status, answered) = (
        column("pxname"),
        column("svname"),
        column("status"),
        column("hrsp_2xx"),
    );
    lines
        .map(|l| l.split(',').collect::<Vec<&str>>())
        .filter(|f| f.len() == header.len() || f.len() == header.len() + 1)
        .filter(|f| f[proxy] == "percore" && f[server] != "BACKEND")
        .map(|f| {
            (
                f[server].to_string(),
                Backend {
                    status: f[status].to_string(),
                    answered_2xx: f[answered].parse().unwrap_or(0),
                },
            )
        })
        .collect()
}

/// Requests to `/echo` in an access log.
fn echo_lines(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("GET /echo?name="))
        .count()
}

#[test]
fn stopping_one_instance_behind_haproxy_loses_no_request() {
    if !common::require(
        common::have_tool("haproxy", &["-v"]),
        "haproxy is not installed (apt-get install haproxy): this test did not run",
    ) {
        return;
    }
    let dir = TempDir::new("haproxy");
    // Each instance keeps an access log: its own record of what it served.
    let spawn = |name: &str| {
        let config = dir.write(
            &format!("{name}.toml"),
            format!(
                "[server]\nproxy_protocol = true\ndrain_idle_grace_ms = 1000\n\n\
                 [report]\ninterval_ms = 0\n\n[log]\naccess = {:?}\n",
                dir.0.join(format!("{name}.log")).display().to_string()
            ),
        );
        Percore::spawn(&[
            "--config",
            config.to_str().unwrap(),
            "--port",
            "0",
            "--workers",
            "1",
        ])
    };
    let mut first = spawn("first");
    let mut second = spawn("second");
    let port = |p: &Percore| p.addr.rsplit(':').next().unwrap().to_string();
    let front = free_port();
    let socket = dir.0.join("haproxy.sock");
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/haproxy.cfg"))
            .unwrap();
    let cfg = shipped
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{front}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{}", port(&first)))
        .replace("127.0.0.1:8082", &format!("127.0.0.1:{}", port(&second)))
        .replacen(
            "\nglobal\n",
            &format!("\nglobal\n    stats socket {} mode 600\n", socket.display()),
            1,
        );
    for (wanted, what) in [
        (format!("127.0.0.1:{front}"), "the front address"),
        (format!("127.0.0.1:{}", port(&first)), "the first server"),
        (format!("127.0.0.1:{}", port(&second)), "the second server"),
        (
            format!("stats socket {}", socket.display()),
            "the stats socket",
        ),
    ] {
        assert!(
            cfg.contains(&wanted),
            "{what} not set in the shipped file: {cfg}"
        );
    }
    let cfg_path = dir.write("haproxy.cfg", cfg);
    let haproxy_log = std::fs::File::create(dir.0.join("haproxy.out")).unwrap();
    let mut haproxy = KillOnDrop(
        Command::new("haproxy")
            .args(["-db", "-f", cfg_path.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(haproxy_log.try_clone().unwrap())
            .stderr(haproxy_log)
            .spawn()
            .unwrap(),
    );
    let haproxy_said = || std::fs::read_to_string(dir.0.join("haproxy.out")).unwrap_or_default();
    let mut alive = || match haproxy.0.try_wait().unwrap() {
        None => true,
        Some(status) => panic!("HAProxy exited with {status}: {}", haproxy_said()),
    };

    // Both instances up in HAProxy's eyes: its health checks (GET /healthz through the
    // PROXY protocol) passed twice on each.
    common::wait_until("both backends are up", Duration::from_secs(30), || {
        alive()
            && socket.exists()
            && backends(&socket)
                .iter()
                .filter(|(_, b)| b.status == "UP")
                .count()
                == 2
    });
    let listed: Vec<String> = backends(&socket).into_iter().map(|(n, _)| n).collect();
    assert_eq!(listed, ["percore1", "percore2"]);

    let addr = SocketAddr::from(([127, 0, 0, 1], front));
    let load = Load::new();
    let _stop = StopOnDrop(load.clone());
    let clients = [
        keep_alive_client(addr, load.clone()),
        keep_alive_client(addr, load.clone()),
        new_connection_client(addr, load.clone()),
    ];
    // Round robin: both instances answer the load before one is stopped.
    load.wait_for_answers(200, "the load through HAProxy");
    common::wait_until(
        "both backends answered clients",
        Duration::from_secs(30),
        || alive() && backends(&socket).iter().all(|(_, b)| b.answered_2xx > 0),
    );

    first.stop_with(libc::SIGTERM);
    // HAProxy saw it go (503 from /healthz while it drained, then refused connections)…
    common::wait_until(
        "the stopped backend is down",
        Duration::from_secs(30),
        || {
            alive()
                && backends(&socket)
                    .iter()
                    .any(|(name, b)| name == "percore1" && b.status.starts_with("DOWN"))
        },
    );
    // …and the load goes on, on the second alone.
    let answered_by_second = || {
        backends(&socket)
            .into_iter()
            .find(|(name, _)| name == "percore2")
            .unwrap()
            .1
            .answered_2xx
    };
    let before = answered_by_second();
    load.wait_for_answers(200, "the load after one instance stopped");
    assert!(answered_by_second() > before);
    load.stop();
    let mut total = 0;
    for client in clients {
        let tally = client.join().unwrap();
        assert!(
            tally.failures.is_empty(),
            "{} failures, the first: {:?}",
            tally.failures.len(),
            &tally.failures[..tally.failures.len().min(5)]
        );
        assert!(tally.ok > 0);
        total += tally.ok;
    }
    assert!(alive());
    drop(haproxy);
    second.stop_with(libc::SIGTERM);
    // Each instance's own log shows it served the load, not just the health checks.
    let (by_first, by_second) = (
        echo_lines(&dir.0.join("first.log")),
        echo_lines(&dir.0.join("second.log")),
    );
    assert!(
        by_first > 0 && by_second > 0,
        "requests logged by the first instance: {by_first}, by the second: {by_second}"
    );
    assert!(
        by_first + by_second >= total as usize,
        "{by_first} + {by_second} requests logged, {total} answered"
    );
    eprintln!(
        "{total} requests through HAProxy ({by_first} served by the instance stopped, \
         {by_second} by the other), none lost"
    );
}
