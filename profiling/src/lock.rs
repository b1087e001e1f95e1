//! A mutex that says who waits for it: contended locking is recorded as a `wait.lock` span with the
//! lock's name and the thread holding it (`holder`, its name, and `holder_tid`, its kernel thread id), so
//! the diagnosis can name lock contention (the "h5py holds the GIL" case) and the page can draw an arrow
//! from the holder that released the lock to the thread that waited for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// A named mutex; [`NamedMutex::lock`] records contention.
#[derive(Debug)]
pub struct NamedMutex<T> {
    name: &'static str,
    inner: Mutex<T>,
    /// Kernel thread id of the last holder (0: none yet), written by each holder once it has the lock;
    /// read only by a thread that has to wait, so it names the thread holding the lock then.
    holder_tid: AtomicU64,
    /// Name of the holder, read only when a thread has to wait.
    holder: Mutex<String>,
}

/// Holds a [`NamedMutex`]; unlocks on drop.
#[derive(Debug)]
pub struct NamedGuard<'a, T> {
    guard: MutexGuard<'a, T>,
}

impl<T> NamedMutex<T> {
    /// A mutex named `name` (shown in the `wait.lock` span's `lock` field).
    pub fn new(name: &'static str, value: T) -> NamedMutex<T> {
        NamedMutex { name, inner: Mutex::new(value), holder_tid: AtomicU64::new(0), holder: Mutex::new(String::new()) }
    }

    /// Locks; when another thread holds the lock, the wait is a `wait.lock` span with fields `lock`,
    /// `holder` and `holder_tid`. A poisoned lock is taken over (its data may be half-updated).
    pub fn lock(&self) -> NamedGuard<'_, T> {
        let guard = match self.inner.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                let tid = self.holder_tid.load(Ordering::Relaxed);
                let holder = self.holder.lock().map(|h| h.clone()).unwrap_or_default();
                let _w = tracing::info_span!("wait.lock", lock = self.name, holder = holder.as_str(), holder_tid = tid)
                    .entered();
                self.inner.lock().unwrap_or_else(|p| p.into_inner())
            }
        };
        let me = crate::clock::thread_id();
        if self.holder_tid.swap(me, Ordering::Relaxed) != me {
            // A new holder: its name (kept while the same thread locks again and again).
            if let Ok(mut h) = self.holder.lock() {
                h.clear();
                h.push_str(std::thread::current().name().unwrap_or("unnamed"));
            }
        }
        NamedGuard { guard }
    }
}

impl<T> std::ops::Deref for NamedGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> std::ops::DerefMut for NamedGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}
