//! Fuzz: 10,000 random and mutated messages thrown at a live `beamline receive` between the valid frames
//! of a series; afterwards the file must hold exactly the valid frames, and every bad message must have
//! been counted as rejected.
//!
//! A mutation that happens to produce a *well-formed* frame for an index not yet sent (or a well-formed end
//! of the open series) is by the protocol indistinguishable from the real thing, so such mutations are
//! redrawn; mutated copies of frames already sent stay in (the receiver must reject them as duplicates).

mod acquisition_common;

use std::time::Duration;

use acquisition::blosc::{validate_chunk, Codec};
use acquisition::protocol::{
    decode_frame_header, decode_series_end, encode_frame_header, BloscParams, Compression, Degrees, Dtype, FrameHeader,
    FrameIndex, ImageKey, SeriesStart, SeriesStatus, Shape,
};
use acquisition::sender::SeriesSender;
use acquisition_common::{check, ok, spawn_receiver, wait, Expected};
use tests::free_endpoint;

const N: u64 = 200;
const GARBAGE_PER_FRAME: usize = 50;
const ROWS: usize = 24;
const COLS: usize = 32;
const SERIES: &str = "fz";

/// xorshift64*: a deterministic generator without extra dependencies.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn flip(&mut self, v: &mut [u8], times: usize) {
        for _ in 0..times {
            if !v.is_empty() {
                let i = self.below(v.len());
                v[i] = self.next() as u8;
            }
        }
    }
}

struct Sent {
    header: Vec<u8>,
    payload: Vec<u8>,
}

fn frame_json(series: &str, index: u64, key: u64, protocol: u32) -> Vec<u8> {
    format!(
        r#"{{"protocol":{protocol},"series":"{series}","index":{index},"image_key":{key},"angle":1.5,"timestamp":1.0}}"#
    )
    .into_bytes()
}

fn garbage(rng: &mut Rng, sent: &[Sent]) -> Vec<Vec<u8>> {
    let pick = &sent[rng.below(sent.len())];
    let copy = || vec![b"frame".to_vec(), pick.header.clone(), pick.payload.clone()];
    // Damaged payloads go under the header of the next frame not sent yet, so that the payload checks (not
    // the duplicate check) must catch them.
    let next = sent.len() as u64;
    let fresh = |mut m: Vec<Vec<u8>>| {
        if next < N {
            m[1] = frame_json(SERIES, next, 0, 1);
        }
        m
    };
    match rng.below(16) {
        0 => (0..1 + rng.below(5))
            .map(|_| {
                let n = rng.below(64);
                rng.bytes(n)
            })
            .collect(),
        1 => {
            let n = rng.below(80);
            vec![b"frame".to_vec(), rng.bytes(n), pick.payload.clone()]
        }
        2 => copy(),
        3 => {
            let mut m = copy();
            let k = 1 + rng.below(4);
            rng.flip(&mut m[1], k);
            m
        }
        4 => {
            let mut m = copy();
            let end = m[2].len().min(40);
            let k = 1 + rng.below(3);
            rng.flip(&mut m[2][..end], k);
            fresh(m)
        }
        5 => {
            let mut m = copy();
            let cut = rng.below(m[2].len());
            m[2].truncate(cut);
            fresh(m)
        }
        6 => {
            let mut m = copy();
            let n = 1 + rng.below(100);
            m[2].extend(rng.bytes(n));
            fresh(m)
        }
        7 => {
            let mut m = copy();
            if rng.below(2) == 0 {
                m.pop();
            } else {
                m.push(rng.bytes(8));
            }
            m
        }
        8 => vec![b"frame".to_vec(), frame_json("other", 0, 0, 1), pick.payload.clone()],
        9 => vec![b"frame".to_vec(), frame_json(SERIES, N + rng.below(1000) as u64, 0, 1), pick.payload.clone()],
        10 => vec![b"frame".to_vec(), frame_json(SERIES, 0, 3 + rng.below(250) as u64, 1), pick.payload.clone()],
        11 => vec![b"frame".to_vec(), frame_json(SERIES, 0, 0, 2), pick.payload.clone()],
        12 => {
            let mut s = start("second");
            if rng.below(2) == 0 {
                s.shape = Shape([0, 3]);
            }
            vec![b"series_start".to_vec(), serde_json::to_vec(&s).unwrap()]
        }
        13 => {
            let body = if rng.below(2) == 0 {
                br#"{"protocol":1,"series":"other","frames_sent":3}"#.to_vec()
            } else {
                br#"{"protocol":1,"series":"fz","frames_sent":"many"}"#.to_vec()
            };
            vec![b"series_end".to_vec(), body]
        }
        14 => fresh(vec![b"frame".to_vec(), pick.header.clone(), rng.bytes(ROWS * COLS * 2)]),
        _ => {
            let mut m = copy();
            let part = rng.below(3);
            let k = 1 + rng.below(6);
            rng.flip(&mut m[part], k);
            m
        }
    }
}

/// True when the message would be a legitimate frame for a not-yet-sent index or a legitimate end of
/// the series: the protocol cannot tell those from real ones, so the fuzzer must not send them.
fn indistinguishable_from_valid(m: &[Vec<u8>], seen: &[bool]) -> bool {
    match (m.first().map(Vec::as_slice), m.len()) {
        (Some(b"frame"), 3) => match decode_frame_header(&m[1]) {
            Ok(d) => {
                d.series == SERIES
                    && (d.header.index.0 < N && !seen[d.header.index.0 as usize])
                    && validate_chunk(&m[2], 2, ROWS * COLS * 2).is_ok()
            }
            Err(_) => false,
        },
        (Some(b"series_end"), 2) => decode_series_end(&m[1]).map(|e| e.series == SERIES).unwrap_or(false),
        _ => false,
    }
}

fn start(series: &str) -> SeriesStart {
    SeriesStart::new(
        series,
        Shape([ROWS as u32, COLS as u32]),
        Dtype::Uint16,
        Compression::Blosc1(BloscParams::default()),
        N,
    )
}

#[test]
fn ten_thousand_bad_messages_cost_no_good_frame() {
    let dir = tempfile::tempdir().unwrap();
    let ep = free_endpoint();
    let file = dir.path().join("fuzz.h5");
    let rx = spawn_receiver(&ep, &file, &[]);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut sender = SeriesSender::connect(&ep).unwrap();
    sender.set_linger(-1).unwrap();
    // Frames and ends before any series start are rejected outside the series.
    for i in 0..25u64 {
        let parts: [&[u8]; 2] = [b"series_end", br#"{"protocol":1,"series":"fz","frames_sent":0}"#];
        let json = frame_json(SERIES, i, 0, 1);
        match i % 5 {
            0 => sender.send_raw(&parts).unwrap(),
            _ => sender.send_raw(&[b"frame", &json, b"x"]).unwrap(),
        }
    }
    let mut s = start(SERIES);
    s.metadata = serde_json::json!({"fuzz": true});
    sender.start_series(&s).unwrap();
    let mut codec = Codec::new(BloscParams::default(), 2);
    let mut exp = Expected {
        series: SERIES.into(),
        rows: ROWS,
        cols: COLS,
        dtype: Dtype::Uint16,
        frames: Vec::new(),
        keys: Vec::new(),
        angles: Vec::new(),
        compression: s.compression,
        status: "complete".into(),
        frames_sent: Some(N),
        metadata: s.metadata.clone(),
        end_metadata: None,
        rejected: None,
    };
    let mut sent: Vec<Sent> = Vec::new();
    let mut seen = vec![false; N as usize];
    let mut bad = 0u64;
    for i in 0..N {
        // Smooth frames with noise: compressible, so blosc chunks have real block tables.
        let px: Vec<u8> =
            (0..ROWS * COLS).flat_map(|p| ((p as u64 * 3 + i * 11 + rng.next() % 7) as u16).to_le_bytes()).collect();
        let key = if i < 5 {
            ImageKey::Dark
        } else if i < 10 {
            ImageKey::Flat
        } else {
            ImageKey::Projection
        };
        let h = FrameHeader {
            index: FrameIndex(i),
            image_key: key,
            angle: Degrees(i as f64 * 0.9),
            timestamp: 1.7e9 + i as f64,
        };
        sender.send_frame(&h, &px).unwrap();
        let mut header = Vec::new();
        encode_frame_header(SERIES, &h, &mut header);
        sent.push(Sent { header, payload: codec.compress(&px).unwrap().to_vec() });
        seen[i as usize] = true;
        exp.frames.push(Some(px));
        exp.keys.push(key.code());
        exp.angles.push(h.angle.0);
        let mut k = 0;
        while k < GARBAGE_PER_FRAME {
            let m = garbage(&mut rng, &sent);
            if m.is_empty() || indistinguishable_from_valid(&m, &seen) {
                continue;
            }
            let parts: Vec<&[u8]> = m.iter().map(Vec::as_slice).collect();
            sender.send_raw(&parts).unwrap();
            bad += 1;
            k += 1;
        }
    }
    assert!(bad >= 10_000);
    sender.end_series(SeriesStatus::Complete, None).unwrap();
    drop(sender);
    let stdout = ok(&wait(rx, Duration::from_secs(300), "beamline receive"), "beamline receive");
    eprintln!("{stdout}");
    assert!(
        stdout.contains(&format!("expected {N}, received {N}, rejected {bad} (")),
        "closing line must count all {bad} bad messages: {stdout}"
    );
    assert!(stdout.contains("missing 0; status complete"), "{stdout}");
    assert!(stdout.contains("rejected outside any series: 25 (no_series 25)"), "{stdout}");
    exp.rejected = Some(bad);
    let r = check(&file, &exp.write(dir.path(), "expected"), false);
    assert_eq!(r["checked_frames"], N);
    assert_eq!(r["rejected"], bad);
}
