//! Fan-out: one series spread over several receivers, each writing its own file.
//!
//! Why not one PUSH socket connected to every receiver? ZeroMQ would spread the frames, but also the
//! series start and end, which every writer needs and which a PUSH socket cannot address to a chosen
//! peer; and a start sent on a second socket is not ordered with frames sent on the first. So the fan-out
//! holds one PUSH socket per receiver (one [`SeriesSender`] each), sends the series start to every one,
//! deals the frames round robin (frame `i` to receiver `i mod N`, order kept within each connection), and
//! ends the series on every connection with the number of frames *that* receiver was sent. Each receiver
//! then writes a full-length file whose frames it never got carry `image_key` 3 ("not received"), which is
//! exactly the claim [`crate::vds::stitch`] (`beamline stitch`) checks and stitches.

use crate::protocol::{FrameHeader, SeriesStart, SeriesStatus, Share};
use crate::sender::{SendError, SeriesSender};

/// One series spread round robin over one connection per receiver.
pub struct FanOutSender {
    senders: Vec<SeriesSender>,
    next: usize,
}

impl FanOutSender {
    /// Connects one PUSH socket to each of `endpoints` (where `beamline receive` processes bind).
    /// Refuses an empty list ([`SendError::State`]).
    pub fn connect(endpoints: &[String]) -> Result<FanOutSender, SendError> {
        Self::connect_secure(endpoints, None)
    }

    /// As [`FanOutSender::connect`], every connection a CURVE client when `curve` is given.
    pub fn connect_secure(
        endpoints: &[String],
        curve: Option<&crate::curve::CurveClient>,
    ) -> Result<FanOutSender, SendError> {
        if endpoints.is_empty() {
            return Err(SendError::State("fan-out over no receivers: give at least one endpoint"));
        }
        let senders =
            endpoints.iter().map(|e| SeriesSender::open_secure(e, false, curve)).collect::<Result<Vec<_>, _>>()?;
        Ok(FanOutSender { senders, next: 0 })
    }

    /// Receivers served.
    pub fn width(&self) -> usize {
        self.senders.len()
    }

    /// Sends the series start to every receiver, each declaring its share (`share: {index: k, of: N}`), so
    /// that a receiver whose frames all arrived may call its file complete without the other shares.
    pub fn start_series(&mut self, start: &SeriesStart) -> Result<(), SendError> {
        self.next = 0;
        let of = self.senders.len() as u32;
        self.senders.iter_mut().enumerate().try_for_each(|(k, s)| {
            let mut mine = start.clone();
            mine.share = Some(Share { index: k as u32, of });
            s.start_series(&mine)
        })
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

impl crate::sim::FrameSink for FanOutSender {
    fn send_frame(&mut self, header: &FrameHeader, pixels_le: &[u8]) -> Result<(), SendError> {
        FanOutSender::send_frame(self, header, pixels_le).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Compression, Dtype, FrameIndex, ImageKey, Shape};
    use crate::receiver::{Output, Receiver, ReceiverConfig};

    /// Three real receivers: frame `i` lands in receiver `i mod 3`, every receiver gets the series start
    /// and its own end count.
    #[test]
    fn deals_frames_round_robin_over_real_receivers() {
        let dir = tempfile::tempdir().unwrap();
        let mut threads = Vec::new();
        let mut endpoints = Vec::new();
        for k in 0..3 {
            let mut cfg = ReceiverConfig::new(Output::File(dir.path().join(format!("w{k}.h5"))));
            cfg.endpoint = "tcp://127.0.0.1:*".into();
            let r = Receiver::bind(cfg).unwrap();
            endpoints.push(r.endpoint());
            threads.push(r.spawn().unwrap());
        }
        let mut fan = FanOutSender::connect(&endpoints).unwrap();
        assert_eq!(fan.width(), 3);
        let n = 7u64;
        fan.start_series(&SeriesStart::new("fan", Shape([2, 3]), Dtype::Uint8, Compression::None, n)).unwrap();
        let mut went = Vec::new();
        for i in 0..n {
            let header = FrameHeader {
                index: FrameIndex(i),
                image_key: ImageKey::Projection,
                angle: crate::protocol::Degrees(i as f64),
                timestamp: 0.0,
            };
            went.push(fan.send_frame(&header, &[i as u8; 6]).unwrap());
        }
        assert_eq!(went, vec![0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(fan.end_series(SeriesStatus::Complete).unwrap(), vec![3, 2, 2]);
        let series: Vec<_> = threads.into_iter().map(|t| t.join().unwrap().series.remove(0)).collect();
        let received: Vec<u64> = series.iter().map(|s| s.received).collect();
        assert_eq!(received, vec![3, 2, 2]);
        // Each declared its share, so each file is complete with the other writers' frames as not sent.
        for (k, s) in series.iter().enumerate() {
            assert!(s.missing.is_empty(), "writer {k} lists missing frames {:?}", s.missing);
            let others: Vec<u64> = (0..n).filter(|i| i % 3 != k as u64).collect();
            assert_eq!(s.not_sent.iter().map(|f| f.0).collect::<Vec<_>>(), others);
        }
        let f = hdf5::File::open(dir.path().join("w1.h5")).unwrap();
        let start: String = f
            .dataset("entry/acquisition/series_start")
            .unwrap()
            .read_scalar::<hdf5::types::VarLenUnicode>()
            .unwrap()
            .to_string();
        assert!(start.contains(r#""share":{"index":1,"of":3}"#), "{start}");
        assert!(FanOutSender::connect(&[]).is_err());
    }
}
