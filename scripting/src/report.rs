//! What a run did or would do: scans with their points, motor ranges, soft-limit violations, duration.
//! The dry run prints it; a live run uses it for its preflight check and progress total.

use std::collections::BTreeMap;
use std::fmt;

use crate::device::SoftLimits;

/// Where in a script something happened.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CallSite {
    /// Script or library module name.
    pub source: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl fmt::Display for CallSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.source, self.line, self.column)
    }
}

/// One scan primitive call.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScanRecord {
    /// `scan`, `tomo_scan`, ...
    pub kind: String,
    /// Series name (file name stem).
    pub name: String,
    /// Frames it plans.
    pub planned: u64,
    /// Frames it took.
    pub points: u64,
    /// Where the script called it.
    pub at: Option<CallSite>,
    /// One line on what the scan covers (tomography: projections, angles, end-point rule, step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// The range a motor was asked to cover.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MotorRange {
    /// Lowest target.
    pub min: f64,
    /// Highest target.
    pub max: f64,
    /// Units.
    pub units: String,
    /// Its soft limits.
    pub limits: SoftLimits,
    /// Number of moves.
    pub moves: u64,
}

/// A target outside soft limits.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Violation {
    /// The motor.
    pub motor: String,
    /// The target.
    pub target: f64,
    /// Its units.
    pub units: String,
    /// Its limits.
    pub limits: SoftLimits,
    /// Where the script asked for it.
    pub at: Option<CallSite>,
}

/// The whole account of a run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PlanReport {
    /// Scans in order.
    pub scans: Vec<ScanRecord>,
    /// Motors moved.
    pub motors: BTreeMap<String, MotorRange>,
    /// Soft-limit violations (only a dry run records more than one).
    pub violations: Vec<Violation>,
    /// Frames taken in total.
    pub points: u64,
    /// Beamline time the run takes, seconds.
    pub duration_s: f64,
}

impl PlanReport {
    /// Records a move target.
    pub fn record_move(&mut self, motor: &str, units: &str, limits: SoftLimits, target: f64) {
        let r = self.motors.entry(motor.to_string()).or_insert_with(|| MotorRange {
            min: target,
            max: target,
            units: units.to_string(),
            limits,
            moves: 0,
        });
        r.min = r.min.min(target);
        r.max = r.max.max(target);
        r.moves += 1;
    }
}

fn hms(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, s % 3600 / 60, s % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{secs:.1}s")
    }
}

impl fmt::Display for PlanReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "scans ({}):", self.scans.len())?;
        for s in &self.scans {
            let at = s.at.as_ref().map(|a| format!("  [{a}]")).unwrap_or_default();
            writeln!(f, "  {:<10} {:<28} {:>7} points{at}", s.kind, s.name, s.points)?;
            if let Some(line) = &s.summary {
                writeln!(f, "             {line}")?;
            }
        }
        writeln!(f, "motors:")?;
        for (name, r) in &self.motors {
            writeln!(
                f,
                "  {name:<8} {:>10.4} .. {:<10.4} {:<4} limits [{}, {}]  {} moves",
                r.min, r.max, r.units, r.limits.low, r.limits.high, r.moves
            )?;
        }
        if self.violations.is_empty() {
            writeln!(f, "soft limits: no violations")?;
        } else {
            writeln!(f, "soft-limit violations ({}):", self.violations.len())?;
            for v in &self.violations {
                let at = v.at.as_ref().map(|a| format!("{a}: ")).unwrap_or_default();
                writeln!(
                    f,
                    "  {at}{} -> {} {} is outside [{}, {}]",
                    v.motor, v.target, v.units, v.limits.low, v.limits.high
                )?;
            }
        }
        writeln!(f, "total: {} points, estimated duration {}", self.points, hms(self.duration_s))
    }
}
