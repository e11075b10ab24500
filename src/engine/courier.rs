//! Group messages between cores: an explicit message from one core's loop to another's,
//! never a lock. Every two cores are joined by a glommio shared channel each way (a
//! bounded single-producer, single-consumer queue between executors) and an eventfd, the
//! bell, that the receiving core's ring polls.
//!
//! A core that publishes pushes a copy of the message into the channel to each other core
//! and then adds the number it pushed to that pair's bell. The receiving ring sees the bell
//! at its next enter, the loop reads the count (which resets it) and pops exactly that many
//! messages from the channel, so a receive never waits (and never leaves a waker with
//! glommio's reactor), and the core's loop, parked in its own ring, wakes as it would for
//! a packet. A message that finds its channel full waits in the sending core's backlog and
//! is tried again every turn (a backlog past [`BACKLOG_MAX_BYTES`] drops new messages,
//! counted).
//!
//! The channels are connected by small glommio tasks when the cores start; what is
//! published before then waits in the backlog.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use io_uring::{opcode, types};

use super::groups::Published;
use super::ring::Ring;
use super::token::{token, Key, Op};

/// Messages a channel between two cores holds.
const CHANNEL_DEPTH: usize = 256;

/// Bytes of frames kept for a peer whose channel is full; past it, new ones are dropped
/// (so a slow core costs the others at most this, plus its channel's messages).
const BACKLOG_MAX_BYTES: usize = 16 * 1024 * 1024;

/// The first key index of the bells' polls (`Op::Stop` with key 0 is the stop socket's).
pub(super) const BELL_KEY: u32 = 1;

/// What one core is given of the mesh (made on the server's thread, moved to the core's).
pub(crate) struct CoreMesh {
    index: usize,
    /// To each other core (none for itself).
    senders: Vec<Option<SharedSender<Published>>>,
    /// From each other core.
    receivers: Vec<Option<SharedReceiver<Published>>>,
    /// One per ordered pair of cores (`bell_index`): rung by one for the other. Held by
    /// every core, so that none is closed while another may ring it.
    bells: Arc<[OwnedFd]>,
}

/// Where the bell rung by core `from` for core `to` is (`from != to`), among `cores`.
fn bell_index(cores: usize, to: usize, from: usize) -> usize {
    to * (cores - 1) + if from < to { from } else { from - 1 }
}

/// The mesh for `cores` cores: a channel each way and a bell per ordered pair.
pub(crate) fn mesh(cores: usize) -> std::io::Result<Vec<CoreMesh>> {
    let pairs = cores * cores.saturating_sub(1);
    let mut bells = Vec::with_capacity(pairs);
    for _ in 0..pairs {
        // SAFETY: eventfd(2) with flags only; a descriptor returned is ours.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor, handed over whole.
        bells.push(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    let bells: Arc<[OwnedFd]> = bells.into();
    let mut meshes: Vec<CoreMesh> = (0..cores)
        .map(|index| CoreMesh {
            index,
            senders: (0..cores).map(|_| None).collect(),
            receivers: (0..cores).map(|_| None).collect(),
            bells: bells.clone(),
        })
        .collect();
    for from in 0..cores {
        for to in 0..cores {
            if from != to {
                let (sender, receiver) = shared_channel::new_bounded(CHANNEL_DEPTH);
                meshes[from].senders[to] = Some(sender);
                meshes[to].receivers[from] = Some(receiver);
            }
        }
    }
    Ok(meshes)
}

/// One other core, as this core sends to it and hears from it.
struct Peer {
    sender: Rc<RefCell<Option<ConnectedSender<Published>>>>,
    receiver: Rc<RefCell<Option<ConnectedReceiver<Published>>>>,
    /// Waiting for room in the channel (or for it to connect), and its frames' bytes.
    backlog: VecDeque<Published>,
    backlog_bytes: usize,
    /// Messages its bell announced and not yet popped.
    owed: u64,
    /// Its bell for us to ring, and ours from it to poll.
    ring_fd: RawFd,
    hear_fd: RawFd,
}

/// A core's end of the mesh.
pub(super) struct Courier {
    /// By core index; `None` for this core.
    peers: Vec<Option<Peer>>,
    _bells: Arc<[OwnedFd]>,
    /// The tasks connecting the channels, until they are awaited (`connected`).
    connecting: Vec<glommio::task::JoinHandle<()>>,
}

/// How long a core waits for the others to connect their channels before it serves (they
/// start together; only a core that failed to start keeps the rest waiting this long).
const CONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Courier {
    /// Connects this core's channels (glommio tasks, which finish once the peers connect
    /// theirs); call on the core's executor.
    pub(super) fn start(mesh: CoreMesh) -> Courier {
        let CoreMesh {
            index,
            senders,
            receivers,
            bells,
        } = mesh;
        let cores = senders.len();
        let mut peers = Vec::with_capacity(cores);
        let mut connecting = Vec::new();
        for (peer, (sender, receiver)) in senders.into_iter().zip(receivers).enumerate() {
            let (Some(sender), Some(receiver)) = (sender, receiver) else {
                peers.push(None);
                continue;
            };
            let sending = Rc::new(RefCell::new(None));
            let hearing = Rc::new(RefCell::new(None));
            let slot = sending.clone();
            connecting.push(
                glommio::spawn_local(async move {
                    *slot.borrow_mut() = Some(sender.connect().await);
                })
                .detach(),
            );
            let slot = hearing.clone();
            connecting.push(
                glommio::spawn_local(async move {
                    *slot.borrow_mut() = Some(receiver.connect().await);
                })
                .detach(),
            );
            peers.push(Some(Peer {
                sender: sending,
                receiver: hearing,
                backlog: VecDeque::new(),
                backlog_bytes: 0,
                owed: 0,
                ring_fd: bells[bell_index(cores, peer, index)].as_raw_fd(),
                hear_fd: bells[bell_index(cores, index, peer)].as_raw_fd(),
            }));
        }
        Courier {
            peers,
            _bells: bells,
            connecting,
        }
    }

    /// Waits (up to [`CONNECT_WAIT`]) until every channel is connected: no core serves, and
    /// so none can leave, while another is still connecting to it (glommio's connect reaches
    /// into the peer's executor).
    pub(super) async fn connected(&mut self) {
        let all = async {
            for task in self.connecting.drain(..) {
                task.await;
            }
        };
        futures_lite::future::or(all, glommio::timer::sleep(CONNECT_WAIT)).await;
    }

    /// Arms the polls on this core's bells.
    pub(super) fn arm_all(&self, ring: &mut Ring) {
        for index in 0..self.peers.len() {
            self.arm(ring, index);
        }
    }

    fn arm(&self, ring: &mut Ring, index: usize) {
        let Some(peer) = &self.peers[index] else {
            return;
        };
        let key = Key {
            index: BELL_KEY + index as u32,
            generation: 0,
        };
        let poll = opcode::PollAdd::new(types::Fd(peer.hear_fd), libc::POLLIN as u32)
            .build()
            .user_data(token(Op::Stop, key, 0));
        // SAFETY: the bells outlive the ring's use of them (every core holds them all
        // until it has left its ring); a poll names no memory.
        unsafe { ring.push(&poll) };
    }

    /// Core `index`'s bell rang (its poll completed): the count is read and the poll armed
    /// again; the messages are popped by `receive`.
    pub(super) fn heard(&mut self, ring: &mut Ring, index: usize) {
        let Some(Some(peer)) = self.peers.get_mut(index) else {
            return;
        };
        let mut count = 0u64;
        // SAFETY: an 8-byte read into a local from a nonblocking eventfd.
        let read = unsafe {
            libc::read(
                peer.hear_fd,
                (&mut count as *mut u64).cast::<libc::c_void>(),
                8,
            )
        };
        if read == 8 {
            peer.owed += count;
        }
        self.arm(ring, index);
    }

    /// Pops the messages the bells announced into `into`.
    pub(super) fn receive(&mut self, into: &mut Vec<Published>) {
        let mut cx = Context::from_waker(Waker::noop());
        for peer in self.peers.iter_mut().flatten() {
            let receiver = peer.receiver.borrow();
            let Some(receiver) = receiver.as_ref() else {
                continue;
            };
            while peer.owed > 0 {
                // Ready: the message was pushed before its count was added to the bell.
                match pin!(receiver.recv()).poll(&mut cx) {
                    Poll::Ready(Some(published)) => into.push(published),
                    // The other core left: nothing more comes from it.
                    Poll::Ready(None) => peer.owed = 0,
                    Poll::Pending => break,
                }
                peer.owed = peer.owed.saturating_sub(1);
            }
        }
    }

    /// Queues a copy of `published` for every other core; false if a backlog was full
    /// (that core does not get it).
    pub(super) fn forward(&mut self, published: &Published) -> bool {
        let mut all = true;
        for peer in self.peers.iter_mut().flatten() {
            if peer.backlog_bytes + published.frame.len() <= BACKLOG_MAX_BYTES {
                peer.backlog_bytes += published.frame.len();
                peer.backlog.push_back(published.copy());
            } else {
                all = false;
            }
        }
        all
    }

    /// Pushes what waits into the channels, and rings each bell once with the number
    /// pushed.
    pub(super) fn send(&mut self) {
        for peer in self.peers.iter_mut().flatten() {
            if peer.backlog.is_empty() {
                continue;
            }
            let sender = peer.sender.borrow();
            let Some(sender) = sender.as_ref() else {
                continue;
            };
            let mut pushed = 0u64;
            while let Some(published) = peer.backlog.pop_front() {
                let bytes = published.frame.len();
                match sender.try_send(published) {
                    Ok(()) => {
                        pushed += 1;
                        peer.backlog_bytes -= bytes;
                    }
                    Err(glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(
                        published,
                    ))) => {
                        peer.backlog.push_front(published);
                        break;
                    }
                    // The other core is gone (the server is stopping).
                    Err(_) => {
                        peer.backlog.clear();
                        peer.backlog_bytes = 0;
                        break;
                    }
                }
            }
            if pushed > 0 {
                // SAFETY: an 8-byte write from a local to an eventfd every core holds open.
                unsafe {
                    libc::write(
                        peer.ring_fd,
                        (&pushed as *const u64).cast::<libc::c_void>(),
                        8,
                    )
                };
            }
        }
    }

    /// Messages wait for room in a channel (or for it to connect): the loop tries again
    /// soon.
    pub(super) fn waiting(&self) -> bool {
        self.peers
            .iter()
            .flatten()
            .any(|peer| !peer.backlog.is_empty() || peer.owed > 0)
    }
}
