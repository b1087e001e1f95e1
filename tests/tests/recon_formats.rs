//! Issue 14 §1, §3-§5: real input formats (DXchange; NXtomo with Bitshuffle-LZ4 chunks, filter 32008, written
//! by h5py + hdf5plugin), binning and cropping; outputs that keep their meaning (integer TIFF scaling read
//! back by tifffile and inverted, the NeXus volume checked with h5py, non-empty outputs refused,
//! `-o NAME.tif` / `-o NAME.h5`); `beamline rerun`; messages checked against the data.

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use tests::{beamline, make_nxtomo as make, output_text as text, provenance, recon_quiet as recon, run_python};

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", text(&o));
    o
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn slices(dir: &Path) -> Vec<Vec<f32>> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .expect("output folder")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("slice_")))
        .collect();
    names.sort();
    names.iter().map(|n| reconstruct::output::read_f32_tiff(n).expect("float TIFF").2).collect()
}

fn check(path: &Path, cols: usize, rows: usize) -> Value {
    let out = run_python("recon_check_tiffs.py", &[p(path), &cols.to_string(), &rows.to_string(), "0"]);
    serde_json::from_str(out.trim()).expect("JSON from recon_check_tiffs.py")
}

fn assert_accurate(v: &Value, n: usize) {
    let s = v["slices"].as_array().expect("slices");
    assert_eq!(s.len(), n, "{v}");
    for s in s {
        assert!(s["rmse"].as_f64().expect("rmse") < 0.08 && s["corr"].as_f64().expect("corr") > 0.95, "{s}");
    }
}

#[test]
fn dxchange_is_detected_read_in_degrees_and_inspected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (deg, rad, bare) = (dir.path().join("deg.h5"), dir.path().join("rad.h5"), dir.path().join("bare.h5"));
    make(&deg, &["--layout", "dxchange", "--rows", "3", "--compression", "none"]);
    make(&rad, &["--layout", "dxchange", "--rows", "3", "--theta-units", "rad"]);
    make(&bare, &["--layout", "dxchange", "--rows", "3", "--theta-units", "none"]);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    ok(recon(&[p(&deg), "-o", p(&a), "--center", "63.5"]));
    assert_accurate(&check(&a, 128, 3), 3);
    assert_eq!(provenance(&a)["parameters"]["input_layout"], "DXchange");
    // Radians with units="rad" give the same volume (to rounding of the angle conversion).
    ok(recon(&[p(&rad), "-o", p(&b), "--center", "63.5"]));
    for (x, y) in slices(&a).iter().zip(slices(&b)) {
        let worst = x.iter().zip(&y).map(|(u, v)| (u - v).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-4, "degrees and radians differ by {worst}");
    }
    // Degrees without units are degrees (tomocupy's convention): a complete 180-degree scan.
    ok(recon(&[p(&bare), "-o", p(&dir.path().join("c")), "--center", "63.5"]));

    let o = beamline().args(["inspect", p(&deg)]).output().expect("inspect");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", text(&o));
    for what in ["format: DXchange", "/exchange/data [180 projections x 3 rows x 128 columns]", "8 flats", "3 darks"] {
        assert!(out.contains(what), "inspect lacks {what:?}:\n{out}");
    }
    assert!(out.contains("verdict: complete"), "{out}");
}

#[test]
fn bitshuffle_lz4_chunks_are_decoded_without_plugins_and_other_filters_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (blosc, bslz4, zstd) = (dir.path().join("blosc.h5"), dir.path().join("bslz4.h5"), dir.path().join("zstd.h5"));
    make(&blosc, &["--rows", "3"]);
    make(&bslz4, &["--rows", "3", "--compression", "bslz4"]);
    make(&zstd, &["--rows", "3", "--compression", "zstd"]);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let empty = dir.path().join("no-plugins");
    std::fs::create_dir(&empty).unwrap();
    ok(recon(&[p(&blosc), "-o", p(&a), "--center", "63.5"]));
    let o = beamline()
        .env("HDF5_PLUGIN_PATH", &empty)
        .args(["recon", p(&bslz4), "-o", p(&b), "--center", "63.5", "--quiet"])
        .output()
        .expect("run");
    ok(o);
    assert_eq!(slices(&a), slices(&b), "the same counts, losslessly compressed two ways, give the same volume");

    let o = beamline()
        .env("HDF5_PLUGIN_PATH", &empty)
        .args(["recon", p(&zstd), "-o", p(&dir.path().join("z")), "--center", "63.5", "--quiet"])
        .output()
        .expect("run");
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    for what in ["/entry/instrument/detector/data", "HDF5 filter 32015 (Zstandard", "HDF5_PLUGIN_PATH", "h5repack"] {
        assert!(err.contains(what), "message lacks {what:?}: {err}");
    }
    assert_eq!(err.matches("32015").count(), 1, "said once: {err}");

    let o = beamline().env("HDF5_PLUGIN_PATH", &empty).args(["inspect", p(&bslz4)]).output().expect("inspect");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Bitshuffle (32008") && out.contains("decoded by beamline"), "{}", text(&o));
}

#[test]
fn binning_projection_range_and_column_cropping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("scan.h5");
    make(&input, &["--rows", "4", "--angles", "360", "--span", "360", "--pixel-size", "6.5e-6"]);
    let (full, binned) = (dir.path().join("full"), dir.path().join("binned"));
    ok(recon(&[p(&input), "-o", p(&full), "--center", "63.5"]));
    ok(recon(&[p(&input), "-o", p(&binned), "--center", "63.5", "--binning", "2"]));
    let (f, b) = (slices(&full), slices(&binned));
    assert_eq!(b.len(), 2, "4 rows binned by 2");
    assert_eq!(b[0].len(), 64 * 64, "128 columns binned by 2");
    // Mean binning keeps transmissions; values are per binned voxel, twice as large as per pixel.
    let total = |s: &[f32]| s.iter().map(|v| *v as f64).sum::<f64>();
    let ratio = total(&b[0]) / ((total(&f[0]) + total(&f[1])) / 2.0) * 4.0;
    assert!((ratio - 2.0).abs() < 0.1, "binned/unbinned attenuation per voxel ratio {ratio}");
    let prov = provenance(&binned);
    assert_eq!(prov["parameters"]["binning"], 2);
    assert_eq!(prov["parameters"]["binning_mode"], "mean");
    assert_eq!(prov["parameters"]["voxel_size"]["size"], 1.3e-5);

    // The first half of a 360-degree scan: 180 projections, complete on its own.
    let half = dir.path().join("half");
    ok(recon(&[p(&input), "-o", p(&half), "--center", "63.5", "--start-proj", "0", "--end-proj", "180"]));
    assert_eq!(provenance(&half)["parameters"]["angles"], 180);
    assert_accurate(&check(&half, 128, 4), 4);
    // A quarter is refused as incomplete, naming the flag.
    let o = recon(&[p(&input), "-o", p(&dir.path().join("q")), "--center", "63.5", "--end-proj", "90"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("cover 90.0 degrees") && err.contains("--allow-incomplete"), "{err}");

    // Columns 16..112 of 128: 96-pixel slices; the centre stays in detector columns.
    let crop = dir.path().join("crop");
    ok(recon(&[p(&input), "-o", p(&crop), "--center", "63.5", "--start-column", "16", "--end-column", "112"]));
    assert_eq!(slices(&crop)[0].len(), 96 * 96);
    let prov = provenance(&crop);
    assert_eq!(prov["parameters"]["center"], 63.5);
    assert_eq!(prov["parameters"]["center_read_columns"], 47.5);
    let o = recon(&[p(&input), "-o", p(&dir.path().join("x")), "--center", "10", "--start-column", "16"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("outside the columns 16..128"), "{}", text(&o));
}

#[test]
fn integer_tiffs_keep_their_scaling_and_invert_within_one_quantum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("scan.h5");
    make(&input, &["--rows", "3"]);
    let (float, u16dir, u8file) = (dir.path().join("f32"), dir.path().join("u16"), dir.path().join("vol8.tif"));
    ok(recon(&[p(&input), "-o", p(&float), "--center", "63.5"]));
    ok(recon(&[p(&input), "-o", p(&u16dir), "--center", "63.5", "--bits", "16", "--range=-0.005:0.03"]));
    ok(recon(&[p(&input), "-o", p(&u8file), "--center", "63.5", "--bits", "8"]));
    assert!(u8file.is_file(), "-o NAME.tif is one file");
    for (out, bits, pages, worst) in [(&u16dir, 16, 3, 0.5), (&u8file, 8, 3, 0.5)] {
        let v: Value =
            serde_json::from_str(run_python("recon_check_outputs.py", &["scaling", p(&float), p(out)]).trim())
                .expect("JSON");
        assert_eq!(v["bits"], bits, "{v}");
        assert_eq!(v["pages"], pages, "{v}");
        assert_eq!(v["tags_match"], true, "SMin/SMaxSampleValue = lo/hi: {v}");
        assert!(v["inside"].as_u64().unwrap() > 1000, "{v}");
        assert!(v["worst_quanta"].as_f64().unwrap() <= worst + 0.01, "inverted beyond half a quantum: {v}");
    }
    let sidecar = dir.path().join("vol8.provenance.json");
    let prov: Value = serde_json::from_str(&std::fs::read_to_string(sidecar).expect("sidecar")).unwrap();
    assert_eq!(prov["scaling"]["bits"], 8);
}

#[test]
fn hdf5_volume_is_nexus_with_voxel_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("scan.h5");
    make(&input, &["--rows", "4", "--pixel-size", "6.5e-6"]);
    let vol = dir.path().join("vol.h5");
    ok(recon(&[p(&input), "-o", p(&vol), "--center", "63.5", "--binning", "2"]));
    let v: Value =
        serde_json::from_str(run_python("recon_check_outputs.py", &["nexus", p(&vol)]).trim()).expect("JSON");
    assert_eq!(v["entry_class"], "NXentry", "{v}");
    assert_eq!(v["default"], "data", "{v}");
    assert_eq!(v["data_class"], "NXdata", "{v}");
    assert_eq!(v["signal"], "data", "{v}");
    assert_eq!(v["axes"], serde_json::json!(["z", "y", "x"]), "{v}");
    assert_eq!(v["shape"], serde_json::json!([2, 64, 64]), "{v}");
    assert_eq!(v["dtype"], "float32", "{v}");
    assert!((v["x_pixel_size"].as_f64().unwrap() - 1.3e-5).abs() < 1e-12, "{v}");
    assert_eq!(v["x_units"], "m", "{v}");
    assert_eq!(v["z_units"], "m", "{v}");
    assert_eq!(v["provenance"]["complete"], true, "{v}");
    // Again into the same file: refused, then replaced with --overwrite.
    let o = recon(&[p(&input), "-o", p(&vol), "--center", "63.5"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--overwrite"), "{}", text(&o));
    ok(recon(&[p(&input), "-o", p(&vol), "--center", "63.5", "--overwrite"]));
}

#[test]
fn a_used_output_folder_is_refused_and_overwrite_removes_only_what_recon_wrote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("scan.h5");
    make(&input, &["--rows", "6"]);
    let out = dir.path().join("out");
    ok(recon(&[p(&input), "-o", p(&out), "--center", "63.5"]));
    let o = recon(&[p(&input), "-o", p(&out), "--center", "63.5", "--slices", "2:4"]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is not empty (7 entries)") && err.contains("--overwrite"), "{err}");
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let o = recon(&[p(&input), "-o", p(&out), "--center", "63.5", "--slices", "2:4", "--overwrite"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("notes.txt") && err.contains("nothing was removed"), "{err}");
    assert!(out.join("slice_00005.tif").exists(), "nothing removed");
    std::fs::remove_file(out.join("notes.txt")).unwrap();
    ok(recon(&[p(&input), "-o", p(&out), "--center", "63.5", "--slices", "2:4", "--overwrite"]));
    let mut names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["provenance.json", "slice_00002.tif", "slice_00003.tif"]);
}

#[test]
fn rerun_reports_identical_then_the_first_differing_slice_of_an_altered_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("scan.h5");
    make(&input, &["--rows", "5"]);
    let out = dir.path().join("out");
    ok(recon(&[p(&input), "-o", p(&out)]));
    let prov = provenance(&out);
    assert_eq!(prov["input_sha256"].as_str().map(str::len), Some(64), "{prov}");
    assert_eq!(prov["slice_sha256"].as_array().map(Vec::len), Some(5));
    let o = ok(beamline().args(["rerun", p(&out)]).output().expect("rerun"));
    let so = String::from_utf8_lossy(&o.stdout);
    assert!(so.contains("as recorded") && so.contains("identical: 5 slices"), "{so}");

    make(&input, &["--rows", "5", "--perturb-row", "3"]);
    let o = beamline().args(["rerun", p(&out)]).output().expect("rerun");
    assert!(!o.status.success(), "{}", text(&o));
    let so = String::from_utf8_lossy(&o.stdout);
    assert!(so.contains("the input has changed"), "{so}");
    assert!(so.contains("differs: slice 3 is the first of 5"), "{so}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 2, "the temporary rerun output is removed: {left:?}");
}

#[test]
fn option_values_are_checked_against_the_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("scan.h5");
    make(&input, &["--rows", "2"]);
    let out = dir.path().join("out");
    let err = |args: &[&str]| {
        let mut a = vec![p(&input), "-o", p(&out)];
        a.extend_from_slice(args);
        let o = recon(&a);
        assert!(!o.status.success(), "{args:?} must be refused: {}", text(&o));
        assert!(!out.exists(), "{args:?}: refused before any output");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let e = err(&["--center", "300"]);
    assert!(e.contains("--center 300 is outside the 128-column detector (columns 0 to 127"), "{e}");
    let e = err(&["--center", "63.5", "--stripes", "20"]);
    assert!(e.contains("--stripes 20: the median window must be odd") && e.contains("19 or 21"), "{e}");
    let e = err(&["--center", "63.5", "--memory", "1K"]);
    assert!(e.contains("--memory 1.0 KiB is too small for this file"), "{e}");
    assert!(e.contains("the smallest slab (one detector row of every frame) needs about"), "{e}");
    let need: u64 = e
        .split("give at least --memory ")
        .nth(1)
        .and_then(|t| t.split('M').next())
        .and_then(|n| n.parse().ok())
        .expect("a size to give");
    let mut a = vec![p(&input), "-o", p(&out), "--center", "63.5"];
    let enough = format!("{need}M");
    // The size named is the need rounded up to MiB: one MiB less is too little, the size named is enough.
    let less = format!("{}M", need - 1);
    a.extend(["--memory", &less]);
    if need > 1 {
        assert!(!recon(&a).status.success(), "--memory {less} is below what one slab needs");
    }
    a.pop();
    a.push(&enough);
    ok(recon(&a));
    std::fs::remove_dir_all(&out).unwrap();
    // A CPU run on a machine without a CUDA driver says nothing about CUDA.
    let o = beamline().args(["recon", p(&input), "-o", p(&out), "--center", "63.5"]).output().expect("run");
    assert!(o.status.success(), "{}", text(&o));
    let e = String::from_utf8_lossy(&o.stderr);
    if !reconstruct::gpu::driver_present() {
        assert!(!e.contains("CUDA") && !e.contains("NVIDIA"), "no driver line on a CPU machine: {e}");
    }
}
