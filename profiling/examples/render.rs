//! Renders run logs into a timeline page without the `beamline` binary: `render OUT.html LOG...`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    let Some((out, logs)) = args.split_first() else {
        return Err("usage: render OUT.html LOG...".into());
    };
    std::fs::write(out, profiling::render_html(logs, "timeline")?)?;
    Ok(())
}
