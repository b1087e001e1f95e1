//! Every step scan writes what it measured: per-point columns checked with h5py against the simulated
//! devices' known values; `cen` finds the simulated knife edge; the example that aligns then scans.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use scripting::{DetectorChoice, RunStatus, ScanOptions, ScanOutcome, ScanRun};

fn live(dir: &Path) -> (ScanOptions, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let opts = ScanOptions {
        config: common::zero_time(),
        detector: DetectorChoice::Acquisition,
        output_dir: Some(dir.to_path_buf()),
        output: Arc::new(move |l: &str| sink.lock().unwrap().push(l.to_string())),
        ..ScanOptions::default()
    };
    (opts, lines)
}

fn run(text: &str, opts: ScanOptions) -> ScanOutcome {
    let o = ScanRun::start("test.rhai", text.to_string(), opts).unwrap().wait().unwrap();
    assert_eq!(o.status, RunStatus::Success, "{:?}", o.error.as_ref().map(|e| e.to_string()));
    o
}

/// Runs a Python check (h5py) with the file as argv[1]; the script asserts.
fn h5py(file: &Path, check: &str) {
    let py = std::env::var("BEAMLINE_PYTHON").unwrap_or_else(|_| "python3".into());
    let prelude = "import sys, json, math\nimport h5py, hdf5plugin, numpy as np\nf = h5py.File(sys.argv[1], 'r')\n\
                   def s(v):\n    return v.decode() if isinstance(v, bytes) else str(v)\n";
    let out = Command::new(py).arg("-c").arg(format!("{prelude}{check}")).arg(file).output().unwrap();
    assert!(out.status.success(), "h5py check failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

fn printed(lines: &Arc<Mutex<Vec<String>>>, prefix: &str) -> f64 {
    let l = lines.lock().unwrap();
    let line = l.iter().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no `{prefix}` in {l:?}"));
    line[prefix.len()..].trim().parse().unwrap()
}

#[test]
fn knife_scan_records_counters_and_cen_finds_the_edge() {
    let dir = tempfile::tempdir().unwrap();
    let (opts, lines) = live(dir.path());
    let o = run(
        r#"let r = scan(knife, 0.5, 2.0, 31, #{exposure: 0.1, detector: false, name: "knife"});
           print(`cen ${cen(r, "diode", #{derivative: true})}`);
           print(`n ${r.data.diode.len()}`);"#,
        opts,
    );
    // The configured edge is at 1.23 mm; the step is 0.05 mm.
    let cen = printed(&lines, "cen ");
    assert!((cen - 1.23).abs() < 0.005, "cen {cen}");
    assert_eq!(printed(&lines, "n "), 31.0);
    // Live table: a header and one row per point.
    let l = lines.lock().unwrap();
    assert!(l.iter().any(|x| x.contains("point") && x.contains("knife") && x.contains("diode")), "{l:?}");
    drop(l);
    let file = o.files()[0].clone();
    assert_eq!(file.file_name().unwrap(), "knife.h5");
    h5py(
        &file,
        r#"
assert s(f.attrs['default']) == 'entry'
e = f['entry']
assert s(e.attrs['default']) == 'scan', e.attrs['default']
g = e['scan']
assert s(g.attrs['NX_class']) == 'NXdata'
assert s(g.attrs['signal']) == 'diode'
assert [s(a) for a in g.attrs['axes']] == ['knife']
assert s(g.attrs['scan_order']) == 'linear'
x = np.linspace(0.5, 2.0, 31)
assert np.allclose(g['knife_set'][()], x), g['knife_set'][()]
assert np.allclose(g['knife'][()], x, atol=1e-9)
assert np.allclose(g['count_time'][()], 0.1)
assert list(g['point'][()]) == list(range(31))
assert s(g['knife'].attrs['units']) == 'mm'
i0 = g['i0'][()]
assert np.all(np.abs(i0 - 1e5) < 5 * math.sqrt(1e5)), i0
T = np.array([0.5 * math.erfc((k - 1.23) / (0.05 * math.sqrt(2))) for k in x])
d = g['diode'][()]
assert np.all(np.abs(d - 1e5 * T) <= 5 * np.sqrt(1e5 * T) + 1), (d, 1e5 * T)
ts = g['timestamp'][()]
assert np.all(np.diff(ts) >= 0) and ts[0] > 1.6e9
assert np.all(np.diff(g['beamline_time'][()]) > 0)
"#,
    );
}

#[test]
fn area_detector_columns_follow_the_sample_exposure_and_rois() {
    let dir = tempfile::tempdir().unwrap();
    let (opts, _) = live(dir.path());
    let o = run(
        r#"scan(samx, 0, 12, 3, #{exposure: 0.1, name: "out"});
           move(samx, 12);
           count(2, #{exposure: 0.05, name: "short"});
           count(1, #{exposure: 0.1, name: "long"});"#,
        opts,
    );
    let files = o.files();
    // Sample in, halfway, out: the transmitted total rises, and out of the beam it is a flat.
    h5py(
        &files[0],
        r#"
g = f['entry/scan']
t = g['det_total'][()]
assert t[0] < t[1] < t[2], t
assert s(g.attrs['signal']) == 'det_total'
assert np.allclose(g['samx'][()], [0, 6, 12])
frames = f['entry/instrument/detector/data']
assert np.isclose(t[2], frames[2].astype(float).sum()), (t[2], frames[2].sum())
r = g['roi_center'][()]
assert np.isclose(r[2], frames[2][24:40, 40:56].astype(float).sum())
assert np.isclose(g['roi_left'][()][0], frames[0][:, 0:16].astype(float).sum())
"#,
    );
    // Counts scale with the exposure: 0.05 s gives half of 0.1 s above the dark level (100 per pixel).
    let check = format!(
        r#"
short = f['entry/scan/det_total'][()]
g = h5py.File({long:?}, 'r')['entry/scan']
long = g['det_total'][()][0]
dark = 100.0 * 64 * 96
ratio = (short - dark) / (long - dark)
assert np.all(np.abs(ratio - 0.5) < 0.01), ratio
assert np.allclose(g['i0'][()], 1e5, rtol=0.02)
"#,
        long = files[2].display().to_string()
    );
    h5py(&files[1], &check);
}

#[test]
fn snake_grid_records_the_visiting_order() {
    let dir = tempfile::tempdir().unwrap();
    let (opts, _) = live(dir.path());
    let o = run(
        r#"grid_scan(samz, 0, 1, 2, samy, -1, 1, 3, #{snake: true, detector: false, exposure: 0.01, name: "g"});"#,
        opts,
    );
    h5py(
        &o.files()[0],
        r#"
g = f['entry/scan']
assert s(g.attrs['scan_order']) == 'snake'
assert list(g.attrs['grid_shape']) == [2, 3]
assert list(g['grid_row'][()]) == [0, 0, 0, 1, 1, 1]
assert list(g['grid_col'][()]) == [0, 1, 2, 2, 1, 0]
assert np.allclose(g['samy_set'][()], [-1, 0, 1, 1, 0, -1])
assert np.allclose(g['samz'][()], [0, 0, 0, 1, 1, 1])
"#,
    );
}

#[test]
fn integers_and_a_positional_exposure_are_accepted() {
    let (opts, det, _) = common::recording(common::zero_time());
    let o = common::run("let r = rel_scan(samy, -1, 1, 20, 0.1); let c = ct(0.2); ascan(samx, 0, 1, 4, 0.1);", opts);
    assert_eq!(o.status, RunStatus::Success, "{}", common::error_text(&o));
    let s = det.series();
    assert_eq!(s[0].frames.len(), 20);
    assert_eq!(s[0].frames[0].exposure, std::time::Duration::from_millis(100));
    assert_eq!(s[1].frames.len(), 1);
    // SPEC's ascan counts intervals: 4 intervals are 5 points.
    assert_eq!(s[2].frames.len(), 5);
}

#[test]
fn the_align_then_tomo_example_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (opts, lines) = live(dir.path());
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/align_then_tomo.rhai")).unwrap();
    let o = run(&text, opts);
    assert_eq!(o.series.len(), 2);
    let knife = o.positions["knife"];
    assert!((knife - 1.23).abs() < 0.005, "knife at {knife}");
    let l = lines.lock().unwrap();
    assert!(l.iter().any(|x| x.starts_with("knife edge at 1.2")), "{l:?}");
}
