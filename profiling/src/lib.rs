//! Profiling: the `tracing` layer that records every run's spans to a log, the timeline model, the
//! self-contained HTML timeline, Chrome-trace export, stall analysis and reports across many runs.
//!
//! This crate must not depend on any other beamline crate, and recording must stay nearly free: bounded
//! memory, dropped spans counted, never unbounded growth.
