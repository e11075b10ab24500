//! End to end behind HAProxy (when it is installed: CI installs Debian's): the shipped
//! `config/haproxy.cfg` in front of two percore processes speaking the PROXY protocol; one is
//! stopped with SIGTERM in the middle of a keep-alive load and no request is lost.

#[path = "common/clients.rs"]
mod clients;
mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clients::{keep_alive_client, new_connection_client, one_request};
use common::Percore;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn stopping_one_instance_behind_haproxy_loses_no_request() {
    if Command::new("haproxy").arg("-v").output().is_err() {
        eprintln!(
            "SKIPPED: haproxy is not installed (apt-get install haproxy); this test did not run"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("percore-haproxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("percore.toml");
    std::fs::write(
        &config,
        "[server]\nproxy_protocol = true\ndrain_idle_grace_ms = 1000\n\n[report]\ninterval_ms = 0\n",
    )
    .unwrap();
    let spawn = || {
        Percore::spawn(&[
            "--config",
            config.to_str().unwrap(),
            "--port",
            "0",
            "--workers",
            "1",
        ])
    };
    let mut first = spawn();
    let mut second = spawn();
    let port = |p: &Percore| p.addr.rsplit(':').next().unwrap().to_string();
    let front = free_port();
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/haproxy.cfg"))
            .unwrap();
    let cfg = shipped
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{front}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{}", port(&first)))
        .replace("127.0.0.1:8082", &format!("127.0.0.1:{}", port(&second)));
    let cfg_path = dir.join("haproxy.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();
    let mut haproxy = Command::new("haproxy")
        .args(["-db", "-f", cfg_path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], front));
    // Both instances up in HAProxy's eyes: a run of answers through it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut good = 0;
    while good < 20 {
        match one_request(addr, good) {
            Ok(()) => good += 1,
            Err(_) => {
                good = 0;
                assert!(Instant::now() < deadline, "HAProxy never served");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    std::thread::sleep(Duration::from_millis(1200));

    let stop = Arc::new(AtomicBool::new(false));
    let clients = [
        keep_alive_client(addr, stop.clone()),
        keep_alive_client(addr, stop.clone()),
        new_connection_client(addr, stop.clone()),
    ];
    std::thread::sleep(Duration::from_millis(700));
    first.stop_with(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for client in clients {
        let tally = client.join().unwrap();
        assert!(
            tally.failures.is_empty(),
            "{} failures, the first: {:?}",
            tally.failures.len(),
            &tally.failures[..tally.failures.len().min(5)]
        );
        total += tally.ok;
    }
    assert!(total > 100, "{total}");
    eprintln!("{total} requests through HAProxy while one of two instances stopped, none lost");
    let _ = haproxy.kill();
    let _ = haproxy.wait();
    second.stop_with(libc::SIGTERM);
    let _ = std::fs::remove_dir_all(&dir);
}
