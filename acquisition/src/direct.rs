//! Frame chunks written past the page cache: `beamline_direct`, an HDF5 file driver for the NXtomo writer.
//!
//! Why: on a disk whose buffered writes go through dirty-page writeback (the project's CI machines: `dd`
//! buffered 331 MB/s, `dd oflag=direct` 2.3 GB/s), the writer thread's copy into the page cache and the
//! kernel's writeback throttling are most of what a receiver spends (`perf`: ~50% of its CPU), and the time
//! a buffered write blocks varies by 3× between runs. Debian's HDF5 1.10 has no Direct VFD
//! (`libhdf5.settings`: "Direct VFD: no"), and its `sec2` driver cannot be told to skip the cache.
//!
//! What it does: the calls of HDF5's `sec2` driver (`pread`/`pwrite` on one descriptor, `flock`, `ftruncate`),
//! plus a second descriptor opened with `O_DIRECT` and a window of [`WINDOW_BYTES`] of 4 KiB-aligned memory.
//! Raw-data writes that append to the file (the frame chunks of `H5Dwrite_chunk`) are copied into the window,
//! together with anything else HDF5 writes inside it; each time the window fills, its pages go to the disk in
//! one `O_DIRECT` write. Every other write (metadata elsewhere in the file, in-place rewrites) is a `sec2` write.
//!
//! Guarantees:
//! - **The same file.** The bytes on disk are exactly those `sec2` writes: the window's partial last page goes
//!   through the page cache, never padded, so any driver and any reader (h5py) opens the file.
//! - **The same order.** Before any write outside the window (metadata that may point at chunks in it), before a
//!   read of bytes in it, and at every flush and truncate, the window is written out. A killed process leaves
//!   what `sec2` would leave: everything up to the last flush, consistent.
//! - **Bounded.** At most [`WINDOW_BYTES`] per open file are accepted but not yet handed to the kernel
//!   ([`reserve_bytes`], kept free by the writer's disk-full check).
//! - **A failed write latches.** After a write fails (disk full, I/O error), every later write, flush and
//!   truncate of that file fails with the same OS error, so no metadata pointing at lost chunk bytes is written:
//!   the file stays as it was at its last successful flush.
//! - **Falls back to `sec2` behaviour** where the page cache cannot be bypassed or need not be: a file system
//!   that refuses `O_DIRECT` (opening or the first write), tmpfs (its pages are the storage), a linked HDF5
//!   that is not 1.10 (the class layout here is 1.10's), or [`WriteIo::Buffered`].
//!
//! All callbacks run with HDF5's library lock held (the `hdf5` crate serialises every call), each on its own file.

use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void, CStr, CString};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use hdf5_sys::h5i::hid_t;

/// `O_DIRECT` transfers: file offsets, lengths and memory in multiples of this.
pub const DIRECT_ALIGN: usize = 4096;

/// Bytes of one window buffer: the size of each `O_DIRECT` write.
pub const WINDOW_BYTES: usize = 8 << 20;

/// Window buffers per open file: one being filled while the others are written by the file's I/O thread.
pub const WINDOW_BUFFERS: usize = 3;

/// The most one open file holds in memory that the kernel has not been given.
pub const HELD_BYTES: usize = WINDOW_BYTES * WINDOW_BUFFERS;

/// How the NXtomo writer's files reach the disk (`receive --write-io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteIo {
    /// Frame chunks bypass the page cache where the file system allows it (the default).
    #[default]
    Direct,
    /// Everything through the page cache, as HDF5's default `sec2` driver writes.
    Buffered,
}

impl std::str::FromStr for WriteIo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "direct" => Ok(WriteIo::Direct),
            "buffered" => Ok(WriteIo::Buffered),
            _ => Err(format!("unknown write I/O `{s}`: use direct or buffered")),
        }
    }
}

/// Bytes `file` may hold in memory that the kernel has not been given: [`HELD_BYTES`] for a file of this
/// driver that bypasses the page cache, 0 otherwise. The writer keeps them free in its disk-full check.
pub fn window_bytes(file: &hdf5::File) -> u64 {
    let Some(ours) = driver_id() else { return 0 };
    hdf5::sync::sync(|| {
        // SAFETY: `file` is open; the access list is closed again below.
        let fapl = unsafe { hdf5_sys::h5f::H5Fget_access_plist(file.id()) };
        if fapl < 0 {
            return 0;
        }
        let driver = unsafe { hdf5_sys::h5p::H5Pget_driver(fapl) };
        unsafe { hdf5_sys::h5p::H5Pclose(fapl) };
        if driver != ours {
            return 0;
        }
        let mut handle: *mut c_void = std::ptr::null_mut();
        // SAFETY: our driver's handle points at `State::fd` of the open file, followed by `State::direct`
        // (`repr(C)`), both valid while the file is open.
        let rc = unsafe { hdf5_sys::h5f::H5Fget_vfd_handle(file.id(), hdf5_sys::h5p::H5P_DEFAULT, &mut handle) };
        if rc < 0 || handle.is_null() {
            return 0;
        }
        let direct = unsafe { *(handle as *const c_int).add(1) };
        if direct >= 0 {
            HELD_BYTES as u64
        } else {
            0
        }
    })
}

/// Process-wide counts of what the driver wrote, for tests and the bench.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectStats {
    /// Bytes written with `O_DIRECT`.
    pub direct_bytes: u64,
    /// `O_DIRECT` writes.
    pub direct_writes: u64,
    /// Bytes written through the page cache by files of this driver.
    pub buffered_bytes: u64,
    /// Files opened whose writes could not bypass the page cache.
    pub fallbacks: u64,
}

static DIRECT_BYTES: AtomicU64 = AtomicU64::new(0);
static DIRECT_WRITES: AtomicU64 = AtomicU64::new(0);
static BUFFERED_BYTES: AtomicU64 = AtomicU64::new(0);
static FALLBACKS: AtomicU64 = AtomicU64::new(0);

/// What this process's files of the driver wrote so far.
pub fn stats() -> DirectStats {
    DirectStats {
        direct_bytes: DIRECT_BYTES.load(Ordering::Relaxed),
        direct_writes: DIRECT_WRITES.load(Ordering::Relaxed),
        buffered_bytes: BUFFERED_BYTES.load(Ordering::Relaxed),
        fallbacks: FALLBACKS.load(Ordering::Relaxed),
    }
}

/// Opens (creates, truncates) `path` for writes that bypass the page cache.
pub fn open_direct(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create(true).truncate(true).custom_flags(libc::O_DIRECT).open(path)
}

/// Whether `dir` takes `O_DIRECT` writes (tmpfs before Linux 6.6 does not).
pub fn direct_io_works(dir: &Path) -> bool {
    let probe = dir.join(".direct-probe");
    let ok = open_direct(&probe).and_then(|f| {
        let mut b = AlignedBuf::default();
        std::os::unix::fs::FileExt::write_all_at(&f, b.fill(&[0u8; 8]), 0)
    });
    let _ = std::fs::remove_file(&probe);
    ok.is_ok()
}

/// Whether the writer's files in `dir` bypass the page cache with [`WriteIo::Direct`]: the file system takes
/// `O_DIRECT` and is not memory-backed (tmpfs), and the driver is available.
pub fn bypasses_page_cache(dir: &Path) -> bool {
    let memory = std::fs::File::open(dir).is_ok_and(|f| memory_backed(std::os::unix::io::AsRawFd::as_raw_fd(&f)));
    !memory && driver_id().is_some() && direct_io_works(dir)
}

/// A 4 KiB-aligned, zero-initialised buffer (memory from the allocator's zeroed pages).
pub struct AlignedBuf {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the buffer owns its memory exclusively; moving it to another thread moves that ownership.
unsafe impl Send for AlignedBuf {}

impl Default for AlignedBuf {
    fn default() -> Self {
        AlignedBuf { ptr: std::ptr::null_mut(), len: 0 }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: allocated in `with_len` with this layout.
            unsafe { std::alloc::dealloc(self.ptr, Self::layout(self.len)) };
        }
    }
}

impl AlignedBuf {
    fn layout(len: usize) -> std::alloc::Layout {
        // A multiple of 4096, aligned to 4096: always a valid layout below isize::MAX.
        std::alloc::Layout::from_size_align(len, DIRECT_ALIGN).unwrap_or_else(|_| std::alloc::Layout::new::<u8>())
    }

    /// A buffer of at least `bytes` (rounded up to 4 KiB, at least one block), zeroed.
    pub fn with_len(bytes: usize) -> AlignedBuf {
        let len = bytes.div_ceil(DIRECT_ALIGN).max(1) * DIRECT_ALIGN;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(Self::layout(len)) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(Self::layout(len));
        }
        AlignedBuf { ptr, len }
    }

    /// All its bytes.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        if self.ptr.is_null() {
            return &mut [];
        }
        // SAFETY: `ptr` owns `len` initialised (zeroed, then written) bytes.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// Its bytes.
    pub fn bytes(&self) -> &[u8] {
        if self.ptr.is_null() {
            return &[];
        }
        // SAFETY: as in `bytes_mut`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// `data` copied in and zero-padded to a multiple of 4 KiB (at least one block): the bytes to write.
    pub fn fill(&mut self, data: &[u8]) -> &[u8] {
        let n = data.len().div_ceil(DIRECT_ALIGN).max(1) * DIRECT_ALIGN;
        if self.len < n {
            *self = AlignedBuf::with_len(n);
        }
        let bytes = &mut self.bytes_mut()[..n];
        bytes[..data.len()].copy_from_slice(data);
        bytes[data.len()..].fill(0);
        bytes
    }
}

// --- HDF5 1.10's file driver ABI (H5FDpublic.h of 1.10.8; hdf5-sys carries a different revision) ---

type Herr = c_int;
type Haddr = u64;
/// `H5FD_mem_t`, a C enum.
type MemType = c_int;
const MEM_SUPER: MemType = 1;
const MEM_DRAW: MemType = 3;
const HADDR_UNDEF: Haddr = u64::MAX;
/// Largest address: `off_t` is 64 bits.
const MAXADDR: Haddr = (1u64 << 63) - 1;

const ACC_RDWR: c_uint = 0x0001;
const ACC_TRUNC: c_uint = 0x0002;
const ACC_EXCL: c_uint = 0x0004;
const ACC_CREAT: c_uint = 0x0010;

const FEAT_AGGREGATE_METADATA: c_ulong = 0x0001;
const FEAT_ACCUMULATE_METADATA: c_ulong = 0x0002 | 0x0004;
const FEAT_DATA_SIEVE: c_ulong = 0x0008;
const FEAT_AGGREGATE_SMALLDATA: c_ulong = 0x0010;
const FEAT_POSIX_COMPAT_HANDLE: c_ulong = 0x0080;
const FEAT_DEFAULT_VFD_COMPATIBLE: c_ulong = 0x8000;

/// `struct H5FD_t`: HDF5 fills it in after `open` returns; a driver's file starts with it.
#[repr(C)]
struct PublicFile {
    driver_id: hid_t,
    cls: *const Class,
    fileno: c_ulong,
    access_flags: c_uint,
    feature_flags: c_ulong,
    maxaddr: Haddr,
    base_addr: Haddr,
    threshold: u64,
    alignment: u64,
    paged_aggr: bool,
}

type Opt<T> = Option<T>;

/// `H5FD_class_t`.
#[repr(C)]
struct Class {
    name: *const c_char,
    maxaddr: Haddr,
    fc_degree: c_int,
    terminate: Opt<unsafe extern "C" fn() -> Herr>,
    sb_size: Opt<unsafe extern "C" fn(*mut PublicFile) -> u64>,
    sb_encode: Opt<unsafe extern "C" fn(*mut PublicFile, *mut c_char, *mut u8) -> Herr>,
    sb_decode: Opt<unsafe extern "C" fn(*mut PublicFile, *const c_char, *const u8) -> Herr>,
    fapl_size: usize,
    fapl_get: Opt<unsafe extern "C" fn(*mut PublicFile) -> *mut c_void>,
    fapl_copy: Opt<unsafe extern "C" fn(*const c_void) -> *mut c_void>,
    fapl_free: Opt<unsafe extern "C" fn(*mut c_void) -> Herr>,
    dxpl_size: usize,
    dxpl_copy: Opt<unsafe extern "C" fn(*const c_void) -> *mut c_void>,
    dxpl_free: Opt<unsafe extern "C" fn(*mut c_void) -> Herr>,
    open: Opt<unsafe extern "C" fn(*const c_char, c_uint, hid_t, Haddr) -> *mut PublicFile>,
    close: Opt<unsafe extern "C" fn(*mut PublicFile) -> Herr>,
    cmp: Opt<unsafe extern "C" fn(*const PublicFile, *const PublicFile) -> c_int>,
    query: Opt<unsafe extern "C" fn(*const PublicFile, *mut c_ulong) -> Herr>,
    get_type_map: Opt<unsafe extern "C" fn(*const PublicFile, *mut MemType) -> Herr>,
    alloc: Opt<unsafe extern "C" fn(*mut PublicFile, MemType, hid_t, u64) -> Haddr>,
    free: Opt<unsafe extern "C" fn(*mut PublicFile, MemType, hid_t, Haddr, u64) -> Herr>,
    get_eoa: Opt<unsafe extern "C" fn(*const PublicFile, MemType) -> Haddr>,
    set_eoa: Opt<unsafe extern "C" fn(*mut PublicFile, MemType, Haddr) -> Herr>,
    get_eof: Opt<unsafe extern "C" fn(*const PublicFile, MemType) -> Haddr>,
    get_handle: Opt<unsafe extern "C" fn(*mut PublicFile, hid_t, *mut *mut c_void) -> Herr>,
    read: Opt<unsafe extern "C" fn(*mut PublicFile, MemType, hid_t, Haddr, usize, *mut c_void) -> Herr>,
    write: Opt<unsafe extern "C" fn(*mut PublicFile, MemType, hid_t, Haddr, usize, *const c_void) -> Herr>,
    flush: Opt<unsafe extern "C" fn(*mut PublicFile, hid_t, bool) -> Herr>,
    truncate: Opt<unsafe extern "C" fn(*mut PublicFile, hid_t, bool) -> Herr>,
    lock: Opt<unsafe extern "C" fn(*mut PublicFile, bool) -> Herr>,
    unlock: Opt<unsafe extern "C" fn(*mut PublicFile) -> Herr>,
    fl_map: [MemType; 7],
}

// SAFETY: the class is immutable after construction; `name` points at a static C string.
unsafe impl Sync for Class {}
unsafe impl Send for Class {}

static CLASS: Class = Class {
    name: c"beamline_direct".as_ptr(),
    maxaddr: MAXADDR,
    fc_degree: 1, // H5F_CLOSE_WEAK, as sec2
    terminate: None,
    sb_size: None,
    sb_encode: None,
    sb_decode: None,
    fapl_size: 0,
    fapl_get: None,
    fapl_copy: None,
    fapl_free: None,
    dxpl_size: 0,
    dxpl_copy: None,
    dxpl_free: None,
    open: Some(cb_open),
    close: Some(cb_close),
    cmp: Some(cb_cmp),
    query: Some(cb_query),
    get_type_map: None,
    alloc: None,
    free: None,
    get_eoa: Some(cb_get_eoa),
    set_eoa: Some(cb_set_eoa),
    get_eof: Some(cb_get_eof),
    get_handle: Some(cb_get_handle),
    read: Some(cb_read),
    write: Some(cb_write),
    flush: Some(cb_flush),
    truncate: Some(cb_truncate),
    lock: Some(cb_lock),
    unlock: Some(cb_unlock),
    // H5FD_FLMAP_DICHOTOMY, as sec2: raw data and global heap apart from the rest.
    fl_map: [MEM_SUPER, MEM_SUPER, MEM_SUPER, MEM_DRAW, MEM_DRAW, MEM_SUPER, MEM_SUPER],
};

/// The driver's id, registered once; `None` when the linked HDF5 is not 1.10 or registration failed.
fn driver_id() -> Option<hid_t> {
    static ID: OnceLock<Option<hid_t>> = OnceLock::new();
    *ID.get_or_init(|| {
        let (mut maj, mut min, mut rel) = (0, 0, 0);
        // SAFETY: plain out-parameters.
        let rc = hdf5::sync::sync(|| unsafe { hdf5_sys::h5::H5get_libversion(&mut maj, &mut min, &mut rel) });
        if rc < 0 || (maj, min) != (1, 10) {
            tracing::debug!(maj, min, rel, "beamline_direct needs HDF5 1.10; files are written as sec2 writes");
            return None;
        }
        // SAFETY: `CLASS` matches 1.10's H5FD_class_t and lives for the whole process.
        let id = hdf5::sync::sync(|| unsafe { hdf5_sys::h5fd::H5FDregister((&CLASS as *const Class).cast()) });
        (id >= 0).then_some(id)
    })
}

/// Opens `path` for the writer: created (truncated) with `create`, else opened read-write; through the
/// driver when `io` is [`WriteIo::Direct`] and the driver is available, else with HDF5's default driver.
pub fn open_for_writing(path: &Path, create: bool, io: WriteIo) -> hdf5::Result<hdf5::File> {
    let id = match (io, driver_id()) {
        (WriteIo::Direct, Some(id)) => id,
        _ => return if create { hdf5::File::create(path) } else { hdf5::File::open_rw(path) },
    };
    let name = path.to_str().ok_or_else(|| hdf5::Error::from(format!("file name is not UTF-8: {}", path.display())))?;
    let name = CString::new(name).map_err(|_| hdf5::Error::from("file name holds a NUL byte"))?;
    let fapl = hdf5::plist::FileAccess::try_new()?;
    hdf5::sync::sync(|| -> hdf5::Result<hdf5::File> {
        // SAFETY: `fapl` is a live file access list; the driver takes no driver info (fapl_size 0).
        check(unsafe { hdf5_sys::h5p::H5Pset_driver(fapl.id(), id, std::ptr::null()) } as hid_t)?;
        // SAFETY: `name` is NUL-terminated; the ids are live.
        let fid = check(unsafe {
            if create {
                hdf5_sys::h5f::H5Fcreate(name.as_ptr(), ACC_TRUNC, hdf5_sys::h5p::H5P_DEFAULT, fapl.id())
            } else {
                hdf5_sys::h5f::H5Fopen(name.as_ptr(), ACC_RDWR, fapl.id())
            }
        })?;
        // SAFETY: `fid` was just returned by H5Fcreate/H5Fopen, so its reference count is ours.
        unsafe { hdf5::from_id::<hdf5::File>(fid) }
    })
}

/// `rc` when it is not negative, else HDF5's error stack as the error.
fn check(rc: hid_t) -> hdf5::Result<hid_t> {
    if rc < 0 {
        Err(hdf5::Error::query().unwrap_or_else(|e| e))
    } else {
        Ok(rc)
    }
}

/// The part of the file held in aligned memory: `len` bytes from `start` (a multiple of 4 KiB).
#[derive(Debug, Clone, Copy)]
struct Window {
    start: u64,
    len: usize,
}

/// One open file.
#[repr(C)]
struct DirectFile {
    /// Must come first: HDF5 sees a `*mut PublicFile`.
    public: PublicFile,
    state: State,
}

/// `repr(C)` with the two descriptors first: the handle HDF5 hands out points at `fd`, and
/// [`window_bytes`] reads `direct` next to it.
#[repr(C)]
struct State {
    fd: c_int,
    /// The `O_DIRECT` descriptor; -1 where the page cache is not bypassed.
    direct: c_int,
    /// The buffer of the window being filled.
    buf: AlignedBuf,
    window: Option<Window>,
    /// The file's `O_DIRECT` writer thread, where the page cache is bypassed.
    io: Option<Io>,
    dev: u64,
    ino: u64,
    eoa: Haddr,
    /// End of file as HDF5 sees it (bytes in the window included).
    eof: Haddr,
    /// End of the bytes handed to the kernel.
    on_disk: u64,
    /// The OS error of the first failed write, latched.
    failed: Option<i32>,
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

fn set_errno(e: i32) {
    // SAFETY: `__errno_location` returns this thread's errno.
    unsafe { *libc::__errno_location() = e };
}

/// Pushes `what` and the OS error `e` on HDF5's error stack (so callers see why), leaves `errno` at `e`.
fn push_error(what: &str, e: i32) -> Herr {
    let msg = format!("{what}: {}", std::io::Error::from_raw_os_error(e));
    let msg = CString::new(msg).unwrap_or_default();
    // SAFETY: the format string takes exactly one C string; the error class ids are HDF5's globals.
    unsafe {
        hdf5_sys::h5e::H5Epush2(
            0, // H5E_DEFAULT
            c"direct.rs".as_ptr(),
            c"beamline_direct".as_ptr(),
            line!(),
            *hdf5_sys::h5e::H5E_ERR_CLS,
            *hdf5_sys::h5e::H5E_VFL,
            *hdf5_sys::h5e::H5E_WRITEERROR,
            c"%s".as_ptr(),
            msg.as_ptr(),
        );
    }
    set_errno(e);
    -1
}

/// One window buffer for the I/O thread: write its first `len` bytes at `start`.
struct Job {
    buf: AlignedBuf,
    start: u64,
    len: usize,
}

/// A file's `O_DIRECT` writer: a thread that writes window buffers while the writer fills the next one.
/// [`WINDOW_BUFFERS`] buffers in all; the window holds one, the others are idle here or being written.
struct Io {
    jobs: Option<crossbeam_channel::Sender<Job>>,
    done: crossbeam_channel::Receiver<AlignedBuf>,
    idle: Vec<AlignedBuf>,
    in_flight: usize,
    /// The first OS error of a write (0: none).
    error: std::sync::Arc<std::sync::atomic::AtomicI32>,
    /// Set when the file system refused an `O_DIRECT` write: the thread then writes through the page cache
    /// and no new window is opened.
    refused: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Io {
    fn start(fd: c_int, direct: c_int) -> std::io::Result<Io> {
        let (jobs, jobs_rx) = crossbeam_channel::bounded::<Job>(WINDOW_BUFFERS);
        let (done_tx, done) = crossbeam_channel::bounded::<AlignedBuf>(WINDOW_BUFFERS);
        let error = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0));
        let refused = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (e, r) = (error.clone(), refused.clone());
        let thread = std::thread::Builder::new().name("direct-io".into()).spawn(move || {
            for job in jobs_rx {
                if e.load(Ordering::Relaxed) == 0 {
                    let _s = tracing::trace_span!("hdf5.direct_write", bytes = job.len).entered();
                    let data = &job.buf.bytes()[..job.len];
                    let mut result = Err(libc::EINVAL);
                    if !r.load(Ordering::Relaxed) {
                        result = if injected_failure() { Err(libc::EIO) } else { pwrite_all(direct, data, job.start) };
                        if result == Err(libc::EINVAL) {
                            tracing::debug!("O_DIRECT write refused (EINVAL): writing through the page cache");
                            FALLBACKS.fetch_add(1, Ordering::Relaxed);
                            r.store(true, Ordering::Relaxed);
                        } else if result.is_ok() {
                            DIRECT_BYTES.fetch_add(job.len as u64, Ordering::Relaxed);
                            DIRECT_WRITES.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if r.load(Ordering::Relaxed) && result == Err(libc::EINVAL) {
                        result = pwrite_all(fd, data, job.start);
                        if result.is_ok() {
                            BUFFERED_BYTES.fetch_add(job.len as u64, Ordering::Relaxed);
                        }
                    }
                    if let Err(err) = result {
                        e.store(err, Ordering::Relaxed);
                    }
                }
                if done_tx.send(job.buf).is_err() {
                    break;
                }
            }
        })?;
        let idle = (1..WINDOW_BUFFERS).map(|_| AlignedBuf::with_len(WINDOW_BYTES)).collect();
        Ok(Io { jobs: Some(jobs), done, idle, in_flight: 0, error, refused, thread: Some(thread) })
    }

    fn refused(&self) -> bool {
        self.refused.load(Ordering::Relaxed)
    }

    fn check(&self) -> Result<(), i32> {
        match self.error.load(Ordering::Relaxed) {
            0 => Ok(()),
            e => Err(e),
        }
    }

    /// Buffers the thread has finished with, without waiting.
    fn collect(&mut self) {
        while let Ok(b) = self.done.try_recv() {
            self.in_flight -= 1;
            self.idle.push(b);
        }
    }

    /// An idle buffer, waiting for the thread to finish one when none is.
    fn idle(&mut self) -> Result<AlignedBuf, i32> {
        self.collect();
        if self.idle.is_empty() {
            let b = self.done.recv().map_err(|_| libc::EIO)?;
            self.in_flight -= 1;
            self.idle.push(b);
        }
        self.check()?;
        self.idle.pop().ok_or(libc::EIO)
    }

    fn send(&mut self, job: Job) -> Result<(), i32> {
        let jobs = self.jobs.as_ref().ok_or(libc::EIO)?;
        jobs.send(job).map_err(|_| libc::EIO)?;
        self.in_flight += 1;
        Ok(())
    }

    fn drain(&mut self) -> Result<(), i32> {
        while self.in_flight > 0 {
            let b = self.done.recv().map_err(|_| libc::EIO)?;
            self.in_flight -= 1;
            self.idle.push(b);
        }
        self.check()
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Test-only hook: `BEAMLINE_TEST_DIRECT_EIO_AFTER=N` makes every `O_DIRECT` write of this process after its
/// first N fail with EIO (a disk that fails mid-series, for the latch's end-to-end test). Read once.
fn injected_failure() -> bool {
    static AFTER: OnceLock<Option<u64>> = OnceLock::new();
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let Some(after) = *AFTER.get_or_init(|| std::env::var("BEAMLINE_TEST_DIRECT_EIO_AFTER").ok()?.parse().ok()) else {
        return false;
    };
    WRITES.fetch_add(1, Ordering::Relaxed) >= after
}

/// `pwrite` of all of `data` at `at`.
fn pwrite_all(fd: c_int, mut data: &[u8], mut at: u64) -> Result<(), i32> {
    while !data.is_empty() {
        // SAFETY: `data` is valid for its length.
        let n = unsafe { libc::pwrite(fd, data.as_ptr().cast(), data.len(), at as libc::off_t) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(libc::EIO);
        }
        data = &data[n as usize..];
        at += n as u64;
    }
    Ok(())
}

impl State {
    /// A buffered (`sec2`) write.
    fn write_buffered(&mut self, data: &[u8], at: u64) -> Result<(), i32> {
        pwrite_all(self.fd, data, at)?;
        self.wrote_buffered(at, data.len());
        Ok(())
    }

    fn wrote_buffered(&mut self, at: u64, len: usize) {
        BUFFERED_BYTES.fetch_add(len as u64, Ordering::Relaxed);
        self.on_disk = self.on_disk.max(at + len as u64);
    }

    /// Hands the window buffer's first `len` bytes (a multiple of 4 KiB) to the I/O thread, to be written at
    /// `start`, and takes an idle buffer for the window (waiting for one when all are being written). Without
    /// an I/O thread, writes them here through the page cache.
    fn submit(&mut self, start: u64, len: usize) -> Result<(), i32> {
        let Some(io) = self.io.as_mut() else {
            pwrite_all(self.fd, &self.buf.bytes()[..len], start)?;
            self.wrote_buffered(start, len);
            return Ok(());
        };
        let next = io.idle()?;
        let buf = std::mem::replace(&mut self.buf, next);
        io.send(Job { buf, start, len })?;
        self.on_disk = self.on_disk.max(start + len as u64);
        Ok(())
    }

    /// Waits until every buffer handed to the I/O thread is written; the first error it met, if any.
    fn drain(&mut self) -> Result<(), i32> {
        match self.io.as_mut() {
            Some(io) => io.drain(),
            None => Ok(()),
        }
    }

    /// Hands the whole window to the kernel (its full pages direct, the partial last page buffered), waits
    /// until all of it is written, and drops it. Without a window nothing is being written either.
    fn close_window(&mut self) -> Result<(), i32> {
        let Some(w) = self.window.take() else { return Ok(()) };
        let full = w.len / DIRECT_ALIGN * DIRECT_ALIGN;
        if w.len > full {
            pwrite_all(self.fd, &self.buf.bytes()[full..w.len], w.start + full as u64)?;
            self.wrote_buffered(w.start + full as u64, w.len - full);
        }
        if full > 0 {
            self.submit(w.start, full)?;
        }
        self.drain()
    }

    /// Opens a window at `addr` (at or after the end of the bytes on disk): the bytes of its first page before
    /// `addr` that are on disk are read in, so writing the page back keeps them.
    fn open_window(&mut self, addr: u64) -> Result<(), i32> {
        let start = addr / DIRECT_ALIGN as u64 * DIRECT_ALIGN as u64;
        let keep = self.on_disk.saturating_sub(start).min(addr - start) as usize;
        if keep > 0 {
            let fd = self.fd;
            pread_exact(fd, &mut self.buf.bytes_mut()[..keep], start)?;
        }
        self.window = Some(Window { start, len: keep });
        Ok(())
    }

    fn write(&mut self, kind: MemType, mut addr: u64, mut data: &[u8]) -> Result<(), i32> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let end = addr + data.len() as u64;
        let r = (|| {
            while !data.is_empty() {
                if let Some(w) = self.window {
                    if addr >= w.start && addr < w.start + WINDOW_BYTES as u64 {
                        let off = (addr - w.start) as usize;
                        let n = data.len().min(WINDOW_BYTES - off);
                        let buf = self.buf.bytes_mut();
                        if off > w.len {
                            buf[w.len..off].fill(0);
                        }
                        buf[off..off + n].copy_from_slice(&data[..n]);
                        let len = w.len.max(off + n);
                        if len == WINDOW_BYTES {
                            self.window = None;
                            self.submit(w.start, WINDOW_BYTES)?;
                            self.window = Some(Window { start: w.start + WINDOW_BYTES as u64, len: 0 });
                        } else {
                            self.window = Some(Window { start: w.start, len });
                        }
                        addr += n as u64;
                        data = &data[n..];
                        continue;
                    }
                    self.close_window()?;
                }
                if self.io.as_ref().is_some_and(|io| !io.refused()) && kind == MEM_DRAW && addr >= self.on_disk {
                    self.open_window(addr)?;
                    continue;
                }
                return self.write_buffered(data, addr);
            }
            Ok(())
        })();
        match r {
            Ok(()) => {
                self.eof = self.eof.max(end);
                Ok(())
            }
            Err(e) => {
                self.failed = Some(e);
                Err(e)
            }
        }
    }

    /// Writes the window out (a latched failure stays).
    fn sync_window(&mut self) -> Result<(), i32> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        self.close_window().inspect_err(|e| self.failed = Some(*e))
    }

    fn read(&mut self, addr: u64, out: &mut [u8]) -> Result<(), i32> {
        // Bytes in the window, or in buffers being written (all below it), are on disk only after a sync.
        if let Some(w) = self.window {
            let writing = self.io.as_ref().is_some_and(|io| io.in_flight > 0);
            if writing || (addr < w.start + w.len as u64 && addr + out.len() as u64 > w.start) {
                self.sync_window()?;
            }
        }
        let n = pread_upto(self.fd, out, addr)?;
        out[n..].fill(0);
        Ok(())
    }
}

/// `pread` into `out` until it is full or the file ends; returns the bytes read.
fn pread_upto(fd: c_int, out: &mut [u8], at: u64) -> Result<usize, i32> {
    let mut done = 0;
    while done < out.len() {
        // SAFETY: `out[done..]` is valid for writes of its length.
        let n = unsafe {
            libc::pread(fd, out[done..].as_mut_ptr().cast(), out.len() - done, (at + done as u64) as libc::off_t)
        };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        done += n as usize;
    }
    Ok(done)
}

fn pread_exact(fd: c_int, out: &mut [u8], at: u64) -> Result<(), i32> {
    let n = pread_upto(fd, out, at)?;
    if n < out.len() {
        out[n..].fill(0);
    }
    Ok(())
}

/// The file behind HDF5's pointer.
///
/// SAFETY: `f` was returned by `cb_open` and not yet closed; HDF5 calls a file's callbacks one at a time.
unsafe fn state<'a>(f: *const PublicFile) -> &'a mut State {
    unsafe { &mut (*(f as *mut DirectFile)).state }
}

/// Whether the page cache of the file system holding `fd` is its storage (tmpfs, ramfs).
fn memory_backed(fd: c_int) -> bool {
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a writable statfs; `fd` is open.
    if unsafe { libc::fstatfs(fd, &mut st) } != 0 {
        return false;
    }
    const RAMFS_MAGIC: libc::c_long = 0x8584_58f6;
    matches!(st.f_type, libc::TMPFS_MAGIC | RAMFS_MAGIC)
}

unsafe extern "C" fn cb_open(name: *const c_char, flags: c_uint, _fapl: hid_t, maxaddr: Haddr) -> *mut PublicFile {
    if name.is_null() || maxaddr == 0 || maxaddr == HADDR_UNDEF || maxaddr > MAXADDR {
        push_error("open: bad file name or address space", libc::EINVAL);
        return std::ptr::null_mut();
    }
    let mut o = if flags & ACC_RDWR != 0 { libc::O_RDWR } else { libc::O_RDONLY };
    if flags & ACC_TRUNC != 0 {
        o |= libc::O_TRUNC;
    }
    if flags & ACC_CREAT != 0 {
        o |= libc::O_CREAT;
    }
    if flags & ACC_EXCL != 0 {
        o |= libc::O_EXCL;
    }
    // SAFETY: `name` is HDF5's NUL-terminated file name.
    let fd = unsafe { libc::open(name, o | libc::O_CLOEXEC, 0o666 as c_uint) };
    let shown = unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned();
    if fd < 0 {
        push_error(&format!("unable to open file {shown}"), errno());
        return std::ptr::null_mut();
    }
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open, `st` writable.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        let e = errno();
        unsafe { libc::close(fd) };
        push_error(&format!("unable to stat {shown}"), e);
        return std::ptr::null_mut();
    }
    let direct = if flags & ACC_RDWR != 0 && !memory_backed(fd) {
        // SAFETY: as above.
        let d = unsafe { libc::open(name, libc::O_WRONLY | libc::O_DIRECT | libc::O_CLOEXEC) };
        if d < 0 {
            tracing::debug!(file = %shown, "O_DIRECT not available here: writing through the page cache");
            FALLBACKS.fetch_add(1, Ordering::Relaxed);
        }
        d
    } else {
        -1
    };
    let io = if direct >= 0 {
        match Io::start(fd, direct) {
            Ok(io) => Some(io),
            Err(e) => {
                tracing::debug!(file = %shown, "no I/O thread ({e}): writing through the page cache");
                FALLBACKS.fetch_add(1, Ordering::Relaxed);
                // SAFETY: our descriptor, not used by anything else.
                unsafe { libc::close(direct) };
                None
            }
        }
    } else {
        None
    };
    let size = st.st_size as u64;
    let state = State {
        fd,
        buf: if io.is_some() { AlignedBuf::with_len(WINDOW_BYTES) } else { AlignedBuf::default() },
        direct: if io.is_some() { direct } else { -1 },
        window: None,
        io,
        dev: st.st_dev,
        ino: st.st_ino,
        eoa: 0,
        eof: size,
        on_disk: size,
        failed: None,
    };
    // SAFETY: HDF5 fills in the public part after `open` returns; all-zero is a valid value for it.
    let public: PublicFile = unsafe { std::mem::zeroed() };
    Box::into_raw(Box::new(DirectFile { public, state })).cast()
}

unsafe extern "C" fn cb_close(f: *mut PublicFile) -> Herr {
    // SAFETY: `f` came from `cb_open`; HDF5 closes each file once.
    let mut file = unsafe { Box::from_raw(f as *mut DirectFile) };
    let s = &mut file.state;
    let r = s.sync_window();
    // Joins the I/O thread before its descriptors close.
    s.io = None;
    unsafe {
        if s.direct >= 0 {
            libc::close(s.direct);
        }
        libc::close(s.fd);
    }
    herr("closing the file: its last frames could not be written", r)
}

unsafe extern "C" fn cb_cmp(a: *const PublicFile, b: *const PublicFile) -> c_int {
    let (a, b) = unsafe { (state(a), state(b)) };
    match (a.dev, a.ino).cmp(&(b.dev, b.ino)) {
        std::cmp::Ordering::Less => -1,
        std::cmp::Ordering::Equal => 0,
        std::cmp::Ordering::Greater => 1,
    }
}

unsafe extern "C" fn cb_query(_f: *const PublicFile, flags: *mut c_ulong) -> Herr {
    if !flags.is_null() {
        // SAFETY: HDF5 passes a writable flags word.
        unsafe {
            *flags = FEAT_AGGREGATE_METADATA
                | FEAT_ACCUMULATE_METADATA
                | FEAT_DATA_SIEVE
                | FEAT_AGGREGATE_SMALLDATA
                | FEAT_POSIX_COMPAT_HANDLE
                | FEAT_DEFAULT_VFD_COMPATIBLE
        };
    }
    0
}

unsafe extern "C" fn cb_get_eoa(f: *const PublicFile, _t: MemType) -> Haddr {
    unsafe { state(f) }.eoa
}

unsafe extern "C" fn cb_set_eoa(f: *mut PublicFile, _t: MemType, addr: Haddr) -> Herr {
    unsafe { state(f) }.eoa = addr;
    0
}

unsafe extern "C" fn cb_get_eof(f: *const PublicFile, _t: MemType) -> Haddr {
    unsafe { state(f) }.eof
}

unsafe extern "C" fn cb_get_handle(f: *mut PublicFile, _fapl: hid_t, handle: *mut *mut c_void) -> Herr {
    if handle.is_null() {
        return push_error("get_handle: no place for the handle", libc::EINVAL);
    }
    // SAFETY: the descriptor lives in the boxed file, valid until close.
    unsafe { *handle = (&mut state(f).fd as *mut c_int).cast() };
    0
}

/// The return of a read or write callback that needs no I/O: an error for a region outside the address space,
/// success for an empty one; `None` when there is I/O to do.
fn check_region(op: &str, addr: Haddr, size: usize) -> Option<Herr> {
    if addr == HADDR_UNDEF || addr.checked_add(size as u64).is_none_or(|e| e > MAXADDR) {
        return Some(push_error(&format!("{op}: address out of range"), libc::EINVAL));
    }
    (size == 0).then_some(0)
}

/// 0, or the OS error pushed on HDF5's stack with `what`.
fn herr(what: &str, r: Result<(), i32>) -> Herr {
    match r {
        Ok(()) => 0,
        Err(e) => push_error(what, e),
    }
}

unsafe extern "C" fn cb_read(
    f: *mut PublicFile,
    _t: MemType,
    _dxpl: hid_t,
    addr: Haddr,
    size: usize,
    buf: *mut c_void,
) -> Herr {
    if let Some(rc) = check_region("read", addr, size) {
        return rc;
    }
    // SAFETY: HDF5 passes a buffer of `size` writable bytes.
    let out = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), size) };
    herr("read failed", unsafe { state(f) }.read(addr, out))
}

unsafe extern "C" fn cb_write(
    f: *mut PublicFile,
    t: MemType,
    _dxpl: hid_t,
    addr: Haddr,
    size: usize,
    buf: *const c_void,
) -> Herr {
    if let Some(rc) = check_region("write", addr, size) {
        return rc;
    }
    // SAFETY: HDF5 passes `size` readable bytes.
    let data = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), size) };
    herr("write failed", unsafe { state(f) }.write(t, addr, data))
}

unsafe extern "C" fn cb_flush(f: *mut PublicFile, _dxpl: hid_t, _closing: bool) -> Herr {
    herr("flush failed", unsafe { state(f) }.sync_window())
}

unsafe extern "C" fn cb_truncate(f: *mut PublicFile, _dxpl: hid_t, _closing: bool) -> Herr {
    let s = unsafe { state(f) };
    if let Err(e) = s.sync_window() {
        return push_error("truncate: writing the window failed", e);
    }
    if s.eoa != s.eof {
        // SAFETY: our descriptor.
        if unsafe { libc::ftruncate(s.fd, s.eoa as libc::off_t) } != 0 {
            let e = errno();
            s.failed = Some(e);
            return push_error("ftruncate failed", e);
        }
        s.eof = s.eoa;
        s.on_disk = s.eoa;
    }
    0
}

unsafe extern "C" fn cb_lock(f: *mut PublicFile, rw: bool) -> Herr {
    let op = if rw { libc::LOCK_EX } else { libc::LOCK_SH } | libc::LOCK_NB;
    // SAFETY: our descriptor.
    if unsafe { libc::flock(state(f).fd, op) } != 0 {
        return push_error("unable to lock the file (HDF5_USE_FILE_LOCKING=FALSE turns locking off)", errno());
    }
    0
}

unsafe extern "C" fn cb_unlock(f: *mut PublicFile) -> Herr {
    // SAFETY: our descriptor.
    if unsafe { libc::flock(state(f).fd, libc::LOCK_UN) } != 0 {
        return push_error("unable to unlock the file", errno());
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_direct_buffer_is_aligned_padded_with_zeros_and_reused() {
        let mut b = AlignedBuf::default();
        let first = b.fill(&[7u8; 5000]);
        assert_eq!(first.len(), 2 * DIRECT_ALIGN);
        assert_eq!(first.as_ptr() as usize % DIRECT_ALIGN, 0);
        assert!(first[..5000].iter().all(|&x| x == 7) && first[5000..].iter().all(|&x| x == 0));
        // A shorter payload after a longer one: no stale bytes in its padding.
        let second = b.fill(&[1u8; 10]);
        assert_eq!(second.len(), DIRECT_ALIGN);
        assert!(second[..10].iter().all(|&x| x == 1) && second[10..].iter().all(|&x| x == 0));
    }

    #[test]
    fn direct_writes_land_where_the_file_system_takes_them() {
        let dir = tempfile::tempdir().unwrap();
        if direct_io_works(dir.path()) {
            let path = dir.path().join("d.bin");
            let f = open_direct(&path).unwrap();
            let mut b = AlignedBuf::default();
            std::os::unix::fs::FileExt::write_all_at(&f, b.fill(b"frame"), 0).unwrap();
            drop(f);
            let back = std::fs::read(&path).unwrap();
            assert_eq!(&back[..5], b"frame");
            assert_eq!(back.len(), DIRECT_ALIGN);
        }
    }

    #[test]
    fn write_io_parses() {
        assert_eq!("direct".parse::<WriteIo>(), Ok(WriteIo::Direct));
        assert_eq!("buffered".parse::<WriteIo>(), Ok(WriteIo::Buffered));
        assert!("fast".parse::<WriteIo>().unwrap_err().contains("direct or buffered"));
    }

    /// Chunks of many sizes (some larger than the window, some tiny) with flushes between, written through the
    /// driver, read back with HDF5's default driver bit for bit; on a file system that takes O_DIRECT, most of
    /// the bytes bypassed the page cache, and the file's size is what HDF5 says it is (nothing padded).
    #[test]
    fn chunks_round_trip_through_the_driver() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.h5");
        let sizes: Vec<usize> =
            (0..40).map(|i| [1, 100, 4095, 4096, 4097, 70_000, 3 << 20, 9 << 20][i % 8] + i).collect();
        let payload = |i: usize| -> Vec<u8> { (0..sizes[i]).map(|k| (k * 31 + i * 7) as u8).collect() };
        let before = stats();
        {
            let f = open_for_writing(&path, true, WriteIo::Direct).unwrap();
            let ds = f.new_dataset::<u8>().shape([sizes.len(), 10 << 20]).chunk([1, 10 << 20]).create("d").unwrap();
            for i in 0..sizes.len() {
                let data = payload(i);
                assert!(write_chunk(&ds, i as u64, &data) >= 0, "chunk {i}");
                if i % 7 == 3 {
                    f.flush().unwrap();
                }
            }
        }
        let f = hdf5::File::open(&path).unwrap();
        let ds = f.dataset("d").unwrap();
        for (i, &size) in sizes.iter().enumerate() {
            let off = [i as u64, 0];
            let mut back = vec![0u8; size];
            let mut filter_mask = 0u32;
            let rc = hdf5::sync::sync(|| unsafe {
                hdf5_sys::h5d::H5Dread_chunk(
                    ds.id(),
                    hdf5_sys::h5p::H5P_DEFAULT,
                    off.as_ptr(),
                    &mut filter_mask,
                    back.as_mut_ptr().cast(),
                )
            });
            assert!(rc >= 0, "read chunk {i}");
            assert!(back == payload(i), "chunk {i} differs");
        }
        let after = stats();
        let total: u64 = sizes.iter().map(|&s| s as u64).sum();
        let on_disk = std::fs::metadata(&path).unwrap().len();
        assert!(on_disk >= total && on_disk < total + (1 << 20), "file {on_disk} bytes for {total} of chunks");
        drop((ds, f));
        if bypasses_page_cache(dir.path()) {
            assert_eq!(window_bytes(&open_for_writing(&path, false, WriteIo::Direct).unwrap()), HELD_BYTES as u64);
            assert_eq!(window_bytes(&hdf5::File::open(&path).unwrap()), 0, "not our driver: nothing held");
            assert!(after.direct_bytes - before.direct_bytes > total / 2, "{before:?} -> {after:?}");
        }
    }

    /// `data` as the raw chunk of row `row` of the 2-D dataset `ds` (`H5Dwrite_chunk`, as the writer does).
    fn write_chunk(ds: &hdf5::Dataset, row: u64, data: &[u8]) -> i32 {
        let off = [row, 0];
        // SAFETY: `off` has the dataset's rank; `data` is valid for its length.
        hdf5::sync::sync(|| unsafe {
            hdf5_sys::h5d::H5Dwrite_chunk(
                ds.id(),
                hdf5_sys::h5p::H5P_DEFAULT,
                0,
                off.as_ptr(),
                data.len(),
                data.as_ptr().cast(),
            )
        })
    }

    /// A file written through the driver is reopened through it and written on (the receiver's resume), and
    /// every chunk of both sessions reads back.
    #[test]
    fn reopened_files_keep_their_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.h5");
        let chunk = |i: u8| vec![i; 100_003];
        let write = |f: &hdf5::File, range: std::ops::Range<u8>| {
            let ds = f.dataset("d").unwrap();
            for i in range {
                let data = chunk(i);
                assert!(write_chunk(&ds, i as u64, &data) >= 0, "chunk {i}");
            }
        };
        {
            let f = open_for_writing(&path, true, WriteIo::Direct).unwrap();
            f.new_dataset::<u8>().shape([20, 100_003]).chunk([1, 100_003]).create("d").unwrap();
            write(&f, 0..10);
        }
        {
            let f = open_for_writing(&path, false, WriteIo::Direct).unwrap();
            write(&f, 10..20);
        }
        let d: ndarray::Array2<u8> = hdf5::File::open(&path).unwrap().dataset("d").unwrap().read_2d().unwrap();
        for i in 0..20u8 {
            assert!(d.row(i as usize).iter().all(|&x| x == i), "row {i}");
        }
    }
}
