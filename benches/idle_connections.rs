//! Opens N keep-alive connections to a server, sends one request on each and reads its
//! answer, then holds them all open until stdin closes. benches/load.sh reads the server's
//! RSS meanwhile to get memory per idle connection.
//!
//! `cargo bench --bench idle_connections -- ADDR N`

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(addr) = args.first().map(String::as_str) else {
        // `cargo test --all-targets` runs this target without arguments: nothing to measure.
        println!("usage: cargo bench --bench idle_connections -- ADDR [N]");
        return;
    };
    let count: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(10_000);
    raise_fd_limit(count as u64 + 1024);

    let request = b"GET /echo?name=Abcde HTTP/1.1\r\nHost: bench\r\n\r\n";
    let mut open = Vec::with_capacity(count);
    let mut reply = [0u8; 1024];
    for i in 0..count {
        let mut stream =
            TcpStream::connect(addr).unwrap_or_else(|e| panic!("connection {i} to {addr}: {e}"));
        stream.write_all(request).expect("send");
        let mut got = 0;
        while !reply[..got].ends_with(b"Hi, Abcde!") {
            let n = stream.read(&mut reply[got..]).expect("read");
            assert!(n > 0, "connection {i} closed before its answer");
            got += n;
        }
        open.push(stream);
    }
    println!("holding {} connections", open.len());
    std::io::stdout().flush().unwrap();
    // Wait until the script closes our stdin.
    let mut line = String::new();
    while std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map(|n| n > 0)
        .unwrap_or(false)
    {}
}

fn raise_fd_limit(want: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        if limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
