//! Per-stage device times of the CUDA backend (CUDA events recorded on each lane's stream at the stage
//! boundaries of every chunk, read back in `device.rs`) and how reports sum them over devices.
//!
//! Only a backend that measures them has them ([`crate::backend::Backend::stage_times`]): a run on the CPU
//! has none, and a report built from it says so (`None`, JSON `null`) instead of showing zeros.

use serde::Serialize;

use crate::schedule::DeviceStats;

/// Device time per stage, summed over every chunk a backend ran (CUDA events on each lane's stream), and
/// the host wall time of its `reconstruct` calls. Both lanes' stages overlap each other and the host, so
/// the stages can add up to more than the wall time: `overlap_share` says how much.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StageTimes {
    /// Chunks timed.
    pub chunks: u64,
    /// Host-to-device copies (counts and fields).
    pub upload_s: f64,
    /// Normalisation, `-log` and zingers (or the copy of host-preprocessed values).
    pub preprocess_s: f64,
    /// Filter (cuFFT path or direct convolution).
    pub filter_s: f64,
    /// Backprojection (with the conversion to half for f16 storage).
    pub backproject_s: f64,
    /// Device-to-host copy of the slices.
    pub download_s: f64,
    /// Host wall time of `reconstruct` (staging, waiting, copying out included).
    pub wall_s: f64,
}

impl StageTimes {
    /// Sum of the device stages.
    pub fn device_s(&self) -> f64 {
        self.upload_s + self.preprocess_s + self.filter_s + self.backproject_s + self.download_s
    }

    /// `1 - wall / sum of stages` (0 when nothing overlapped): the share of device work hidden under other
    /// work.
    pub fn overlap_share(&self) -> f64 {
        let d = self.device_s();
        if d > 0.0 {
            (1.0 - self.wall_s / d).max(0.0)
        } else {
            0.0
        }
    }

    /// What was added since `earlier` (both cumulative over one backend's life).
    pub fn since(&self, earlier: &StageTimes) -> StageTimes {
        StageTimes {
            chunks: self.chunks.saturating_sub(earlier.chunks),
            upload_s: self.upload_s - earlier.upload_s,
            preprocess_s: self.preprocess_s - earlier.preprocess_s,
            filter_s: self.filter_s - earlier.filter_s,
            backproject_s: self.backproject_s - earlier.backproject_s,
            download_s: self.download_s - earlier.download_s,
            wall_s: self.wall_s - earlier.wall_s,
        }
    }

    /// Stage by stage sum (devices working side by side: their times add, as do their walls).
    pub fn add(&self, other: &StageTimes) -> StageTimes {
        StageTimes {
            chunks: self.chunks + other.chunks,
            upload_s: self.upload_s + other.upload_s,
            preprocess_s: self.preprocess_s + other.preprocess_s,
            filter_s: self.filter_s + other.filter_s,
            backproject_s: self.backproject_s + other.backproject_s,
            download_s: self.download_s + other.download_s,
            wall_s: self.wall_s + other.wall_s,
        }
    }

    /// One line for people: every stage, the wall time and the overlap share.
    pub fn line(&self) -> String {
        format!(
            "device stages over {} chunks: upload {:.4} s, normalise {:.4} s, filter {:.4} s, backprojection {:.4} s, \
             download {:.4} s; wall {:.4} s, overlap share {:.0}%",
            self.chunks,
            self.upload_s,
            self.preprocess_s,
            self.filter_s,
            self.backproject_s,
            self.download_s,
            self.wall_s,
            100.0 * self.overlap_share()
        )
    }
}

/// Stage times with the figures derived from them, as JSON reports carry them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StageSummary {
    /// The times.
    #[serde(flatten)]
    pub times: StageTimes,
    /// [`StageTimes::device_s`].
    pub device_s: f64,
    /// [`StageTimes::overlap_share`].
    pub overlap_share: f64,
}

impl From<StageTimes> for StageSummary {
    fn from(times: StageTimes) -> StageSummary {
        StageSummary { times, device_s: times.device_s(), overlap_share: times.overlap_share() }
    }
}

/// One device's stage times in a [`StageReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceStages {
    /// Device name.
    pub device: String,
    /// Its stage times.
    #[serde(flatten)]
    pub stages: StageSummary,
}

/// The stage times of one scheduled run: per device that measured them, and their sum.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageReport {
    /// Devices that measured stage times, in run order.
    pub per_device: Vec<DeviceStages>,
    /// Their stage-by-stage sum (overlap share of the summed stages against the summed walls).
    pub total: StageSummary,
}

impl StageReport {
    /// The report of a run's devices, or `None` when none of them measured stage times (a CPU run): no
    /// stage figure is then reported at all.
    pub fn of(devices: &[DeviceStats]) -> Option<StageReport> {
        let per_device: Vec<DeviceStages> = devices
            .iter()
            .filter_map(|d| d.stages.map(|t| DeviceStages { device: d.name.clone(), stages: t.into() }))
            .collect();
        if per_device.is_empty() {
            return None;
        }
        let total = per_device.iter().fold(StageTimes::default(), |sum, d| sum.add(&d.stages.times));
        Some(StageReport { per_device, total: total.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(chunks: u64, base: f64, wall_s: f64) -> StageTimes {
        StageTimes {
            chunks,
            upload_s: base,
            preprocess_s: 2.0 * base,
            filter_s: 3.0 * base,
            backproject_s: 4.0 * base,
            download_s: 5.0 * base,
            wall_s,
        }
    }

    fn device(name: &str, stages: Option<StageTimes>) -> DeviceStats {
        DeviceStats { name: name.into(), slabs: 2, rows: 8, busy_seconds: 1.0, stages }
    }

    /// Two synthetic GPUs (and a CPU, which measured nothing): per-device figures, their sum and the
    /// overlap shares, and the JSON keys a report carries.
    #[test]
    fn stage_report_sums_devices_and_has_a_fixed_json_shape() {
        let (a, b) = (times(4, 0.5, 5.0), times(2, 0.25, 3.75));
        let report = StageReport::of(&[device("cuda:0 X", Some(a)), device("cpu", None), device("cuda:1 X", Some(b))])
            .expect("two devices measured stages");
        assert_eq!(report.per_device.len(), 2, "the CPU has no stage figures");
        assert_eq!(report.per_device[1].device, "cuda:1 X");
        // Device 0: stages 0.5 * (1+2+3+4+5) = 7.5 s against 5 s of wall: a third hidden.
        assert_eq!(report.per_device[0].stages.device_s, 7.5);
        assert!((report.per_device[0].stages.overlap_share - 1.0 / 3.0).abs() < 1e-12);
        // Device 1: 3.75 s of stages in 3.75 s of wall: nothing overlapped.
        assert_eq!(report.per_device[1].stages.overlap_share, 0.0);
        let t = report.total.times;
        assert_eq!(t.chunks, 6);
        assert_eq!((t.upload_s, t.backproject_s, t.wall_s), (0.75, 3.0, 8.75));
        assert_eq!(report.total.device_s, 11.25);
        assert!((report.total.overlap_share - (1.0 - 8.75 / 11.25)).abs() < 1e-12);

        let json = serde_json::to_value(&report).expect("serialises");
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
            k.sort();
            k
        };
        let stage_keys = [
            "backproject_s",
            "chunks",
            "device_s",
            "download_s",
            "filter_s",
            "overlap_share",
            "preprocess_s",
            "upload_s",
            "wall_s",
        ];
        assert_eq!(keys(&json["total"]), stage_keys);
        let mut with_device = stage_keys.to_vec();
        with_device.push("device");
        with_device.sort();
        assert_eq!(keys(&json["per_device"][0]), with_device);
        assert_eq!(json["per_device"][0]["device"], "cuda:0 X");
        assert_eq!(json["total"]["filter_s"], 2.25);
    }

    /// A run on the CPU alone reports no stage figures at all, and a device's stats carry none in JSON.
    #[test]
    fn a_cpu_run_has_no_stage_figures() {
        assert_eq!(StageReport::of(&[device("cpu", None)]), None);
        assert_eq!(StageReport::of(&[]), None);
        let json = serde_json::to_value(device("cpu", None)).expect("serialises");
        assert!(json.get("stages").is_none(), "{json}");
        let json = serde_json::to_value(device("cuda:0", Some(times(1, 1.0, 1.0)))).expect("serialises");
        assert_eq!(json["stages"]["chunks"], 1);
    }

    /// What a run added to a backend's cumulative times.
    #[test]
    fn since_subtracts_the_earlier_totals() {
        let later = times(6, 1.0, 10.0);
        let earlier = times(2, 0.25, 4.0);
        let d = later.since(&earlier);
        assert_eq!(d.chunks, 4);
        assert_eq!((d.upload_s, d.download_s, d.wall_s), (0.75, 3.75, 6.0));
        assert_eq!(earlier.add(&d), later);
    }
}
