//! Reloading the configuration on SIGHUP, through the real binary: new cores start with the
//! new file while the old ones drain, and clients that keep going meanwhile lose nothing.

#[path = "common/clients.rs"]
mod clients;
mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use clients::{keep_alive_client, new_connection_client, status_of, Load, StopOnDrop};
use common::Percore;

/// A configuration file for one test, rewritten between reloads.
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn new(name: &str) -> ConfigFile {
        let path =
            std::env::temp_dir().join(format!("percore-reload-{}-{name}.toml", std::process::id()));
        ConfigFile(path)
    }

    /// Writes a file serving on `port` with statistics at `stats`.
    fn write(&self, port: u16, stats: &str) {
        let text = format!(
            "[server]\nport = {port}\ncores = [0]\ndrain_idle_grace_ms = 500\n\n\
             [report]\ninterval_ms = 0\nstats_path = \"{stats}\"\n"
        );
        std::fs::write(&self.0, text).unwrap();
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The server's note on the reload just asked for: the next line on its stderr that is about
/// SIGHUP (others, such as rate-limited error lines, are passed over); fails the test if
/// none comes within `EXIT_WAIT`.
fn reload_note(server: &Percore) -> String {
    server
        .stderr
        .find("the note on the reload", |line| line.contains("SIGHUP"))
}

fn hup(server: &Percore) {
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
}

/// Waits until `GET path` answers `status`.
fn wait_for(addr: SocketAddr, path: &str, status: u16) {
    common::wait_until(
        &format!("{path} answers {status}"),
        Duration::from_secs(20),
        || status_of(addr, path) == status,
    );
}

/// Three reloads in a row, each with a changed file, under a keep-alive client and a client
/// opening a connection per request: every request answered in full, none failed or reset.
#[test]
fn reloads_under_load_lose_no_request() {
    let file = ConfigFile::new("load");
    file.write(0, "/stats-0");
    // Port 0 in the file: the reloads keep the port the first start picked.
    let mut server = Percore::spawn(&["--config", file.path()]);
    let addr: SocketAddr = server.addr.parse().unwrap();
    let load = Load::new();
    let _stop = StopOnDrop(load.clone());
    let clients = [
        keep_alive_client(addr, load.clone()),
        new_connection_client(addr, load.clone()),
    ];
    load.wait_for_answers(50, "the clients run before the first reload");
    for round in 1..=3 {
        let stats = format!("/stats-{round}");
        file.write(0, &stats);
        hup(&server);
        let note = reload_note(&server);
        assert!(note.contains("SIGHUP: reloaded"), "{note}");
        wait_for(addr, &stats, 200);
        // The old cores are told to drain just after the new ones serve, and accept on the
        // shared socket until they see it: their path answers 404 once they have stopped.
        wait_for(addr, &format!("/stats-{}", round - 1), 404);
        // The clients go on, served by the new cores, before the next reload.
        load.wait_for_answers(100, "the clients run on after the reload");
    }
    load.stop();
    let mut total = 0;
    for client in clients {
        let tally = client.join().unwrap();
        assert!(tally.failures.is_empty(), "failures: {:?}", tally.failures);
        assert!(tally.ok > 0);
        total += tally.ok;
    }
    eprintln!("{total} requests through 3 reloads, none lost");
    server.stop_with(libc::SIGTERM);
}

/// A file that does not load leaves the server on its previous configuration.
#[test]
fn a_broken_file_keeps_the_previous_configuration() {
    let file = ConfigFile::new("broken");
    file.write(0, "/stats-old");
    let mut server = Percore::spawn(&["--config", file.path()]);
    let addr: SocketAddr = server.addr.parse().unwrap();
    std::fs::write(&file.0, "[server]\nportt = 1\n").unwrap();
    hup(&server);
    let note = reload_note(&server);
    assert!(note.contains("not reloaded"), "{note}");
    assert!(note.contains("portt"), "{note}");
    assert_eq!(status_of(addr, "/stats-old"), 200);
    assert_eq!(status_of(addr, "/echo?name=x"), 200);
    server.stop_with(libc::SIGTERM);
}

/// A reload that changes the port serves on the new one and stops on the old.
#[test]
fn a_reload_can_move_to_another_port() {
    let file = ConfigFile::new("port");
    file.write(0, "/stats");
    let mut server = Percore::spawn(&["--config", file.path()]);
    let old: SocketAddr = server.addr.parse().unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    file.write(port, "/stats");
    hup(&server);
    let note = reload_note(&server);
    assert!(note.contains(&format!("127.0.0.1:{port}")), "{note}");
    let new = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(status_of(new, "/echo?name=x"), 200);
    common::wait_until(
        "the old port is no longer served",
        Duration::from_secs(20),
        || TcpStream::connect(old).is_err(),
    );
    server.stop_with(libc::SIGTERM);
}
