//! Listening sockets: one per core on the same address with `SO_REUSEPORT` (bound on the
//! main thread, so that "port in use" is reported before any core starts, and port 0
//! resolves to one real port), or taken over from a previous server, with the options every
//! listener carries (`TCP_NODELAY`, inherited by accepted sockets, and `TCP_DEFER_ACCEPT`).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

use super::StartError;
use crate::config::Config;

/// Checks that the server could listen on the configured address: it is one of this
/// machine's, and its port is free or held by `SO_REUSEPORT` sockets of this user (a
/// running percore's).
pub(crate) fn check_address(addr: SocketAddr) -> Result<(), StartError> {
    // A socket like the ones that would serve: it binds beside a running percore's
    // (SO_REUSEPORT, same user), not beside another program's.
    reuseport_socket(addr).map(drop)
}

/// A socket bound to `addr` with SO_REUSEADDR and SO_REUSEPORT, not listening yet.
fn reuseport_socket(addr: SocketAddr) -> Result<Socket, StartError> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| bind_error(e, addr))?;
    socket
        .set_reuse_address(true)
        .and_then(|()| socket.set_reuse_port(true))
        .and_then(|()| socket.bind(&addr.into()))
        .map_err(|e| bind_error(e, addr))?;
    Ok(socket)
}

/// The one-line start-up error for a socket that cannot listen on `addr`.
pub(super) fn bind_error(e: io::Error, addr: SocketAddr) -> StartError {
    StartError::Listen(match e.kind() {
        io::ErrorKind::AddrInUse => format!("cannot listen on {addr}: port {} is already in use", addr.port()),
        io::ErrorKind::AddrNotAvailable => {
            format!("cannot listen on {addr}: no such address on this machine")
        }
        io::ErrorKind::PermissionDenied => format!(
            "cannot listen on {addr}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        ),
        _ => format!("cannot listen on {addr}: {e}"),
    })
}

/// Takes over a previous server's listening sockets, with this configuration's backlog and
/// options, adding sockets (SO_REUSEPORT, same address) while there are fewer than cores.
pub(super) fn adopt_listeners(
    config: &Config,
    count: usize,
    mut sockets: Vec<Socket>,
) -> Result<Vec<Socket>, StartError> {
    let addr = sockets[0]
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .ok_or_else(|| StartError::Listen("cannot read an inherited socket's address".into()))?;
    for socket in &sockets {
        // listen(2) again only sets the backlog of a listening socket.
        socket
            .listen(config.server.backlog.min(i32::MAX as u32) as i32)
            .and_then(|()| socket.set_nodelay(true))
            .and_then(|()| defer_accept(socket, config.server.defer_accept))
            .map_err(|e| bind_error(e, addr))?;
    }
    let given = sockets.len();
    while sockets.len() < count {
        // A socket without SO_REUSEPORT (systemd's, unless `ReusePort=yes`) admits no other
        // on its address: the cores then share it, each accepting from its own duplicate.
        let next = match sockets[0].reuse_port() {
            Ok(true) => reuseport_listener(config, addr)?,
            _ => sockets[sockets.len() % given].try_clone().map_err(|e| {
                StartError::System(format!("cannot duplicate a listening socket: {e}"))
            })?,
        };
        sockets.push(next);
    }
    Ok(sockets)
}

/// A listening socket on `addr` with SO_REUSEPORT and the configured options.
fn reuseport_listener(config: &Config, addr: SocketAddr) -> Result<Socket, StartError> {
    let socket = reuseport_socket(addr)?;
    socket
        .listen(config.server.backlog.min(i32::MAX as u32) as i32)
        // Accepted connections inherit it: no system call per connection.
        .and_then(|()| socket.set_nodelay(true))
        .and_then(|()| defer_accept(&socket, config.server.defer_accept))
        .map_err(|e| bind_error(e, addr))?;
    Ok(socket)
}

/// Creates one listening socket per core on the same address with SO_REUSEPORT.
pub(super) fn bind_listeners(
    config: &Config,
    mut addr: SocketAddr,
    count: usize,
) -> Result<Vec<Socket>, StartError> {
    let new_socket = |addr: SocketAddr| {
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .map_err(|e| bind_error(e, addr))
    };
    if addr.port() != 0 {
        // SO_REUSEPORT would let us share a port with another server without a word; bind
        // once without it to find out whether anyone is there.
        let probe = new_socket(addr)?;
        probe
            .set_reuse_address(true)
            .map_err(|e| bind_error(e, addr))?;
        probe.bind(&addr.into()).map_err(|e| bind_error(e, addr))?;
    }
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = reuseport_listener(config, addr)?;
        if addr.port() == 0 {
            if let Some(bound) = socket.local_addr().ok().and_then(|a| a.as_socket()) {
                addr = bound;
            }
        }
        sockets.push(socket);
    }
    Ok(sockets)
}

/// With `on`, the kernel hands a connection to `accept` only once its first bytes have
/// arrived (`TCP_DEFER_ACCEPT`), or once about `DEFER_ACCEPT_SECONDS` have passed without
/// any: a new connection's request is then read at once instead of after a wait.
fn defer_accept(socket: &Socket, on: bool) -> io::Result<()> {
    let seconds: libc::c_int = if on { DEFER_ACCEPT_SECONDS } else { 0 };
    // SAFETY: an int-valued option on a socket we own.
    let result = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(socket),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&seconds as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How long a connection that sends nothing waits, with `server.defer_accept`, before it is
/// accepted anyway (the kernel rounds it to its SYN-ACK retransmission schedule).
const DEFER_ACCEPT_SECONDS: libc::c_int = 1;
