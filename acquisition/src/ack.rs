//! The acknowledgement back-channel (PROTOCOL.md, "Acknowledgements"): the receiver tells the sender which
//! frame indices it holds on disk, so that a sender can keep every frame not yet held in a bounded replay
//! buffer and send it again after a receiver restart, and a restarted sender can send only what is missing.
//!
//! One message kind, `have`, travels on a second ZeroMQ socket pair: the receiver's **PUB** socket binds the
//! ack endpoint, the sender's **SUB** socket connects to it (subscribed to everything). A `have` message is
//! the receiver's whole state for its series, not a delta — the index ranges written *and flushed* to the
//! file — so a lost message (PUB drops when no one listens) costs nothing: the next one says it all again.
//! It is sent after every flush, when a series opens, is reopened, closes or fails, and at least every
//! [`HEARTBEAT`] otherwise.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::protocol::PROTOCOL_VERSION;

/// Part 0 of every back-channel message.
pub const KIND_HAVE: &[u8] = b"have";

/// A receiver publishes its state at least this often.
pub const HEARTBEAT: Duration = Duration::from_millis(200);

/// At most this many ranges go in one `have` message (`truncated` is then true: the ranges listed are held,
/// frames outside them may or may not be).
pub const MAX_RANGES: usize = 1024;

/// The frame header field that marks a frame sent again (see PROTOCOL.md): a duplicate of it is expected.
pub const RESENT_FIELD: &str = "resent";

/// A set of frame indices kept as disjoint half-open ranges `[start, end)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexRanges {
    /// start -> end (exclusive); ranges never touch or overlap.
    r: BTreeMap<u64, u64>,
    count: u64,
}

impl IndexRanges {
    /// The empty set.
    pub fn new() -> IndexRanges {
        IndexRanges::default()
    }

    /// Adds index `i`; returns false when it was already there.
    pub fn insert(&mut self, i: u64) -> bool {
        if self.contains(i) {
            return false;
        }
        let before = self.r.range(..i).next_back().map(|(&s, &e)| (s, e)).filter(|&(_, e)| e == i);
        let after = i.checked_add(1).and_then(|n| self.r.get(&n).map(|&e| (n, e)));
        match (before, after) {
            (Some((s, _)), Some((n, e))) => {
                self.r.remove(&n);
                self.r.insert(s, e);
            }
            (Some((s, _)), None) => {
                self.r.insert(s, i + 1);
            }
            (None, Some((n, e))) => {
                self.r.remove(&n);
                self.r.insert(i, e);
            }
            (None, None) => {
                self.r.insert(i, i + 1);
            }
        }
        self.count += 1;
        true
    }

    /// Whether `i` is in the set.
    pub fn contains(&self, i: u64) -> bool {
        self.r.range(..=i).next_back().is_some_and(|(_, &e)| i < e)
    }

    /// Number of indices in the set.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Number of ranges.
    pub fn ranges_len(&self) -> usize {
        self.r.len()
    }

    /// The ranges, `[start, end)`, in order.
    pub fn ranges(&self) -> impl Iterator<Item = [u64; 2]> + '_ {
        self.r.iter().map(|(&s, &e)| [s, e])
    }

    /// The set of the given `[start, end)` ranges (empty or inverted ones are ignored).
    pub fn from_ranges(ranges: &[[u64; 2]]) -> IndexRanges {
        let mut set = IndexRanges::new();
        for &[s, e] in ranges {
            // Ranges from the wire: insert range by range, merging, without iterating over each index.
            if s < e {
                set.insert_range(s, e);
            }
        }
        set
    }

    fn insert_range(&mut self, mut s: u64, mut e: u64) {
        // Merge with every range touching or overlapping [s, e).
        let touching: Vec<(u64, u64)> =
            self.r.range(..=e).rev().take_while(|(_, &end)| end >= s).map(|(&a, &b)| (a, b)).collect();
        for (a, b) in touching {
            self.r.remove(&a);
            self.count -= b - a;
            s = s.min(a);
            e = e.max(b);
        }
        self.r.insert(s, e);
        self.count += e - s;
    }
}

/// What a receiver says about its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HaveState {
    /// No series open, none closed since the receiver started.
    Idle,
    /// The series is open; `held` lists the frames written and flushed so far.
    Receiving,
    /// The series end arrived and the file is closed (its status in `status`).
    Closed,
    /// The receiver stopped writing this series (`error` says why, e.g. disk full); send no more.
    Failed,
}

/// One `have` message (part 1 of the back-channel message, JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Have {
    /// Must be 1.
    pub protocol: u32,
    /// Identifies this run of the receiver process (changes when it restarts).
    pub receiver: String,
    /// The series open (or last closed); `null` when idle.
    pub series: Option<String>,
    /// Frames the series declares.
    #[serde(default)]
    pub frames: u64,
    /// Indices written and flushed, as `[start, end)` ranges (end excluded), in order.
    #[serde(default)]
    pub held: Vec<[u64; 2]>,
    /// True when more than [`MAX_RANGES`] ranges were held and only the first ones are listed.
    #[serde(default)]
    pub truncated: bool,
    /// The series' state.
    pub state: HaveState,
    /// The file's status once closed (`complete`, `aborted`, ...) or failed (`failed: disk full`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Why the series failed, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Have {
    /// The held indices as a set.
    pub fn held_set(&self) -> IndexRanges {
        IndexRanges::from_ranges(&self.held)
    }
}

/// Decodes part 1 of a `have` message.
pub fn decode_have(json: &[u8]) -> Result<Have, serde_json::Error> {
    serde_json::from_slice(json)
}

/// A fresh receiver session id: process id, start time and a random part, as hex.
pub fn new_session() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    format!("{:08x}-{:016x}-{:08x}", std::process::id(), t, rand::random::<u32>())
}

/// The receiver's end of the back-channel: a PUB socket and the state it publishes. Lives on the writer
/// thread, which is the one that knows what is flushed.
pub struct AckPublisher {
    socket: zmq::Socket,
    session: String,
    series: Option<String>,
    frames: u64,
    held: IndexRanges,
    /// Written since the last flush: held once the file is flushed.
    pending: Vec<u64>,
    state: HaveState,
    status: Option<String>,
    error: Option<String>,
    last: Option<Instant>,
    buf: Vec<u8>,
}

impl AckPublisher {
    /// Wraps a bound (or connected) PUB socket.
    pub fn new(socket: zmq::Socket) -> AckPublisher {
        AckPublisher {
            socket,
            session: new_session(),
            series: None,
            frames: 0,
            held: IndexRanges::new(),
            pending: Vec::new(),
            state: HaveState::Idle,
            status: None,
            error: None,
            last: None,
            buf: Vec::new(),
        }
    }

    /// This receiver run's session id.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// A series opened (created, or reopened holding `held`); publishes.
    pub fn open(&mut self, series: &str, frames: u64, held: IndexRanges) {
        self.series = Some(series.to_string());
        self.frames = frames;
        self.held = held;
        self.pending.clear();
        self.state = HaveState::Receiving;
        self.status = None;
        self.error = None;
        self.publish();
    }

    /// Frame `i` was written (not yet flushed).
    pub fn written(&mut self, i: u64) {
        self.pending.push(i);
    }

    /// True when frames were written since the last flush.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Goes on publishing the current state every [`HEARTBEAT`] for `d` (before the process exits).
    pub fn linger(&mut self, d: Duration) {
        let t0 = Instant::now();
        self.publish();
        while t0.elapsed() < d {
            std::thread::sleep(HEARTBEAT.min(d));
            self.publish();
        }
    }

    /// The file was flushed: every frame written so far is held; publishes.
    pub fn flushed(&mut self) {
        for i in self.pending.drain(..) {
            self.held.insert(i);
        }
        self.publish();
    }

    /// The series closed with file status `status`; publishes.
    pub fn closed(&mut self, status: &str) {
        self.flushed_silently();
        self.state = HaveState::Closed;
        self.status = Some(status.to_string());
        self.publish();
    }

    /// The series failed (`status` as written in the file, `error` for a person); publishes.
    pub fn failed(&mut self, status: &str, error: &str) {
        self.pending.clear();
        self.state = HaveState::Failed;
        self.status = Some(status.to_string());
        self.error = Some(error.to_string());
        self.publish();
    }

    fn flushed_silently(&mut self) {
        for i in self.pending.drain(..) {
            self.held.insert(i);
        }
    }

    /// Publishes when [`HEARTBEAT`] has passed since the last message.
    pub fn heartbeat(&mut self) {
        if self.last.is_none_or(|t| t.elapsed() >= HEARTBEAT) {
            self.publish();
        }
    }

    /// The message as it would be published now.
    pub fn have(&self) -> Have {
        Have {
            protocol: PROTOCOL_VERSION,
            receiver: self.session.clone(),
            series: self.series.clone(),
            frames: self.frames,
            held: self.held.ranges().take(MAX_RANGES).collect(),
            truncated: self.held.ranges_len() > MAX_RANGES,
            state: self.state,
            status: self.status.clone(),
            error: self.error.clone(),
        }
    }

    /// Publishes the state now (never blocks: PUB drops when no sender listens or it lags).
    pub fn publish(&mut self) {
        let have = self.have();
        self.buf.clear();
        if serde_json::to_writer(&mut self.buf, &have).is_err() {
            return;
        }
        let sent = self
            .socket
            .send(KIND_HAVE, zmq::SNDMORE | zmq::DONTWAIT)
            .and_then(|()| self.socket.send(&self.buf[..], zmq::DONTWAIT));
        if let Err(e) = sent {
            tracing::debug!("acknowledgement not published: {e}");
        }
        self.last = Some(Instant::now());
    }
}

/// The sender's end of the back-channel: a SUB socket connected to (or bound on) the ack endpoint.
pub struct AckListener {
    socket: zmq::Socket,
    endpoint: String,
}

impl AckListener {
    /// Opens a SUB socket in `ctx` subscribed to `have` messages; connects to `endpoint` (or binds it).
    pub fn open(ctx: &zmq::Context, endpoint: &str, bind: bool) -> Result<AckListener, zmq::Error> {
        let socket = ctx.socket(zmq::SUB)?;
        socket.set_subscribe(KIND_HAVE)?;
        socket.set_linger(0)?;
        socket.set_rcvhwm(1000)?;
        socket.set_maxmsgsize(16 << 20)?;
        if bind {
            socket.bind(endpoint)?;
        } else {
            socket.connect(endpoint)?;
        }
        Ok(AckListener { socket, endpoint: endpoint.to_string() })
    }

    /// The ack endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Waits up to `timeout` for messages, then takes every one already queued; returns them in order
    /// (undecodable ones are skipped and logged).
    pub fn poll(&self, timeout: Duration) -> Vec<Have> {
        let mut out = Vec::new();
        let ms = timeout.as_millis().min(i64::MAX as u128) as i64;
        let mut wait = ms;
        loop {
            match self.socket.poll(zmq::POLLIN, wait) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
            wait = 0;
            let parts = match self.socket.recv_multipart(zmq::DONTWAIT) {
                Ok(p) => p,
                Err(_) => break,
            };
            if parts.len() != 2 || parts[0] != KIND_HAVE {
                tracing::debug!("ignored a back-channel message of {} parts", parts.len());
                continue;
            }
            match decode_have(&parts[1]) {
                Ok(h) if h.protocol == PROTOCOL_VERSION => out.push(h),
                Ok(h) => tracing::warn!("acknowledgement of protocol {} ignored (this sender speaks 1)", h.protocol),
                Err(e) => tracing::warn!("undecodable acknowledgement ignored: {e}"),
            }
        }
        out
    }
}

/// Adds `"resent":true` to an encoded frame header (a JSON object).
pub fn mark_resent(header: &mut Vec<u8>) {
    if header.last() == Some(&b'}') {
        header.pop();
        header.extend_from_slice(br#","resent":true}"#);
    }
}

/// Whether a frame header (JSON) carries `"resent": true`.
pub fn is_resent(json: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct R {
        #[serde(default)]
        resent: bool,
    }
    serde_json::from_slice::<R>(json).is_ok_and(|r| r.resent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_as_indices_arrive_in_any_order() {
        let mut s = IndexRanges::new();
        for i in [5, 3, 4, 0, 9, 1, 8] {
            assert!(s.insert(i));
        }
        assert!(!s.insert(4));
        assert_eq!(s.ranges().collect::<Vec<_>>(), vec![[0, 2], [3, 6], [8, 10]]);
        assert_eq!(s.len(), 7);
        assert!(s.contains(9) && !s.contains(2) && !s.contains(10));
        s.insert(2);
        assert_eq!(s.ranges().collect::<Vec<_>>(), vec![[0, 6], [8, 10]]);
        let t = IndexRanges::from_ranges(&[[8, 10], [0, 3], [2, 6], [7, 7]]);
        assert_eq!(t, s);
    }

    #[test]
    fn a_have_message_round_trips_and_resent_is_marked() {
        let h = Have {
            protocol: 1,
            receiver: "r".into(),
            series: Some("s".into()),
            frames: 10,
            held: vec![[0, 4]],
            truncated: false,
            state: HaveState::Receiving,
            status: None,
            error: None,
        };
        let j = serde_json::to_vec(&h).unwrap();
        assert_eq!(decode_have(&j).unwrap(), h);
        let mut hdr = br#"{"protocol":1,"index":3}"#.to_vec();
        assert!(!is_resent(&hdr));
        mark_resent(&mut hdr);
        assert!(is_resent(&hdr));
        assert!(serde_json::from_slice::<serde_json::Value>(&hdr).is_ok());
    }
}
