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
/// The rotation axis, given explicitly.
const CENTER: &str = "19.5";

fn volume(path: &std::path::Path) -> (Vec<usize>, Vec<u32>) {
    let f = hdf5::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let ds = f.dataset("/entry/data/data").expect("volume dataset");
    let v: Vec<f32> = ds.read_raw().expect("read volume");
    (ds.shape(), v.into_iter().map(f32::to_bits).collect())
}

/// Runs the `PARTS` parts of a reconstruction of `scan` concurrently into `dir` with `--center center` and
/// returns the part volumes, sorted by name.
fn run_parts(scan: &str, dir: &std::path::Path, center: &str) -> Vec<std::path::PathBuf> {
    let nodes: Vec<_> = (1..=PARTS)
        .map(|i| {
            beamline()
                .args(["recon", scan, "-o"])
                .arg(dir)
                .args(["--format", "h5", "--center", center, "--quiet", "--threads", "1"])
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
    let mut parts: Vec<_> = std::fs::read_dir(dir)
        .expect("parts folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "h5"))
        .collect();
    parts.sort();
    assert_eq!(parts.len(), PARTS, "one file per part: {parts:?}");
    parts
}

/// `beamline recon merge parts... -o out`.
fn merge(parts: &[&std::path::PathBuf], out: &std::path::Path) -> std::process::Output {
    beamline().args(["recon", "merge"]).args(parts).arg("-o").arg(out).output().expect("run merge")
}

/// Asserts that the volumes at `a` and `b` are equal bit for bit.
fn assert_same_volume(a: &std::path::Path, b: &std::path::Path) {
    let (shape_a, va) = volume(a);
    let (shape_b, vb) = volume(b);
    assert_eq!(shape_a, vec![SIZE as usize; 3]);
    assert_eq!(shape_a, shape_b);
    let differing = va.iter().zip(&vb).filter(|(x, y)| x != y).count();
    assert_eq!(differing, 0, "{differing} voxels differ between {} and {}", a.display(), b.display());
}

#[test]
fn parts_merged_equal_one_process_bit_for_bit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let scan = acquire(d, "scan", SIZE, 45);
    let scan_s = scan.to_str().unwrap();

    let single = d.join("single.h5");
    ok(&["recon", scan_s, "-o", single.to_str().unwrap(), "--format", "h5", "--center", CENTER, "--quiet"]);

    let mut parts = run_parts(scan_s, &d.join("parts"), CENTER);
    // Merge in reverse order: the parts say which slices they hold.
    parts.reverse();
    let merged = d.join("merged.h5");
    let out = merge(&parts.iter().collect::<Vec<_>>(), &merged);
    assert!(out.status.success(), "merge failed: {}", text(&out));
    assert_same_volume(&single, &merged);

    // A missing middle part is refused.
    let partial = d.join("partial.h5");
    let out = merge(&[&parts[0], &parts[PARTS - 1]], &partial);
    assert!(!out.status.success(), "merging without the middle part must fail: {}", text(&out));

    // A missing first or last part leaves no hole in the slices; the part numbers reveal it.
    let (first, last) = (&parts[PARTS - 1], &parts[0]); // reversed above
    for (given, absent) in
        [(vec![&parts[1], last], format!("1/{PARTS}")), (vec![first, &parts[1]], format!("{PARTS}/{PARTS}"))]
    {
        let out = merge(&given, &partial);
        assert!(!out.status.success(), "merging without part {absent} must fail: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("part(s) {absent} missing")), "{}", text(&out));
        assert!(!partial.exists(), "a refused merge writes no volume");
    }
}

#[test]
fn parts_with_automatic_centre_merge_equal_to_one_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let scan = acquire(d, "scan", SIZE, 45);
    let scan_s = scan.to_str().unwrap();

    let single = d.join("single.h5");
    ok(&["recon", scan_s, "-o", single.to_str().unwrap(), "--format", "h5", "--center", "auto", "--quiet"]);
    let parts = run_parts(scan_s, &d.join("parts"), "auto");
    let merged = d.join("merged.h5");
    let out = merge(&parts.iter().collect::<Vec<_>>(), &merged);
    assert!(out.status.success(), "merge failed: {}", text(&out));
    assert_same_volume(&single, &merged);
}
