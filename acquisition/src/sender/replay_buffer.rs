//! The sender's side of the acknowledgement back-channel (PROTOCOL.md, "Acknowledgements"): every frame
//! sent stays in a bounded replay buffer until the receiver says it holds it (written and flushed); when
//! the buffer is full the sender waits (and says so); when the receiver restarts (a new session id in its
//! `have` messages) the sender sends the series start again and every frame still unacknowledged.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::ack::{AckListener, Have, HaveState, IndexRanges};

/// Frames sent and not yet acknowledged, bounded in bytes.
#[derive(Debug)]
pub struct ReplayBuffer {
    cap: u64,
    bytes: u64,
    peak: u64,
    frames: BTreeMap<u64, Buffered>,
}

/// One frame as it was sent: its encoded header (without `resent`) and payload.
#[derive(Debug)]
pub struct Buffered {
    /// Part 1 as first sent.
    pub header: Vec<u8>,
    /// Part 2.
    pub payload: Vec<u8>,
}

impl ReplayBuffer {
    /// A buffer of at most `cap` payload bytes (one frame larger than `cap` is let in when the buffer is
    /// empty).
    pub fn new(cap: u64) -> ReplayBuffer {
        ReplayBuffer { cap: cap.max(1), bytes: 0, peak: 0, frames: BTreeMap::new() }
    }

    /// Whether a frame of `n` bytes fits now.
    pub fn fits(&self, n: u64) -> bool {
        self.frames.is_empty() || self.bytes + n <= self.cap
    }

    /// Keeps frame `index` until acknowledged.
    pub fn insert(&mut self, index: u64, header: Vec<u8>, payload: Vec<u8>) {
        let n = payload.len() as u64;
        if let Some(old) = self.frames.insert(index, Buffered { header, payload }) {
            self.bytes -= old.payload.len() as u64;
        }
        self.bytes += n;
        self.peak = self.peak.max(self.bytes);
    }

    /// Drops every frame `held` lists; returns how many.
    pub fn acknowledge(&mut self, held: &IndexRanges) -> usize {
        let gone: Vec<u64> = self.frames.keys().copied().filter(|i| held.contains(*i)).collect();
        for i in &gone {
            if let Some(b) = self.frames.remove(i) {
                self.bytes -= b.payload.len() as u64;
            }
        }
        gone.len()
    }

    /// Frames waiting for an acknowledgement.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True when every frame sent is acknowledged.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Payload bytes held now.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The most payload bytes ever held.
    pub fn peak(&self) -> u64 {
        self.peak
    }

    /// The cap.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Indices held, in order.
    pub fn indices(&self) -> Vec<u64> {
        self.frames.keys().copied().collect()
    }

    /// Frame `i`, if held.
    pub fn get(&self, i: u64) -> Option<&Buffered> {
        self.frames.get(&i)
    }

    /// Empties the buffer (a new series).
    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
    }
}

/// What the sender learnt from the receiver's `have` messages that it must act on.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Actions {
    /// The receiver restarted and does not know the series: send the series start again.
    pub send_start: bool,
    /// The receiver (restarted, or told the series again) knows the series: send every frame still in the
    /// buffer again (and the series end, if it was sent).
    pub resend: bool,
}

/// The acknowledgement state of one [`crate::sender::SeriesSender`].
pub struct Acked {
    /// The SUB socket.
    pub listener: AckListener,
    /// Unacknowledged frames.
    pub buffer: ReplayBuffer,
    /// The receiver run heard last.
    pub session: Option<String>,
    /// What that receiver holds of the open series (from its last `have`).
    pub held: IndexRanges,
    /// The receiver's state for the open series.
    pub state: Option<HaveState>,
    /// Its file status (closed or failed).
    pub status: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// When a `have` message last arrived.
    pub last_heard: Option<Instant>,
    /// A receiver restart was seen and the series not yet re-established with it.
    pub restarted: bool,
    /// Pending actions.
    pub actions: Actions,
    /// Frames sent again.
    pub resent: u64,
    /// Receiver restarts seen.
    pub restarts: u64,
    /// Time spent waiting for room in the buffer.
    pub blocked: Duration,
}

impl Acked {
    /// A fresh state around `listener` with a buffer of `cap` bytes.
    pub fn new(listener: AckListener, cap: u64) -> Acked {
        Acked {
            listener,
            buffer: ReplayBuffer::new(cap),
            session: None,
            held: IndexRanges::new(),
            state: None,
            status: None,
            error: None,
            last_heard: None,
            restarted: false,
            actions: Actions::default(),
            resent: 0,
            restarts: 0,
            blocked: Duration::ZERO,
        }
    }

    /// A new series: forgets the last one's state (not the receiver session).
    pub fn begin(&mut self) {
        self.buffer.clear();
        self.held = IndexRanges::new();
        self.state = None;
        self.status = None;
        self.error = None;
        self.restarted = false;
        self.actions = Actions::default();
    }

    /// Waits up to `wait` for `have` messages and takes them in, for series `ours`.
    pub fn poll(&mut self, wait: Duration, ours: &str) {
        for h in self.listener.poll(wait) {
            self.absorb(h, ours);
        }
    }

    /// Takes in one `have` message.
    pub fn absorb(&mut self, h: Have, ours: &str) {
        self.last_heard = Some(Instant::now());
        if self.session.as_deref() != Some(h.receiver.as_str()) {
            if self.session.is_some() {
                tracing::warn!(
                    "the receiver restarted (new session {}): sending it the frames it has not acknowledged",
                    h.receiver
                );
                self.restarted = true;
                self.restarts += 1;
                self.state = None;
                self.status = None;
            }
            self.session = Some(h.receiver.clone());
        }
        if h.series.as_deref() != Some(ours) {
            if self.restarted {
                self.actions.send_start = true;
            }
            return;
        }
        let held = h.held_set();
        self.buffer.acknowledge(&held);
        self.held = held;
        self.state = Some(h.state);
        self.status = h.status;
        self.error = h.error;
        if self.restarted && h.state == HaveState::Receiving {
            self.restarted = false;
            self.actions.send_start = false;
            self.actions.resend = true;
        }
    }

    /// True once the receiver closed the series (with a status other than `incomplete ...`, which means it
    /// was stopped and may come back).
    pub fn closed(&self) -> bool {
        self.state == Some(HaveState::Closed) && self.status.as_deref().is_some_and(|s| !s.starts_with("incomplete"))
    }

    /// The receiver's error when it failed the series.
    pub fn failure(&self) -> Option<String> {
        (self.state == Some(HaveState::Failed)).then(|| {
            let status = self.status.clone().unwrap_or_else(|| "failed".into());
            match &self.error {
                Some(e) => format!("{status}: {e}"),
                None => status,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_is_bounded_and_acknowledgements_free_it() {
        let mut b = ReplayBuffer::new(100);
        assert!(b.fits(500), "one frame larger than the cap goes in when empty");
        b.insert(0, vec![], vec![0; 40]);
        b.insert(1, vec![], vec![0; 40]);
        assert!(!b.fits(40));
        let mut held = IndexRanges::new();
        held.insert(0);
        assert_eq!(b.acknowledge(&held), 1);
        assert!(b.fits(40));
        assert_eq!((b.len(), b.bytes(), b.peak()), (1, 40, 80));
    }
}
