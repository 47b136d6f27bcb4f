//! A team of worker threads that runs one whole computation (a forward pass) together, the way
//! ggml's CPU backend does: every worker runs the same sequence of steps, each step's work is
//! split between them (statically or in chunks handed out by an atomic counter), and a spinning
//! barrier separates the steps.
//!
//! Compared with one rayon fork-join per operation this wakes the workers once per call instead
//! of a dozen times per layer: a token of a 30-layer model has about 400 steps of a few
//! microseconds each, where a fork-join's wake-up costs as much as the step.
//!
//! The workers are the threads of a rayon pool (`ThreadPool::broadcast`), so nothing here
//! starts threads of its own. Buffers shared between workers are [`SharedMut`]: each step writes
//! disjoint parts of them and only the barrier makes the writes visible to the next step.

use std::cell::Cell;
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Spins before a waiting worker starts yielding its time slice (a few microseconds of spinning;
/// steps are short, but a machine busy with other work must get its cores back).
const SPINS_BEFORE_YIELD: u32 = 1 << 12;

/// A reusable barrier for a fixed number of threads that spins (then yields) instead of sleeping.
struct SpinBarrier {
    n: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

impl SpinBarrier {
    fn new(n: usize) -> SpinBarrier {
        SpinBarrier { n, arrived: AtomicUsize::new(0), generation: AtomicUsize::new(0) }
    }

    fn wait(&self) {
        if self.n <= 1 {
            return;
        }
        let gen = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            // Last to arrive: reset the count for the next use, then release the others. No
            // thread can arrive again before `generation` moves, so the reset cannot race.
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
        } else {
            let mut spins = 0u32;
            while self.generation.load(Ordering::Acquire) == gen {
                if spins < SPINS_BEFORE_YIELD {
                    spins += 1;
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
    }
}

/// Counters that hand out chunks; three so that a step can reset the next step's counter while
/// slower workers may still be reading the current one (none can still be in the previous step).
const COUNTERS: usize = 3;

/// State shared by the workers of one [`Team::run`].
struct Shared {
    barrier: SpinBarrier,
    counters: [AtomicUsize; COUNTERS],
}

/// One worker's view of a [`Team::run`]: its index, the team size, and the step primitives.
/// Every worker must make the same sequence of calls to [`Worker::sync`], [`Worker::chunks`]
/// and [`Worker::single`] (they contain barriers).
pub struct Worker<'a> {
    ith: usize,
    nth: usize,
    shared: &'a Shared,
    step: Cell<usize>,
}

impl Worker<'_> {
    /// This worker's index, `0..nth`.
    pub fn ith(&self) -> usize {
        self.ith
    }

    /// Number of workers.
    pub fn nth(&self) -> usize {
        self.nth
    }

    /// Wait until every worker has reached this point; writes made before it are visible to all
    /// workers after it.
    pub fn sync(&self) {
        self.shared.barrier.wait();
    }

    /// Run `f` on worker 0 only, then [`Worker::sync`].
    pub fn single(&self, f: impl FnOnce()) {
        if self.ith == 0 {
            f();
        }
        self.sync();
    }

    /// Split `0..total` into chunks of `chunk` and run `f` on each, the chunks handed out to
    /// whichever worker asks first (balancing uneven speed, e.g. other load on a core); then
    /// [`Worker::sync`].
    pub fn chunks(&self, total: usize, chunk: usize, mut f: impl FnMut(Range<usize>)) {
        let step = self.step.get();
        self.step.set(step + 1);
        let chunk = chunk.max(1);
        let counter = &self.shared.counters[step % COUNTERS];
        // Reset the counter the next step will use: every worker is past the previous step
        // (it ended with a barrier), so none reads that counter now, and the barrier ending
        // this step orders the reset before its first use.
        if self.ith == 0 {
            self.shared.counters[(step + 1) % COUNTERS].store(0, Ordering::Relaxed);
        }
        if self.nth == 1 {
            let mut s = 0;
            while s < total {
                f(s..(s + chunk).min(total));
                s += chunk;
            }
        } else {
            loop {
                let s = counter.fetch_add(1, Ordering::Relaxed).saturating_mul(chunk);
                if s >= total {
                    break;
                }
                f(s..(s + chunk).min(total));
            }
        }
        self.sync();
    }
}

/// A fixed set of worker threads (a rayon pool) that runs computations as a team.
pub struct Team {
    pool: rayon::ThreadPool,
    threads: usize,
}

impl Team {
    /// A team of `threads` workers (at least 1).
    pub fn new(threads: usize) -> Result<Team, rayon::ThreadPoolBuildError> {
        let threads = threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
        Ok(Team { pool, threads })
    }

    /// Number of workers.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The underlying pool, for work that suits rayon's fork-join better.
    pub fn pool(&self) -> &rayon::ThreadPool {
        &self.pool
    }

    /// Run `f` on every worker at once and return when all have finished. With one worker it
    /// runs on the calling thread.
    pub fn run(&self, f: impl Fn(&Worker) + Sync) {
        let shared = Shared {
            barrier: SpinBarrier::new(self.threads),
            counters: std::array::from_fn(|_| AtomicUsize::new(0)),
        };
        let worker = |ith: usize| Worker { ith, nth: self.threads, shared: &shared, step: Cell::new(0) };
        if self.threads == 1 {
            f(&worker(0));
        } else {
            self.pool.broadcast(|ctx| f(&worker(ctx.index())));
        }
    }
}

/// A mutable slice that several workers write at once, each to parts no other worker touches in
/// the same step.
pub struct SharedMut<'a, T> {
    ptr: *mut T,
    len: usize,
    _borrow: PhantomData<&'a mut [T]>,
}

// SAFETY: access goes through the `unsafe` methods below, whose callers guarantee that
// concurrent accesses are disjoint or read-only; `T: Send` lets values move between threads.
unsafe impl<T: Send> Send for SharedMut<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SharedMut<'_, T> {}

impl<'a, T> SharedMut<'a, T> {
    /// Share `s` for the lifetime of the borrow.
    pub fn new(s: &'a mut [T]) -> SharedMut<'a, T> {
        SharedMut { ptr: s.as_mut_ptr(), len: s.len(), _borrow: PhantomData }
    }

    /// Length of the slice.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the slice is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The part `r`, writable.
    ///
    /// # Safety
    /// No other worker reads or writes any element of `r` until the next barrier, and the
    /// returned slice is not used after it.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn part(&self, r: Range<usize>) -> &mut [T] {
        assert!(r.start <= r.end && r.end <= self.len, "part {r:?} outside {} elements", self.len);
        // SAFETY: in bounds (asserted); exclusive for this step by the caller's guarantee.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(r.start), r.end - r.start) }
    }

    /// The whole slice, read-only.
    ///
    /// # Safety
    /// No worker writes any element until the next barrier, and the returned slice is not used
    /// after it.
    pub unsafe fn all(&self) -> &[T] {
        // SAFETY: the pointer and length come from a live `&mut [T]`; read-only for this step by
        // the caller's guarantee.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Write element `i`.
    ///
    /// # Safety
    /// No other worker reads or writes element `i` until the next barrier.
    pub unsafe fn write(&self, i: usize, v: T) {
        assert!(i < self.len, "index {i} outside {} elements", self.len);
        // SAFETY: in bounds (asserted); exclusive by the caller's guarantee. The old value is
        // dropped in place.
        unsafe { *self.ptr.add(i) = v }
    }
}

/// Largest thread count whose pool is kept between calls (bigger ones are built per call).
const MAX_CACHED_POOL: usize = 256;

/// A rayon pool of `n` workers, built once per `n` and kept: building one costs hundreds of
/// microseconds, more than a GEMV or quantizing a small tensor.
pub fn pool(n: usize) -> crate::Result<std::sync::Arc<rayon::ThreadPool>> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    if n == 0 {
        return Err(crate::Error::value("threads must be at least 1"));
    }
    let build = || {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map(Arc::new)
            .map_err(|e| crate::Error::value(format!("cannot start {n} threads: {e}")))
    };
    if n > MAX_CACHED_POOL {
        return build();
    }
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    // A poisoned lock only means another thread panicked while holding it; the map is still valid.
    let mut pools = POOLS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = pools.get(&n) {
        return Ok(p.clone());
    }
    let p = build()?;
    pools.insert(n, p.clone());
    Ok(p)
}

/// Run `f` with rayon's parallel iterators on `threads` workers (`None`: the global pool, one
/// worker per core; `Some(1)`: one worker, so nothing runs in parallel).
pub fn with_threads<R: Send>(threads: Option<usize>, f: impl FnOnce() -> R + Send) -> crate::Result<R> {
    match threads {
        None => Ok(f()),
        Some(n) => Ok(pool(n)?.install(f)),
    }
}

/// Run `f(i)` for every task `i` in `0..tasks` on `threads` threads (`None`: one per worker of
/// rayon's global pool): the calling thread and `threads - 1` workers of a pool, each taking the
/// next task from a shared counter until none is left.
///
/// Unlike [`with_threads`], the calling thread starts on the first task at once instead of
/// waiting for a worker to wake up (tens of microseconds on a virtual machine, a noticeable share
/// of a GEMV), and a worker that wakes late finds fewer tasks left. With one thread, or one
/// task, everything runs on the calling thread.
pub fn for_each_task(threads: Option<usize>, tasks: usize, f: impl Fn(usize) + Sync) -> crate::Result<()> {
    let nthreads = match threads {
        Some(0) => return Err(crate::Error::value("threads must be at least 1")),
        Some(n) => n,
        None => rayon::current_num_threads(),
    }
    .min(tasks);
    if nthreads <= 1 {
        (0..tasks).for_each(f);
        return Ok(());
    }
    let next = AtomicUsize::new(0);
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= tasks {
            break;
        }
        f(i);
    };
    let work = &work;
    match threads {
        Some(n) => pool(n - 1)?.in_place_scope(|s| {
            for _ in 1..nthreads {
                s.spawn(move |_| work());
            }
            work();
        }),
        None => rayon::in_place_scope(|s| {
            for _ in 1..nthreads {
                s.spawn(move |_| work());
            }
            work();
        }),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_everything_once_and_steps_are_ordered() {
        for threads in [1, 2, 3] {
            let team = Team::new(threads).unwrap();
            let mut a = vec![0usize; 1000];
            let mut b = vec![0usize; 1000];
            let (sa, sb) = (SharedMut::new(&mut a), SharedMut::new(&mut b));
            team.run(|w| {
                for round in 0..20 {
                    // Step 1 writes a; step 2 reads all of a (after the barrier) into b.
                    w.chunks(1000, 7, |r| {
                        // SAFETY: chunks are disjoint within a step.
                        let p = unsafe { sa.part(r.clone()) };
                        for (i, v) in r.zip(p.iter_mut()) {
                            *v = i * round;
                        }
                    });
                    w.chunks(1000, 13, |r| {
                        // SAFETY: a is only read in this step; b's chunks are disjoint.
                        let all = unsafe { sa.all() };
                        let p = unsafe { sb.part(r.clone()) };
                        for (i, v) in r.zip(p.iter_mut()) {
                            *v = all[999 - i] + 1;
                        }
                    });
                }
            });
            for i in 0..1000 {
                assert_eq!(a[i], i * 19, "threads {threads}");
                assert_eq!(b[i], (999 - i) * 19 + 1, "threads {threads}");
            }
        }
    }

    #[test]
    fn for_each_task_runs_every_task_once() {
        for threads in [None, Some(1), Some(2), Some(3)] {
            for tasks in [0usize, 1, 2, 5, 100] {
                let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                for_each_task(threads, tasks, |i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                })
                .unwrap();
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "threads {threads:?} tasks {tasks}");
            }
        }
        assert!(for_each_task(Some(0), 3, |_| {}).is_err());
    }

    #[test]
    fn single_runs_once() {
        let team = Team::new(2).unwrap();
        let count = AtomicUsize::new(0);
        team.run(|w| {
            for _ in 0..100 {
                w.single(|| {
                    count.fetch_add(1, Ordering::Relaxed);
                });
            }
        });
        assert_eq!(count.load(Ordering::Relaxed), 100);
    }
}
