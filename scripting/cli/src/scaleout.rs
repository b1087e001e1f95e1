//! `beamline spread`: the simulated detector's series, dealt over several receivers (see
//! [`super::fanout`]).

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use acquisition::protocol::{BloscParams, Compression, Degrees, Dtype, SeriesStart, SeriesStatus, Shape};
use acquisition::sim::{send_frames, Schedule, SimConfig};

use super::fanout::FanOut;
use super::SpreadArgs;

/// Simulates the series and sends it through the fan-out.
pub fn run(args: SpreadArgs) -> anyhow::Result<ExitCode> {
    let (size, angles) = (args.size as usize, u64::from(args.angles));
    let mut cfg = SimConfig::new(size, size, Dtype::Uint16);
    cfg.seed = args.seed;
    let schedule = Schedule {
        darks: u64::from(args.darks),
        flats: u64::from(args.flats),
        angles,
        range: Degrees(if args.full_turn { 360.0 } else { 180.0 }),
    };
    let mut start = SeriesStart::new(
        args.series.clone(),
        Shape([args.size, args.size]),
        cfg.dtype,
        Compression::Blosc1(BloscParams::default()),
        schedule.frames(),
    );
    start.metadata = serde_json::json!({
        "source": "beamline spread",
        "writers": args.to.len(),
        "darks": schedule.darks, "flats": schedule.flats, "angles": schedule.angles,
        "range_deg": schedule.range.0, "seed": cfg.seed, "attenuation": cfg.attenuation,
    });
    let mut fan = FanOut::connect(&args.to).context("connecting to the receivers")?;
    let t0 = Instant::now();
    fan.start_series(&start).context("sending the series start")?;
    send_frames(&mut fan, &cfg, &schedule, None, |_| {}).context("sending the frames")?;
    let per = fan.end_series(SeriesStatus::Complete).context("ending the series")?;
    let secs = t0.elapsed().as_secs_f64();
    let per: Vec<String> = args.to.iter().zip(&per).map(|(e, n)| format!("{e}: {n}")).collect();
    println!(
        "series {}: {} frames of {size}x{size} spread over {} receivers in {secs:.2} s ({})",
        args.series,
        schedule.frames(),
        fan.width(),
        per.join(", ")
    );
    println!("next: beamline stitch <each receiver's file> -o master.h5");
    Ok(ExitCode::SUCCESS)
}
