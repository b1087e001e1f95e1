//! The functions scripts call, registered on the Rhai engine. Each one records where it was called from,
//! runs a primitive of [`crate::plans`] or [`crate::session`], and turns an abort into a termination the
//! script cannot catch.

use std::sync::Arc;
use std::time::Duration;

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map, Module, NativeCallContext, Position, Scope};

use crate::config::secs;
use crate::device::{Motor, SeriesSummary};
use crate::error::ScanError;
use crate::plans::{self, FlatsAt, Layout, StepOptions, StepResult, TomoMode, TomoParams};
use crate::report::CallSite;
use crate::session::{MotorMove, Session};

type RResult<T> = Result<T, Box<EvalAltResult>>;

/// The script API's signatures as API.md documents them, for suggestions when a call does not match.
pub const SIGNATURES: &[&str] = &[
    "move(m, x)",
    "move(#{m: x, ...})",
    "move_rel(m, dx)",
    "position(m)",
    "limits(m)",
    "motors()",
    "open_shutter()",
    "close_shutter()",
    "beam_current()",
    "sleep(seconds)",
    "now()",
    "checkpoint()",
    "abort(reason)",
    "param(name, default)",
    "count(n, opts?)",
    "scan(m, start, stop, num, opts?)",
    "rel_scan(m, start, stop, num, opts?)",
    "list_scan(m, [x0, x1, ...], opts?)",
    "grid_scan(m1, s1, e1, n1, m2, s2, e2, n2, opts?)",
    "tomo_scan(#{projections: n, ...})",
    "peak(r, \"col\", opts?)",
    "cen(r, \"col\", opts?)",
    "fwhm(r, \"col\", opts?)",
    "com(r, \"col\", opts?)",
    "ascan(m, s, e, intervals, t)",
    "dscan(m, s, e, intervals, t)",
    "a2scan(m1, s1, e1, m2, s2, e2, intervals, t)",
    "mesh(m1, s1, e1, i1, m2, s2, e2, i2, t)",
    "ct(t)",
];

/// A motor as scripts see it: `samx`, `dev::samx` or the string `"samx"` all name the same motor.
#[derive(Clone)]
pub struct MotorHandle(pub Arc<dyn Motor>);

/// Turns a primitive's error into a Rhai error: aborts terminate the script (not catchable), other errors
/// are runtime errors whose message names the device; the typed error is kept for the exit status.
fn fail(s: &Session, e: ScanError) -> Box<EvalAltResult> {
    match e {
        ScanError::Aborted(i) => EvalAltResult::ErrorTerminated(i.reason.into(), Position::NONE).into(),
        other => {
            s.set_fault(&other);
            EvalAltResult::ErrorRuntime(other.to_string().into(), Position::NONE).into()
        }
    }
}

/// Runs a primitive for the script: records the call site, maps errors.
fn call<T>(s: &Session, ctx: &NativeCallContext, f: impl FnOnce() -> Result<T, ScanError>) -> RResult<T> {
    let pos = ctx.call_position();
    s.set_call_site(pos.line().map(|line| CallSite {
        source: ctx.call_source().unwrap_or("<script>").to_string(),
        line,
        column: pos.position().unwrap_or(0),
    }));
    f().map_err(|e| fail(s, e))
}

fn arg(msg: String) -> ScanError {
    ScanError::Argument(msg)
}

fn motor(s: &Session, d: &Dynamic) -> Result<Arc<dyn Motor>, ScanError> {
    if let Some(h) = d.clone().try_cast::<MotorHandle>() {
        return Ok(h.0);
    }
    if let Ok(name) = d.clone().into_immutable_string() {
        return Ok(s.beamline.motor(&name)?);
    }
    Err(arg(format!("expected a motor (like samx or \"samx\"), got a {}", d.type_name())))
}

fn num(d: &Dynamic, what: &str) -> Result<f64, ScanError> {
    if let Ok(x) = d.as_float() {
        return Ok(x);
    }
    if let Ok(i) = d.as_int() {
        return Ok(i as f64);
    }
    Err(arg(format!("{what} must be a number, got a {}", d.type_name())))
}

fn count_arg(d: &Dynamic, what: &str) -> Result<usize, ScanError> {
    let x = num(d, what)?;
    if !(x >= 0.0 && x.fract() == 0.0) {
        return Err(arg(format!("{what} must be a whole number >= 0, got {x}")));
    }
    if x > plans::MAX_POINTS as f64 {
        return Err(too_many(what, x));
    }
    Ok(x as usize)
}

fn too_many(what: &str, x: f64) -> ScanError {
    ScanError::TooLarge(format!(
        "{what} = {x} is more than the {} points one scan may have; refused before anything was allocated or \
         moved (split it into several scans)",
        plans::MAX_POINTS
    ))
}

fn seconds(d: &Dynamic, what: &str) -> Result<Duration, ScanError> {
    let x = num(d, what)?;
    if !(0.0..1e7).contains(&x) {
        return Err(arg(format!("{what} must be seconds >= 0 and below 1e7, got {x:?}")));
    }
    Ok(secs(x))
}

/// Checks that a map only has `allowed` keys (so typos are errors, not silently ignored).
fn check_keys(map: &Map, what: &str, allowed: &[&str]) -> Result<(), ScanError> {
    for k in map.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(arg(format!("{what}: unknown option `{k}`; allowed: {}", allowed.join(", "))));
        }
    }
    Ok(())
}

fn get_str(map: &Map, key: &str) -> Result<Option<String>, ScanError> {
    match map.get(key) {
        None => Ok(None),
        Some(v) => v
            .clone()
            .into_immutable_string()
            .map(|s| Some(s.to_string()))
            .map_err(|t| arg(format!("option `{key}` must be a string, got a {t}"))),
    }
}

fn get_bool(map: &Map, key: &str) -> Result<Option<bool>, ScanError> {
    match map.get(key) {
        None => Ok(None),
        Some(v) => v.as_bool().map(Some).map_err(|t| arg(format!("option `{key}` must be true or false, got a {t}"))),
    }
}

/// The `name` option, checked against the wire protocol's rules for series ids (it names the file), so a
/// bad name is found by the dry run.
fn series_name(map: &Map) -> Result<Option<String>, ScanError> {
    let name = get_str(map, "name")?;
    if let Some(n) = &name {
        crate::device::acq::check_series_name(n).map_err(|e| arg(format!("option `name`: {e}")))?;
    }
    Ok(name)
}

const STEP_KEYS: &[&str] = &["exposure", "return", "name", "settle", "snake", "detector", "signal"];

fn step_options(map: &Map, what: &str) -> Result<(StepOptions, bool), ScanError> {
    check_keys(map, what, STEP_KEYS)?;
    let mut o = StepOptions::default();
    if let Some(v) = map.get("exposure") {
        o.exposure = seconds(v, "exposure")?;
    }
    if let Some(v) = map.get("settle") {
        o.settle = seconds(v, "settle")?;
    }
    o.return_motors = get_bool(map, "return")?;
    o.name = series_name(map)?;
    o.detector = get_bool(map, "detector")?.unwrap_or(true);
    o.signal = get_str(map, "signal")?;
    Ok((o, get_bool(map, "snake")?.unwrap_or(false)))
}

const TOMO_KEYS: &[&str] = &[
    "start",
    "range",
    "projections",
    "exposure",
    "darks",
    "flats",
    "flats_at",
    "sample_out",
    "mode",
    "return_rotation",
    "name",
    "endpoint",
];

/// Reads `tomo_scan`'s parameter map (see API.md for defaults).
pub fn tomo_params(map: &Map) -> Result<TomoParams, ScanError> {
    check_keys(map, "tomo_scan", TOMO_KEYS)?;
    let n = |k: &str, d: f64| map.get(k).map_or(Ok(d), |v| num(v, k));
    let c = |k: &str, d: usize| map.get(k).map_or(Ok(d), |v| count_arg(v, k));
    let projections = match map.get("projections") {
        Some(v) => count_arg(v, "projections")?,
        None => return Err(arg("tomo_scan: `projections` is required, e.g. tomo_scan(#{projections: 900})".into())),
    };
    let flats_at = match get_str(map, "flats_at")?.as_deref() {
        None | Some("start") => FlatsAt::Start,
        Some("end") => FlatsAt::End,
        Some("both") => FlatsAt::Both,
        Some(o) => return Err(arg(format!("tomo_scan: flats_at must be \"start\", \"end\" or \"both\", got {o:?}"))),
    };
    let mode = match get_str(map, "mode")?.as_deref() {
        None | Some("step") => TomoMode::Step,
        Some("fly") => TomoMode::Fly,
        Some(o) => return Err(arg(format!("tomo_scan: mode must be \"step\" or \"fly\", got {o:?}"))),
    };
    Ok(TomoParams {
        start: n("start", 0.0)?,
        range: n("range", 180.0)?,
        projections,
        exposure: map.get("exposure").map_or(Ok(Duration::from_millis(100)), |v| seconds(v, "exposure"))?,
        darks: c("darks", 10)?,
        flats: c("flats", 10)?,
        flats_at,
        sample_out: map.get("sample_out").map(|v| num(v, "sample_out")).transpose()?,
        mode,
        return_rotation: get_bool(map, "return_rotation")?.unwrap_or(true),
        endpoint: get_bool(map, "endpoint")?.unwrap_or(true),
        name: series_name(map)?,
    })
}

fn summary_map(s: &SeriesSummary) -> Map {
    let mut m = Map::new();
    m.insert("name".into(), s.name.clone().into());
    m.insert("points".into(), (s.frames as i64).into());
    m.insert("status".into(), s.status.as_str().into());
    m.insert("file".into(), s.file.as_ref().map_or(Dynamic::UNIT, |f| f.display().to_string().into()));
    m
}

/// A step scan's result for the script: the summary plus `data` (column name -> array of numbers),
/// `columns` (names in order), `x` (the abscissa column) and `signal` (the default plot column).
fn result_map(r: &StepResult) -> Map {
    let mut m = summary_map(&r.summary);
    if let Some(t) = &r.table {
        let mut data = Map::new();
        for (n, c) in t.names.iter().zip(&t.columns) {
            data.insert(n.as_str().into(), Dynamic::from_array(c.iter().map(|&v| Dynamic::from_float(v)).collect()));
        }
        m.insert("data".into(), data.into());
        m.insert("columns".into(), Dynamic::from_array(t.names.iter().map(|n| n.clone().into()).collect()));
        m.insert("x".into(), t.axes.first().cloned().unwrap_or_default().into());
        m.insert("signal".into(), t.signal.clone().into());
    }
    m
}

/// Numbers of column `col` of a scan result.
fn column_of(r: &Map, col: &str) -> Result<Vec<f64>, ScanError> {
    let data = r.get("data").and_then(|d| d.read_lock::<Map>().map(|m| m.clone())).ok_or_else(|| {
        arg("expected the result of a step scan (scan, rel_scan, grid_scan, list_scan, count)".into())
    })?;
    let Some(c) = data.get(col) else {
        let names: Vec<String> = data.keys().map(|k| k.to_string()).collect();
        return Err(arg(format!("the scan has no column `{col}`; it has: {}", names.join(", "))));
    };
    let a = c.read_lock::<Array>().map(|a| a.clone()).ok_or_else(|| arg(format!("column `{col}` is not an array")))?;
    a.iter().map(|v| num(v, col)).collect()
}

/// `peak`, `cen`, `com`, `fwhm` of column `col` against the scan's abscissa (`x` option to choose another,
/// `derivative: true` for an edge). In a dry run the detector columns hold no numbers: the statistics then
/// give the middle of the scanned range (and 0 for `fwhm`) so later moves are still checked.
fn stat(r: &Map, col: &str, opts: &Map, what: &str) -> Result<f64, ScanError> {
    check_keys(opts, what, &["x", "derivative"])?;
    let xname = match get_str(opts, "x")? {
        Some(x) => x,
        None => r.get("x").map(|x| x.to_string()).unwrap_or_else(|| "point".into()),
    };
    let x = column_of(r, &xname)?;
    let mut y = column_of(r, col)?;
    let mut xs = x.clone();
    if get_bool(opts, "derivative")?.unwrap_or(false) {
        (xs, y) = crate::stats::derivative(&x, &y);
    }
    match crate::stats::peak_stats(&xs, &y) {
        Some(st) => Ok(match what {
            "peak" => st.peak,
            "cen" => st.cen,
            "com" => st.com,
            _ => st.fwhm,
        }),
        None => {
            let finite: Vec<f64> = x.iter().copied().filter(|v| v.is_finite()).collect();
            let (lo, hi) = finite.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
            if finite.is_empty() {
                return Err(arg(format!("{what}: the scan has no points")));
            }
            Ok(if what == "fwhm" { 0.0 } else { 0.5 * (lo + hi) })
        }
    }
}

fn positions_of(s: &Session, m: &Dynamic, list: &Array) -> Result<(Arc<dyn Motor>, Vec<f64>), ScanError> {
    let mo = motor(s, m)?;
    let xs = list.iter().map(|v| num(v, "list_scan position")).collect::<Result<Vec<f64>, _>>()?;
    Ok((mo, xs))
}

/// An options map, or a number meaning `#{exposure: number}`.
fn options_or_exposure(d: &Dynamic, what: &str) -> Result<Map, ScanError> {
    if let Some(m) = d.read_lock::<Map>() {
        return Ok(m.clone());
    }
    if d.is_int() || d.is_float() {
        let mut m = Map::new();
        m.insert("exposure".into(), d.clone());
        return Ok(m);
    }
    Err(arg(format!(
        "{what}: the last argument is an options map like #{{exposure: 0.1}} or the exposure in seconds, got a {}",
        d.type_name()
    )))
}

/// Runs a one-motor scan from parsed arguments.
#[allow(clippy::too_many_arguments)]
fn one_motor_scan(
    s: &Session,
    kind: &str,
    m: &Dynamic,
    start: &Dynamic,
    stop: &Dynamic,
    num_pts: &Dynamic,
    opts: &Map,
    relative: bool,
) -> Result<Map, ScanError> {
    let mo = motor(s, m)?;
    let (o, _) = step_options(opts, kind)?;
    let base = if relative { mo.position()? } else { 0.0 };
    let xs = plans::linspace(base + num(start, "start")?, base + num(stop, "stop")?, count_arg(num_pts, "num")?);
    let pts = xs.into_iter().map(|x| vec![x]).collect();
    plans::step_scan(s, kind, vec![mo], pts, &o, relative, Layout::Linear).map(|r| result_map(&r))
}

/// Runs a grid scan from parsed arguments (`m1, s1, e1, n1, m2, s2, e2, n2`).
fn grid(s: &Session, a: [&Dynamic; 8], opts: &Map) -> Result<Map, ScanError> {
    let (o, snake) = step_options(opts, "grid_scan")?;
    let m1 = motor(s, a[0])?;
    let m2 = motor(s, a[4])?;
    let (n1, n2) = (count_arg(a[3], "num1")?, count_arg(a[7], "num2")?);
    if n1.saturating_mul(n2) > plans::MAX_POINTS {
        return Err(too_many("num1 x num2", n1 as f64 * n2 as f64));
    }
    let outer = plans::linspace(num(a[1], "start1")?, num(a[2], "stop1")?, n1);
    let inner = plans::linspace(num(a[5], "start2")?, num(a[6], "stop2")?, n2);
    let layout = Layout::Grid { rows: outer.len(), cols: inner.len(), snake };
    plans::step_scan(s, "grid_scan", vec![m1, m2], plans::grid(&outer, &inner, snake), &o, false, layout)
        .map(|r| result_map(&r))
}

/// Registers `grid_scan` with or without its options map.
macro_rules! register_grid {
    (@options) => {
        Map::new()
    };
    (@options $opts:ident) => {
        $opts
    };
    ($engine:expr, $session:expr $(, $opts:ident)?) => {{
        let s = $session.clone();
        $engine.register_fn(
            "grid_scan",
            move |ctx: NativeCallContext,
                  m1: Dynamic,
                  a1: Dynamic,
                  b1: Dynamic,
                  n1: Dynamic,
                  m2: Dynamic,
                  a2: Dynamic,
                  b2: Dynamic,
                  n2: Dynamic
                  $(, $opts: Map)?|
                  -> RResult<Map> {
                let options = register_grid!(@options $($opts)?);
                call(&s, &ctx, || grid(&s, [&m1, &a1, &b1, &n1, &m2, &a2, &b2, &n2], &options))
            },
        );
    }};
}

/// Registers every primitive on `engine`, and the motors as constants (in `scope` for the main script and in
/// the `dev` module for functions and library modules).
pub fn register(engine: &mut Engine, scope: &mut Scope, session: &Arc<Session>) {
    engine
        .register_type_with_name::<MotorHandle>("Motor")
        .register_get("name", |m: &mut MotorHandle| m.0.name().to_string())
        .register_fn("to_string", |m: &mut MotorHandle| m.0.name().to_string())
        .register_fn("to_debug", |m: &mut MotorHandle| format!("Motor({})", m.0.name()));
    let mut dev = Module::new();
    for m in &session.beamline.motors {
        scope.push_constant(m.name(), MotorHandle(m.clone()));
        dev.set_var(m.name(), MotorHandle(m.clone()));
    }
    engine.register_static_module("dev", dev.into());

    let s = session.clone();
    engine.register_fn("move", move |ctx: NativeCallContext, m: Dynamic, x: Dynamic| -> RResult<()> {
        call(&s, &ctx, || s.move_motors(&[(motor(&s, &m)?, num(&x, "position")?)]))
    });
    let s = session.clone();
    engine.register_fn("move", move |ctx: NativeCallContext, targets: Map| -> RResult<()> {
        call(&s, &ctx, || {
            let moves = targets
                .iter()
                .map(|(k, v)| Ok((s.beamline.motor(k)?, num(v, k)?)))
                .collect::<Result<Vec<MotorMove>, ScanError>>()?;
            s.move_motors(&moves)
        })
    });
    let s = session.clone();
    engine.register_fn("move_rel", move |ctx: NativeCallContext, m: Dynamic, dx: Dynamic| -> RResult<()> {
        call(&s, &ctx, || {
            let mo = motor(&s, &m)?;
            let to = mo.position()? + num(&dx, "distance")?;
            s.move_motors(&[(mo, to)])
        })
    });
    let s = session.clone();
    engine.register_fn("position", move |ctx: NativeCallContext, m: Dynamic| -> RResult<f64> {
        call(&s, &ctx, || Ok(motor(&s, &m)?.position()?))
    });
    let s = session.clone();
    engine.register_fn("limits", move |ctx: NativeCallContext, m: Dynamic| -> RResult<Array> {
        call(&s, &ctx, || {
            let l = motor(&s, &m)?.limits();
            Ok(vec![l.low.into(), l.high.into()])
        })
    });
    let s = session.clone();
    engine.register_fn("motors", move || -> Array {
        s.beamline.motors.iter().map(|m| Dynamic::from(m.name().to_string())).collect()
    });

    let s = session.clone();
    engine.register_fn("count", move |ctx: NativeCallContext, n: Dynamic, opts: Map| -> RResult<Map> {
        call(&s, &ctx, || {
            let (o, _) = step_options(&opts, "count")?;
            plans::count(&s, count_arg(&n, "count")?, &o).map(|r| result_map(&r))
        })
    });
    let s = session.clone();
    engine.register_fn("count", move |ctx: NativeCallContext, n: Dynamic| -> RResult<Map> {
        call(&s, &ctx, || plans::count(&s, count_arg(&n, "count")?, &StepOptions::default()).map(|r| result_map(&r)))
    });

    for (name, relative) in [("scan", false), ("rel_scan", true)] {
        // The fifth argument is an options map or, as in bluesky/SPEC habits, the exposure in seconds.
        let s = session.clone();
        engine.register_fn(
            name,
            move |ctx: NativeCallContext, m: Dynamic, a: Dynamic, b: Dynamic, n: Dynamic, o: Dynamic| -> RResult<Map> {
                call(&s, &ctx, || {
                    let opts = options_or_exposure(&o, name)?;
                    one_motor_scan(&s, name, &m, &a, &b, &n, &opts, relative)
                })
            },
        );
        let s = session.clone();
        engine.register_fn(
            name,
            move |ctx: NativeCallContext, m: Dynamic, a: Dynamic, b: Dynamic, n: Dynamic| -> RResult<Map> {
                call(&s, &ctx, || one_motor_scan(&s, name, &m, &a, &b, &n, &Map::new(), relative))
            },
        );
    }

    // SPEC aliases: intervals (points - 1) and a count time, as operators type them in SPEC.
    for (name, kind, relative) in [("ascan", "scan", false), ("dscan", "rel_scan", true)] {
        let s = session.clone();
        engine.register_fn(
            name,
            move |ctx: NativeCallContext, m: Dynamic, a: Dynamic, b: Dynamic, n: Dynamic, t: Dynamic| -> RResult<Map> {
                call(&s, &ctx, || {
                    let points = Dynamic::from_int(count_arg(&n, "intervals")? as i64 + 1);
                    let opts = options_or_exposure(&t, name)?;
                    one_motor_scan(&s, kind, &m, &a, &b, &points, &opts, relative)
                })
            },
        );
    }
    let s = session.clone();
    engine.register_fn(
        "a2scan",
        move |ctx: NativeCallContext,
              m1: Dynamic,
              a1: Dynamic,
              b1: Dynamic,
              m2: Dynamic,
              a2: Dynamic,
              b2: Dynamic,
              n: Dynamic,
              t: Dynamic|
              -> RResult<Map> {
            call(&s, &ctx, || {
                let (o, _) = step_options(&options_or_exposure(&t, "a2scan")?, "a2scan")?;
                let k = count_arg(&n, "intervals")? + 1;
                let x1 = plans::linspace(num(&a1, "start1")?, num(&b1, "stop1")?, k);
                let x2 = plans::linspace(num(&a2, "start2")?, num(&b2, "stop2")?, k);
                let pts = x1.into_iter().zip(x2).map(|(p, q)| vec![p, q]).collect();
                plans::step_scan(&s, "a2scan", vec![motor(&s, &m1)?, motor(&s, &m2)?], pts, &o, false, Layout::Linear)
                    .map(|r| result_map(&r))
            })
        },
    );
    let s = session.clone();
    engine.register_fn(
        "mesh",
        move |ctx: NativeCallContext,
              m1: Dynamic,
              a1: Dynamic,
              b1: Dynamic,
              n1: Dynamic,
              m2: Dynamic,
              a2: Dynamic,
              b2: Dynamic,
              n2: Dynamic,
              t: Dynamic|
              -> RResult<Map> {
            call(&s, &ctx, || {
                let p1 = Dynamic::from_int(count_arg(&n1, "intervals1")? as i64 + 1);
                let p2 = Dynamic::from_int(count_arg(&n2, "intervals2")? as i64 + 1);
                grid(&s, [&m1, &a1, &b1, &p1, &m2, &a2, &b2, &p2], &options_or_exposure(&t, "mesh")?)
            })
        },
    );
    let s = session.clone();
    engine.register_fn("ct", move |ctx: NativeCallContext, t: Dynamic| -> RResult<Map> {
        call(&s, &ctx, || {
            let (o, _) = step_options(&options_or_exposure(&t, "ct")?, "ct")?;
            plans::count(&s, 1, &o).map(|r| result_map(&r))
        })
    });

    let s = session.clone();
    engine.register_fn("list_scan", move |ctx: NativeCallContext, m: Dynamic, xs: Array, opts: Map| -> RResult<Map> {
        call(&s, &ctx, || {
            let (o, _) = step_options(&opts, "list_scan")?;
            let (mo, xs) = positions_of(&s, &m, &xs)?;
            let pts = xs.into_iter().map(|x| vec![x]).collect();
            plans::step_scan(&s, "list_scan", vec![mo], pts, &o, false, Layout::List).map(|r| result_map(&r))
        })
    });
    let s = session.clone();
    engine.register_fn("list_scan", move |ctx: NativeCallContext, m: Dynamic, xs: Array| -> RResult<Map> {
        call(&s, &ctx, || {
            let (mo, xs) = positions_of(&s, &m, &xs)?;
            let pts = xs.into_iter().map(|x| vec![x]).collect();
            plans::step_scan(&s, "list_scan", vec![mo], pts, &StepOptions::default(), false, Layout::List)
                .map(|r| result_map(&r))
        })
    });

    register_grid!(engine, session, opts);
    register_grid!(engine, session);

    let s = session.clone();
    engine.register_fn("tomo_scan", move |ctx: NativeCallContext, p: Map| -> RResult<Map> {
        call(&s, &ctx, || plans::tomo_scan(&s, &tomo_params(&p)?).map(|r| summary_map(&r)))
    });

    let s = session.clone();
    engine.register_fn("open_shutter", move |ctx: NativeCallContext| -> RResult<()> {
        call(&s, &ctx, || s.set_shutter(true))
    });
    let s = session.clone();
    engine.register_fn("close_shutter", move |ctx: NativeCallContext| -> RResult<()> {
        call(&s, &ctx, || s.set_shutter(false))
    });
    // `sleep` on the beamline clock (abortable, instant in a dry run or at time scale 0, in the time
    // estimate). Registered for FLOAT and INT as well as any value: Rhai's own thread-blocking `sleep(FLOAT)`
    // and `sleep(INT)` would otherwise match those argument types first.
    let s = session.clone();
    engine.register_fn("sleep", move |ctx: NativeCallContext, t: Dynamic| -> RResult<()> {
        call(&s, &ctx, || s.sleep(seconds(&t, "sleep")?))
    });
    let s = session.clone();
    engine.register_fn("sleep", move |ctx: NativeCallContext, t: f64| -> RResult<()> {
        call(&s, &ctx, || s.sleep(seconds(&Dynamic::from_float(t), "sleep")?))
    });
    let s = session.clone();
    engine.register_fn("sleep", move |ctx: NativeCallContext, t: i64| -> RResult<()> {
        call(&s, &ctx, || s.sleep(seconds(&Dynamic::from_int(t), "sleep")?))
    });
    let s = session.clone();
    engine
        .register_fn("checkpoint", move |ctx: NativeCallContext| -> RResult<()> { call(&s, &ctx, || s.checkpoint()) });
    let s = session.clone();
    engine.register_fn("beam_current", move |ctx: NativeCallContext| -> RResult<f64> {
        call(&s, &ctx, || Ok(s.beamline.beam.current()?))
    });
    let s = session.clone();
    engine.register_fn("now", move || -> f64 { s.beamline.clock.now().as_secs_f64() });
    let s = session.clone();
    engine.register_fn("abort", move |ctx: NativeCallContext, reason: &str| -> RResult<()> {
        call(&s, &ctx, || {
            s.control.abort(&format!("script: {reason}"));
            Ok(s.control.check()?)
        })
    });
    for what in ["peak", "cen", "com", "fwhm"] {
        let s = session.clone();
        engine.register_fn(what, move |ctx: NativeCallContext, r: Map, col: &str| -> RResult<f64> {
            call(&s, &ctx, || stat(&r, col, &Map::new(), what))
        });
        let s = session.clone();
        engine.register_fn(what, move |ctx: NativeCallContext, r: Map, col: &str, opts: Map| -> RResult<f64> {
            call(&s, &ctx, || stat(&r, col, &opts, what))
        });
    }

    let s = session.clone();
    engine.register_fn("param", move |ctx: NativeCallContext, name: &str| -> RResult<Dynamic> {
        call(&s, &ctx, || match s.param(name) {
            Some(v) => Ok(guess_type(&v)),
            None => Err(arg(format!("parameter `{name}` is required: run with --set {name}=VALUE"))),
        })
    });
    let s = session.clone();
    engine.register_fn("param", move |ctx: NativeCallContext, name: &str, default: Dynamic| -> RResult<Dynamic> {
        call(&s, &ctx, || match s.param(name) {
            Some(v) => typed_like(name, &v, &default),
            None => Ok(default),
        })
    });
}

/// A `--set` value without a default to match: integer, float, bool, or string.
fn guess_type(v: &str) -> Dynamic {
    if let Ok(i) = v.parse::<i64>() {
        i.into()
    } else if let Ok(x) = v.parse::<f64>() {
        x.into()
    } else if let Ok(b) = v.parse::<bool>() {
        b.into()
    } else {
        v.to_string().into()
    }
}

/// A `--set` value converted to the type of the script's default.
fn typed_like(name: &str, v: &str, default: &Dynamic) -> Result<Dynamic, ScanError> {
    let bad = |t: &str| arg(format!("--set {name}={v}: the script expects {t} (its default is {default})"));
    if default.is_int() {
        v.parse::<i64>().map(Dynamic::from).map_err(|_| bad("an integer"))
    } else if default.is_float() {
        v.parse::<f64>().map(Dynamic::from).map_err(|_| bad("a number"))
    } else if default.is_bool() {
        v.parse::<bool>().map(Dynamic::from).map_err(|_| bad("true or false"))
    } else {
        Ok(v.to_string().into())
    }
}
