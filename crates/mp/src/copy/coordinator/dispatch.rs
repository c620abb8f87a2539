//! Dispatching: the pool of workers, the tasks ready to run ([`Job`]), what runs next, and
//! the finished tasks coming back ([`Done`]) through one [`Completions`] stream.
//!
//! Ready jobs are a stack: the latest first, so the walk goes depth first and the
//! coordinator keeps few directories open at once. At most four tasks per worker are in flight.
//! One exception to the order: workers creating files in one directory at once take turns on
//! its lock (and spin while they wait), so a batch of many entries for a directory that has
//! one in flight already waits while other work is ready (see [`Dispatch::next_job`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use multiprocess::{Completions, Event, Pool, Queue};

use crate::copy::claims::Claims;
use crate::copy::config::Config;
use crate::copy::ids::{CopyId, DirId, FileId, LargeId};
use crate::copy::meta::Failure;
use crate::copy::protocol::{
    BatchTask, ClaimedTask, DirReport, DirTask, FinishTask, LargeTask, LeavesTask, SealTask,
    SpanTask, Started, Tally,
};
use crate::copy::status::Progress;
use crate::copy::stop;
use crate::copy::worker;

/// How long a wait for a task lasts before the signals are looked at again.
pub(super) const TICK: Duration = Duration::from_millis(100);

/// How far down the ready jobs [`Dispatch::next_job`] looks for one that is not a batch of a
/// busy directory.
const LOOK_BACK: usize = 64;

/// A batch of at least this many entries creates files in its directory often enough to
/// contend for its lock with another such batch (see [`Dispatch::next_job`]); a batch of a
/// few large files does not.
const MANY_ENTRIES: usize = 64;

/// A task ready to run, with what the coordinator needs to know of it when it is done.
pub(super) enum Job {
    /// A directory's own task.
    Dir(DirId, DirTask),
    /// A bundle of subdirectories of `DirId` that may be small leaves.
    Leaves(DirId, LeavesTask),
    Batch(Batch),
    /// The start of a large file.
    Large(LargeId, LargeTask),
    /// A span of a large file.
    Span(LargeId, SpanTask),
    /// The seal of a large file (it runs even while the copy stops: see
    /// [`Job::winds_down`]).
    Seal(LargeId, SealTask),
    /// Finishing a directory: its metadata, its final name.
    Finish(DirId, FinishTask),
    /// Under `-L`, a copy for a name whose claimer has none (run alone, in the link pass).
    Claimed(ClaimedTask),
}

impl Job {
    /// Whether the job still runs when the copy stops: a large file's seal (its bytes are
    /// all there; it is kept for a resume rather than thrown away).
    fn winds_down(&self) -> bool {
        matches!(self, Job::Seal(..))
    }
}

/// A batch of entries of one directory: spilled by its directory's task, or one entry the
/// coordinator places (a top-level file, a member of a hard-link group).
pub(super) struct Batch {
    pub(super) task: BatchTask,
    pub(super) done: BatchDone,
}

/// What the coordinator knows of a batch when it is done.
pub(super) struct BatchDone {
    pub(super) dir: DirId,
    /// The hard-link group whose first name this batch copies.
    pub(super) group: Option<FileId>,
    /// Where the batch's directory ends up (under `-L`, for the names it reached).
    pub(super) base: PathBuf,
}

impl BatchDone {
    /// A batch in directory `dir`, of the group `group`, whose names end up below `base`.
    pub(super) fn new(dir: DirId, group: Option<FileId>, base: PathBuf) -> BatchDone {
        BatchDone { dir, group, base }
    }
}

/// A finished task, with what the coordinator knew of it: its report, or why there is none
/// (its worker died, the pool was terminated).
pub(super) enum Done {
    Dir(DirId, multiprocess::Result<DirReport>),
    /// The directory, and the bundle's hidden name.
    Leaves(DirId, PathBuf, multiprocess::Result<DirReport>),
    Batch(BatchDone, multiprocess::Result<Tally>),
    Large(LargeId, multiprocess::Result<Started>),
    Span(LargeId, multiprocess::Result<Result<u64, Failure>>),
    Seal(LargeId, multiprocess::Result<Tally>),
    Finish(DirId, multiprocess::Result<Vec<Failure>>),
    Claimed(multiprocess::Result<Result<(u64, CopyId), Failure>>),
}

/// The pool and the tasks of one copy.
pub(super) struct Dispatch {
    pool: Pool,
    done: Completions<Done>,
    /// Where workers report progress, when it is shown.
    progress: Option<Queue<Progress>>,
    /// The copy's stop event, which every worker looks at.
    stop: Event,
    /// Under `-L`: the table of claimed files the workers share (kept for the workers the
    /// pool starts to replace lost ones).
    _claims: Option<Claims>,
    ready: Vec<Job>,
    workers: usize,
    max_in_flight: usize,
    /// Heavy batches in flight, by directory (see [`Dispatch::next_job`]).
    busy: HashMap<DirId, usize>,
}

impl Dispatch {
    /// Starts the workers: each gets the stop event, the configuration and (under `-L`) the
    /// claims; and a queue for progress when `config.progress` asks for it.
    pub(super) fn start(
        config: &Config,
        stop: &Event,
        claims: Option<Claims>,
    ) -> multiprocess::Result<Dispatch> {
        let progress = match config.progress {
            true => Some(Queue::new()?),
            false => None,
        };
        let pool = Pool::builder()
            .processes(config.jobs)
            .initializer(
                worker::setup,
                (
                    progress.clone(),
                    stop.clone(),
                    config.clone(),
                    claims.clone(),
                ),
            )?
            .build()?;
        Ok(Dispatch {
            pool,
            done: Completions::new(),
            progress,
            stop: stop.clone(),
            _claims: claims,
            ready: Vec::new(),
            workers: config.jobs,
            max_in_flight: config.jobs * 4,
            busy: HashMap::new(),
        })
    }

    /// Adds a job to run.
    pub(super) fn push(&mut self, job: Job) {
        self.ready.push(job);
    }

    /// Submits ready jobs while there is room; only those that wind down (see
    /// [`Job::winds_down`]) when the copy is `stopping`. An error: the pool is broken, and
    /// nothing more will run (the ready jobs are dropped).
    pub(super) fn fill(&mut self, stopping: bool) -> multiprocess::Result<()> {
        while self.done.pending() < self.max_in_flight {
            let job = match stopping {
                true => self.next_winding_down(),
                false => self.next_job(),
            };
            let Some(job) = job else {
                return Ok(());
            };
            if let Err(e) = self.submit(job) {
                self.ready.clear();
                return Err(e);
            }
        }
        Ok(())
    }

    /// Runs `job` alone (nothing else runs: the link pass under `-L`) and waits for it; a
    /// stop signal meanwhile asks its worker to stop. `None`: the pool is broken.
    pub(super) fn run_alone(&mut self, job: Job) -> Option<Done> {
        self.submit(job).ok()?;
        loop {
            if let Some(done) = self.next(TICK) {
                return Some(done);
            }
            if stop::interrupted() {
                self.stop.set();
            }
        }
    }

    /// Tasks submitted and not yet received.
    pub(super) fn in_flight(&self) -> usize {
        self.done.pending()
    }

    /// Whether jobs are ready to be submitted (only those that wind down when `stopping`).
    pub(super) fn has_ready(&self, stopping: bool) -> bool {
        match stopping {
            true => self.ready.iter().any(Job::winds_down),
            false => !self.ready.is_empty(),
        }
    }

    /// Whether nothing runs and nothing is ready.
    pub(super) fn idle(&self) -> bool {
        self.in_flight() == 0 && self.ready.is_empty()
    }

    /// The next finished task, waiting up to `wait` for one.
    pub(super) fn next(&mut self, wait: Duration) -> Option<Done> {
        let done = self.done.next_timeout(wait)?;
        Some(self.received(done))
    }

    /// The next finished task, if one is there already.
    pub(super) fn try_next(&mut self) -> Option<Done> {
        let done = self.done.try_next()?;
        Some(self.received(done))
    }

    /// The progress workers reported since the last call.
    pub(super) fn progress(&self) -> Progress {
        let mut sum = Progress::default();
        if let Some(queue) = &self.progress {
            while let Ok(p) = queue.get_nowait() {
                sum += p;
            }
        }
        sum
    }

    /// Kills the workers; tasks in flight end with an error.
    pub(super) fn terminate(&self) {
        self.pool.terminate();
    }

    /// Kills the workers and waits for them.
    pub(super) fn shut_down(&self) {
        self.pool.terminate();
        let _ = self.pool.join();
    }

    /// The latest ready job that winds down.
    fn next_winding_down(&mut self) -> Option<Job> {
        let i = self.ready.iter().rposition(Job::winds_down)?;
        Some(self.ready.remove(i))
    }

    /// Notes that a task is done: a batch of a busy directory leaves one fewer in line for
    /// its lock (whatever its size).
    fn received(&mut self, done: Done) -> Done {
        if let Done::Batch(b, _) = &done {
            if let Some(n) = self.busy.get_mut(&b.dir) {
                *n -= 1;
                if *n == 0 {
                    self.busy.remove(&b.dir);
                }
            }
        }
        done
    }

    /// The next job to submit: the latest one ready, except that a batch of many entries
    /// for a directory that has one in flight already waits while other work is ready
    /// (within the last [`LOOK_BACK`] jobs) or the workers have enough. Workers creating
    /// files in one directory at once take turns on its lock, and spin while they wait.
    fn next_job(&mut self) -> Option<Job> {
        let busy = |job: &Job| heavy_batch(job).is_some_and(|dir| self.busy.contains_key(&dir));
        let len = self.ready.len();
        let other = (len.saturating_sub(LOOK_BACK)..len)
            .rev()
            .find(|&i| !busy(&self.ready[i]));
        match other {
            Some(i) => Some(self.ready.remove(i)),
            None if self.in_flight() < self.workers => self.ready.pop(),
            None => None,
        }
    }

    fn submit(&mut self, job: Job) -> multiprocess::Result<()> {
        // With little else to do, the workers wait for the subdirectories a task finds: it
        // hands them all back rather than copy small trees among them itself.
        let backlog = self.ready.len() + self.in_flight() >= 2 * self.workers;
        let (pool, done) = (&self.pool, &mut self.done);
        match job {
            Job::Dir(id, task) => {
                let task = DirTask {
                    small_trees: backlog,
                    ..task
                };
                done.apply_async(pool, worker::copy_dir, (task,), move |r| Done::Dir(id, r))
            }
            Job::Leaves(id, task) => {
                let hidden = task.parent.hidden.path().to_path_buf();
                let wrap = move |r| Done::Leaves(id, hidden, r);
                done.apply_async(pool, worker::copy_leaves, (task,), wrap)
            }
            Job::Batch(Batch { task, done: b }) => {
                let (dir, heavy) = (b.dir, task.entries.len() >= MANY_ENTRIES);
                let wrap = move |r| Done::Batch(b, r);
                done.apply_async(pool, worker::copy_batch, (task,), wrap)?;
                if heavy {
                    *self.busy.entry(dir).or_default() += 1;
                }
                Ok(())
            }
            Job::Span(id, task) => {
                done.apply_async(pool, worker::copy_span, (task,), move |r| Done::Span(id, r))
            }
            Job::Large(id, task) => {
                let wrap = move |r| Done::Large(id, r);
                done.apply_async(pool, worker::start_large, (task,), wrap)
            }
            Job::Seal(id, task) => done.apply_async(pool, worker::seal_large, (task,), move |r| {
                Done::Seal(id, r)
            }),
            Job::Finish(id, task) => {
                let wrap = move |r| Done::Finish(id, r);
                done.apply_async(pool, worker::finish_dir, (task,), wrap)
            }
            Job::Claimed(task) => {
                done.apply_async(pool, worker::copy_claimed, (task,), Done::Claimed)
            }
        }
    }
}

/// The directory of `job` if it is a batch of [`MANY_ENTRIES`] entries or more.
fn heavy_batch(job: &Job) -> Option<DirId> {
    match job {
        Job::Batch(b) if b.task.entries.len() >= MANY_ENTRIES => Some(b.done.dir),
        _ => None,
    }
}
