//! A restart loses nothing (issue 11 §2, §4, §6 g): real `beamline simulate` and `beamline receive`
//! processes with the acknowledgement back-channel (`--ack`), checked with h5py + hdf5plugin against the
//! simulator's deterministic frames.
//!
//! * the receiver is killed (`kill -9`) three times at seeded moments of a 1,000-frame series and restarted
//!   with `--resume` each time: the final file holds every frame bit-exact, nothing missing, and the
//!   sender's replay buffer never held more than its cap;
//! * the sender is killed and restarted with `--resume`: it sends only what the receiver lacks;
//! * a sender with no receiver says so within seconds instead of freezing, and one without `--ack` that
//!   cannot deliver its last frames exits non-zero saying they are unconfirmed;
//! * disk full (a small tmpfs): the receiver closes the file `failed: disk full`, tells the sender, and both
//!   exit non-zero.

mod acquisition_common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use acquisition::protocol::{BloscParams, Compression, Degrees, Dtype};
use acquisition::sim::{Schedule, SimConfig};
use acquisition_common::{check, ok, simulated, spawn_receiver, wait};
use tests::{beamline, free_endpoint};

const SIZE: usize = 64;
const SEED: u64 = 7;

/// 10 darks, 10 flats, 980 projections: 1,000 frames.
fn schedule() -> Schedule {
    Schedule { darks: 10, flats: 10, angles: 980, range: Degrees(180.0) }
}

fn sim_cfg() -> SimConfig {
    let mut cfg = SimConfig::new(SIZE, SIZE, Dtype::Uint16);
    cfg.seed = SEED;
    cfg
}

/// `beamline simulate` of [`schedule`] to `ep` with acknowledgements on `ack`, plus `extra`.
fn sender(ep: &str, ack: &str, series: &str, extra: &[&str]) -> Command {
    let mut c = beamline();
    c.args(["simulate", "--connect", ep, "--ack", ack, "--size", &SIZE.to_string(), "--angles", "980"])
        .args(["--flats", "10", "--darks", "10", "--seed", &SEED.to_string(), "--series", series, "-q"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// A small deterministic generator (the kill moments must be "random" but reproducible).
struct Lcg(u64);

impl Lcg {
    fn next_ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        lo + (self.0 >> 33) % (hi - lo)
    }
}

fn wait_for_file(path: &Path, rx: &mut Child) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(rx.try_wait().unwrap().is_none(), "receiver exited before creating {}", path.display());
        assert!(t0.elapsed() < Duration::from_secs(60), "receiver never created {}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A number in `text` right after `before`.
fn number_after(text: &str, before: &str) -> u64 {
    let at = text.find(before).unwrap_or_else(|| panic!("{before:?} not in {text:?}")) + before.len();
    text[at..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().unwrap()
}

fn expected_file(dir: &Path, series: &str) -> PathBuf {
    simulated(series, &sim_cfg(), &schedule(), Compression::Blosc1(BloscParams::default())).write(dir, "expected")
}

#[test]
fn a_receiver_killed_three_times_mid_series_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (ep, ack) = (free_endpoint(), free_endpoint());
    let file = dir.path().join("restart.h5");
    let rx_args = ["--ack", ack.as_str(), "--resume", "--flush-ms", "100"];
    let mut rx = spawn_receiver(&ep, &file, &rx_args);
    // A 1 MiB replay buffer holds about 150 of these frames: far fewer than the series.
    let tx = sender(&ep, &ack, "restart", &["--fps", "150", "--replay-buffer-mib", "1"]).spawn().unwrap();
    let mut rng = Lcg(2026);
    wait_for_file(&file, &mut rx);
    for k in 0..3 {
        std::thread::sleep(Duration::from_millis(rng.next_ms(700, 1500)));
        assert!(rx.try_wait().unwrap().is_none(), "receiver {k} exited before its kill");
        rx.kill().unwrap(); // SIGKILL
        rx.wait().unwrap();
        std::thread::sleep(Duration::from_millis(rng.next_ms(50, 400)));
        rx = spawn_receiver(&ep, &file, &rx_args);
    }
    let tx_out = wait(tx, Duration::from_secs(180), "simulate");
    let rx_out = wait(rx, Duration::from_secs(60), "receive");
    let line = ok(&tx_out, "simulate");
    let closing = ok(&rx_out, "receive (restarted 3 times)");
    eprintln!("{line}{closing}");
    assert!(closing.contains("missing 0; status complete"), "{closing}");
    // The sender saw the restarts, sent frames again, and never buffered more than its cap.
    let peak = number_after(&line, "replay buffer peak ");
    let cap = number_after(&line, &format!("replay buffer peak {peak} of "));
    assert_eq!(cap, 1 << 20);
    assert!(peak <= cap && peak > 0, "{line}");
    let resent = number_after(&line, "bytes, ");
    let restarts = number_after(&line, &format!("bytes, {resent} frames sent again after "));
    assert_eq!(restarts, 3, "{line}");
    assert!(resent > 0, "{line}");
    // Its memory too: peak RSS (VmHWM, in the closing line) within the buffer plus a stated allowance.
    let rss = peak_rss(&line);
    assert!(rss > 0 && rss <= cap + SENDER_RSS_ALLOWANCE, "peak RSS {rss} bytes: {line}");
    let r = check(&file, &expected_file(dir.path(), "restart"), false);
    assert_eq!(r["checked_frames"].as_u64(), Some(1000), "{r}");
}

/// A receiver killed inside a flush, right after the image keys reached the file (a test hook aborts it
/// there): the file opens and every frame it marks as held reads back bit-exact, and a resumed receiver ends the
/// series with every frame. With the keys written in the same step as the rest, before HDF5 had put the frames'
/// chunk index in the file, the keys marked frames the file could not read back (seen: this test failed).
#[test]
fn a_receiver_killed_inside_a_flush_marks_only_frames_the_file_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (ep, ack) = (free_endpoint(), free_endpoint());
    let file = dir.path().join("midflush.h5");
    let rx_args = ["--ack", ack.as_str(), "--resume", "--flush-ms", "100"];
    let rx = tests::beamline()
        .args(["receive", "--bind", &ep, "--output", file.to_str().unwrap(), "-q"])
        .args(rx_args)
        .env("BEAMLINE_TEST_ABORT_AFTER_KEYS", "3")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tx = sender(&ep, &ack, "midflush", &["--fps", "300"]).spawn().unwrap();
    let out = wait(rx, Duration::from_secs(60), "receive (aborted in its third flush)");
    assert!(!out.status.success(), "the hook aborts the receiver: {}", tests::output_text(&out));
    let exp = expected_file(dir.path(), "midflush");
    let r = check(&file, &exp, true);
    let held = r["checked_frames"].as_u64().unwrap_or(0);
    assert!(held > 0, "the first two flushes marked frames: {r}");
    let rx = spawn_receiver(&ep, &file, &rx_args);
    let tx_out = wait(tx, Duration::from_secs(180), "simulate");
    let rx_out = wait(rx, Duration::from_secs(60), "receive (resumed)");
    ok(&tx_out, "simulate");
    let closing = ok(&rx_out, "receive (resumed)");
    assert!(closing.contains("missing 0; status complete"), "{closing}");
    let r = check(&file, &exp, false);
    assert_eq!(r["checked_frames"].as_u64(), Some(1000), "{r}");
}

/// A number in `line` right after `before`, as written by `simulate` (digits only).
fn peak_rss(line: &str) -> u64 {
    number_after(line, "peak RSS ")
}

/// What a `simulate` process holds besides its replay buffer: code, libzmq and its send queue (16
/// messages), the frame generator, the pooled frames in flight. Measured: 18 MiB peak RSS with a 1 MiB
/// buffer and 64 x 64 frames; stated with room, and well below the 50 MiB series of the memory test.
const SENDER_RSS_ALLOWANCE: u64 = 32 << 20;

#[test]
fn an_independent_python_sender_survives_two_receiver_kills() {
    // tests/py/ack_sender.py is written from PROTOCOL.md alone: the back-channel is specified enough for a
    // peer to lose nothing across restarts of our receiver.
    let dir = tempfile::tempdir().unwrap();
    let (ep, ack) = (free_endpoint(), free_endpoint());
    let file = dir.path().join("peer.h5");
    let rx_args = ["--ack", ack.as_str(), "--resume", "--flush-ms", "100"];
    let mut rx = spawn_receiver(&ep, &file, &rx_args);
    // About 40 frames of payload: far fewer than the series, so the buffer fills and waits.
    let cap: u64 = 256 << 10;
    let script = tests::workspace_root().join("tests/py/ack_sender.py");
    let tx = Command::new(tests::python())
        .arg(&script)
        .args([ep.as_str(), ack.as_str(), dir.path().to_str().unwrap(), "peer", "1000", &cap.to_string(), "250"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut rng = Lcg(11);
    wait_for_file(&file, &mut rx);
    for k in 0..2 {
        std::thread::sleep(Duration::from_millis(rng.next_ms(600, 1400)));
        assert!(rx.try_wait().unwrap().is_none(), "receiver {k} exited before its kill");
        rx.kill().unwrap(); // SIGKILL
        rx.wait().unwrap();
        std::thread::sleep(Duration::from_millis(rng.next_ms(50, 400)));
        rx = spawn_receiver(&ep, &file, &rx_args);
    }
    let tx_out = wait(tx, Duration::from_secs(180), "ack_sender.py");
    let rx_out = wait(rx, Duration::from_secs(60), "receive");
    let line = ok(&tx_out, "ack_sender.py");
    let closing = ok(&rx_out, "receive (restarted twice)");
    eprintln!("{line}{closing}{}", String::from_utf8_lossy(&tx_out.stderr));
    assert!(closing.contains("missing 0; status complete"), "{closing}");
    let r: serde_json::Value = serde_json::from_str(line.trim().lines().last().unwrap()).unwrap();
    assert_eq!(r["restarts"].as_u64(), Some(2), "{r}");
    assert!(r["resent"].as_u64().unwrap() > 0, "{r}");
    let peak = r["buffer_peak"].as_u64().unwrap();
    assert!(peak > cap / 2 && peak <= cap, "{r}");
    // The peer's memory: its buffer holds payload lengths only (the payloads are pre-made), so its peak RSS
    // above the RSS before the series is ZeroMQ's queues and Python's garbage, within a stated 8 MiB.
    let grew = (r["vm_hwm_kib"].as_u64().unwrap() - r["rss_before_kib"].as_u64().unwrap()) << 10;
    assert!(grew <= cap + (8 << 20), "{r}");
    let c = check(&file, &dir.path().join("expected.json"), false);
    assert_eq!(c["checked_frames"].as_u64(), Some(1000), "{c}");
}

#[test]
fn a_senders_peak_memory_stays_within_its_replay_buffer_plus_an_allowance() {
    // 200 raw 256 x 256 uint32 frames: 50 MiB of payload through a 2 MiB replay buffer (8 frames) into a
    // receiver killed once: a sender that kept the series (or much of it) in memory would exceed the bound
    // (2 + 32 MiB; measured: 21 MiB) by tens of MiB.
    let dir = tempfile::tempdir().unwrap();
    let (ep, ack) = (free_endpoint(), free_endpoint());
    let file = dir.path().join("mem.h5");
    let rx_args = ["--ack", ack.as_str(), "--resume", "--flush-ms", "100"];
    let spawn = || {
        beamline()
            .args(["receive", "--bind", &ep, "--output", file.to_str().unwrap(), "-q"])
            .args(rx_args)
            .env("BEAMLINE_TEST_WRITE_DELAY_MS", "3")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut rx = spawn();
    let tx = beamline()
        .args(["simulate", "--connect", &ep, "--ack", &ack, "--size", "256", "--dtype", "uint32", "--angles", "190"])
        .args(["--flats", "5", "--darks", "5", "--compression", "none", "--series", "mem"])
        .args(["--replay-buffer-mib", "2", "--fps", "0", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_file(&file, &mut rx);
    std::thread::sleep(Duration::from_millis(500));
    rx.kill().unwrap(); // SIGKILL: the sender sends what it buffered again to the next one
    rx.wait().unwrap();
    let rx = spawn();
    let line = ok(&wait(tx, Duration::from_secs(180), "simulate"), "simulate");
    let closing = ok(&wait(rx, Duration::from_secs(60), "receive"), "receive");
    eprintln!("{line}{closing}");
    assert!(closing.contains("missing 0; status complete"), "{closing}");
    let peak = number_after(&line, "replay buffer peak ");
    let cap = number_after(&line, &format!("replay buffer peak {peak} of "));
    assert_eq!(cap, 2 << 20);
    assert!(peak >= cap / 2 && peak <= cap, "the buffer filled, within its cap: {line}");
    assert_eq!(number_after(&line, &format!("bytes, {} frames sent again after ", number_after(&line, "bytes, "))), 1);
    let rss = peak_rss(&line);
    assert!(rss > 0 && rss <= cap + SENDER_RSS_ALLOWANCE, "peak RSS {rss} bytes: {line}");
}

/// `beamline receive --bind ep --output-dir dir -q` plus `extra`, stdout/stderr piped.
fn spawn_dir_receiver(ep: &str, dir: &Path, extra: &[&str]) -> Child {
    beamline()
        .args(["receive", "--bind", ep, "--output-dir", dir.to_str().unwrap(), "-q"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn output_dir_resume_reopens_the_one_unclosed_file_and_refuses_several() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let (ep, ack) = (free_endpoint(), free_endpoint());
    let rx_args = ["--ack", ack.as_str(), "--resume", "--flush-ms", "100"];
    // A closed series already in the directory: not resumed, not touched.
    let mut rx = spawn_dir_receiver(&ep, &out, &rx_args);
    let small = beamline()
        .args(["simulate", "--connect", &ep, "--ack", &ack, "--size", "16", "--angles", "8", "--flats", "1"])
        .args(["--darks", "1", "--series", "before", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    ok(&wait(small, Duration::from_secs(60), "simulate (a closed series)"), "simulate (a closed series)");
    assert!(rx.try_wait().unwrap().is_none(), "receive --output-dir --resume exited");
    let file = out.join("dirresume.h5");
    let tx = sender(&ep, &ack, "dirresume", &["--fps", "150", "--replay-buffer-mib", "1"]).spawn().unwrap();
    wait_for_file(&file, &mut rx);
    let mut rng = Lcg(99);
    for k in 0..2 {
        std::thread::sleep(Duration::from_millis(rng.next_ms(700, 1500)));
        assert!(rx.try_wait().unwrap().is_none(), "receiver {k} exited before its kill");
        rx.kill().unwrap(); // SIGKILL
        rx.wait().unwrap();
        if k == 0 {
            // Two unclosed series: which one the sender goes on with cannot be guessed, so it is refused.
            let copy = out.join("copy.h5");
            std::fs::copy(&file, &copy).unwrap();
            let refused = wait(spawn_dir_receiver(&ep, &out, &rx_args), Duration::from_secs(30), "a refused resume");
            let err = String::from_utf8_lossy(&refused.stderr);
            assert!(!refused.status.success(), "{err}");
            assert!(err.contains("several files hold a series never closed"), "{err}");
            assert!(err.contains(copy.to_str().unwrap()) && err.contains(file.to_str().unwrap()), "{err}");
            std::fs::remove_file(&copy).unwrap();
        }
        std::thread::sleep(Duration::from_millis(rng.next_ms(50, 400)));
        rx = spawn_dir_receiver(&ep, &out, &rx_args);
    }
    let line = ok(&wait(tx, Duration::from_secs(180), "simulate"), "simulate");
    // --output-dir receives until stopped: the sender returned, so the file is closed; stop the receiver.
    let st = Command::new("kill").args(["-INT", &rx.id().to_string()]).status().unwrap();
    assert!(st.success());
    let closing = ok(&wait(rx, Duration::from_secs(60), "receive --output-dir"), "receive --output-dir");
    eprintln!("{line}{closing}");
    assert!(closing.contains("missing 0; status complete"), "{closing}");
    assert_eq!(number_after(&line, &format!("bytes, {} frames sent again after ", number_after(&line, "bytes, "))), 2);
    let mut names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["before.h5", "dirresume.h5"], "the series went on in its file, no second file");
    let r = check(&file, &expected_file(dir.path(), "dirresume"), false);
    assert_eq!(r["checked_frames"].as_u64(), Some(1000), "{r}");
}

#[test]
fn a_sender_restarted_with_resume_sends_only_what_the_receiver_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let (ep, ack) = (free_endpoint(), free_endpoint());
    let file = dir.path().join("resume.h5");
    let mut rx = spawn_receiver(&ep, &file, &["--ack", &ack, "--flush-ms", "100"]);
    let mut first = sender(&ep, &ack, "resume", &["--fps", "200"]).spawn().unwrap();
    wait_for_file(&file, &mut rx);
    std::thread::sleep(Duration::from_millis(1500));
    first.kill().unwrap(); // SIGKILL: its queue and replay buffer are gone
    first.wait().unwrap();
    let second = sender(&ep, &ack, "resume", &["--resume"]).spawn().unwrap();
    let line = ok(&wait(second, Duration::from_secs(120), "simulate --resume"), "simulate --resume");
    let closing = ok(&wait(rx, Duration::from_secs(60), "receive"), "receive");
    eprintln!("{line}{closing}");
    assert!(closing.contains("missing 0; status complete"), "{closing}");
    let held = number_after(&line, "receiver restarts, ");
    assert!((51..1000).contains(&held), "the resumed sender skipped {held} frames: {line}");
    let r = check(&file, &expected_file(dir.path(), "resume"), false);
    assert_eq!(r["checked_frames"].as_u64(), Some(1000), "{r}");
}

/// Reads a child's stderr until `needle` appears (or `limit` passes); returns what was read.
fn stderr_until(child: &mut Child, needle: &str, limit: Duration) -> String {
    let mut err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let t0 = Instant::now();
    let mut text = String::new();
    while t0.elapsed() < limit && !text.contains(needle) {
        if let Ok(b) = rx.recv_timeout(Duration::from_millis(100)) {
            text.push_str(&String::from_utf8_lossy(&b));
        }
    }
    text
}

#[test]
fn a_sender_with_no_receiver_says_so_within_seconds_and_unconfirmed_frames_fail_the_exit() {
    let (ep, ack) = (free_endpoint(), free_endpoint());
    // With acknowledgements: the replay buffer never empties; the sender says it waits.
    let t0 = Instant::now();
    let mut tx = sender(&ep, &ack, "alone", &[]).spawn().unwrap();
    let err = stderr_until(&mut tx, "no receiver", Duration::from_secs(15));
    let _ = tx.kill();
    let _ = tx.wait();
    assert!(err.contains(&format!("no receiver at {ep} after 5 s; frames ")), "{err}");
    assert!(err.contains("/1000 waiting"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(15));
    // Without: 10 frames fit in ZeroMQ's queue, so every send returns, but none is delivered.
    let out = beamline()
        .args(["simulate", "--connect", &ep, "--size", "16", "--angles", "8", "--flats", "1", "--darks", "1"])
        .args(["--linger-s", "2", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("are unconfirmed"), "{stdout}");
}

/// A small file system mounted for the test, unmounted however the test ends.
struct Mount(PathBuf);

impl Mount {
    /// A tmpfs of `size` (`8m`).
    fn tmpfs(dir: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).status();
        assert!(st.is_ok_and(|s| s.success()), "mount -t tmpfs failed: this test needs root (CI runs as root)");
        Mount(dir.to_path_buf())
    }

    /// An ext4 file system of `mib` MiB in an image file beside `dir`, loop-mounted (a disk that takes
    /// O_DIRECT, so the writer's chunks bypass the page cache).
    fn ext4(dir: &Path, mib: u64) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let image = dir.with_extension("img");
        std::fs::File::create(&image).unwrap().set_len(mib << 20).unwrap();
        let mkfs = Command::new("mkfs.ext4").args(["-q", "-F", "-O", "^has_journal"]).arg(&image).status();
        assert!(mkfs.is_ok_and(|s| s.success()), "mkfs.ext4 failed (e2fsprogs is part of a Debian base system)");
        let st = Command::new("mount").args(["-o", "loop"]).arg(&image).arg(dir).status();
        assert!(st.is_ok_and(|s| s.success()), "mount -o loop failed: this test needs root (CI runs as root)");
        Mount(dir.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let done = Command::new("umount").arg(&self.0).status().is_ok_and(|s| s.success());
        if !done {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[test]
fn disk_full_closes_the_file_as_failed_and_tells_the_sender() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = Mount::tmpfs(&dir.path().join("small"), "8m");
    // 100 raw 256 x 256 uint16 frames: 12.5 MiB into 8 MiB.
    disk_full_case(dir.path(), &mnt.0, 90);
}

/// The same on a disk whose writes bypass the page cache (`beamline_direct`): the frames its window held are
/// counted in the disk-full check, so the file still closes as `failed: disk full` with every held frame intact.
#[test]
fn disk_full_with_writes_past_the_page_cache_closes_the_file_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = Mount::ext4(&dir.path().join("small"), 64);
    assert!(acquisition::direct::bypasses_page_cache(&mnt.0), "a loop-mounted ext4 takes O_DIRECT");
    // 600 raw frames: 75 MiB into about 60, of which the writer keeps 24 MiB free for what its file holds in memory.
    disk_full_case(dir.path(), &mnt.0, 590);
}

/// A disk that fails mid-series under writes past the page cache (the driver's test hook makes every O_DIRECT
/// write after the third fail with EIO): the failure latches, the receiver exits non-zero naming the file and
/// the OS error, and the file is what it was at its last flush: it opens, and every frame it lists as held is
/// intact (none of the frames whose bytes were lost is listed).
#[test]
fn a_disk_failing_mid_series_leaves_the_file_as_of_its_last_flush() {
    let dir = tempfile::tempdir().unwrap();
    assert!(acquisition::direct::bypasses_page_cache(dir.path()), "this test needs a disk that takes O_DIRECT");
    let ep = free_endpoint();
    let file = dir.path().join("eio.h5");
    let rx = tests::beamline()
        .args(["receive", "--bind", &ep, "--output", file.to_str().unwrap(), "-q", "--flush-ms", "50"])
        .env("BEAMLINE_TEST_DIRECT_EIO_AFTER", "3")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // 400 raw 256² frames (50 MiB); the fourth O_DIRECT write fails (every 50 ms flush writes its window out).
    let mut tx = beamline()
        .args(["simulate", "--connect", &ep, "--size", "256", "--angles", "390", "--flats", "5", "--darks", "5"])
        .args(["--compression", "none", "--series", "eio", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx_out = wait(rx, Duration::from_secs(120), "receive onto a failing disk");
    // Without acknowledgements the sender only learns that nobody takes its frames: stopped here.
    let _ = tx.kill();
    let _ = tx.wait();
    let rx_err = String::from_utf8_lossy(&rx_out.stderr);
    assert!(!rx_out.status.success(), "the receiver must exit non-zero: {rx_err}");
    assert!(rx_err.contains(file.to_str().unwrap()), "the error names the file: {rx_err}");
    assert!(rx_err.contains("Input/output error"), "the error names the OS error: {rx_err}");
    let f = hdf5::File::open(&file).expect("the file opens after the failure");
    let keys: Vec<i32> = f.dataset("entry/instrument/detector/image_key").unwrap().read_raw().unwrap();
    drop(f);
    let held = keys.iter().filter(|k| **k != 3).count();
    eprintln!("{held} frames held; the receiver said: {rx_err}");
    // The three O_DIRECT writes before the failure were flushes of frames: those frames are held.
    assert!((1..400).contains(&held), "{held} frames listed as held");
    let mut cfg = SimConfig::new(256, 256, Dtype::Uint16);
    cfg.seed = 1;
    let sch = Schedule { darks: 5, flats: 5, angles: 390, range: Degrees(180.0) };
    let exp = simulated("eio", &cfg, &sch, Compression::None).write(dir.path(), "expected");
    let r = check(&file, &exp, true);
    assert_eq!(r["checked_frames"].as_u64(), Some(held as u64), "{r}");
}

/// A receiver with acknowledgements fed `angles` + 10 raw 256² frames onto `mnt`, which cannot hold them all.
fn disk_full_case(dir: &Path, mnt: &Path, angles: u64) {
    let frames = angles as usize + 10;
    let (ep, ack) = (free_endpoint(), free_endpoint());
    let file = mnt.join("full.h5");
    let rx = spawn_receiver(&ep, &file, &["--ack", &ack, "--flush-ms", "100"]);
    let tx = beamline()
        .args(["simulate", "--connect", &ep, "--ack", &ack, "--size", "256", "--angles", &angles.to_string()])
        .args(["--flats", "5", "--darks", "5", "--compression", "none", "--series", "full", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tx_out = match tests::wait_or_stop(tx, Duration::from_secs(120)) {
        Ok(out) => out,
        Err(tx_out) => {
            // Which side hung: the receiver's closing line and errors say what it had seen.
            let rx_out = tests::wait_or_stop(rx, Duration::ZERO).unwrap_or_else(|o| o);
            panic!(
                "simulate into a full disk did not finish within 120 s\nsender: {}\nreceiver: {}",
                tests::output_text(&tx_out),
                tests::output_text(&rx_out)
            )
        }
    };
    let rx_out = wait(rx, Duration::from_secs(60), "receive onto a full disk");
    let (tx_err, rx_err) = (String::from_utf8_lossy(&tx_out.stderr), String::from_utf8_lossy(&rx_out.stderr));
    assert!(!rx_out.status.success(), "the receiver must exit non-zero: {rx_err}");
    assert!(rx_err.contains("disk full") && rx_err.contains(file.to_str().unwrap()), "{rx_err}");
    assert!(rx_err.contains("bytes free"), "the message names the free space: {rx_err}");
    assert!(!tx_out.status.success(), "the sender must exit non-zero: {tx_err}");
    assert!(tx_err.contains("the receiver stopped the series: failed: disk full"), "{tx_err}");
    // The file is closed consistent: status failed, every frame before the failure intact.
    let f = hdf5::File::open(&file).unwrap();
    let status: hdf5::types::VarLenUnicode = f.dataset("entry/acquisition/status").unwrap().read_scalar().unwrap();
    assert_eq!(status.as_str(), "failed: disk full");
    let keys: Vec<i32> = f.dataset("entry/instrument/detector/image_key").unwrap().read_raw().unwrap();
    let missing: Vec<u64> = f.dataset("entry/acquisition/missing_frames").unwrap().read_raw().unwrap();
    drop(f);
    let held = keys.iter().filter(|k| **k != 3).count();
    assert!((20..frames).contains(&held), "{held} frames held of {frames}");
    assert_eq!(missing.len(), frames - held);
    let mut cfg = SimConfig::new(256, 256, Dtype::Uint16);
    cfg.seed = 1;
    let sch = Schedule { darks: 5, flats: 5, angles, range: Degrees(180.0) };
    let exp = simulated("full", &cfg, &sch, Compression::None).write(dir, "expected");
    let r = check(&file, &exp, true);
    assert_eq!(r["checked_frames"].as_u64(), Some(held as u64), "{r}");
}

#[test]
fn a_replay_into_a_slow_receiver_reports_sent_only_what_the_receiver_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    // A source file to replay: 60 frames received normally.
    let (ep, ack) = (free_endpoint(), free_endpoint());
    let src = dir.path().join("src.h5");
    let rx = spawn_receiver(&ep, &src, &[]);
    let tx = beamline()
        .args(["simulate", "--connect", &ep, "--size", "64", "--angles", "50", "--flats", "5", "--darks", "5"])
        .args(["--series", "src", "-q"])
        .output()
        .unwrap();
    ok(&tx, "simulate (source)");
    ok(&wait(rx, Duration::from_secs(60), "receive (source)"), "receive (source)");
    // Replayed into a receiver that takes 40 ms per frame: the sender's last frames and its series end wait
    // in queues when it has sent everything; it must wait for the receiver's word, not report early.
    let out = dir.path().join("slow.h5");
    let rx = tests::beamline()
        .args(["receive", "--bind", &ep, "--ack", &ack, "--output", out.to_str().unwrap(), "-q"])
        .env("BEAMLINE_TEST_WRITE_DELAY_MS", "40")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut tx = beamline();
    tx.args(["simulate", "--connect", &ep, "--ack", &ack, "--replay", src.to_str().unwrap(), "--series", "slow", "-q"]);
    let line = ok(&tx.output().unwrap(), "simulate --replay --ack");
    // The sender has returned: the receiver has already closed the file with every frame.
    let f = hdf5::File::open(&out).unwrap();
    let status: hdf5::types::VarLenUnicode = f.dataset("entry/acquisition/status").unwrap().read_scalar().unwrap();
    let received: u64 = f.dataset("entry/acquisition/frames_received").unwrap().read_scalar().unwrap();
    drop(f);
    assert_eq!((status.as_str(), received), ("complete", 60), "{line}");
    assert!(line.contains("60 frames") && line.contains("all 60 confirmed on disk"), "{line}");
    let closing = ok(&wait(rx, Duration::from_secs(60), "receive (slow)"), "receive (slow)");
    assert!(closing.contains("received 60, rejected 0, missing 0; status complete"), "{closing}");
}
