//! Run control shared between the script thread and the operator: abort (soft, then hard), pause/resume.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Mutex;

/// Why a wait or a primitive stopped early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("aborted: {reason}")]
pub struct Interrupted {
    /// What requested the abort (Ctrl-C, the API, the script).
    pub reason: String,
}

/// Abort and pause flags. Cheap to check (one atomic load), so every blocking native call and every Rhai
/// operation checks it.
#[derive(Debug, Default)]
pub struct Control {
    /// 0 running, 1 abort requested, 2 hard abort (also interrupt the clean-up).
    abort: AtomicU8,
    pause: AtomicBool,
    reason: Mutex<String>,
}

impl Control {
    /// Requests an abort: the scan stops at once, motors stop, the shutter closes, the series ends marked
    /// aborted and motors return where the scan says. A second request also interrupts that clean-up.
    pub fn abort(&self, reason: &str) {
        if self.abort.fetch_add(1, Ordering::AcqRel) == 0 {
            if let Ok(mut r) = self.reason.lock() {
                *r = reason.to_string();
            }
        }
        if self.abort.load(Ordering::Acquire) > 2 {
            self.abort.store(2, Ordering::Release);
        }
    }

    /// True once an abort was requested.
    pub fn is_aborted(&self) -> bool {
        self.abort.load(Ordering::Acquire) != 0
    }

    /// The reason given with the first abort request.
    pub fn reason(&self) -> String {
        self.reason.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// `Err` once an abort was requested.
    pub fn check(&self) -> Result<(), Interrupted> {
        if self.is_aborted() {
            Err(Interrupted { reason: self.reason() })
        } else {
            Ok(())
        }
    }

    /// `Err` only after a second (hard) abort request.
    pub fn check_hard(&self) -> Result<(), Interrupted> {
        if self.abort.load(Ordering::Acquire) >= 2 {
            Err(Interrupted { reason: format!("{} (hard abort)", self.reason()) })
        } else {
            Ok(())
        }
    }

    /// Requests a pause: the scan stops at its next checkpoint (between points) until [`Control::resume`].
    pub fn pause(&self) {
        self.pause.store(true, Ordering::Release);
    }

    /// Lets a paused scan continue.
    pub fn resume(&self) {
        self.pause.store(false, Ordering::Release);
    }

    /// True while a pause is requested.
    pub fn is_paused(&self) -> bool {
        self.pause.load(Ordering::Acquire)
    }
}
