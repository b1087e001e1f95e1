//! Scale-out over several reconstruction nodes: `beamline recon --part I/N` run as N concurrent local
//! processes (as a Slurm job array would run them), `beamline recon merge` joins the parts, and the merged
//! volume equals a single-process reconstruction bit for bit.

#[path = "scaleout_util.rs"]
mod util;

use std::process::Stdio;

use tests::beamline;
use util::{acquire, finish, ok, text};

const SIZE: u32 = 40;
const PARTS: usize = 3;
/// The rotation axis, given explicitly: every part must use the same centre.
const CENTER: &str = "19.5";

fn volume(path: &std::path::Path) -> (Vec<usize>, Vec<u32>) {
    let f = hdf5::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let ds = f.dataset("/entry/data/data").expect("volume dataset");
    let v: Vec<f32> = ds.read_raw().expect("read volume");
    (ds.shape(), v.into_iter().map(f32::to_bits).collect())
}

#[test]
fn parts_merged_equal_one_process_bit_for_bit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let scan = acquire(d, "scan", SIZE, 45);
    let scan_s = scan.to_str().unwrap();

    let single = d.join("single.h5");
    ok(&["recon", scan_s, "-o", single.to_str().unwrap(), "--format", "h5", "--center", CENTER, "--quiet"]);

    let parts_dir = d.join("parts");
    let nodes: Vec<_> = (1..=PARTS)
        .map(|i| {
            beamline()
                .args(["recon", scan_s, "-o"])
                .arg(&parts_dir)
                .args(["--format", "h5", "--center", CENTER, "--quiet", "--threads", "1"])
                .args(["--part", &format!("{i}/{PARTS}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a part")
        })
        .collect();
    for (i, node) in nodes.into_iter().enumerate() {
        let out = finish(node);
        assert!(out.status.success(), "part {}/{PARTS} failed: {}", i + 1, text(&out));
    }
    let mut parts: Vec<_> = std::fs::read_dir(&parts_dir)
        .expect("parts folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "h5"))
        .collect();
    parts.sort();
    assert_eq!(parts.len(), PARTS, "one file per part: {parts:?}");
    // Merge in reverse order: the parts say which slices they hold.
    parts.reverse();

    let merged = d.join("merged.h5");
    let mut merge = beamline();
    merge.args(["recon", "merge"]).args(&parts).arg("-o").arg(&merged);
    let out = merge.output().expect("run merge");
    assert!(out.status.success(), "merge failed: {}", text(&out));

    let (shape_a, a) = volume(&single);
    let (shape_b, b) = volume(&merged);
    assert_eq!(shape_a, vec![SIZE as usize; 3]);
    assert_eq!(shape_a, shape_b);
    let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert_eq!(differing, 0, "{differing} voxels differ between the merged parts and the single run");

    // A missing middle part is refused.
    let partial = d.join("partial.h5");
    let mut merge = beamline();
    merge.args(["recon", "merge"]).arg(&parts[0]).arg(&parts[PARTS - 1]).arg("-o").arg(&partial);
    let out = merge.output().expect("run merge");
    assert!(!out.status.success(), "merging without the middle part must fail: {}", text(&out));
}
