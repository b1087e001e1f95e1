//! A mutex that says who waits for it: contended locking is recorded as a `wait.lock` span with the
//! lock's name and the thread holding it, so the diagnosis can name lock contention (the "h5py holds
//! the GIL" case).

use std::sync::{Mutex, MutexGuard};

/// A named mutex; [`NamedMutex::lock`] records contention.
#[derive(Debug)]
pub struct NamedMutex<T> {
    name: &'static str,
    inner: Mutex<T>,
    holder: Mutex<String>,
}

/// Holds a [`NamedMutex`]; unlocks on drop.
#[derive(Debug)]
pub struct NamedGuard<'a, T> {
    guard: MutexGuard<'a, T>,
    holder: &'a Mutex<String>,
}

impl<T> NamedMutex<T> {
    /// A mutex named `name` (shown in the `wait.lock` span's `lock` field).
    pub fn new(name: &'static str, value: T) -> NamedMutex<T> {
        NamedMutex { name, inner: Mutex::new(value), holder: Mutex::new(String::new()) }
    }

    /// Locks; when another thread holds the lock, the wait is a `wait.lock` span with fields `lock` and
    /// `holder`. A poisoned lock is taken over (its data may be half-updated).
    pub fn lock(&self) -> NamedGuard<'_, T> {
        let guard = match self.inner.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                let holder = self.holder.lock().map(|h| h.clone()).unwrap_or_default();
                let _w = tracing::info_span!("wait.lock", lock = self.name, holder = holder.as_str()).entered();
                self.inner.lock().unwrap_or_else(|p| p.into_inner())
            }
        };
        if let Ok(mut h) = self.holder.lock() {
            h.clear();
            h.push_str(std::thread::current().name().unwrap_or("unnamed"));
        }
        NamedGuard { guard, holder: &self.holder }
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

impl<T> Drop for NamedGuard<'_, T> {
    fn drop(&mut self) {
        if let Ok(mut h) = self.holder.lock() {
            h.clear();
        }
    }
}
