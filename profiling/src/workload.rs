//! Synthetic workloads for `beamline bench trace` and the timeline tests: a tight loop of nested spans
//! (cost per span), and a small three-thread pipeline (camera → receiver → writer, spans named `sim.*`)
//! with queues, waits, counters and an optional stall injected on purpose in the writer.

use std::hint::black_box;
use std::time::Duration;

use crate::Error;

/// Records `n` spans on the calling thread: batches `bench.batch` of 999 nested `bench.span` spans, each
/// with one integer field (so every 1000th span is a batch).
pub fn nested_spans(n: u64) {
    let mut i = 0u64;
    while i < n {
        let _batch = tracing::info_span!("bench.batch", first = i).entered();
        i += 1;
        let end = (i + 999).min(n);
        while i < end {
            let _s = tracing::trace_span!("bench.span", i).entered();
            black_box(i);
            i += 1;
        }
    }
}

/// Shape of the synthetic pipeline.
#[derive(Debug, Clone, Copy)]
pub struct Pipeline {
    /// Frames produced by the camera.
    pub frames: u64,
    /// Bytes per frame.
    pub frame_bytes: usize,
    /// Time between frames (the camera waits for its trigger).
    pub frame_interval: Duration,
    /// The writer stalls this long in `wait.disk` at the middle frame (zero: no stall).
    pub stall: Duration,
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline {
            frames: 400,
            frame_bytes: 16 << 10,
            frame_interval: Duration::from_micros(200),
            stall: Duration::ZERO,
        }
    }
}

/// Runs the pipeline on three named threads (`camera`, `receiver`, `writer`) under the caller's current
/// dispatcher (handed on to the threads); returns the checksum of everything written.
pub fn pipeline(cfg: &Pipeline) -> Result<u64, Error> {
    let _run = tracing::info_span!("sim.pipeline", frames = cfg.frames).entered();
    // Both queues hold every frame, so only the camera's pace and the injected stall make threads wait.
    let cap = cfg.frames.max(1) as usize;
    let (to_rx, from_cam) = crossbeam_channel::bounded::<(u64, Vec<u8>)>(cap);
    let (to_writer, from_rx) = crossbeam_channel::bounded::<(u64, Vec<u8>)>(cap);
    let c = *cfg;
    let dispatch = tracing::dispatcher::get_default(|d| d.clone());
    let spawn = |name: &str, f: Box<dyn FnOnce() -> u64 + Send>| {
        let d = dispatch.clone();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || tracing::dispatcher::with_default(&d, f))
            .map_err(Error::Spawn)
    };
    let camera = spawn(
        "camera",
        Box::new(move || {
            for frame in 0..c.frames {
                {
                    let _t = tracing::debug_span!("wait.trigger").entered();
                    std::thread::sleep(c.frame_interval);
                }
                let buf = {
                    let _e = tracing::trace_span!("sim.expose", feeds = "camera", frame).entered();
                    (0..c.frame_bytes).map(|i| (i as u64 ^ frame) as u8).collect::<Vec<u8>>()
                };
                if to_rx.send((frame, buf)).is_err() {
                    break;
                }
            }
            0
        }),
    )?;
    let receiver = spawn(
        "receiver",
        Box::new(move || {
            loop {
                let msg = {
                    let _w =
                        tracing::debug_span!("wait.queue", queue = "camera", wants = "data", on = "camera").entered();
                    from_cam.recv()
                };
                let Ok((frame, buf)) = msg else { break };
                {
                    let _v = tracing::trace_span!("sim.validate", frame, bytes = buf.len() as u64).entered();
                    black_box(checksum(&buf));
                }
                let _p = tracing::debug_span!("wait.queue", queue = "frames", wants = "space", on = "writer").entered();
                if to_writer.send((frame, buf)).is_err() {
                    break;
                }
                tracing::trace!(counter.queue_depth = to_writer.len() as u64);
            }
            0
        }),
    )?;
    let writer = spawn(
        "writer",
        Box::new(move || {
            let mut sum = 0u64;
            let mut written = 0u64;
            loop {
                let msg = {
                    let _w =
                        tracing::debug_span!("wait.queue", queue = "frames", wants = "data", on = "receiver").entered();
                    from_rx.recv()
                };
                let Ok((frame, buf)) = msg else { break };
                {
                    let _s = tracing::trace_span!("sim.write_chunk", frame, bytes = buf.len() as u64).entered();
                    sum = sum.wrapping_add(checksum(&buf));
                }
                if frame == c.frames / 2 && !c.stall.is_zero() {
                    let _d = tracing::info_span!("wait.disk", injected = true).entered();
                    std::thread::sleep(c.stall);
                }
                written += 1;
                tracing::trace!(counter.frames = written);
            }
            sum
        }),
    )?;
    let join = |h: std::thread::JoinHandle<u64>| h.join().map_err(|_| Error::WorkloadPanicked);
    join(camera)?;
    join(receiver)?;
    join(writer)
}

fn checksum(buf: &[u8]) -> u64 {
    buf.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::{recorder, Config, Outcome, RunInfo};
    use crate::stalls::analyse;
    use crate::timeline::Timeline;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Mem(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Mem {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("mem").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn recorded_pipeline_shows_four_lanes_and_the_injected_stall_first() {
        let mem = Mem::default();
        let (layer, guard) =
            recorder(Box::new(mem.clone()), &RunInfo::default(), Config { frames: true, ..Config::default() });
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        let cfg = Pipeline { frames: 60, stall: Duration::from_millis(150), ..Pipeline::default() };
        let sum = tracing::dispatcher::with_default(&dispatch, || pipeline(&cfg)).expect("pipeline");
        assert_ne!(sum, 0);
        let totals = guard.finish(&Outcome::Success).expect("finish");
        assert_eq!(totals.dropped, 0);
        let text = String::from_utf8(mem.0.lock().expect("mem").clone()).expect("utf-8");
        let log = crate::log::RunLog::parse(std::path::Path::new("mem"), &text).expect("parse");
        let tl = Timeline::from_logs(vec![log]);
        let mut lanes: Vec<&str> = tl.processes[0].lanes.iter().map(|l| l.name.as_str()).collect();
        lanes.sort();
        assert_eq!(lanes.len(), 4);
        lanes.retain(|l| ["camera", "receiver", "writer"].contains(l));
        assert_eq!(lanes, ["camera", "receiver", "writer"]);
        let count = |lane: &str, name: &str| {
            tl.processes[0]
                .lanes
                .iter()
                .filter(|l| l.name == lane)
                .flat_map(|l| &l.spans)
                .filter(|s| &*s.name == name)
                .count()
        };
        assert_eq!(count("writer", "sim.write_chunk"), 60);
        assert_eq!(count("camera", "sim.expose"), 60);
        let a = analyse(&tl);
        assert_eq!((a.top[0].lane_name.as_str(), a.top[0].what.as_str()), ("writer", "disk"));
        assert!(a.top[0].dur >= 150_000_000, "the stall lasts at least the injected sleep");
        assert_eq!(tl.processes[0].counters.iter().map(|c| &*c.name).collect::<Vec<_>>(), ["frames", "queue_depth"]);
    }
}
