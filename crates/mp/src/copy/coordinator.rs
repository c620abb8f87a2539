//! The coordinator: the parent process's side of a copy. It hands directories to the pool,
//! turns each directory's report into the next tasks, keeps hard-link groups together, splits
//! large files into spans, applies a directory's metadata once everything inside it is
//! written, and stops cleanly on Ctrl-C or a full disk.
//!
//! A new directory is written under a hidden name while its files are (see
//! [`worker::copy_dir`]); the coordinator gives it its name when the worker could not (its
//! files were spread over several tasks), and on a stop publishes what such directories hold,
//! minus any file a worker was cut short in.
//!
//! Memory stays bounded: the coordinator keeps a node per directory still being copied (not
//! per file), a stack of tasks walked depth first, and an entry per hard-link group; under
//! `-L` only, a path per file too, as `cp -L` keeps (see [`Reached`]).

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use multiprocess::{Error, Event, Pool, Queue};
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::claims::{self, Claim, Claims};
use super::fsops::{self, Options};
use super::meta::{Entry, Failure, Kind, Meta, RawPath};
use super::progress::Live;
use super::replace::{self, Verdict};
use super::worker::{
    self, BatchReport, BatchTask, Counts, DirReport, DirTask, Holds, LeavesTask, Reached, SpanTask,
    Stop, Tick, LARGE_FILE,
};

/// How many subdirectories that may be small leaves one task is given to try (see
/// `worker::copy_leaves`).
const LEAVES_PER_TASK: usize = 32;

/// How far down the ready jobs [`Coordinator::next_job`] looks for one that is not a batch of
/// a busy directory.
const LOOK_BACK: usize = 64;

/// A batch of at least this many entries creates files in its directory often enough to
/// contend for its lock with another such batch (see [`Coordinator::next_job`]); a batch of
/// a few large files does not.
const MANY_ENTRIES: usize = 64;

/// How much of a large file one span task copies.
const SPAN: u64 = 64 << 20;

/// Stop signals received so far (the first stops cleanly, the second at once).
pub static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTS.fetch_add(1, Ordering::SeqCst);
}

/// Routes SIGINT, SIGTERM and SIGHUP to [`INTERRUPTS`]: each stops the copy cleanly.
pub fn catch_interrupts() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only increments an atomic, which is async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigint as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// How a copy ended.
#[derive(Debug, Default)]
pub struct Outcome {
    pub counts: Counts,
    pub failures: Vec<Failure>,
    pub warnings: Vec<String>,
    /// The copy stopped early because the destination is full.
    pub disk_full: Option<Failure>,
    pub interrupted: bool,
}

/// A unit of work for the pool.
enum Job {
    Dir(u64, DirTask),
    Leaves(u64, LeavesTask),
    Batch(u64, Option<(u64, u64)>, BatchTask),
    Span(u64, SpanTask),
    Verify(u64, RawPath, RawPath),
}

/// A finished unit of work, as the pool's callbacks send it back.
enum Done {
    Dir(u64, multiprocess::Result<DirReport>),
    /// The directory, and the bundle's hidden name.
    Leaves(u64, PathBuf, multiprocess::Result<DirReport>),
    /// The directory, the group, and where the batch's directory ends up (under `-L`).
    Batch(
        u64,
        Option<(u64, u64)>,
        PathBuf,
        multiprocess::Result<BatchReport>,
    ),
    Span(u64, multiprocess::Result<Result<u64, Failure>>),
    Verify(u64, multiprocess::Result<Result<(), Failure>>),
}

/// A directory being copied.
struct DirNode {
    parent: Option<u64>,
    src: PathBuf,
    dst: PathBuf,
    /// Where it is written while hidden (see [`worker::copy_dir`]).
    hidden: PathBuf,
    /// It is at `hidden` now, to be renamed to `dst` when finished.
    is_hidden: bool,
    /// A task inside it was lost (its worker died): a file may be cut short.
    suspect: bool,
    /// The source's metadata (none for the top level, which is not a copy of anything).
    meta: Option<Meta>,
    ancestors: Vec<(u64, u64)>,
    /// Tasks and entries inside it still being copied.
    pending: usize,
    existed: bool,
    /// Its metadata is already applied (by the worker).
    finished: bool,
}

impl DirNode {
    /// Where it is written now: its hidden name while hidden, else its destination.
    fn work(&self) -> &Path {
        if self.is_hidden {
            &self.hidden
        } else {
            &self.dst
        }
    }
}

/// A hard-link group: the first name is copied, the others linked to it.
struct Group {
    /// Where the first copy is.
    first: Placed,
    /// `None` while the first copy runs; then whether it succeeded.
    copied: Option<bool>,
    /// The first copy's identity, once made.
    copy: Option<Id>,
    /// The names linked to it so far.
    linked: Vec<Placed>,
    /// The wave of copies it was made in (see [`Coordinator::add`]).
    wave: u32,
    waiters: Vec<(u64, PathBuf, PathBuf, Meta)>,
}

/// A name written in a directory of the copy: the directory, and the name's path while the
/// directory is hidden and once it is not (see [`Coordinator::placed`]).
struct Placed {
    dir: u64,
    hidden: PathBuf,
    last: PathBuf,
}

/// A large file copied in spans into a temporary file.
struct LargeFile {
    dir: u64,
    src: PathBuf,
    dst: PathBuf,
    temp: PathBuf,
    fd: OwnedFd,
    meta: Meta,
    spans_left: usize,
    failure: Option<Failure>,
    group: Option<(u64, u64)>,
}

/// The state of one copy.
pub struct Coordinator {
    pool: Pool,
    /// Where workers report progress, when it is shown.
    progress: Option<Queue<Tick>>,
    stop: Event,
    options: Options,
    split_large: bool,
    tx: Sender<Done>,
    rx: Receiver<Done>,
    ready: Vec<Job>,
    in_flight: usize,
    max_in_flight: usize,
    /// The number of workers.
    workers: usize,
    /// Batch jobs of [`MANY_ENTRIES`] or more in flight, by directory (see
    /// [`Coordinator::next_job`]).
    batches_in_flight: HashMap<u64, usize>,
    next_id: u64,
    dirs: HashMap<u64, DirNode>,
    groups: HashMap<(u64, u64), Group>,
    large: HashMap<u64, LargeFile>,
    stopping: bool,
    outcome: Outcome,
    /// Directories already rid of a killed copy's leftovers (`--resume`, `--update`).
    cleaned: HashSet<PathBuf>,
    /// Under `-L`: every file of one link reached, at its final path (see [`Reached`]), and
    /// whether its directory is one this copy gives metadata to. One entry per name, as
    /// `cp -L` keeps one per file.
    reached: Vec<(Reached, bool)>,
    /// Under `-L`: the files some name has claimed to copy, shared with the workers.
    claims: Option<Claims>,
    /// The destinations of the top-level copies under way...
    top_dsts: HashSet<PathBuf>,
    /// ... and the copies to the same destinations, which wait for them (see [`Self::add`]).
    later: Vec<(PathBuf, PathBuf, Meta)>,
    /// Under `-L`: the copy each source file's names are linked to (see
    /// [`Self::link_reached`]), and the names linked so far, kept from one wave of copies to
    /// the next.
    kept: HashMap<(u64, u64), CopyAt>,
    linked: HashMap<PathBuf, (u64, u64)>,
    /// Which wave of copies runs: 0, then one more for each turn of `later`...
    wave: u32,
    /// ... and the members of hard-link groups made in an earlier wave, linked once this
    /// one's tasks are done: until then a task may be replacing the group's names.
    links_after_wave: Vec<(u64, PathBuf, PathBuf, Meta)>,
}

/// The top-level node's id: top-level entries belong to it.
const TOP: u64 = 0;

impl Coordinator {
    /// Starts `jobs` workers; with `live`, they report progress as they go.
    pub fn new(jobs: usize, options: Options, live: bool) -> multiprocess::Result<Coordinator> {
        let progress = if live { Some(Queue::new()?) } else { None };
        let stop = Event::new()?;
        let split_large = jobs > 1;
        let claims = match options.dereference {
            true => Some(Claims::new(claims::SLOTS)?),
            false => None,
        };
        let pool = Pool::builder()
            .processes(jobs)
            .initializer(
                worker::setup,
                (
                    progress.clone(),
                    stop.clone(),
                    options,
                    split_large,
                    claims.clone(),
                ),
            )?
            .build()?;
        let (tx, rx) = channel();
        let mut dirs = HashMap::new();
        dirs.insert(
            TOP,
            DirNode {
                parent: None,
                src: PathBuf::new(),
                dst: PathBuf::new(),
                hidden: PathBuf::new(),
                is_hidden: false,
                suspect: false,
                meta: None,
                ancestors: Vec::new(),
                pending: 0,
                existed: true,
                finished: true,
            },
        );
        Ok(Coordinator {
            pool,
            progress,
            stop,
            options,
            split_large,
            tx,
            rx,
            ready: Vec::new(),
            in_flight: 0,
            max_in_flight: jobs * 4,
            workers: jobs,
            batches_in_flight: HashMap::new(),
            next_id: TOP + 1,
            dirs,
            groups: HashMap::new(),
            large: HashMap::new(),
            stopping: false,
            outcome: Outcome::default(),
            cleaned: HashSet::new(),
            reached: Vec::new(),
            claims,
            top_dsts: HashSet::new(),
            later: Vec::new(),
            kept: HashMap::new(),
            linked: HashMap::new(),
            wave: 0,
            links_after_wave: Vec::new(),
        })
    }

    /// Adds a top-level copy of `src` (with its metadata `meta`) to `dst`. A second copy to
    /// the same destination (two directories of one name, merged as `cp -r` merges them)
    /// starts once everything before it is copied: it merges into the finished copy.
    pub fn add(&mut self, src: PathBuf, dst: PathBuf, meta: Meta) {
        if !self.top_dsts.insert(dst.clone()) {
            self.later.push((src, dst, meta));
            return;
        }
        if self.options.resume || self.options.update {
            self.remove_stale_beside(&dst);
        }
        self.dirs.get_mut(&TOP).expect("top").pending += 1;
        if meta.kind == Kind::Dir {
            self.add_dir(TOP, src, dst, meta);
        } else {
            self.place(TOP, src, dst, meta, true);
        }
    }

    /// On a resume, removes what a killed copy left beside a top-level destination (its
    /// hidden directory, a temporary file); once per directory.
    fn remove_stale_beside(&mut self, dst: &Path) {
        let above = fsops::dir_above(dst);
        if self.cleaned.insert(above.to_path_buf()) {
            if let Ok(dir) = fsops::open_dir(above, false) {
                fsops::remove_stale_temps(dir.as_fd(), above);
            }
        }
    }

    /// Records a failure found before the copy starts (a bad argument).
    pub fn fail(&mut self, failure: Failure) {
        self.outcome.failures.push(failure);
    }

    /// Records a warning found before the copy starts.
    pub fn warn(&mut self, warning: String) {
        self.outcome.warnings.push(warning);
    }

    fn add_dir(&mut self, parent: u64, src: PathBuf, dst: PathBuf, meta: Meta) {
        let id = self.next_id;
        self.next_id += 1;
        let mut ancestors = self.dirs[&parent].ancestors.clone();
        if let Some(m) = self.dirs[&parent].meta {
            ancestors.push((m.dev, m.ino));
        }
        let hidden_name = fsops::temp_name();
        let task = DirTask {
            src: RawPath::new(&src),
            dst: RawPath::new(&dst),
            meta,
            ancestors: ancestors.clone(),
            hidden: RawPath::new(&hidden_name),
            parent_made: !self.dirs[&parent].existed,
            small_trees: false,
        };
        let hidden = dst.with_file_name(hidden_name);
        self.dirs.insert(
            id,
            DirNode {
                parent: Some(parent),
                src,
                dst,
                hidden,
                is_hidden: false,
                suspect: false,
                meta: Some(meta),
                ancestors,
                pending: 1,
                existed: false,
                finished: false,
            },
        );
        self.ready.push(Job::Dir(id, task));
    }

    /// Runs until everything is copied (or the copy stops); `tick` is called about every
    /// 100 ms with the live counters.
    pub fn run(mut self, live: &Live, tick: &mut dyn FnMut()) -> Outcome {
        if self.dirs[&TOP].pending == 0 {
            return self.outcome;
        }
        loop {
            let idle = self.in_flight == 0 && self.ready.is_empty();
            if idle && !self.stopping && !self.links_after_wave.is_empty() {
                for (dir, src, dst, meta) in std::mem::take(&mut self.links_after_wave) {
                    self.link_member(dir, src, dst, meta);
                }
                continue;
            }
            if idle && !self.stopping && !self.later.is_empty() {
                // Copies that wait for others to the same destination: their turn, once the
                // names of one file copied so far are linked, as `cp -aL` would find them.
                if self.options.dereference {
                    self.link_reached();
                }
                if !self.stopping && INTERRUPTS.load(Ordering::SeqCst) == 0 {
                    self.wave += 1;
                    self.top_dsts.clear();
                    for (src, dst, meta) in std::mem::take(&mut self.later) {
                        self.add(src, dst, meta);
                    }
                }
            }
            if !self.stopping {
                while self.in_flight < self.max_in_flight {
                    let Some(job) = self.next_job() else { break };
                    self.submit(job);
                }
            }
            if self.in_flight == 0 && (self.ready.is_empty() || self.stopping) {
                break;
            }
            match self.rx.recv_timeout(Duration::from_millis(100)) {
                Ok(done) => {
                    self.in_flight -= 1;
                    self.handle(done, live);
                    while let Ok(done) = self.rx.try_recv() {
                        self.in_flight -= 1;
                        self.handle(done, live);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => unreachable!("we hold a sender"),
            }
            self.drain_progress(live);
            tick();
            let interrupts = INTERRUPTS.load(Ordering::SeqCst);
            if interrupts > 0 && !self.stopping {
                self.outcome.interrupted = true;
                self.stop_all();
            }
            if interrupts > 1 {
                // Asked twice: do not wait for the workers to wind down.
                self.pool.terminate();
                break;
            }
        }
        self.drain_progress(live);
        self.pool.terminate();
        let _ = self.pool.join();
        for (_, file) in self.large.drain() {
            let _ = std::fs::remove_file(&file.temp);
        }
        if !self.stopping && self.options.dereference {
            self.link_reached();
        }
        // Stopped early: what the hidden directories hold is kept for a resume, without
        // anything a worker may have been cut short in.
        // (A task still running when the workers were killed may have made one unreported.)
        for (_, node) in std::mem::take(&mut self.dirs) {
            if node.parent.is_none() {
                continue;
            }
            remove_inline_leaves(&node.dst, &node.hidden);
            if node.is_hidden || fsops::is_real_dir(&node.hidden) {
                self.publish(&node, true);
            }
        }
        self.outcome
    }

    /// Gives a hidden directory its final name; `unfinished` first removes every file in it
    /// that does not match its source (one a worker was killed in the middle of).
    fn publish(&mut self, node: &DirNode, unfinished: bool) {
        if unfinished {
            remove_unfinished(&node.src, &node.hidden, self.options.dereference);
        }
        if let Err(failure) = worker::publish(&node.hidden, &node.dst) {
            self.outcome.failures.push(failure);
        }
    }

    fn stop_all(&mut self) {
        self.stopping = true;
        self.stop.set();
    }

    fn drain_progress(&mut self, live: &Live) {
        let Some(progress) = &self.progress else {
            return;
        };
        while let Ok((files, bytes)) = progress.get_nowait() {
            live.add(files, bytes);
        }
    }

    /// The next job to submit: the latest one ready, except that a batch of many entries
    /// for a directory that has one in flight already waits while other work is ready
    /// (within the last [`LOOK_BACK`] jobs) or the workers have enough. Workers creating
    /// files in one directory at once take turns on its lock, and spin while they wait.
    fn next_job(&mut self) -> Option<Job> {
        let busy = |job: &Job| {
            create_heavy_batch(job).is_some_and(|dir| self.batches_in_flight.contains_key(&dir))
        };
        let len = self.ready.len();
        let other = (len.saturating_sub(LOOK_BACK)..len)
            .rev()
            .find(|&i| !busy(&self.ready[i]));
        match other {
            Some(i) => Some(self.ready.remove(i)),
            None if self.in_flight < self.workers => self.ready.pop(),
            None => None,
        }
    }

    fn submit(&mut self, job: Job) {
        let batch_of = create_heavy_batch(&job);
        let tx = self.tx.clone();
        let tx2 = self.tx.clone();
        // With little else to do, the workers wait for the subdirectories a task finds: it
        // hands them all back rather than copy small trees among them itself.
        let backlog = self.ready.len() + self.in_flight >= 2 * self.workers;
        let submitted = match job {
            Job::Dir(id, task) => self
                .pool
                .apply_async_with(
                    worker::copy_dir,
                    (DirTask {
                        small_trees: backlog,
                        ..task
                    },),
                    move |r| drop(tx.send(Done::Dir(id, Ok(r)))),
                    move |e| drop(tx2.send(Done::Dir(id, Err(e)))),
                )
                .map(drop),
            Job::Leaves(id, task) => {
                let hidden = task.parent.hidden.path().to_path_buf();
                let hidden2 = hidden.clone();
                self.pool
                    .apply_async_with(
                        worker::copy_leaves,
                        (task,),
                        move |r| drop(tx.send(Done::Leaves(id, hidden, Ok(r)))),
                        move |e| drop(tx2.send(Done::Leaves(id, hidden2, Err(e)))),
                    )
                    .map(drop)
            }
            Job::Batch(dir, group, task) => {
                let base = match dir {
                    _ if !self.options.dereference => PathBuf::new(),
                    TOP => task.dst_dir.path().to_path_buf(),
                    _ => self.dirs[&dir].dst.clone(),
                };
                let base2 = base.clone();
                self.pool
                    .apply_async_with(
                        worker::copy_batch,
                        (task,),
                        move |r| drop(tx.send(Done::Batch(dir, group, base, Ok(r)))),
                        move |e| drop(tx2.send(Done::Batch(dir, group, base2, Err(e)))),
                    )
                    .map(drop)
            }
            Job::Span(file, task) => self
                .pool
                .apply_async_with(
                    worker::copy_span,
                    (task,),
                    move |r| drop(tx.send(Done::Span(file, Ok(r)))),
                    move |e| drop(tx2.send(Done::Span(file, Err(e)))),
                )
                .map(drop),
            Job::Verify(file, src, copy) => self
                .pool
                .apply_async_with(
                    worker::verify_pair,
                    (src, copy),
                    move |r| drop(tx.send(Done::Verify(file, Ok(r)))),
                    move |e| drop(tx2.send(Done::Verify(file, Err(e)))),
                )
                .map(drop),
        };
        match submitted {
            Ok(()) => {
                self.in_flight += 1;
                if let Some(dir) = batch_of {
                    *self.batches_in_flight.entry(dir).or_default() += 1;
                }
            }
            Err(e) => {
                // The pool is broken: nothing more can run.
                self.outcome.failures.push(Failure::new(
                    Path::new("."),
                    format!("the worker pool failed: {e}"),
                ));
                self.stop_all();
            }
        }
    }

    fn handle(&mut self, done: Done, live: &Live) {
        match done {
            Done::Dir(id, Ok(mut report)) => {
                let base = self.dirs[&id].dst.clone();
                self.note_reached(&base, std::mem::take(&mut report.reached), true);
                self.dir_listed(id, report);
            }
            Done::Leaves(id, _, Ok(report)) => {
                let base = self.dirs[&id].dst.clone();
                self.note_reached(&base, report.reached, true);
                self.absorb(
                    report.counts,
                    report.failures,
                    report.warnings,
                    report.stopped,
                );
                if !self.stopping {
                    self.add_subdirs(id, report.subdirs, report.leaves);
                }
                self.one_done(id);
            }
            Done::Leaves(id, hidden, Err(e)) => {
                let node = self.dirs.get_mut(&id).expect("a directory in progress");
                // Some of its subdirectories may be missing: not to look finished.
                node.finished = true;
                remove_inline_leaves(&node.dst, &hidden);
                let src = node.src.clone();
                self.task_lost(&src, e);
                self.one_done(id);
            }
            Done::Dir(id, Err(e)) => {
                let node = self.dirs.get_mut(&id).expect("a directory in progress");
                // Left as it is: its metadata would make a partial copy look finished.
                node.finished = true;
                node.suspect = true;
                node.is_hidden = fsops::is_real_dir(&node.hidden);
                remove_inline_leaves(&node.dst, &node.hidden);
                let src = node.src.clone();
                self.task_lost(&src, e);
                self.one_done(id);
            }
            Done::Batch(dir, group, base, report) => {
                if let Some(n) = self.batches_in_flight.get_mut(&dir) {
                    *n -= 1;
                    if *n == 0 {
                        self.batches_in_flight.remove(&dir);
                    }
                }
                let ok = match report {
                    Ok(report) => {
                        let ok = report.failures.is_empty()
                            && report.warnings.is_empty()
                            && report.stopped.is_none();
                        self.note_reached(&base, report.reached, dir != TOP);
                        self.absorb(
                            report.counts,
                            report.failures,
                            report.warnings,
                            report.stopped,
                        );
                        ok
                    }
                    Err(e) => {
                        let node = self.dirs.get_mut(&dir).expect("a directory in progress");
                        node.finished = true; // partly copied: not to look finished
                        node.suspect = true;
                        let src = node.src.clone();
                        self.task_lost(&src, e);
                        false
                    }
                };
                if let Some(key) = group {
                    self.group_copied(key, ok, live);
                }
                self.one_done(dir);
            }
            Done::Span(file, result) => self.span_done(file, result, live),
            Done::Verify(file, result) => {
                let f = self.large.get_mut(&file).expect("a large file in progress");
                f.failure = match result {
                    Ok(r) => r.err(),
                    Err(e) => Some(Failure::new(&f.src, e)),
                };
                self.finish_large(file, live);
            }
        }
    }

    fn span_done(
        &mut self,
        file: u64,
        result: multiprocess::Result<Result<u64, Failure>>,
        live: &Live,
    ) {
        let f = self.large.get_mut(&file).expect("a large file in progress");
        f.spans_left -= 1;
        let failure = match result {
            Ok(Ok(_)) => None,
            Ok(Err(failure)) => Some(failure),
            Err(e) => Some(Failure::new(&f.src, e)),
        };
        let full = failure.as_ref().filter(|f| f.disk_full).cloned();
        if f.failure.is_none() {
            f.failure = failure;
        }
        let (left, verify) = (f.spans_left, self.options.verify && f.failure.is_none());
        let job = verify.then(|| Job::Verify(file, RawPath::new(&f.src), RawPath::new(&f.temp)));
        if let Some(full) = full {
            // Stop now, not once the file's other spans have failed too.
            self.failed(full);
        }
        match (left, job) {
            (0, Some(job)) => self.ready.push(job),
            (0, None) => self.finish_large(file, live),
            _ => {}
        }
    }

    /// Records a failure; a full disk stops the copy.
    fn failed(&mut self, failure: Failure) {
        if !failure.disk_full {
            self.outcome.failures.push(failure);
        } else if self.outcome.disk_full.is_none() {
            self.outcome.disk_full = Some(failure);
            self.stop_all();
        }
    }

    /// A task whose worker died or whose report could not be read.
    fn task_lost(&mut self, src: &Path, e: Error) {
        if !matches!(e, Error::PoolTerminated) || !self.stopping {
            self.outcome.failures.push(Failure::new(src, e));
        }
    }

    /// Keeps what a task under `-L` reached (see [`Reached`]), at its final path below
    /// `base`, where the task's directory ends up; `ours`: that directory (and any below it)
    /// is one this copy gives metadata to, not the one top-level copies go into.
    fn note_reached(&mut self, base: &Path, reached: Vec<Reached>, ours: bool) {
        self.reached.extend(reached.into_iter().map(|r| {
            let path = RawPath::new(base.join(r.path.path()));
            (Reached { path, ..r }, ours)
        }));
    }

    /// A large file of one link in directory `dir`, copied (or up to date) at `dst` (where
    /// it is written now), under `-L` (see [`Reached`]).
    fn note_large_reached(&mut self, meta: &Meta, dir: u64, dst: &Path, skipped: bool) {
        if !self.options.dereference || meta.is_multiply_linked() {
            return;
        }
        let Ok(copy) = rfs::lstat(dst).map(|st| Meta::from_stat(&st)) else {
            return;
        };
        self.note_large(meta, dir, dst, skipped, Holds::Copy(copy.dev, copy.ino));
    }

    /// Keeps what a name of a large file in directory `dir` (at `dst` now) holds, at its
    /// final path.
    fn note_large(&mut self, meta: &Meta, dir: u64, dst: &Path, skipped: bool, holds: Holds) {
        let path = self.placed(dir, dst).last;
        let reached = Reached {
            dev: meta.dev,
            ino: meta.ino,
            size: meta.size,
            skipped,
            path: RawPath(path),
            holds,
        };
        self.reached.push((reached, dir != TOP));
    }

    /// Under `-L`, once everything is copied: the names that reach one source file (the file
    /// and links to it, or several links) become hard links of one copy, as `cp -aL` makes
    /// them. The copy kept is the first name's that still holds its copy; a name another
    /// claimed (see [`Claims`]) is linked to it, and a name copied anyway (a resume, or a
    /// full claims table) is replaced by a link. Should no name hold a copy (the claiming
    /// name's copy failed), the first name left copies the file. A name that another source
    /// of this copy was copied to (two sources, one name) is never linked over. A directory
    /// of this copy that gains a link keeps its mode and times: it is made writable for the
    /// while if it is not, and its times are set back. A stop request or a full disk ends it.
    fn link_reached(&mut self) {
        let mut by_dir: HashMap<(PathBuf, bool), Vec<Reached>> = HashMap::new();
        // A kept copy needs its birth time only if later waves may free its inode (see
        // [`Id`]); at the end, device and inode do, without a `statx` per file.
        let waves_follow = !self.later.is_empty();
        for (r, ours) in std::mem::take(&mut self.reached) {
            let key = (r.dev, r.ino);
            if let (Holds::Copy(dev, ino), None) = (&r.holds, self.kept.get(&key)) {
                let id = match waves_follow {
                    true => Id::at(r.path.path(), (*dev, *ino)),
                    false => Id::from((*dev, *ino)),
                };
                self.kept.insert(key, (r.path.0, id));
                continue;
            }
            let dir = fsops::dir_above(r.path.path()).to_path_buf();
            by_dir.entry((dir, ours)).or_default().push(r);
        }
        let stopped = || INTERRUPTS.load(Ordering::SeqCst) > 0;
        for ((dir, ours), names) in by_dir {
            let dir_kept = ours.then(|| DirKept::open(&dir));
            let mut stop = false;
            for r in names {
                let linked = match stopped() {
                    false => self.link_name(r),
                    true => Ok(()),
                };
                if stopped() {
                    // A resume with `--resume` links the rest.
                    self.outcome.interrupted = true;
                    stop = true;
                    break;
                }
                if let Err(failure) = linked {
                    stop = failure.disk_full;
                    self.failed(failure);
                    if stop {
                        break;
                    }
                }
            }
            if let Some(Err(e)) = dir_kept.map(|k| k.and_then(DirKept::restore)) {
                self.outcome.failures.push(Failure::new(
                    &dir,
                    format!("cannot set directory attributes: {e}"),
                ));
            }
            if stop {
                return;
            }
        }
    }

    /// Makes the name `r` a hard link of its file's kept copy (see
    /// [`Coordinator::link_reached`]), and counts it.
    fn link_name(&mut self, r: Reached) -> Result<(), Failure> {
        let key = (r.dev, r.ino);
        let name = r.path.path();
        let first = self.kept_copy(key);
        let cannot_link = |first: &Path, e: io::Error| {
            let mut failure = Failure::io(name, &e);
            failure.reason = format!("cannot hard-link to {}: {e}", first.display());
            failure
        };
        match r.holds {
            Holds::Copy(dev, ino) => {
                let copy = Id::at(name, (dev, ino));
                let Some((first, first_copy)) = first else {
                    // The kept copy is gone: this one is kept instead.
                    if holds(name, copy) {
                        self.kept.insert(key, (name.to_path_buf(), copy));
                    }
                    return Ok(());
                };
                // Already one file (a resume), or a name that holds something else now.
                if first_copy.same(&copy) || !holds(name, copy) {
                    return Ok(());
                }
                link_over(&first, name).map_err(|e| cannot_link(&first, e))?;
                self.linked.insert(name.to_path_buf(), key);
                let counts = &mut self.outcome.counts;
                if r.skipped {
                    counts.skipped -= 1;
                } else {
                    counts.files -= 1;
                    counts.bytes -= r.size;
                }
                counts.hard_links += 1;
            }
            Holds::Claimed { source, found } => {
                let now = Id::of(name).map_err(|e| Failure::io(name, &e.into()))?;
                let found = found.map(Id::from);
                let same = |a: Option<Id>, b: Option<Id>| a.zip(b).is_some_and(|(a, b)| a.same(&b));
                let first_copy = first.as_ref().map(|(_, copy)| *copy);
                if now.is_some() && !same(now, found) && !same(now, first_copy) {
                    // Another source of this copy was copied to this name.
                    return Ok(());
                }
                let Some((first, first_copy)) = first else {
                    // The name that claimed the file has no copy of it: this one copies it.
                    let copy = self.copy_claimed(source.path(), name)?;
                    self.kept.insert(key, (name.to_path_buf(), copy));
                    return Ok(());
                };
                if same(now, Some(first_copy)) {
                    // Linked already: by a resumed copy (up to date), or by this one (the
                    // kept name itself, or a name linked after an earlier wave).
                    if first != name && !self.linked.contains_key(name) {
                        self.outcome.counts.skipped += 1;
                        self.linked.insert(name.to_path_buf(), key);
                    }
                    return Ok(());
                }
                let linked = match now {
                    None => rfs::linkat(rfs::CWD, &first, rfs::CWD, name, AtFlags::empty())
                        .map_err(io::Error::from),
                    Some(_) => link_over(&first, name),
                };
                self.linked.insert(name.to_path_buf(), key);
                match linked {
                    Ok(()) => self.outcome.counts.hard_links += 1,
                    Err(e) if Failure::io(name, &e).disk_full => {
                        return Err(cannot_link(&first, e))
                    }
                    // No link here (another file system below the copy, too many links to
                    // the file): a copy, as for a hard-link group.
                    Err(_) => {
                        self.copy_claimed(source.path(), name)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Under `-L`, the kept copy of the file `key` (see [`Coordinator::link_reached`]) at a
    /// name that still holds it: the kept name, or else a name linked to it (another source
    /// copied to the kept name may have replaced it), which is kept from then on.
    fn kept_copy(&mut self, key: (u64, u64)) -> Option<CopyAt> {
        let (path, copy) = self.kept.get(&key)?.clone();
        if holds(&path, copy) {
            return Some((path, copy));
        }
        let mut names = self.linked.iter().filter(|(_, k)| **k == key);
        let (other, _) = names.find(|(name, _)| holds(name, copy))?;
        let other = other.clone();
        self.kept.insert(key, (other.clone(), copy));
        Some((other, copy))
    }

    /// Copies the file `source` to `name` from the parent, for a name another claimed whose
    /// link could not be made (see [`Coordinator::link_name`]); counts it. Gives the copy's
    /// device and inode.
    fn copy_claimed(&mut self, source: &Path, name: &Path) -> Result<Id, Failure> {
        let stop = || INTERRUPTS.load(Ordering::SeqCst) > 0;
        let fail = |e: io::Error| Failure::io(source, &e);
        let bytes = fsops::copy_file_to(source, name, &self.options, &stop).map_err(fail)?;
        self.outcome.counts.files += 1;
        self.outcome.counts.bytes += bytes;
        let copy = Id::of(name).map_err(|e| fail(e.into()))?;
        copy.ok_or_else(|| fail(io::Error::from(io::ErrorKind::NotFound)))
    }

    fn absorb(
        &mut self,
        counts: Counts,
        mut failures: Vec<Failure>,
        mut warnings: Vec<String>,
        stopped: Option<Stop>,
    ) {
        self.outcome.counts.add(&counts);
        self.outcome.failures.append(&mut failures);
        self.outcome.warnings.append(&mut warnings);
        match stopped {
            Some(Stop::DiskFull(failure)) => {
                if self.outcome.disk_full.is_none() {
                    self.outcome.disk_full = Some(failure);
                }
                self.stop_all();
            }
            Some(Stop::Interrupted) | None => {}
        }
    }

    fn dir_listed(&mut self, id: u64, mut report: DirReport) {
        let subdirs = std::mem::take(&mut report.subdirs);
        let leaves = std::mem::take(&mut report.leaves);
        let deferred = std::mem::take(&mut report.deferred);
        let spill = std::mem::take(&mut report.spill);
        let finished = report.finished;
        self.absorb(
            report.counts,
            report.failures,
            report.warnings,
            report.stopped,
        );
        let node = self.dirs.get_mut(&id).expect("a listed directory");
        node.existed = report.existed;
        node.finished = finished;
        node.is_hidden = report.hidden;
        if self.stopping {
            return;
        }
        let (src, existed, hidden) = (node.src.clone(), node.existed, node.is_hidden);
        let work = node.work().to_path_buf();
        node.pending += deferred.len() + spill.len();
        for entries in spill {
            let task = BatchTask {
                src_dir: RawPath::new(&src),
                dst_dir: RawPath::new(&work),
                entries,
                rename: None,
                existed,
                hidden,
            };
            self.ready.push(Job::Batch(id, None, task));
        }
        for Entry { name, meta, .. } in deferred {
            self.place(
                id,
                src.join(name.path()),
                work.join(name.path()),
                meta,
                false,
            );
        }
        self.add_subdirs(id, subdirs, leaves);
        self.one_done(id);
    }

    /// Hands out the subdirectories a task found in directory `id`: those that may be small
    /// leaves (and were left untried) in bundles, the others as directory tasks.
    fn add_subdirs(&mut self, id: u64, subdirs: Vec<Entry>, leaves: Vec<Entry>) {
        let node = self.dirs.get_mut(&id).expect("a directory in progress");
        node.pending += subdirs.len() + leaves.len().div_ceil(LEAVES_PER_TASK);
        let (src, dst) = (node.src.clone(), node.dst.clone());
        if !leaves.is_empty() {
            let parent = DirTask {
                src: RawPath::new(&src),
                dst: RawPath::new(&dst),
                meta: node.meta.expect("a listed directory has its metadata"),
                ancestors: node.ancestors.clone(),
                hidden: RawPath::new(""),
                parent_made: false,
                small_trees: false,
            };
            let existed = node.existed;
            let mut leaves = leaves.into_iter().peekable();
            while leaves.peek().is_some() {
                let task = LeavesTask {
                    parent: DirTask {
                        hidden: RawPath::new(fsops::temp_name()),
                        ..parent.clone()
                    },
                    existed,
                    leaves: leaves.by_ref().take(LEAVES_PER_TASK).collect(),
                };
                self.ready.push(Job::Leaves(id, task));
            }
        }
        for Entry { name, meta, .. } in subdirs.into_iter().rev() {
            self.add_dir(id, src.join(name.path()), dst.join(name.path()), meta);
        }
    }

    /// Copies one entry the coordinator places itself: a top-level file, a member of a
    /// hard-link group, or a large file. Counted in `dir`'s pending work by the caller.
    fn place(&mut self, dir: u64, src: PathBuf, dst: PathBuf, meta: Meta, top: bool) {
        let key = (meta.dev, meta.ino);
        if meta.is_multiply_linked() {
            match self.groups.get_mut(&key).map(|g| g.copied) {
                Some(None) => {
                    let group = self.groups.get_mut(&key).expect("present");
                    group.waiters.push((dir, src, dst, meta));
                    return;
                }
                Some(Some(true)) if self.groups[&key].wave < self.wave => {
                    self.links_after_wave.push((dir, src, dst, meta));
                    return;
                }
                Some(Some(true)) if self.group_first_holds(key) || self.group_first_moved(key) => {
                    let first = self.group_first(key);
                    self.link(key, dir, &first, &src, &dst, meta);
                    return;
                }
                Some(Some(false)) => {
                    self.copy_one(dir, src, dst, meta, None, top);
                    return;
                }
                // A new group; or one whose first copy a later source of its name replaced
                // (two directories merged), with no other name holding it: this member is
                // its first now.
                Some(Some(true)) | None => {}
            }
            let first = self.placed(dir, &dst);
            self.groups.insert(
                key,
                Group {
                    first,
                    copied: None,
                    copy: None,
                    linked: Vec::new(),
                    wave: self.wave,
                    waiters: Vec::new(),
                },
            );
            self.copy_one(dir, src, dst, meta, Some(key), top);
        } else {
            self.copy_one(dir, src, dst, meta, None, top);
        }
    }

    /// Links a member of a hard-link group made in an earlier wave, now that no task runs
    /// (see [`Coordinator::place`]): to a name that still holds the group's copy, or, if no
    /// name does any more, as the group's first again.
    fn link_member(&mut self, dir: u64, src: PathBuf, dst: PathBuf, meta: Meta) {
        let key = (meta.dev, meta.ino);
        if let Some(group) = self.groups.get_mut(&key) {
            group.wave = self.wave;
        }
        self.place(dir, src, dst, meta, false);
    }

    fn copy_one(
        &mut self,
        dir: u64,
        src: PathBuf,
        dst: PathBuf,
        meta: Meta,
        group: Option<(u64, u64)>,
        top: bool,
    ) {
        if meta.kind == Kind::File && self.split_large && meta.size >= LARGE_FILE {
            let existed = top || self.dirs[&dir].existed;
            if self.claimed_by_another(&meta) {
                let found = match existed {
                    true => judge(&src, &dst, &meta, &self.options),
                    false => Ok(None),
                };
                match found {
                    // `--update`: a later file is kept, and never linked over.
                    Ok(Some((_, Verdict::Newer))) => self.outcome.counts.skipped += 1,
                    Ok(found) => {
                        let holds = Holds::Claimed {
                            source: RawPath(src),
                            found: found.map(|(m, _)| (m.dev, m.ino)),
                        };
                        self.note_large(&meta, dir, &dst, false, holds);
                    }
                    Err(e) => self.failed(Failure::io(&src, &e)),
                }
                self.one_done(dir);
                return;
            }
            match self.start_large(dir, &src, &dst, meta, group, existed) {
                Ok(None) => {}
                Ok(Some(verdict)) => {
                    // Kept (`--update`, `--resume`); a later file is never linked over.
                    self.outcome.counts.skipped += 1;
                    if verdict == Verdict::UpToDate {
                        self.note_large_reached(&meta, dir, &dst, true);
                    }
                    if let Some(key) = group {
                        self.group_copied_quiet(key);
                    }
                    self.one_done(dir);
                }
                Err(e) => {
                    self.failed(Failure::io(&src, &e));
                    if let Some(key) = group {
                        self.group_failed_quiet(key);
                    }
                    self.one_done(dir);
                }
            }
            return;
        }
        let parent = |p: &Path| {
            p.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf()
        };
        let src_name = src.file_name().map(PathBuf::from).unwrap_or_default();
        let dst_name = dst.file_name().map(PathBuf::from).unwrap_or_default();
        let task = BatchTask {
            src_dir: RawPath::new(parent(&src)),
            dst_dir: RawPath::new(parent(&dst)),
            entries: vec![Entry::new(RawPath::new(&src_name), meta)],
            rename: (src_name != dst_name).then(|| RawPath::new(dst_name)),
            existed: top || self.dirs[&dir].existed,
            hidden: !top && self.dirs[&dir].is_hidden,
        };
        self.ready.push(Job::Batch(dir, group, task));
    }

    /// Under `-L`, whether another name has claimed the file of one link `meta` (see
    /// [`Claims`]); if not, it is this name's to copy.
    fn claimed_by_another(&self, meta: &Meta) -> bool {
        let claim = self.claims.as_ref().and_then(|c| c.claim_file(meta));
        claim == Some(Claim::Taken)
    }

    /// `dst`, written now in directory `dir`, and where it ends up: below the directory's
    /// final name.
    fn placed(&self, dir: u64, dst: &Path) -> Placed {
        let last = match self.dirs.get(&dir) {
            Some(node) if node.is_hidden => node.dst.join(dst.file_name().unwrap_or_default()),
            _ => dst.to_path_buf(),
        };
        let hidden = dst.to_path_buf();
        Placed { dir, hidden, last }
    }

    /// Where a name of the copy is now: at its hidden path while its directory is hidden.
    fn path_now(&self, name: &Placed) -> PathBuf {
        match self.dirs.get(&name.dir) {
            Some(node) if node.is_hidden => name.hidden.clone(),
            _ => name.last.clone(),
        }
    }

    /// Links `dst` to the first copy `first` of the hard-link group `key`.
    fn link(
        &mut self,
        key: (u64, u64),
        dir: u64,
        first: &Path,
        src: &Path,
        dst: &Path,
        meta: Meta,
    ) {
        let result = match rfs::linkat(rfs::CWD, first, rfs::CWD, dst, AtFlags::empty()) {
            Err(Errno::EXIST) => relink(first, (src, &meta), dst, &self.options),
            other => other.map(|()| Relinked::Linked).map_err(io::Error::from),
        };
        if matches!(result, Ok(Relinked::Linked | Relinked::Already)) {
            let name = self.placed(dir, dst);
            self.groups
                .get_mut(&key)
                .expect("a group")
                .linked
                .push(name);
        }
        match result {
            Ok(Relinked::Linked) => self.outcome.counts.hard_links += 1,
            // Linked already (a resume): up to date; or kept (`--update`).
            Ok(Relinked::Already | Relinked::Kept) => self.outcome.counts.skipped += 1,
            Err(e) => {
                // Linking failed (e.g. across file systems): copy the file instead.
                if e.raw_os_error() == Some(libc::EXDEV) {
                    self.copy_one(dir, src.to_path_buf(), dst.to_path_buf(), meta, None, false);
                    return;
                }
                self.outcome.failures.push(Failure::new(src, e));
            }
        }
        self.one_done(dir);
    }

    fn group_copied(&mut self, key: (u64, u64), ok: bool, live: &Live) {
        let Some(group) = self.groups.get_mut(&key) else {
            return;
        };
        group.copied = Some(ok);
        let waiters = std::mem::take(&mut group.waiters);
        let first = self.group_first(key);
        let copy = Id::of(&first).ok().flatten();
        self.groups.get_mut(&key).expect("present").copy = copy;
        for (dir, src, dst, meta) in waiters {
            if self.stopping {
                self.one_done(dir);
            } else if ok {
                self.link(key, dir, &first, &src, &dst, meta);
                live.add(1, 0);
            } else {
                self.copy_one(dir, src, dst, meta, None, false);
            }
        }
    }

    /// Whether a hard-link group's first copy is still at its name.
    fn group_first_holds(&self, key: (u64, u64)) -> bool {
        let copy = self.groups[&key].copy;
        copy.is_some_and(|copy| holds(&self.group_first(key), copy))
    }

    /// For a hard-link group whose first name no longer holds its copy: makes a name linked
    /// to the copy that still holds it the first, if there is one.
    fn group_first_moved(&mut self, key: (u64, u64)) -> bool {
        let group = &self.groups[&key];
        let Some(copy) = group.copy else {
            return false;
        };
        let mut linked = group.linked.iter();
        let Some(i) = linked.position(|name| holds(&self.path_now(name), copy)) else {
            return false;
        };
        let group = self.groups.get_mut(&key).expect("present");
        group.first = group.linked.swap_remove(i);
        true
    }

    /// Where a hard-link group's first copy is now.
    fn group_first(&self, key: (u64, u64)) -> PathBuf {
        self.path_now(&self.groups[&key].first)
    }

    fn group_copied_quiet(&mut self, key: (u64, u64)) {
        self.group_copied(key, true, &Live::default());
    }

    fn group_failed_quiet(&mut self, key: (u64, u64)) {
        self.group_copied(key, false, &Live::default());
    }

    /// Prepares a large file: a temporary file beside its destination, cloned at once where
    /// the file system can, otherwise filled by span tasks. `Ok(Some(..))`: what is there is
    /// kept (see [`Verdict`]), and nothing is copied; never the source itself.
    fn start_large(
        &mut self,
        dir: u64,
        src: &Path,
        dst: &Path,
        meta: Meta,
        group: Option<(u64, u64)>,
        existed: bool,
    ) -> io::Result<Option<Verdict>> {
        if existed {
            if let Some((_, verdict)) = judge(src, dst, &meta, &self.options)? {
                if verdict.keeps() {
                    return Ok(Some(verdict));
                }
            }
        }
        let dst_dir = dst.parent().unwrap_or(Path::new("."));
        let temp = dst_dir.join(fsops::temp_name());
        let fd = rfs::open(
            &temp,
            OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let id = self.next_id;
        self.next_id += 1;
        let mut file = LargeFile {
            dir,
            src: src.to_path_buf(),
            dst: dst.to_path_buf(),
            temp: temp.clone(),
            fd,
            meta,
            spans_left: 0,
            failure: None,
            group,
        };
        let src_fd = fsops::open_source(rfs::CWD, src, true);
        let cloned = match &src_fd {
            Ok(s) => fsops::try_reflink(s.as_fd(), file.fd.as_fd(), self.options.reflink),
            Err(e) => Err(io::Error::from(*e)),
        };
        match cloned {
            Ok(true) => {
                self.large.insert(id, file);
                self.finish_large(id, &Live::default());
                return Ok(None);
            }
            Ok(false) => {}
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                return Err(e);
            }
        }
        if let Err(e) = rfs::ftruncate(&file.fd, meta.size) {
            let _ = std::fs::remove_file(&temp);
            return Err(e.into());
        }
        let mut start = 0;
        while start < meta.size {
            let end = (start + SPAN).min(meta.size);
            self.ready.push(Job::Span(
                id,
                SpanTask {
                    src: RawPath::new(src),
                    temp: RawPath::new(&temp),
                    start,
                    end,
                    sparse: meta.is_sparse(),
                },
            ));
            file.spans_left += 1;
            start = end;
        }
        self.large.insert(id, file);
        Ok(None)
    }

    /// Finishes a large file: metadata, then the rename that makes it visible.
    fn finish_large(&mut self, id: u64, live: &Live) {
        let f = self.large.remove(&id).expect("a large file in progress");
        let result = match f.failure {
            Some(failure) => Err(failure),
            None => self.seal(&f).map_err(|e| Failure::io(&f.src, &e)),
        };
        let ok = match result {
            Ok(()) => {
                self.outcome.counts.files += 1;
                self.outcome.counts.bytes += f.meta.size;
                self.note_large_reached(&f.meta, f.dir, &f.dst, false);
                live.add(1, 0);
                true
            }
            Err(failure) => {
                let _ = std::fs::remove_file(&f.temp);
                if !self.stopping {
                    self.failed(failure);
                }
                false
            }
        };
        if let Some(key) = f.group {
            self.group_copied(key, ok, live);
        }
        self.one_done(f.dir);
    }

    fn seal(&self, f: &LargeFile) -> io::Result<()> {
        let src = fsops::open_source(rfs::CWD, &f.src, true)?;
        fsops::trim_to_source(src.as_fd(), f.fd.as_fd(), f.meta.size)?;
        fsops::apply_file_meta(f.fd.as_fd(), Some(src.as_fd()), &f.meta, None)?;
        std::fs::rename(&f.temp, &f.dst)
    }

    /// One piece of work inside `dir` is done; a directory with nothing left gets its
    /// metadata and tells its parent.
    fn one_done(&mut self, dir: u64) {
        let node = self.dirs.get_mut(&dir).expect("a directory in progress");
        node.pending -= 1;
        // The top level stays: copies that wait for a destination are added to it later.
        if node.pending > 0 || self.stopping || dir == TOP {
            return;
        }
        let node = self.dirs.remove(&dir).expect("present");
        if let (false, Some(meta)) = (node.finished, node.meta) {
            if let Err(e) = fsops::apply_dir_meta(&node.src, node.work(), &meta) {
                self.outcome.failures.push(Failure::new(
                    &node.src,
                    format!("cannot set directory attributes: {e}"),
                ));
            }
        }
        if node.is_hidden {
            self.publish(&node, node.suspect);
        }
        if let Some(parent) = node.parent {
            self.one_done(parent);
        }
    }
}

/// The directory of `job` if it is a batch of [`MANY_ENTRIES`] entries or more (see
/// [`Coordinator::next_job`]).
fn create_heavy_batch(job: &Job) -> Option<u64> {
    match job {
        Job::Batch(dir, _, task) if task.entries.len() >= MANY_ENTRIES => Some(*dir),
        _ => None,
    }
}

/// Removes what a lost directory task left of the small leaves it was copying itself (see
/// `worker::copy_small_leaves`): hidden directories in `dst` named after its own `hidden`
/// name plus `.N`. Those it finished have their names already.
fn remove_inline_leaves(dst: &Path, hidden: &Path) {
    let Some(prefix) = hidden
        .file_name()
        .map(|n| format!("{}.", n.to_string_lossy()))
    else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dst) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Removes every regular file in the hidden directory `hidden` that is not a finished copy
/// of its namesake in `src`: same size and modification time (a copy gets its times last;
/// compared as `--update` compares them, allowing for destinations that keep whole seconds),
/// and every temporary file. Directories inside (small leaves a lost task was copying into
/// it) are looked through the same way.
fn remove_unfinished(src: &Path, hidden: &Path, dereference: bool) {
    let Ok(entries) = std::fs::read_dir(hidden) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(copy) = rfs::lstat(&path) else {
            continue;
        };
        let copy = Meta::from_stat(&copy);
        let source = src.join(entry.file_name());
        if copy.kind == Kind::Dir {
            remove_unfinished(&source, &path, dereference);
        }
        if copy.kind != Kind::File {
            continue;
        }
        let source = if dereference {
            rfs::stat(&source)
        } else {
            rfs::lstat(&source)
        };
        let finished = source.is_ok_and(|st| {
            let st = Meta::from_stat(&st);
            st.kind == Kind::File && replace::file_up_to_date(&copy, &st)
        });
        if !finished {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// What [`relink`] did.
enum Relinked {
    Linked,
    /// The name was a link of the copy already.
    Already,
    /// The name is kept as it is (`--update`: it is not older than its source).
    Kept,
}

/// Replaces `dst`, the destination of `src` (of metadata `meta`), a member of a hard-link
/// group, by a hard link to the group's copy `first`: unless it is one already, or
/// `--update` keeps it. Never when `dst` is the source itself (an error then, as a
/// directory in the way is). `--resume` does not keep a name that is not linked yet.
fn relink(
    first: &Path,
    (src, meta): (&Path, &Meta),
    dst: &Path,
    options: &Options,
) -> io::Result<Relinked> {
    let copy = rfs::lstat(first)?;
    let options = Options {
        resume: false,
        ..*options
    };
    let Some((old, verdict)) = judge(src, dst, meta, &options)? else {
        rfs::linkat(rfs::CWD, first, rfs::CWD, dst, AtFlags::empty())?;
        return Ok(Relinked::Linked);
    };
    if (copy.st_dev, copy.st_ino) == (old.dev, old.ino) {
        return Ok(Relinked::Already);
    }
    if verdict.keeps() {
        return Ok(Relinked::Kept);
    }
    link_over(first, dst).map(|()| Relinked::Linked)
}

/// What is at `dst`, the destination of `src` (of metadata `meta`), and what to do about
/// it (see [`replace::judge_at`]): never the source itself.
fn judge(
    src: &Path,
    dst: &Path,
    meta: &Meta,
    options: &Options,
) -> io::Result<Option<(Meta, Verdict)>> {
    let shown = || (src.to_path_buf(), dst.to_path_buf());
    replace::judge_at((rfs::CWD, dst), (rfs::CWD, src), meta, options, shown)
}

/// Replaces `dst` by a hard link to `first`: linked under a temporary name beside it, then
/// renamed over it.
fn link_over(first: &Path, dst: &Path) -> io::Result<()> {
    let (Some(dir), Some(name)) = (dst.parent(), dst.file_name()) else {
        return Err(io::Error::other("no directory to link in"));
    };
    let dir = fsops::open_dir(
        if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        },
        false,
    )?;
    fsops::make_and_rename(dir.as_fd(), Path::new(name), |d, temp| {
        rfs::linkat(rfs::CWD, first, d, temp, AtFlags::empty())
    })
}

/// Whether the name `path` holds the copy `copy`.
fn holds(path: &Path, copy: Id) -> bool {
    Id::of(path).is_ok_and(|now| now.is_some_and(|now| now.same(&copy)))
}

/// Which file a copy is: its device and inode, and, where the file system keeps it, its
/// birth time, which tells it from a later file given the same inode number once it is
/// gone (merged sources replace names, and so free copies).
#[derive(Clone, Copy, Debug)]
struct Id {
    dev: u64,
    ino: u64,
    born: Option<(i64, u32)>,
}

impl Id {
    /// The file at `path` (not followed); `Ok(None)` if nothing is there.
    fn of(path: &Path) -> rustix::io::Result<Option<Id>> {
        let mask = rfs::StatxFlags::INO | rfs::StatxFlags::BTIME;
        match rfs::statx(rfs::CWD, path, AtFlags::SYMLINK_NOFOLLOW, mask) {
            Ok(st) => Ok(Some(Id {
                dev: rfs::makedev(st.stx_dev_major, st.stx_dev_minor),
                ino: st.stx_ino,
                born: (st.stx_mask & rfs::StatxFlags::BTIME.bits() != 0)
                    .then_some((st.stx_btime.tv_sec, st.stx_btime.tv_nsec)),
            })),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The copy of device and inode `copy`, known by its birth time too if `path` holds it.
    fn at(path: &Path, copy: (u64, u64)) -> Id {
        let found = Id::of(path).ok().flatten();
        found
            .filter(|id| (id.dev, id.ino) == copy)
            .unwrap_or(Id::from(copy))
    }

    /// Whether two identities are of one file (birth times compared where both are known).
    fn same(&self, other: &Id) -> bool {
        let born = match (self.born, other.born) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        (self.dev, self.ino) == (other.dev, other.ino) && born
    }
}

impl From<(u64, u64)> for Id {
    fn from((dev, ino): (u64, u64)) -> Id {
        Id {
            dev,
            ino,
            born: None,
        }
    }
}

/// A copy's path and which file it is.
type CopyAt = (PathBuf, Id);

/// A finished directory about to gain links (see [`Coordinator::link_reached`]): its mode
/// and times as they were, and it made writable by its owner meanwhile.
struct DirKept {
    path: PathBuf,
    mode: u32,
    times: rfs::Timestamps,
}

impl DirKept {
    fn open(path: &Path) -> io::Result<DirKept> {
        let st = rfs::lstat(path)?;
        let meta = Meta::from_stat(&st);
        let mode = meta.mode & 0o7777;
        if mode & 0o300 != 0o300 {
            rfs::chmod(path, Mode::from_raw_mode(mode | 0o300))?;
        }
        Ok(DirKept {
            path: path.to_path_buf(),
            mode,
            times: meta.timestamps(),
        })
    }

    /// Sets its mode and times back.
    fn restore(self) -> io::Result<()> {
        if self.mode & 0o300 != 0o300 {
            rfs::chmod(&self.path, Mode::from_raw_mode(self.mode))?;
        }
        rfs::utimensat(rfs::CWD, &self.path, &self.times, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_told_from_a_later_one_of_the_same_inode_number() {
        let path = std::env::temp_dir().join(format!("mp-id-{}", std::process::id()));
        std::fs::write(&path, b"x").unwrap();
        let id = Id::of(&path).unwrap().expect("a file");
        assert!(holds(&path, id));
        assert!(
            holds(&path, Id::from((id.dev, id.ino))),
            "no birth time: inode only"
        );
        if let Some((sec, nsec)) = id.born {
            let reborn = Id {
                born: Some((sec, nsec ^ 1)),
                ..id
            };
            assert!(
                !holds(&path, reborn),
                "the same number, born at another time"
            );
        }
        assert_eq!(Id::at(&path, (id.dev, id.ino)).born, id.born);
        assert_eq!(Id::at(&path, (id.dev, id.ino + 1)).born, None);
        std::fs::remove_file(&path).unwrap();
        assert!(Id::of(&path).unwrap().is_none());
        assert!(!holds(&path, id));
    }
}
