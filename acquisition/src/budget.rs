//! A byte budget shared by a producer and a consumer: bounds the bytes waiting in a queue, whatever their
//! number (a frame-count bound alone lets 64 frames of 8 MB hold half a gigabyte).

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Bytes in flight between two threads, capped.
///
/// `release` signals the condition variable only when a producer is actually waiting, so the common case
/// (budget not exhausted) costs one uncontended lock per call and no futex wake-up system call.
#[derive(Debug)]
pub struct ByteBudget {
    cap: u64,
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    used: u64,
    waiting: u32,
}

impl ByteBudget {
    /// A budget of `cap` bytes.
    pub fn new(cap: u64) -> ByteBudget {
        ByteBudget { cap: cap.max(1), state: Mutex::new(State::default()), freed: Condvar::new() }
    }

    /// Takes `n` bytes, waiting while that would exceed the cap (one item larger than the cap is let
    /// through when nothing else is in flight). Gives up and returns false when `give_up()` becomes true.
    pub fn acquire(&self, n: u64, give_up: impl Fn() -> bool) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.used > 0 && st.used + n > self.cap {
            let _w = tracing::debug_span!(
                "wait.queue",
                queue = "frames",
                wants = "space",
                on = "writer",
                bytes_in_flight = st.used
            )
            .entered();
            st.waiting += 1;
            while st.used > 0 && st.used + n > self.cap {
                if give_up() {
                    st.waiting -= 1;
                    return false;
                }
                st = self
                    .freed
                    .wait_timeout(st, Duration::from_millis(50))
                    .map(|r| r.0)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            st.waiting -= 1;
        }
        st.used += n;
        true
    }

    /// Takes `n` bytes if that fits now (the same rule as [`ByteBudget::acquire`]), without waiting.
    pub fn try_acquire(&self, n: u64) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.used > 0 && st.used + n > self.cap {
            return false;
        }
        st.used += n;
        true
    }

    /// Returns `n` bytes.
    pub fn release(&self, n: u64) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.used = st.used.saturating_sub(n);
        if st.waiting > 0 {
            self.freed.notify_one();
        }
    }

    /// Bytes in flight now.
    pub fn used(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).used
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn blocks_until_released_and_lets_one_oversized_item_through() {
        let b = Arc::new(ByteBudget::new(100));
        assert!(b.acquire(500, || false)); // alone: allowed
        let b2 = b.clone();
        let t = std::thread::spawn(move || b2.acquire(10, || false));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!t.is_finished());
        b.release(500);
        assert!(t.join().unwrap());
        assert_eq!(b.used(), 10);
        assert!(!b.acquire(95, || true));
        assert!(!b.try_acquire(95));
        assert!(b.try_acquire(90));
        assert_eq!(b.used(), 100);
    }
}
