//! Fan-out: one series spread over several receivers, each writing its own file.
//!
//! Why not one PUSH socket connected to every receiver? ZeroMQ would spread the frames, but also the
//! series start and end, which every writer needs and which a PUSH socket cannot address to a chosen
//! peer; and a start sent on a second socket is not ordered with frames sent on the first. So the fan-out
//! holds one PUSH socket per receiver (one [`SeriesSender`] each), sends the series start to every one,
//! deals the frames round robin (frame `i` to receiver `i mod N`, order kept within each connection), and
//! ends the series on every connection with the number of frames *that* receiver was sent. Each receiver
//! then writes a full-length file whose frames it never got carry `image_key` 3 ("not received"), which is
//! exactly the claim `beamline stitch` checks and stitches.

use acquisition::protocol::{FrameHeader, SeriesStart, SeriesStatus};
use acquisition::sender::{SendError, SeriesSender};

/// One series spread round robin over one connection per receiver.
pub struct FanOut {
    senders: Vec<SeriesSender>,
    next: usize,
}

impl FanOut {
    /// Connects one PUSH socket to each of `endpoints` (where `beamline receive` processes bind).
    pub fn connect(endpoints: &[String]) -> Result<FanOut, SendError> {
        let senders = endpoints.iter().map(|e| SeriesSender::connect(e)).collect::<Result<Vec<_>, _>>()?;
        Ok(FanOut { senders, next: 0 })
    }

    /// Receivers served.
    pub fn width(&self) -> usize {
        self.senders.len()
    }

    /// Sends the series start to every receiver.
    pub fn start_series(&mut self, start: &SeriesStart) -> Result<(), SendError> {
        self.next = 0;
        self.senders.iter_mut().try_for_each(|s| s.start_series(start))
    }

    /// Sends one frame to the next receiver in turn; returns which one.
    pub fn send_frame(&mut self, header: &FrameHeader, pixels_le: &[u8]) -> Result<usize, SendError> {
        let k = self.next;
        let sender = self.senders.get_mut(k).ok_or(SendError::State("fan-out over no receivers"))?;
        sender.send_frame(header, pixels_le)?;
        self.next = (k + 1) % self.senders.len();
        Ok(k)
    }

    /// Ends the series on every connection; returns the frames each receiver was sent.
    pub fn end_series(&mut self, status: SeriesStatus) -> Result<Vec<u64>, SendError> {
        self.senders.iter_mut().map(|s| s.end_series(status, None)).collect()
    }
}

impl acquisition::sim::FrameSink for FanOut {
    fn send_frame(&mut self, header: &FrameHeader, pixels_le: &[u8]) -> Result<(), SendError> {
        FanOut::send_frame(self, header, pixels_le).map(|_| ())
    }
}
