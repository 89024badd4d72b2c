//! Memory and time budgets for work that a stranger's file drives: a chat template can double a
//! string forty times in forty instructions, so counting instructions (minijinja's fuel) is not
//! enough. `run_with_budget` runs such work on its own thread and counts what that thread holds
//! through [`BudgetAllocator`]; past the budget, the deadline or most of its stack (all checked
//! at each allocation) the thread stops for good before allocating more, and the caller gets an
//! error instead of an abort (a stack overflow cannot be caught; recursion without end that
//! allocates on the way down is stopped before it). The stopped thread keeps what it held (at
//! most the budget) until the process ends.
//!
//! The count works only where `BudgetAllocator` is the program's global allocator (the `ethos`
//! binary, the fuzz targets and the tests that check this); elsewhere the work runs unbudgeted
//! on its thread, and `budget_enforced` says so.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The system allocator, counting what budgeted threads hold.
pub struct BudgetAllocator;

/// Why budgeted work stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overrun {
    Memory,
    Time,
    /// The thread's stack was nearly used up: recursion without end (a chat template's
    /// namespace that holds itself is printed by recursing into it, allocating at each level).
    Stack,
    /// The work panicked (a bug in a library it ran, such as the template engine): reported
    /// here as an error, and kept quiet on standard error.
    Panic,
}

/// The stack of a budgeted thread, and how much of it work may use before it is stopped (the
/// rest is room for the frames between two allocations).
const STACK_BYTES: usize = 16 << 20;
const STACK_USABLE: usize = 12 << 20;

/// What a budgeted thread may hold and until when; `signal` is where it reports an overrun.
struct Armed {
    limit: isize,
    deadline: Instant,
    signal: *const Signal,
    /// An address near the top of the thread's stack (which grows down), or 0 to not check.
    stack_top: usize,
}

type Signal = (Mutex<State>, Condvar);

enum State {
    Running,
    Finished,
    Stopped(Overrun),
}

thread_local! {
    // Const-initialised and without destructors: reading them from the allocator allocates
    // nothing and works during thread teardown.
    static HELD: Cell<isize> = const { Cell::new(0) };
    static ARMED: Cell<Option<&'static Armed>> = const { Cell::new(None) };
}

impl BudgetAllocator {
    /// Counts `grow` more bytes on this thread; stops the thread (never returns) when it is
    /// budgeted and its bytes, its clock or its stack run out.
    #[inline]
    fn charge(grow: usize) {
        let Ok(Some(armed)) = ARMED.try_with(Cell::get) else {
            return;
        };
        let held = HELD.with(|h| {
            let v = h.get().saturating_add(grow as isize);
            h.set(v);
            v
        });
        let here = std::hint::black_box(0u8);
        let depth = armed
            .stack_top
            .saturating_sub(std::ptr::addr_of!(here) as usize);
        // A panicking thread is on its way out (and its hook may hold the output lock while it
        // formats a backtrace): let it finish rather than stop it holding the lock.
        let why = if std::thread::panicking() {
            return;
        } else if armed.stack_top != 0 && depth > STACK_USABLE {
            Overrun::Stack
        } else if held > armed.limit {
            Overrun::Memory
        } else if Instant::now() > armed.deadline {
            Overrun::Time
        } else {
            return;
        };
        // Disarm first: what follows must not come back here.
        ARMED.with(|a| a.set(None));
        // SAFETY: `signal` points into an Arc that `run_with_budget` keeps alive in this
        // thread's closure, which never returns from here.
        let (state, cond) = unsafe { &*armed.signal };
        // Locking and notifying a std Mutex/Condvar allocate nothing on the platforms we build.
        if let Ok(mut s) = state.lock() {
            *s = State::Stopped(why);
        }
        cond.notify_all();
        loop {
            std::thread::park();
        }
    }

    #[inline]
    fn release(shrink: usize) {
        if let Ok(Some(_)) = ARMED.try_with(Cell::get) {
            HELD.with(|h| h.set(h.get().saturating_sub(shrink as isize)));
        }
    }
}

// SAFETY: every method forwards to `System` with the same arguments; the bookkeeping around the
// calls only reads and writes this thread's counters (and may park this thread for good before
// allocating, which hands out no memory).
unsafe impl GlobalAlloc for BudgetAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::charge(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::charge(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        Self::release(layout.size());
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            Self::charge(new_size - layout.size());
        } else {
            Self::release(layout.size() - new_size);
        }
        System.realloc(ptr, layout, new_size)
    }
}

/// Whether `BudgetAllocator` is this program's allocator (so that budgets hold).
pub fn budget_enforced() -> bool {
    std::thread::scope(|s| {
        s.spawn(|| {
            let probe: &'static Armed = Box::leak(Box::new(Armed {
                limit: isize::MAX,
                deadline: Instant::now() + Duration::from_secs(3600),
                signal: std::ptr::null(),
                stack_top: 0,
            }));
            ARMED.with(|a| a.set(Some(probe)));
            let before = HELD.with(Cell::get);
            let bytes = std::hint::black_box(vec![0u8; 64]);
            let counted = HELD.with(Cell::get) != before;
            ARMED.with(|a| a.set(None));
            drop(bytes);
            // SAFETY: disarmed above, so nothing refers to `probe` any more.
            drop(unsafe { Box::from_raw(probe as *const Armed as *mut Armed) });
            counted
        })
        .join()
        .unwrap_or(false)
    })
}

/// Runs `work` on its own thread while that thread holds at most `bytes` and until `time` has
/// passed (checked when it allocates; the caller also stops waiting then). Returns what `work`
/// returned, or why it was stopped.
pub fn run_with_budget<T: Send + 'static>(
    bytes: usize,
    time: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Overrun> {
    let signal: Arc<Signal> = Arc::new((Mutex::new(State::Running), Condvar::new()));
    let deadline = Instant::now() + time;
    let theirs = signal.clone();
    quiet_budgeted_panics();
    let worker = std::thread::Builder::new()
        .name(BUDGETED.into())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            let top = std::hint::black_box(0u8);
            // Leaked on purpose when the thread stops mid-work (it never returns then); freed
            // below when it finishes.
            let armed: &'static Armed = Box::leak(Box::new(Armed {
                limit: isize::try_from(bytes).unwrap_or(isize::MAX),
                deadline,
                signal: Arc::as_ptr(&theirs),
                stack_top: std::ptr::addr_of!(top) as usize,
            }));
            HELD.with(|h| h.set(0));
            ARMED.with(|a| a.set(Some(armed)));
            // Reports the end however `work` ends, a panic included (join passes it on).
            struct Done(Arc<Signal>);
            impl Drop for Done {
                fn drop(&mut self) {
                    ARMED.with(|a| a.set(None));
                    if let Ok(mut s) = self.0 .0.lock() {
                        *s = State::Finished;
                    }
                    self.0 .1.notify_all();
                }
            }
            let done = Done(theirs);
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            drop(done);
            // SAFETY: disarmed by `done`, so nothing refers to `armed` any more.
            drop(unsafe { Box::from_raw(armed as *const Armed as *mut Armed) });
            out
        });
    let Ok(worker) = worker else {
        return Err(Overrun::Memory);
    };
    let (state, cond) = &*signal;
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        match *s {
            State::Finished => break,
            State::Stopped(why) => return Err(why),
            State::Running => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Overrun::Time);
                }
                s = cond
                    .wait_timeout(s, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
    }
    drop(s);
    match worker.join() {
        Ok(Ok(out)) => Ok(out),
        _ => Err(Overrun::Panic),
    }
}

/// Leaves panics of budgeted threads to their caller (`Overrun::Panic`, one line there);
/// every other thread's panic goes to the hook that was set before.
fn quiet_budgeted_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() != Some(BUDGETED) {
                previous(info);
            }
        }));
    });
}

/// The name of budgeted threads.
const BUDGETED: &str = "budgeted";

/// The memory the system could give this process now (Linux `MemAvailable`), if known.
pub fn memory_available() -> Option<u64> {
    let text = crate::files::read_text(std::path::Path::new("/proc/meminfo")).ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// Refuses work estimated at `bytes` when that exceeds half the memory available (or 8 GiB
/// where that is unknown), naming `what` and how to shrink it. Batched buffers that a flag
/// sizes (candidates, rows) are checked here before they are allocated, so that a large
/// flag is an error and not an allocation failure.
pub fn check_fits(what: &str, bytes: u64, shrink: &str) -> crate::Result<()> {
    let room = memory_available().map_or(8 << 30, |m| m / 2);
    if bytes > room {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        return Err(crate::Error::Limit(format!(
            "{what} needs about {:.1} GiB, more than half the memory available ({:.1} GiB); {shrink}",
            gib(bytes),
            gib(room)
        )));
    }
    Ok(())
}
