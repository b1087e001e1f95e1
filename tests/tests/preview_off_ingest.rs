//! The live preview is off the ingest path: the real receiver and the real simulator over ZeroMQ, with no
//! preview, a preview that keeps up, and a deliberately slow one (the test hook
//! `reconstruct::preview::TEST_DELAY_ENV` / `FeedOptions::test_frame_delay`). The files are read back by h5py:
//! every frame's raw chunk bytes, the decoded frames, `image_key` and `rotation_angle` are the same in all of
//! them. The slow preview drops frames (counted and said in the closing line) instead of stalling the writer.

mod acquisition_common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acquisition::protocol::{FrameHeader, SeriesEnd, SeriesStart};
use acquisition::receiver::{FrameObserver, Output, Receiver, ReceiverConfig};
use acquisition_common::{ok, wait};
use reconstruct::preview::{FeedOptions, PreviewFeed, PreviewRows, TEST_DELAY_ENV};
use tests::{beamline, free_endpoint, python};

const LIMIT: Duration = Duration::from_secs(300);
const ANGLES: u64 = 290;
const FRAMES: u64 = ANGLES + 10;

/// h5py: per file, the sha256 of every frame's raw (compressed) chunk bytes in order, of the decoded
/// frames, of `image_key` and of `rotation_angle`, and the frame count.
const DIGEST: &str = r#"
import hashlib, json, sys
import h5py, hdf5plugin, numpy as np
out = {}
for path in sys.argv[1:]:
    with h5py.File(path, "r") as f:
        d = f["/entry/instrument/detector/data"]
        raw = hashlib.sha256()
        for i in range(d.shape[0]):
            mask, chunk = d.id.read_direct_chunk((i, 0, 0))
            raw.update(mask.to_bytes(4, "little"))
            raw.update(chunk)
        out[path] = {
            "frames": int(d.shape[0]),
            "raw_chunks": raw.hexdigest(),
            "decoded": hashlib.sha256(np.ascontiguousarray(d[...]).tobytes()).hexdigest(),
            "image_key": hashlib.sha256(np.asarray(f["/entry/data/image_key"][...]).tobytes()).hexdigest(),
            "angles": hashlib.sha256(np.asarray(f["/entry/sample/rotation_angle"][...]).tobytes()).hexdigest(),
        }
print(json.dumps(out))
"#;

/// Frames per second the simulator sends: a detector's pace, which a preview of 3 rows of 48² keeps up with on
/// a loaded CI machine. (Unpaced, the simulator sends these 300 frames in ~20 ms, faster than any preview
/// that reconstructs as they arrive; "keeps up" is said of a rate.)
const FPS: &str = "200";

fn simulate(ep: &str) {
    let sim = beamline()
        .args(["simulate", "--connect", ep, "-q", "--size", "48", "--seed", "7", "--angles", &ANGLES.to_string()])
        .args(["--darks", "5", "--flats", "5", "--fps", FPS])
        .output()
        .expect("start beamline simulate");
    ok(&sim, "simulate");
}

/// `beamline receive` (with `extra` flags, and the preview's test delay when given) of one simulated series
/// into `file`; its stdout, after checking that the file got every frame.
fn receive(file: &Path, extra: &[&str], delay_ms: Option<u64>) -> String {
    let ep = free_endpoint();
    let mut cmd = beamline();
    cmd.args(["receive", "--bind", &ep, "--output", file.to_str().expect("utf-8 path"), "-q"]).args(extra);
    match delay_ms {
        Some(ms) => cmd.env(TEST_DELAY_ENV, ms.to_string()),
        None => cmd.env_remove(TEST_DELAY_ENV),
    };
    let rx = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start beamline receive");
    std::thread::sleep(Duration::from_millis(300));
    simulate(&ep);
    let stdout = ok(&wait(rx, LIMIT, "receive"), "receive");
    assert!(
        stdout.contains(&format!("expected {FRAMES}, received {FRAMES}, rejected 0, missing 0")),
        "closing line: {stdout}"
    );
    stdout
}

/// `(projections, expected, dropped)` of the closing line `... from K of N projections, D frames dropped ...`.
fn preview_counts(stdout: &str) -> (u64, u64, u64) {
    let line = stdout.lines().find(|l| l.starts_with("preview of series")).unwrap_or_else(|| panic!("{stdout}"));
    let words: Vec<&str> = line.rsplit(" from ").next().unwrap_or_default().split_whitespace().collect();
    let number = |i: usize| -> u64 {
        let w = words.get(i).map(|w| w.trim_end_matches(','));
        w.and_then(|w| w.parse().ok()).unwrap_or_else(|| panic!("word {i} of {line:?} is not a number"))
    };
    assert_eq!(
        (words.get(1), words.get(3), words.get(5)),
        (Some(&"of"), Some(&"projections,"), Some(&"frames")),
        "{line}"
    );
    (number(0), number(2), number(4))
}

#[test]
fn ingest_writes_the_same_file_with_no_preview_a_preview_and_a_slow_preview() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, previewed, slow) =
        (dir.path().join("plain.h5"), dir.path().join("previewed.h5"), dir.path().join("slow.h5"));
    let out = receive(&plain, &[], None);
    assert!(!out.contains("preview of series"), "{out}");

    let out = receive(&previewed, &["--preview", "3"], None);
    let (k, n, dropped) = preview_counts(&out);
    assert_eq!((k, n, dropped), (ANGLES, ANGLES, 0), "a preview that keeps up sees every projection: {out}");

    // 30 ms per frame: the 300 frames (5 ms apart) arrive far faster than the preview takes them.
    let out = receive(&slow, &["--preview", "3"], Some(30));
    let (k, n, dropped) = preview_counts(&out);
    assert!(dropped > 0, "the slow preview dropped nothing: {out}");
    assert!(k < ANGLES && n == ANGLES, "the slow preview claims {k} of {n} projections: {out}");
    assert_eq!(std::fs::read_dir(dir.path().join("slow.preview")).unwrap().count(), 3, "slices written anyway");

    let paths = [&plain, &previewed, &slow].map(|p| p.to_str().unwrap().to_string());
    let digests = Command::new(python()).arg("-c").arg(DIGEST).args(&paths).output().expect("run python");
    assert!(digests.status.success(), "h5py digest failed: {}", String::from_utf8_lossy(&digests.stderr));
    let digests: serde_json::Value = serde_json::from_slice(&digests.stdout).expect("the digest prints JSON");
    let reference = &digests[&paths[0]];
    assert_eq!(reference["frames"], FRAMES, "{digests}");
    for p in &paths[1..] {
        assert_eq!(&digests[p], reference, "{p} differs from the file written without a preview");
    }
}

/// Wraps the feed to see, on the writer thread, how far the preview had come when the writer closed the
/// series (its last frame already written).
struct AtSeriesEnd {
    feed: Arc<PreviewFeed>,
    written_by_writer: AtomicU64,
    at_end: Mutex<Option<(u64, u64)>>,
}

impl FrameObserver for AtSeriesEnd {
    fn series_start(&self, start: &SeriesStart) {
        self.feed.series_start(start);
    }

    fn frame(&self, header: &FrameHeader, payload: &[u8]) {
        self.written_by_writer.fetch_add(1, Ordering::SeqCst);
        self.feed.frame(header, payload);
    }

    fn series_end(&self, end: Option<&SeriesEnd>) {
        self.feed.series_end(end);
        *self.at_end.lock().unwrap() = Some((self.feed.handled(), self.feed.dropped()));
    }
}

#[test]
fn a_slow_preview_drops_frames_and_the_writer_finishes_first() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scan.h5");
    let options =
        FeedOptions { queue_frames: 4, test_frame_delay: Duration::from_millis(100), ..FeedOptions::default() };
    let feed = Arc::new(
        PreviewFeed::with_rows(PreviewRows::Evenly(2), None)
            .with_options(options)
            .writing_next_to(&Output::File(file.clone())),
    );
    let watch =
        Arc::new(AtSeriesEnd { feed: feed.clone(), written_by_writer: AtomicU64::new(0), at_end: Mutex::new(None) });
    let mut cfg = ReceiverConfig::new(Output::File(file.clone()));
    cfg.endpoint = "tcp://127.0.0.1:*".into();
    cfg.observer = Some(watch.clone());
    let receiver = Receiver::bind(cfg).expect("bind the receiver");
    let ep = receiver.endpoint();
    let thread = receiver.spawn().expect("start the receiver");
    simulate(&ep);
    let summary = thread.join().expect("the receiver");

    // The file is complete: every frame was written.
    let s = &summary.series[0];
    assert_eq!((s.expected, s.received, s.missing.len()), (FRAMES, FRAMES, 0));
    assert_eq!(watch.written_by_writer.load(Ordering::SeqCst), FRAMES);
    // When the writer closed the series, the preview still had frames queued: the writer did not wait for
    // it, and the frames it could not queue were dropped.
    let (handled, dropped) = watch.at_end.lock().unwrap().expect("the writer closed the series");
    assert!(dropped > 0, "nothing dropped");
    assert!(handled + dropped < FRAMES, "the preview had taken every queued frame when the writer finished");
    assert!(feed.written().is_empty(), "the slices were written before the queued frames were taken");

    // The preview thread then finishes the queued frames and writes its slices, from what it got.
    feed.finish();
    assert_eq!(feed.handled() + feed.dropped(), FRAMES, "every frame previewed or counted as dropped");
    assert_eq!(feed.dropped(), dropped, "frames dropped after the writer finished");
    let written = feed.written();
    let w = written[0].as_ref().expect("the preview slices");
    assert_eq!((w.dropped, w.expected), (dropped, ANGLES as usize));
    // (Possibly none: with 4 queued frames the preview may have got only darks, and projections before any
    // flat cannot be normalised. The closing-line test above shows a slow preview that still got some.)
    assert!(w.projections < ANGLES as usize, "{} projections", w.projections);
    assert!(w.files.iter().all(|f| f.is_file()));
}
