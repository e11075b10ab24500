//! The access log's writer thread: appends what the cores hand over, reopens the file on
//! request (SIGUSR1, after logrotate moved it), and is the only place the log touches the
//! disk.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};
use std::thread::JoinHandle;

use crate::support::stderr::error_line;

/// What the writer thread is sent.
pub enum LogMsg {
    /// A core's lines, to append.
    Lines(Vec<u8>),
    /// Reopen the file (after logrotate moved it).
    Reopen,
}

/// The writer thread of one server.
pub struct LogWriter {
    /// Its inbox.
    pub sender: Sender<LogMsg>,
    thread: Option<JoinHandle<()>>,
}

impl LogWriter {
    /// Opens `path` for appending and starts the thread.
    pub fn start(path: PathBuf) -> io::Result<LogWriter> {
        let file = open(&path)?;
        let (sender, inbox) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("percore-log".into())
            .spawn(move || write_lines(path, file, inbox))?;
        Ok(LogWriter {
            sender,
            thread: Some(thread),
        })
    }

    /// Waits for every line sent so far to be written (the senders must be gone).
    pub fn finish(mut self) {
        drop(std::mem::replace(
            &mut self.sender,
            std::sync::mpsc::channel().0,
        ));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn open(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn write_lines(path: PathBuf, mut file: File, inbox: Receiver<LogMsg>) {
    for message in inbox {
        match message {
            LogMsg::Lines(lines) => {
                if let Err(e) = file.write_all(&lines) {
                    error_line(None, format_args!("access log {}: {e}", path.display()));
                }
            }
            LogMsg::Reopen => match open(&path) {
                Ok(reopened) => file = reopened,
                Err(e) => error_line(
                    None,
                    format_args!("access log {}: cannot reopen: {e}", path.display()),
                ),
            },
        }
    }
    let _ = file.flush();
}
