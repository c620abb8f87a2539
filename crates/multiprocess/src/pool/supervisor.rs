//! The pool's supervisor: one thread in the parent that starts and replaces workers, hands them
//! tasks, collects answers, runs callbacks, and enforces time limits.
//!
//! Each worker has its own duplex pipe and at most [`PREFETCH`] unanswered tasks. A worker
//! takes a task from its pipe only after answering the one before, so the supervisor always
//! knows which task a worker has *started*: its oldest unanswered task, once the worker has taken
//! more messages than its pipe still holds. When a worker dies, that task fails with
//! [`Error::WorkerLost`] (or [`Error::TimeLimit`] if the supervisor killed it for running too
//! long); tasks it never took go to another worker, so a task runs at most once. Time limits
//! count from the moment a task is started, never while a worker starts up or initialises.
//!
//! A task waiting in a busy worker's pipe is taken back (with both of the pipe's locks held, so
//! the worker cannot take it at the same instant) as soon as another worker is idle: a long task
//! never holds up the tasks queued behind it. Tasks with a time limit are never queued behind
//! another task, so a time-limit kill can only hit the task it was meant for.
//!
//! If workers keep dying before they run anything (an initializer that fails), the pool is
//! declared broken after a few tries: queued tasks fail and new ones are refused, instead of
//! restarting workers for ever. If the supervisor itself panics, every task not yet done fails.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::IgnoredAny;

use super::worker::{worker_main, Answer, Handles, Task, ToWorker, WorkerConfig};
use super::{Inner, Pending};
use crate::logging::event;
use crate::connection::{pipe, wait, Connection, Waitable};
use crate::error::{Error, Result};
use crate::process::bootstrap::Report;
use crate::process::{Process, ProcessHandle};
use crate::shm::MAX_SLEEP;
use crate::sys;

/// How many unanswered tasks a worker may hold: enough to hide the round trip.
pub(crate) const PREFETCH: usize = 16;

/// Workers that die in a row before running anything, after which the pool is broken.
const MAX_FAILED_STARTS: u32 = 5;

thread_local! {
    /// True on the supervisor thread (where callbacks run): waiting there for a pool result
    /// would wait for ourselves.
    pub(crate) static ON_SUPERVISOR: Cell<bool> = const { Cell::new(false) };
}

/// A task handed to a worker and not yet answered.
struct InFlight {
    task: Pending,
    /// When the worker took it (started it); `None` while it waits in the pipe.
    started: Option<Instant>,
}

struct Worker {
    process: ProcessHandle,
    conn: Connection,
    in_flight: VecDeque<InFlight>,
    /// The task the supervisor killed it for (past its time limit).
    timed_out: Option<u64>,
    /// The task it was told (with SIGUSR1) has passed the soft time limit.
    soft_signalled: Option<u64>,
    /// Since when it has had nothing to do.
    idle_since: Instant,
    /// It was asked to exit (idle timeout): it gets no more tasks.
    stopping: bool,
    /// It has answered at least one task.
    answered: bool,
}

impl Worker {
    fn start(inner: &Inner) -> Result<Worker> {
        let (mine, theirs) = pipe()?;
        let config: WorkerConfig = inner.worker.clone();
        let process = Process::new(worker_main, (theirs, config))
            .daemon(true)
            .start_method(inner.start_method)
            .panic_output(inner.panic_output)
            .pool_worker()
            .start()?;
        event!(
            info,
            "added worker {} (pid {})",
            process.name(),
            process.pid()
        );
        Ok(Worker {
            process,
            conn: mine,
            in_flight: VecDeque::new(),
            timed_out: None,
            soft_signalled: None,
            idle_since: Instant::now(),
            stopping: false,
            answered: false,
        })
    }

    /// Sends a task. A task that cannot be sent (e.g. too many handles) fails at once; if the
    /// worker is going away, the task comes back to be queued again.
    fn send(&mut self, task: Pending) -> std::result::Result<(), Pending> {
        let message = ToWorker::Run(Task {
            id: task.id,
            entry: task.entry,
            args: task.args.clone(),
            handles: Handles(
                task.fds
                    .iter()
                    .filter_map(|fd| fd.try_clone().ok())
                    .collect(),
            ),
        });
        match self.conn.send(&message) {
            Ok(()) => {
                self.in_flight.push_back(InFlight {
                    task,
                    started: None,
                });
                self.idle_since = Instant::now();
                Ok(())
            }
            Err(err @ (Error::Encode(_) | Error::Decode(_))) => {
                task.slot.set(Err(err));
                Ok(())
            }
            Err(_) => Err(task),
        }
    }

    /// How many of its unanswered tasks it has taken from its pipe (0 or 1).
    fn taken(&self) -> usize {
        self.in_flight.len().saturating_sub(self.conn.unread_sent())
    }

    /// Starts the clock of the task it has just taken.
    fn note_started(&mut self, now: Instant) {
        if self.taken() > 0 {
            if let Some(head) = self.in_flight.front_mut() {
                head.started.get_or_insert(now);
            }
        }
    }

    /// The deadline of the task it runs now, if that task has a time limit.
    fn deadline(&self) -> Option<Instant> {
        let head = self.in_flight.front()?;
        Some(head.started? + head.task.timeout?)
    }

    /// When the task it runs now passes the soft limit (if not told so already).
    fn soft_deadline(&self, soft: Option<Duration>) -> Option<Instant> {
        let head = self.in_flight.front()?;
        if self.soft_signalled == Some(head.task.id) {
            return None;
        }
        Some(head.started? + soft?)
    }

    /// Tells the task it runs now that its soft time limit has passed: SIGUSR1, carrying the
    /// task's id so that a worker that has moved on to another task ignores it.
    fn signal_soft_limit(&mut self) {
        if let Some(head) = self.in_flight.front() {
            self.soft_signalled = Some(head.task.id);
            // The worker handles SIGUSR1; one that is gone already has nothing to be told.
            let _ = sys::queue_signal(self.process.pid(), sys::SIGUSR1, head.task.id as usize);
        }
    }

    /// When its idle timeout ends, if it is idle.
    fn idle_deadline(&self, idle: Option<Duration>) -> Option<Instant> {
        (self.in_flight.is_empty() && !self.stopping).then_some(self.idle_since + idle?)
    }

    /// Whether it can take `task` now.
    fn accepts(&self, task: &Pending) -> bool {
        if self.stopping || self.timed_out.is_some() || self.in_flight.len() >= PREFETCH {
            return false;
        }
        // A task with a time limit is never queued behind another, nor another behind it.
        let limited = |t: &Pending| t.timeout.is_some();
        self.in_flight.is_empty()
            || !(limited(task) || self.in_flight.iter().any(|f| limited(&f.task)))
    }

    /// Takes every answer that has arrived.
    fn collect(&mut self) {
        while self.conn.poll(Duration::ZERO).unwrap_or(false) {
            let answer = match self.conn.recv::<Answer>() {
                Ok(answer) => answer,
                Err(Error::Eof) => return,
                // An answer that cannot be read is the oldest task's failure.
                Err(err) => Answer {
                    id: self.in_flight.front().map_or(0, |f| f.task.id),
                    report: Report::DecodeFailed(err.to_string()),
                },
            };
            // Id 0: the worker could not read the task it took (its oldest unanswered one).
            let id = if answer.id == 0 {
                self.in_flight.front().map_or(0, |f| f.task.id)
            } else {
                answer.id
            };
            let Some(pos) = self.in_flight.iter().position(|f| f.task.id == id) else {
                continue;
            };
            let Some(done) = self.in_flight.remove(pos) else {
                continue;
            };
            self.answered = true;
            if self.in_flight.is_empty() {
                self.idle_since = Instant::now();
            }
            let outcome = outcome_of(answer.report);
            if let Err(err) = &outcome {
                event!(
                    info,
                    "task {} failed in worker {}: {err}",
                    done.task.id,
                    self.process.name()
                );
            }
            done.task.slot.set(outcome);
        }
    }
}

fn outcome_of(report: Report) -> super::result::Outcome {
    match report {
        Report::Returned(bytes) => Ok(bytes),
        other => Err(other.into_error()),
    }
}

/// The supervisor thread's body: runs the loop; if it panics, fails every task not yet done.
pub(crate) fn run(inner: Arc<Inner>) {
    ON_SUPERVISOR.with(|f| f.set(true));
    let mut workers: Vec<Worker> = Vec::new();
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        supervise(&inner, &mut workers, &mut queue)
    }));
    if outcome.is_err() {
        let mut state = inner.lock();
        let why = "the pool's supervisor thread panicked";
        state.broken = Some(why.into());
        queue.extend(state.pending.drain(..));
        drop(state);
        shut_down(&mut workers, std::mem::take(&mut queue), || {
            Error::PoolBroken(why.into())
        });
    }
}

fn supervise(inner: &Inner, workers: &mut Vec<Worker>, queue: &mut VecDeque<Pending>) {
    let mut failed_starts = 0u32;
    loop {
        inner.wake_pending.store(false, Ordering::SeqCst);
        let (closing, terminated) = {
            let mut state = inner.lock();
            queue.extend(state.pending.drain(..));
            // A closed pool still serves the `imap` iterators begun before `close`.
            (state.closing && state.open_iterators == 0, state.terminated)
        };
        if terminated {
            shut_down(workers, std::mem::take(queue), || Error::PoolTerminated);
            return;
        }
        let work_left = !queue.is_empty() || workers.iter().any(|w| !w.in_flight.is_empty());
        if closing && !work_left {
            stop(workers);
            return;
        }
        if failed_starts >= MAX_FAILED_STARTS {
            let why = format!(
                "{MAX_FAILED_STARTS} workers in a row exited before running any task (does the \
                 initializer fail?)"
            );
            inner.lock().broken = Some(why.clone());
            shut_down(workers, std::mem::take(queue), || {
                Error::PoolBroken(why.clone())
            });
            return;
        }
        // Keep the pool at full strength while there is (or may be) work; with an idle
        // timeout, start workers only for work that is waiting.
        let active = workers.iter().filter(|w| !w.stopping).count();
        let wanted = if inner.idle_timeout.is_some() && queue.is_empty() {
            active
        } else {
            inner.processes
        };
        for _ in active..wanted {
            match Worker::start(inner) {
                Ok(w) => {
                    workers.push(w);
                    // Work waiting starts on the first workers while the others are started.
                    queue.extend(inner.lock().pending.drain(..));
                    dispatch(workers, queue);
                }
                Err(err) => {
                    event!(warn, "could not start a pool worker: {err}");
                    eprintln!("multiprocess: could not start a pool worker: {err}");
                    failed_starts += 1;
                    break;
                }
            }
        }
        rebalance(workers, queue);
        dispatch(workers, queue);

        let now = Instant::now();
        let next_deadline = workers
            .iter()
            .flat_map(|w| {
                [
                    w.deadline(),
                    w.soft_deadline(inner.soft_timeout),
                    w.idle_deadline(inner.idle_timeout),
                ]
            })
            .flatten()
            .min();
        // Tasks waiting in pipes with a limit: look again soon to start their clocks.
        let unstarted_limit = workers.iter().any(|w| {
            w.in_flight
                .front()
                .is_some_and(|f| f.started.is_none() && f.task.timeout.is_some())
        });
        let timeout = next_deadline
            .map(|d| d.saturating_duration_since(now))
            .unwrap_or(MAX_SLEEP)
            .min(if unstarted_limit {
                Duration::from_millis(5)
            } else {
                MAX_SLEEP
            });
        let mut objects: Vec<&dyn Waitable> = vec![&inner.wake_rx];
        for w in workers.iter() {
            objects.push(&w.conn);
            objects.push(&w.process);
        }
        // Look only at what woke us (each look is a system call); at everything after a
        // timeout or an error.
        let ready = wait(&objects, Some(timeout)).unwrap_or_default();
        drop(objects);
        let woke = |i: usize| ready.is_empty() || ready.contains(&i);
        if woke(0) {
            while inner.wake_rx.poll(Duration::ZERO).unwrap_or(false) {
                let _ = inner.wake_rx.recv_bytes();
            }
        }
        // For each worker: whether its connection, and its process, woke us.
        let mut look: Vec<(bool, bool)> = (0..workers.len())
            .map(|k| (woke(1 + 2 * k), woke(2 + 2 * k)))
            .collect();

        let now = Instant::now();
        let mut i = 0;
        while i < workers.len() {
            let w = &mut workers[i];
            let (answers, exit) = look[i];
            if answers {
                w.collect();
            }
            w.note_started(now);
            if w.deadline().is_some_and(|d| d <= now) && w.timed_out.is_none() {
                w.timed_out = w.in_flight.front().map(|f| f.task.id);
                let _ = w.process.kill();
            }
            if w.soft_deadline(inner.soft_timeout)
                .is_some_and(|d| d <= now)
            {
                w.signal_soft_limit();
            }
            if queue.is_empty()
                && w.idle_deadline(inner.idle_timeout)
                    .is_some_and(|d| d <= now)
            {
                w.stopping = true;
                let _ = w.conn.send(&ToWorker::<Handles>::Stop);
            }
            if let Some(code) = exit.then(|| w.process.exitcode()).flatten() {
                w.collect(); // answers sent just before it exited
                let dead = workers.swap_remove(i);
                look.swap_remove(i);
                if !dead.answered && !dead.stopping && dead.taken() == 0 {
                    failed_starts += 1;
                } else {
                    failed_starts = 0;
                }
                bury(dead, code, queue);
                continue;
            }
            i += 1;
        }
    }
}

/// Settles the tasks of a worker that exited: the one it had started fails, the others are
/// queued again, first, in their order.
fn bury(mut dead: Worker, code: i32, queue: &mut VecDeque<Pending>) {
    let running = if dead.taken() > 0 {
        dead.in_flight.pop_front()
    } else {
        None
    };
    match running {
        Some(running) => {
            let err = if dead.timed_out == Some(running.task.id) {
                Error::TimeLimit
            } else {
                Error::WorkerLost { exitcode: code }
            };
            event!(
                warn,
                "worker {} (pid {}) ended under task {} (exit code {code}): the task fails \
                 ({err}); the worker is replaced",
                dead.process.name(),
                dead.process.pid(),
                running.task.id
            );
            running.task.slot.set(Err(err));
        }
        None => event!(
            info,
            "worker {} exited (exit code {code})",
            dead.process.name()
        ),
    }
    requeue(dead, queue);
}

/// Queues again, first and in their order, the tasks a dead worker had not started.
fn requeue(dead: Worker, queue: &mut VecDeque<Pending>) {
    for f in dead.in_flight.into_iter().rev() {
        queue.push_front(f.task);
    }
}

/// Moves tasks waiting in busy workers' pipes to the queue when some worker is idle, so that
/// no task waits behind a long one while a worker could run it.
fn rebalance(workers: &mut [Worker], queue: &mut VecDeque<Pending>) {
    let idle = workers
        .iter()
        .filter(|w| w.in_flight.is_empty() && !w.stopping && w.timed_out.is_none())
        .count();
    if idle == 0 || !queue.is_empty() {
        return;
    }
    for w in workers.iter_mut() {
        // Keep the one it runs (or is about to take); take back the ones behind it. Only
        // messages still in the pipe can be taken back: the worker never started those.
        while w.in_flight.len() > 1 {
            let keep = if w.taken() > 0 { 0 } else { 1 };
            match w
                .conn
                .take_back_unread::<ToWorker<IgnoredAny, IgnoredAny>>(keep)
            {
                Ok(Some(ToWorker::Run(task))) => {
                    let Some(pos) = w.in_flight.iter().rposition(|f| f.task.id == task.id) else {
                        break;
                    };
                    if let Some(f) = w.in_flight.remove(pos) {
                        queue.push_front(f.task);
                    }
                }
                _ => break,
            }
        }
    }
}

/// Hands queued tasks to the workers with the fewest unanswered ones.
fn dispatch(workers: &mut [Worker], queue: &mut VecDeque<Pending>) {
    while let Some(task) = queue.pop_front() {
        let Some(w) = workers
            .iter_mut()
            .filter(|w| w.accepts(&task))
            .min_by_key(|w| w.in_flight.len())
        else {
            queue.push_front(task);
            return;
        };
        if let Err(task) = w.send(task) {
            // The worker is going away; its exit is handled in the main loop.
            queue.push_front(task);
            return;
        }
    }
}

/// Asks every worker to finish and waits for them (`close` + `join`).
fn stop(workers: &mut Vec<Worker>) {
    event!(info, "closing pool: joining {} workers", workers.len());
    for w in workers.iter() {
        let _ = w.conn.send(&ToWorker::<Handles>::Stop);
    }
    for w in workers.drain(..) {
        if !matches!(w.process.join_timeout(Duration::from_secs(10)), Ok(Some(_))) {
            event!(warn, "worker {} did not stop: killed", w.process.name());
            let _ = w.process.kill();
            let _ = w.process.join();
        }
        event!(info, "worker {} stopped", w.process.name());
    }
}

/// Kills every worker and fails every task not yet done with the error `failed` makes.
fn shut_down(workers: &mut Vec<Worker>, queue: VecDeque<Pending>, failed: impl Fn() -> Error) {
    event!(
        info,
        "terminating pool: killing {} workers, failing {} queued tasks ({})",
        workers.len(),
        queue.len(),
        failed()
    );
    for w in workers.iter() {
        let _ = w.process.kill();
    }
    for mut w in workers.drain(..) {
        let _ = w.process.join();
        for f in w.in_flight.drain(..) {
            f.task.slot.set(Err(failed()));
        }
    }
    for task in queue {
        task.slot.set(Err(failed()));
    }
}
