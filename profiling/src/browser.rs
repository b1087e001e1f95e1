//! Headless Chromium as this project runs it: where the browser is and the flags it needs, shared by
//! `beamline bench trace` (page load time) and the browser tests.

use std::path::PathBuf;

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
