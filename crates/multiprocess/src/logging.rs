//! What the library reports through the `log` crate with the `log` feature (target
//! `multiprocess`): what Python's `log_to_stderr()` shows of a pool, its workers started,
//! stopped and replaced, and tasks that failed. Without the feature nothing is formatted or
//! logged.
//!
//! Levels: `info` for workers started and stopped and the pool shutting down, `warn` for a
//! worker that died under a task (and is replaced) or could not start, `info` for a task that
//! failed (its caller receives the error either way).

/// Logs at `$level` (`info`, `warn`, …) with target `multiprocess` when the `log` feature is
/// on; otherwise compiles the arguments away (they stay type-checked, and used).
macro_rules! event {
    ($level:ident, $($arg:tt)+) => {{
        #[cfg(feature = "log")]
        ::log::$level!(target: "multiprocess", $($arg)+);
        #[cfg(not(feature = "log"))]
        if false {
            let _ = format_args!($($arg)+);
        }
    }};
}

pub(crate) use event;
