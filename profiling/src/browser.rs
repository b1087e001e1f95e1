//! Headless Chromium as this project runs it: where the browser is and the flags it needs, shared by
//! `beamline bench trace` (page load time, [`load_time`]) and the browser tests.

use std::path::{Path, PathBuf};
use std::time::Instant;

/// The flags Chromium needs to run headless (also as root, in a container) without touching the network.
pub const HEADLESS_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// The Chromium binary: `$BEAMLINE_CHROMIUM`, else `/usr/bin/chromium` (whether it exists is the
/// caller's check).
pub fn chromium_path() -> PathBuf {
    std::env::var_os("BEAMLINE_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Why a page could not be timed in Chromium.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// No browser at the path [`chromium_path`] gives.
    #[error("{} not found (install chromium or set BEAMLINE_CHROMIUM)", .0.display())]
    Missing(PathBuf),
    /// The browser could not be started.
    #[error("cannot start chromium")]
    Start(#[source] std::io::Error),
    /// The page did not write its `data-ready-ms` attribute into the DOM.
    #[error("the page did not report ready; chromium said: {0}")]
    NotReady(String),
}

/// How long a page took in headless Chromium.
#[derive(Debug, Clone, Copy)]
pub struct PageLoad {
    /// Seconds the whole browser process ran (start, load, DOM dump, exit).
    pub wall_s: f64,
    /// Milliseconds from navigation until the page's script reported ready (`data-ready-ms`, written by
    /// the timeline page once it has parsed and drawn).
    pub ready_ms: f64,
}

/// Loads `html` in headless Chromium with `--dump-dom` (its profile under `scratch`) and reads back when
/// the page reported ready.
pub fn load_time(html: &Path, scratch: &Path) -> Result<PageLoad, BrowserError> {
    let bin = chromium_path();
    if !bin.exists() {
        return Err(BrowserError::Missing(bin));
    }
    let t = Instant::now();
    let out = std::process::Command::new(&bin)
        .args(HEADLESS_FLAGS)
        .arg(format!("--user-data-dir={}", scratch.join("chromium-profile").display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .map_err(BrowserError::Start)?;
    let wall_s = t.elapsed().as_secs_f64();
    let ready_ms = ready_ms(&String::from_utf8_lossy(&out.stdout)).ok_or_else(|| {
        BrowserError::NotReady(String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("").to_string())
    })?;
    Ok(PageLoad { wall_s, ready_ms })
}

/// The `data-ready-ms="..."` value in a dumped DOM.
fn ready_ms(dom: &str) -> Option<f64> {
    dom.split("data-ready-ms=\"").nth(1)?.split('"').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_time_is_read_from_the_dom() {
        assert_eq!(ready_ms(r#"<html><body data-ready-ms="123.5" class="x">"#), Some(123.5));
        assert_eq!(ready_ms("<html><body>"), None);
        assert_eq!(ready_ms(r#"<body data-ready-ms="soon">"#), None);
    }
}
