//! The pool's supervisor: one thread in the parent that starts and replaces workers, hands them
//! tasks, collects answers, runs callbacks, and enforces time limits.
//!
//! Each worker has its own duplex pipe and at most [`PREFETCH`] unanswered tasks. Because a
//! worker answers its tasks in order (see `worker.rs`), the supervisor always knows which task a
//! worker was running when it died: the oldest unanswered one, which fails with
//! [`Error::WorkerLost`] (or [`Error::Timeout`] if the supervisor killed it for running too
//! long); the others go back to the front of the queue for another worker. A replacement worker
//! is started at once. Nothing here ever waits for a worker without also watching its exit.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::worker::{worker_main, Answer, Handles, Task, ToWorker, WorkerConfig};
use super::{Inner, Pending};
use crate::connection::{pipe, wait, Connection, Waitable};
use crate::error::{Error, Result};
use crate::process::bootstrap::Report;
use crate::process::{Process, ProcessHandle};
use crate::shm::MAX_SLEEP;

/// How many unanswered tasks a worker may hold: enough to hide the round trip, few enough that
/// a dead worker's backlog is small.
pub(crate) const PREFETCH: usize = 16;

/// A task handed to a worker and not yet answered.
struct InFlight {
    task: Pending,
    /// When it became the worker's oldest unanswered task (when the worker started it).
    started: Option<Instant>,
}

struct Worker {
    process: ProcessHandle,
    conn: Connection,
    in_flight: VecDeque<InFlight>,
    /// The supervisor killed it because its task ran past the time limit.
    timed_out: bool,
    /// The task it was told (with SIGUSR1) has passed the soft time limit.
    soft_signalled: Option<u64>,
    /// Since when it has had nothing to do.
    idle_since: Instant,
    /// It was asked to exit (idle timeout): it gets no more tasks.
    stopping: bool,
}

impl Worker {
    fn start(inner: &Inner) -> Result<Worker> {
        let (mine, theirs) = pipe()?;
        let config: WorkerConfig = inner.worker.clone();
        let process = Process::new(worker_main, (theirs, config))
            .daemon(true)
            .start_method(inner.start_method)
            .pool_worker()
            .start()?;
        Ok(Worker {
            process,
            conn: mine,
            in_flight: VecDeque::new(),
            timed_out: false,
            soft_signalled: None,
            idle_since: Instant::now(),
            stopping: false,
        })
    }

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
                let started = self.in_flight.is_empty().then(Instant::now);
                self.idle_since = Instant::now();
                self.in_flight.push_back(InFlight { task, started });
                Ok(())
            }
            Err(_) => Err(task),
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
            let value = libc::sigval {
                sival_ptr: head.task.id as usize as *mut libc::c_void,
            };
            // SAFETY: sigqueue only sends a signal with a value; the worker handles SIGUSR1.
            unsafe { libc::sigqueue(self.process.pid() as libc::pid_t, libc::SIGUSR1, value) };
        }
    }

    /// When its idle timeout ends, if it is idle.
    fn idle_deadline(&self, idle: Option<Duration>) -> Option<Instant> {
        (self.in_flight.is_empty() && !self.stopping).then_some(self.idle_since + idle?)
    }

    /// Takes every answer that has arrived.
    fn collect(&mut self) {
        while self.conn.poll(Duration::ZERO).unwrap_or(false) {
            let Ok(answer) = self.conn.recv::<Answer>() else {
                return;
            };
            let Some(pos) = self.in_flight.iter().position(|f| f.task.id == answer.id) else {
                continue;
            };
            let Some(done) = self.in_flight.remove(pos) else {
                continue;
            };
            if let Some(next) = self.in_flight.front_mut() {
                next.started.get_or_insert_with(Instant::now);
            }
            if self.in_flight.is_empty() {
                self.idle_since = Instant::now();
            }
            done.task.slot.set(outcome_of(answer.report));
        }
    }
}

fn outcome_of(report: Report) -> super::result::Outcome {
    match report {
        Report::Returned(bytes) => Ok(bytes),
        other => Err(other.into_error()),
    }
}

/// The supervisor thread's body.
pub(crate) fn run(inner: Arc<Inner>) {
    let mut workers: Vec<Worker> = Vec::new();
    let mut queue: VecDeque<Pending> = VecDeque::new();
    loop {
        let (closing, terminated) = {
            let mut state = inner.lock();
            queue.extend(state.pending.drain(..));
            (state.closing, state.terminated)
        };
        if terminated {
            shut_down(&mut workers, queue);
            return;
        }
        let work_left = !queue.is_empty() || workers.iter().any(|w| !w.in_flight.is_empty());
        if closing && !work_left {
            stop(&mut workers);
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
            match Worker::start(&inner) {
                Ok(w) => workers.push(w),
                Err(err) => {
                    eprintln!("multiprocess: could not start a pool worker: {err}");
                    break;
                }
            }
        }
        dispatch(&mut workers, &mut queue);

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
        let timeout = next_deadline
            .map(|d| d.saturating_duration_since(now))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        let mut objects: Vec<&dyn Waitable> = vec![&inner.wake_rx];
        for w in &workers {
            objects.push(&w.conn);
            objects.push(&w.process);
        }
        let _ = wait(&objects, Some(timeout));
        drop(objects);
        while inner.wake_rx.poll(Duration::ZERO).unwrap_or(false) {
            let _ = inner.wake_rx.recv_bytes();
        }

        let now = Instant::now();
        let mut i = 0;
        while i < workers.len() {
            let w = &mut workers[i];
            w.collect();
            if w.deadline().is_some_and(|d| d <= now) && !w.timed_out {
                w.timed_out = true;
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
                let _ = w.conn.send(&ToWorker::Stop);
            }
            if let Some(code) = w.process.exitcode() {
                w.collect(); // answers sent just before it exited
                let mut dead = workers.swap_remove(i);
                // A worker takes a task only after answering the one before, so it had started
                // the oldest unanswered task exactly when it took more than the pipe still
                // holds. A worker that retired (maxtasksperchild, memory ceiling) or died idle
                // started none: all go to another worker.
                let taken = dead.in_flight.len().saturating_sub(dead.conn.unread_sent());
                if taken > 0 {
                    if let Some(running) = dead.in_flight.pop_front() {
                        let err = if dead.timed_out {
                            Error::Timeout
                        } else {
                            Error::WorkerLost { exitcode: code }
                        };
                        running.task.slot.set(Err(err));
                    }
                }
                // Tasks it never started go first to another worker, in their order.
                for f in dead.in_flight.into_iter().rev() {
                    queue.push_front(f.task);
                }
                continue;
            }
            i += 1;
        }
    }
}

/// Hands queued tasks to the workers with the fewest unanswered ones.
fn dispatch(workers: &mut [Worker], queue: &mut VecDeque<Pending>) {
    while let Some(task) = queue.pop_front() {
        let Some(w) = workers
            .iter_mut()
            .filter(|w| w.in_flight.len() < PREFETCH && !w.timed_out && !w.stopping)
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
    for w in workers.iter() {
        let _ = w.conn.send(&ToWorker::Stop);
    }
    for w in workers.drain(..) {
        if !matches!(w.process.join_timeout(Duration::from_secs(10)), Ok(Some(_))) {
            let _ = w.process.kill();
            let _ = w.process.join();
        }
    }
}

/// Kills every worker and fails every task not yet done (`terminate`).
fn shut_down(workers: &mut Vec<Worker>, queue: VecDeque<Pending>) {
    let failed = || Error::InvalidState("the pool was terminated".into());
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
