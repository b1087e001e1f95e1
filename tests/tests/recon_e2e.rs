//! End to end: NXtomo files written by Python h5py (+ hdf5plugin blosc) reconstructed by the `beamline`
//! binary and read back by tifffile / h5py; clear errors on bad files.

use std::path::Path;

use serde_json::Value;
use tests::{beamline, output_text as text, recon_quiet as recon, run_python};

fn make(path: &Path, extra: &[&str]) -> Value {
    let mut args = vec![path.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    let out = run_python("recon_make_nxtomo.py", &args);
    serde_json::from_str(out.trim()).expect("JSON from recon_make_nxtomo.py")
}

fn check(path: &Path, cols: usize, rows: usize, first: usize) -> Value {
    let out = run_python(
        "recon_check_tiffs.py",
        &[path.to_str().expect("utf-8"), &cols.to_string(), &rows.to_string(), &first.to_string()],
    );
    serde_json::from_str(out.trim()).expect("JSON from recon_check_tiffs.py")
}

fn assert_accurate(v: &Value, n_slices: usize, dtype: &str) {
    let slices = v["slices"].as_array().expect("slices");
    assert_eq!(slices.len(), n_slices, "{v}");
    for s in slices {
        assert_eq!(s["dtype"], dtype, "{s}");
        assert_eq!(s["shape"], serde_json::json!([128, 128]), "{s}");
        // 128 px phantom, point-sampled truth: the skull edges alone cost ~0.06.
        assert!(s["rmse"].as_f64().expect("rmse") < 0.08, "slice too far from the phantom: {s}");
        assert!(s["corr"].as_f64().expect("corr") > 0.95, "{s}");
    }
}

#[test]
fn h5py_file_to_float_tiff_stack_read_by_tifffile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("scan.h5");
    make(&input, &[]);
    let out_dir = dir.path().join("out");
    let o = recon(&[input.to_str().unwrap(), "-o", out_dir.to_str().unwrap(), "--center", "63.5"]);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("reconstructed 6 slices"), "closing line: {stdout}");
    let v = check(&out_dir, 128, 6, 0);
    assert_accurate(&v, 6, "float32");
    let prov: Value =
        serde_json::from_str(v["provenance"].as_str().expect("ImageDescription")).expect("provenance JSON");
    assert_eq!(prov["parameters"]["center"], 63.5);
    assert_eq!(prov["parameters"]["filter"], "ramp");
    assert!(prov["software"].as_str().unwrap().starts_with("beamline"));
    assert!(out_dir.join("provenance.json").exists());
}

#[test]
fn automatic_centre_with_an_offset_axis_and_hdf5_volume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("scan360.h5");
    make(&input, &["--center", "66.3", "--span", "360", "--angles", "240"]);
    let out = dir.path().join("vol.h5");
    let o = recon(&[input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--format", "h5", "--slices", "1:5"]);
    assert!(o.status.success(), "{}", text(&o));
    let v = check(&out, 128, 4, 1);
    assert_eq!(v["first_slice"], 1);
    assert_accurate(&v, 4, "float32");
    let prov: Value = serde_json::from_str(v["provenance"].as_str().unwrap()).unwrap();
    let c = prov["parameters"]["center"].as_f64().unwrap();
    assert!((c - 66.3).abs() < 0.15, "automatic centre {c}, true 66.3");
    assert_eq!(prov["parameters"]["center_mode"], "auto");
}

#[test]
fn sixteen_bit_output_and_centre_sweep() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("scan.h5");
    make(&input, &["--rows", "2"]);
    let out16 = dir.path().join("u16");
    let o = recon(&[
        input.to_str().unwrap(),
        "-o",
        out16.to_str().unwrap(),
        "--center",
        "63.5",
        "--bits",
        "16",
        "--range",
        "-0.01:0.03",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v = check(&out16, 128, 2, 0);
    assert_eq!(v["slices"][0]["dtype"], "uint16");
    assert!(v["slices"][0]["corr"].as_f64().unwrap() > 0.95, "{v}");

    let sweep = dir.path().join("sweep");
    let o = recon(&[input.to_str().unwrap(), "-o", sweep.to_str().unwrap(), "--center-sweep", "62:65:0.5"]);
    assert!(o.status.success(), "{}", text(&o));
    let mut names: Vec<String> =
        std::fs::read_dir(&sweep).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names.len(), 7, "{names:?}");
    assert_eq!(names[0], "center_0062.00.tif");
    assert_eq!(names[3], "center_0063.50.tif");
}

#[test]
fn small_memory_budget_and_hdf5_filter_path_give_the_same_volume_bit_for_bit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("scan.h5");
    make(&input, &["--rows", "7"]);
    let volume = |name: &str, memory: &str, hdf5_filter: bool| {
        let out = dir.path().join(name);
        let mut cmd = beamline();
        cmd.arg("recon").args([
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--format",
            "h5",
            "--center",
            "63.5",
        ]);
        cmd.args(["--memory", memory, "--quiet"]);
        if hdf5_filter {
            // The HDF5 filter pipeline instead of the parallel raw-chunk blosc decoder.
            cmd.env("BEAMLINE_RECON_HDF5_FILTER", "1");
        }
        let o = cmd.output().expect("run beamline");
        assert!(o.status.success(), "{}", text(&o));
        let f = hdf5::File::open(&out).expect("open volume");
        let v: Vec<f32> = f.dataset("/entry/data/data").unwrap().read_raw().unwrap();
        v.into_iter().map(f32::to_bits).collect::<Vec<u32>>()
    };
    // One detector row here needs ~1.1 MiB with the slabs in flight: 2M forces slabs of one row.
    let reference = volume("big.h5", "4G", false);
    assert_eq!(reference, volume("small.h5", "2M", false), "slab size changed the volume");
    assert_eq!(reference, volume("filter.h5", "4G", true), "blosc fast path differs from the HDF5 filter");
    let o = recon(&[
        input.to_str().unwrap(),
        "-o",
        dir.path().join("x").to_str().unwrap(),
        "--center",
        "63.5",
        "--memory",
        "10K",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--memory"), "{}", text(&o));
}

#[test]
fn bad_files_give_clear_errors_naming_the_dataset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("nan", "/entry/instrument/detector/data", "NaN"),
        ("zero-flat", "/entry/instrument/detector/data", "flat field"),
        ("no-darks", "/entry/instrument/detector/image_key", "no dark fields"),
        ("no-flats", "/entry/instrument/detector/image_key", "no flat fields"),
        ("shape", "/entry/sample/rotation_angle", "entries"),
    ];
    for (bad, dataset, words) in cases {
        let input = dir.path().join(format!("{bad}.h5"));
        make(&input, &["--bad", bad]);
        // One output per case: a run that failed while reading leaves its provenance, and a used output is
        // refused without --overwrite.
        let out = dir.path().join(format!("out-{bad}"));
        let o = recon(&[input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--center", "63.5"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{bad}: should fail\n{}", text(&o));
        assert!(err.contains(dataset) && err.contains(words), "{bad}: unclear error\n{err}");
        assert!(!err.contains("panicked"), "{bad}: panic\n{err}");
    }
    let not_hdf5 = dir.path().join("text.h5");
    std::fs::write(&not_hdf5, "not hdf5").unwrap();
    let o = recon(&[not_hdf5.to_str().unwrap(), "-o", dir.path().join("o").to_str().unwrap()]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("cannot open"), "{}", text(&o));
    let o = recon(&[not_hdf5.to_str().unwrap(), "-o", "x", "--filter", "box"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("unknown filter"), "{}", text(&o));
}

#[test]
fn gridrec_method_reconstructs_the_same_file_and_is_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("scan.h5");
    make(&input, &[]);
    let out_dir = dir.path().join("gridrec");
    let o =
        recon(&[input.to_str().unwrap(), "-o", out_dir.to_str().unwrap(), "--center", "63.5", "--method", "gridrec"]);
    assert!(o.status.success(), "{}", text(&o));
    let v = check(&out_dir, 128, 6, 0);
    assert_accurate(&v, 6, "float32");
    let prov: Value =
        serde_json::from_str(v["provenance"].as_str().expect("ImageDescription")).expect("provenance JSON");
    assert_eq!(prov["parameters"]["method"], "gridrec");
    // Gridrec is CPU-only: asking for CUDA with it is refused with a clear message, not silently FBP.
    let o =
        recon(&[input.to_str().unwrap(), "-o", out_dir.to_str().unwrap(), "--method", "gridrec", "--backend", "cuda"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("gridrec runs on the CPU"), "{}", text(&o));
}
