//! Capture of a child process's stderr: forwarded line by line to the test's
//! stderr with a prefix, and kept so that tests can wait for and assert on it.

use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    text: String,
    /// The pipe reached end of file: the process exited (or closed stderr).
    closed: bool,
}

/// What a child process wrote to one pipe so far.
#[derive(Clone)]
pub(crate) struct Output {
    shared: Arc<(Mutex<State>, Condvar)>,
}

/// Why [`Output::wait_for`] gave up.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WaitError {
    Timeout,
    Closed,
}

impl Output {
    /// Reads `pipe` on a thread until end of file. Threads inherit libtest's
    /// output capture, so forwarded lines show up with the failing test only.
    pub(crate) fn capture(pipe: impl Read + Send + 'static, prefix: String) -> Output {
        let output = Output { shared: Arc::default() };
        let writer = output.clone();
        std::thread::Builder::new()
            .name(format!("capture {prefix}"))
            .spawn(move || {
                let mut reader = BufReader::new(pipe);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let text = String::from_utf8_lossy(&line);
                            let text = text.trim_end_matches(['\n', '\r']);
                            eprintln!("{prefix} {text}");
                            let (lock, cvar) = &*writer.shared;
                            let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
                            state.text.push_str(text);
                            state.text.push('\n');
                            cvar.notify_all();
                        }
                    }
                }
                let (lock, cvar) = &*writer.shared;
                lock.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
                cvar.notify_all();
            })
            .expect("spawn a capture thread");
        output
    }

    /// Everything captured so far.
    pub(crate) fn text(&self) -> String {
        self.shared.0.lock().unwrap_or_else(|e| e.into_inner()).text.clone()
    }

    /// Blocks until `found` holds for the captured text, the pipe closes, or
    /// `timeout` passes.
    pub(crate) fn wait_for(&self, timeout: Duration, found: impl Fn(&str) -> bool) -> Result<(), WaitError> {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.shared;
        let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if found(&state.text) {
                return Ok(());
            }
            if state.closed {
                return Err(WaitError::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(WaitError::Timeout);
            }
            state = cvar.wait_timeout(state, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Blocks until the pipe closes or `timeout` passes; true if it closed.
    pub(crate) fn wait_closed(&self, timeout: Duration) -> bool {
        self.wait_for(timeout, |_| false) == Err(WaitError::Closed)
    }
}
