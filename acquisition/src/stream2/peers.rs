//! Several receivers on one stream v2: what one receiver learns of a series that the others need.
//!
//! A DECTRIS detector deals every stream v2 message to ONE of its PULL clients, round robin ("each message is
//! only ever sent to a single client"): the `start` reaches one receiver, the `end` one receiver (maybe
//! another), the images are spread over all. Receivers started with the same `--peers DIR` share the two
//! messages only one of them sees, as received, through that folder:
//!
//! * the receiver that gets a `start` publishes it as `DIR/series_<series_id>.start.cbor`; a receiver that
//!   gets images of a series it has no start for holds them (at most `queue_frames` of them) until that file
//!   appears, then opens the series from it and writes them. Images whose start neither arrived nor appeared
//!   within [`Peers::wait_for_start`] are rejected as `no_series` (counted and logged, never silently lost).
//! * the receiver that gets the `end` publishes `DIR/series_<series_id>.end.cbor`; every other receiver of
//!   the series closes it once that file exists and no image of the series has arrived for
//!   [`Peers::quiet_after_end`] (the detector sent every image before the end).
//!
//! Each receiver's file holds the images dealt to it; the others are listed as not sent here (the writer's
//! share rule), and `beamline stitch` over all the files is the check that every image is held exactly once.
//! Files are written under a temporary name and renamed, so a peer never reads half a message.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The folder several receivers of one stream share, and how long they wait for each other.
#[derive(Debug, Clone)]
pub struct Peers {
    /// The shared folder (one per acquisition session: a start left there from an earlier session with the
    /// same `series_id` would be taken for the new series').
    pub dir: PathBuf,
    /// How long images of a series whose start no one published are held before they are rejected.
    pub wait_for_start: Duration,
    /// Once a peer published the series end: how long without an image of the series before it is closed.
    pub quiet_after_end: Duration,
}

impl Peers {
    /// Peers sharing `dir` (created if needed), waiting 30 s for a start and 0.5 s of quiet after an end.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Peers> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Peers { dir, wait_for_start: Duration::from_secs(30), quiet_after_end: Duration::from_millis(500) })
    }

    /// Where the start of series `series_id` is published.
    pub fn start_path(&self, series_id: u64) -> PathBuf {
        self.dir.join(format!("series_{series_id}.start.cbor"))
    }

    /// Where the end of series `series_id` is published.
    pub fn end_path(&self, series_id: u64) -> PathBuf {
        self.dir.join(format!("series_{series_id}.end.cbor"))
    }

    fn publish(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)
    }

    /// Publishes a start message as received (and removes an end left by an earlier series of that id).
    pub fn publish_start(&self, series_id: u64, message: &[u8]) -> std::io::Result<()> {
        match std::fs::remove_file(self.end_path(series_id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        Self::publish(&self.start_path(series_id), message)
    }

    /// Publishes an end message as received.
    pub fn publish_end(&self, series_id: u64, message: &[u8]) -> std::io::Result<()> {
        Self::publish(&self.end_path(series_id), message)
    }

    /// The start a peer published for `series_id`, if any yet.
    pub fn start(&self, series_id: u64) -> Option<Vec<u8>> {
        std::fs::read(self.start_path(series_id)).ok()
    }

    /// Whether a peer published the end of `series_id`.
    pub fn ended(&self, series_id: u64) -> bool {
        self.end_path(series_id).exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_start_is_read_back_and_a_new_start_clears_an_old_end() {
        let dir = tempfile::tempdir().unwrap();
        let p = Peers::new(dir.path().join("peers")).unwrap();
        assert_eq!(p.start(4), None);
        p.publish_end(4, b"old end").unwrap();
        assert!(p.ended(4));
        p.publish_start(4, b"start bytes").unwrap();
        assert_eq!(p.start(4).as_deref(), Some(&b"start bytes"[..]));
        assert!(!p.ended(4), "an end of an earlier series 4 must not close the new one");
        let names: Vec<_> = std::fs::read_dir(&p.dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    }
}
