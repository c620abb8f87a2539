//! The error type's conventions: one variant per cause, a wait's timeout told apart from a
//! task's time limit, and an error chain that never repeats a text.

use std::error::Error as _;
use std::fmt;
use std::io;

use multiprocess::{Error, StartMethod};

/// An error with a cause of its own, to wrap in an `io::Error`.
#[derive(Debug)]
struct Outer(io::Error);

impl fmt::Display for Outer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the outer failure")
    }
}

impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Every text along `err`'s source chain, `err`'s own first.
fn chain(err: &dyn std::error::Error) -> Vec<String> {
    let mut texts = vec![err.to_string()];
    let mut next = err.source();
    while let Some(e) = next {
        texts.push(e.to_string());
        next = e.source();
    }
    texts
}

#[test]
fn io_errors_show_their_text_once_along_the_chain() {
    let plain = Error::from(io::Error::from(io::ErrorKind::BrokenPipe));
    assert!(plain.to_string().contains("roken pipe"), "{plain}");
    assert!(
        plain.source().is_none(),
        "the io::Error's text is already in ours"
    );

    let inner = io::Error::new(io::ErrorKind::NotFound, "the inner cause");
    let wrapped = Error::from(io::Error::other(Outer(inner)));
    let texts = chain(&wrapped);
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[0].contains("the outer failure"), "{texts:?}");
    assert!(!texts[0].contains("the inner cause"), "{texts:?}");
    assert_eq!(texts[1], "the inner cause");
}

#[test]
fn a_wait_timeout_is_not_a_time_limit() {
    assert!(Error::Timeout.is_timeout() && !Error::Timeout.is_time_limit());
    assert!(Error::TimeLimit.is_time_limit() && !Error::TimeLimit.is_timeout());
    assert_ne!(Error::Timeout.to_string(), Error::TimeLimit.to_string());
    assert!(Error::TimeLimit.to_string().contains("time limit"));
}

#[test]
fn predicates_group_related_variants() {
    for err in [
        Error::PoolClosed,
        Error::PoolTerminated,
        Error::PoolBroken("why".into()),
    ] {
        assert!(err.is_pool_not_running(), "{err:?}");
    }
    assert!(!Error::PoolStillRunning.is_pool_not_running());
    assert!(Error::Eof.is_disconnected());
    assert!(Error::from(io::Error::from(io::ErrorKind::ConnectionReset)).is_disconnected());
    assert!(!Error::from(io::Error::from(io::ErrorKind::NotFound)).is_disconnected());
    assert!(!Error::Closed.is_disconnected());
}

#[test]
fn misuse_variants_say_what_happened() {
    let cases = [
        (Error::PoolClosed, "closed"),
        (Error::PoolTerminated, "terminated"),
        (Error::PoolBroken("no workers".into()), "broken: no workers"),
        (Error::PoolStillRunning, "close() or terminate()"),
        (
            Error::StartMethodAlreadySet(StartMethod::Spawn),
            "already been set (to spawn)",
        ),
        (
            Error::InitMissing(StartMethod::ForkServer),
            "multiprocess::init()",
        ),
        (Error::UnknownStartMethod("forx".into()), "\"forx\""),
        (Error::IndexOutOfRange { index: 7, len: 3 }, "index 7"),
        (Error::ReleasedTooOften, "released too many times"),
        (Error::LockNotHeld, "not held"),
        (Error::TaskDoneTooOften, "task_done()"),
        (Error::ReadOnly, "read-only"),
        (Error::WriteOnly, "write-only"),
        (Error::AlreadyJoined, "already joined"),
        (Error::ForkOnly, "fork"),
        (
            Error::StartFailed("a reason".into()),
            "could not start: a reason",
        ),
        (
            Error::InvalidArgument("a reason".into()),
            "invalid argument: a reason",
        ),
    ];
    for (err, text) in cases {
        assert!(err.to_string().contains(text), "{err:?}: {err}");
        assert!(err.source().is_none(), "{err:?}");
    }
    assert!(matches!(
        "forx".parse::<StartMethod>(),
        Err(Error::UnknownStartMethod(name)) if name == "forx"
    ));
}
