//! Per-point scan data in NeXus: the table a step scan measured (set points and readbacks of the motors it
//! moved, counters, count time, timestamps) as an `NXdata` group whose `@signal`/`@axes` attributes let
//! silx, PyMca or nexpy plot it with no code, made the entry's default plot.
//!
//! [`append`] adds the group to a file the receiver wrote (the NXtomo layout is left as it is);
//! [`write_new`] writes a small file with only the table (a scan without an area detector).

use std::path::Path;
use std::time::SystemTime;

use hdf5::types::VarLenUnicode;
use hdf5::{File, Group, Location};

use crate::timefmt::rfc3339;
use crate::writer::{close_on_exec, WriteError};

/// One column of the table: one value per point.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanColumn {
    /// Dataset name (`samx`, `samx_set`, `det_total`).
    pub name: String,
    /// Units (`mm`, `counts`, `s`); empty for none.
    pub units: String,
    /// What it is, for the `long_name` attribute.
    pub long_name: String,
    /// One value per point.
    pub values: Vec<f64>,
}

/// The table of one scan.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScanData {
    /// Title of the scan (its series name).
    pub title: String,
    /// Columns, each as long as the number of points.
    pub columns: Vec<ScanColumn>,
    /// Column plotted by default (`@signal`).
    pub signal: String,
    /// Columns used as the abscissa (`@axes`), in order; every one is indexed by the point dimension.
    pub axes: Vec<String>,
    /// How the points were visited: `"linear"`, `"list"`, `"raster"` or `"snake"` (stored as `@scan_order`).
    pub order: String,
    /// `[rows, columns]` of a grid scan, absent otherwise (stored as `@grid_shape`).
    pub grid_shape: Option<[u64; 2]>,
    /// Scan parameters as JSON (stored as `@scan_parameters`).
    pub parameters: String,
}

/// Name of the group under `/entry`.
pub const GROUP: &str = "scan";

fn vlu(s: &str) -> VarLenUnicode {
    let clean: String = s.chars().filter(|c| *c != '\0').collect();
    clean.parse().unwrap_or_default()
}

fn attr_str(loc: &Location, name: &str, value: &str) -> hdf5::Result<()> {
    if loc.attr(name).is_ok() {
        loc.delete_attr(name)?;
    }
    loc.new_attr::<VarLenUnicode>().create(name)?.write_scalar(&vlu(value))
}

fn attr_strs(loc: &Location, name: &str, values: &[String]) -> hdf5::Result<()> {
    let v: Vec<VarLenUnicode> = values.iter().map(|s| vlu(s)).collect();
    loc.new_attr::<VarLenUnicode>().shape([v.len()]).create(name)?.write(&v)
}

fn write_group(entry: &Group, data: &ScanData) -> hdf5::Result<()> {
    if entry.link_exists(GROUP) {
        entry.unlink(GROUP)?;
    }
    let g = entry.create_group(GROUP)?;
    attr_str(&g, "NX_class", "NXdata")?;
    for c in &data.columns {
        let ds = g.new_dataset::<f64>().shape([c.values.len()]).create(c.name.as_str())?;
        ds.write(&c.values)?;
        if !c.units.is_empty() {
            attr_str(&ds, "units", &c.units)?;
        }
        if !c.long_name.is_empty() {
            attr_str(&ds, "long_name", &c.long_name)?;
        }
    }
    attr_str(&g, "signal", &data.signal)?;
    if data.axes.is_empty() {
        attr_strs(&g, "axes", &[".".to_string()])?;
    } else {
        attr_strs(&g, "axes", &data.axes)?;
    }
    for a in &data.axes {
        g.new_attr::<i32>().create(format!("{a}_indices").as_str())?.write_scalar(&0)?;
    }
    attr_str(&g, "scan_order", &data.order)?;
    if let Some(shape) = data.grid_shape {
        g.new_attr::<u64>().shape([2]).create("grid_shape")?.write(&shape)?;
    }
    attr_str(&g, "scan_parameters", &data.parameters)?;
    attr_str(entry, "default", GROUP)?;
    Ok(())
}

fn check(data: &ScanData) -> Result<(), String> {
    let n = data.columns.first().map_or(0, |c| c.values.len());
    for c in &data.columns {
        if c.values.len() != n {
            return Err(format!(
                "column `{}` has {} values, `{}` has {n}",
                c.name,
                c.values.len(),
                data.columns[0].name
            ));
        }
        if c.name.is_empty() || c.name.contains('/') || c.name == "." {
            return Err(format!("column name {:?} cannot name a dataset", c.name));
        }
    }
    for a in data.axes.iter().chain(std::iter::once(&data.signal)) {
        if !data.columns.iter().any(|c| &c.name == a) {
            return Err(format!("`{a}` (signal or axis) is not a column"));
        }
    }
    Ok(())
}

fn invalid(path: &Path, m: String) -> WriteError {
    WriteError::Hdf5 {
        what: format!("scan table ({m})"),
        path: path.to_path_buf(),
        cause: hdf5::Error::from(m.as_str()),
    }
}

/// Adds the table as `/entry/scan` to an existing NeXus file (one written by the receiver) and makes it
/// `/entry@default`.
pub fn append(path: &Path, data: &ScanData) -> Result<(), WriteError> {
    check(data).map_err(|m| invalid(path, m))?;
    let err = |cause| WriteError::Hdf5 { what: "write the scan table".into(), path: path.to_path_buf(), cause };
    let file = File::open_rw(path).map_err(err)?;
    close_on_exec(&file).map_err(err)?;
    let entry = file.group("entry").map_err(err)?;
    write_group(&entry, data).map_err(err)?;
    attr_str(&file, "default", "entry").map_err(err)?;
    file.flush().map_err(err)
}

/// Writes a new NeXus file with one `NXentry` holding only the table (a scan without an area detector).
pub fn write_new(path: &Path, data: &ScanData, program: &str) -> Result<(), WriteError> {
    check(data).map_err(|m| invalid(path, m))?;
    let err = |cause| WriteError::Hdf5 { what: "write the scan file".into(), path: path.to_path_buf(), cause };
    let build = || -> hdf5::Result<()> {
        let file = File::create(path)?;
        close_on_exec(&file)?;
        attr_str(&file, "default", "entry")?;
        let entry = file.create_group("entry")?;
        attr_str(&entry, "NX_class", "NXentry")?;
        let put = |name: &str, v: &str| -> hdf5::Result<()> {
            entry.new_dataset::<VarLenUnicode>().create(name)?.write_scalar(&vlu(v))
        };
        put("title", &data.title)?;
        put("start_time", &rfc3339(SystemTime::now()))?;
        put("program_name", program)?;
        write_group(&entry, data)?;
        file.flush()
    };
    build().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> ScanData {
        ScanData {
            title: "t".into(),
            columns: vec![
                ScanColumn { name: "samx".into(), units: "mm".into(), long_name: "".into(), values: vec![0.0, 1.0] },
                ScanColumn { name: "i0".into(), units: "counts".into(), long_name: "".into(), values: vec![5.0, 6.0] },
            ],
            signal: "i0".into(),
            axes: vec!["samx".into()],
            order: "linear".into(),
            grid_shape: None,
            parameters: "{}".into(),
        }
    }

    #[test]
    fn standalone_file_has_default_plot() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.h5");
        write_new(&p, &table(), "test").unwrap();
        let f = File::open(&p).unwrap();
        let g = f.group("entry/scan").unwrap();
        let sig: VarLenUnicode = g.attr("signal").unwrap().read_scalar().unwrap();
        assert_eq!(sig.as_str(), "i0");
        let d: VarLenUnicode = f.group("entry").unwrap().attr("default").unwrap().read_scalar().unwrap();
        assert_eq!(d.as_str(), "scan");
        assert_eq!(g.dataset("i0").unwrap().read_raw::<f64>().unwrap(), vec![5.0, 6.0]);
    }

    #[test]
    fn ragged_columns_are_refused() {
        let mut t = table();
        t.columns[1].values.pop();
        let dir = tempfile::tempdir().unwrap();
        let e = write_new(&dir.path().join("b.h5"), &t, "test").unwrap_err().to_string();
        assert!(e.contains("has 1 values"), "{e}");
    }
}
