//! Naming the function a child runs, across `exec`.
//!
//! A target is a function item or a closure that captures nothing: a zero-sized type whose value
//! carries no data, so the child can make its own copy from nothing once it knows the *type*.
//! The parent therefore sends the address of a small monomorphised entry function
//! (`run_discarding::<F, Args>` or `run_returning::<F, Args>`), as its offset from [`anchor`]:
//! the same binary loaded at another base address (ASLR, or `exec`) keeps every function at the
//! same offset from every other. A re-executed child first checks that it runs the very same
//! binary as the parent (see `sys::exe_identity`) and only then turns the offset back into a
//! pointer, so it can never jump into a different program's code.

use std::os::fd::OwnedFd;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::buffer::Payload;
use crate::codec;
use crate::error::Result;

/// A function a child process can run with arguments `Args` (a tuple, as Python's `args=`).
///
/// Implemented for every function item and non-capturing closure of up to eight arguments:
/// `fn()` takes `()`, `fn(A)` takes `(A,)`, `fn(A, B)` takes `(A, B)`, and so on. A closure that
/// captures variables is rejected at compile time: pass the values as arguments instead.
///
/// ```
/// fn add(a: i32, b: i32) -> i32 { a + b }
/// fn call<F: multiprocess::Target<Args>, Args>(f: F, args: Args) -> F::Output { f.call(args) }
/// assert_eq!(call(add, (2, 3)), 5);
/// assert_eq!(call(|| "no args", ()), "no args");
/// ```
pub trait Target<Args>: Copy + Send + Sync + 'static {
    /// What the function returns.
    type Output;
    /// Calls the function with the arguments unpacked from the tuple.
    fn call(self, args: Args) -> Self::Output;
}

macro_rules! impl_target {
    ($($arg:ident),*) => {
        impl<Func, Out, $($arg),*> Target<($($arg,)*)> for Func
        where
            Func: Fn($($arg),*) -> Out + Copy + Send + Sync + 'static,
        {
            type Output = Out;
            #[allow(non_snake_case)]
            fn call(self, args: ($($arg,)*)) -> Out {
                let ($($arg,)*) = args;
                self($($arg),*)
            }
        }
    };
}

impl_target!();
impl_target!(A1);
impl_target!(A1, A2);
impl_target!(A1, A2, A3);
impl_target!(A1, A2, A3, A4);
impl_target!(A1, A2, A3, A4, A5);
impl_target!(A1, A2, A3, A4, A5, A6);
impl_target!(A1, A2, A3, A4, A5, A6, A7);
impl_target!(A1, A2, A3, A4, A5, A6, A7, A8);

/// What an entry function gets in the child: the encoded arguments and their descriptors.
/// It returns the encoded result when the parent asked for one.
pub(crate) type EntryFn = fn(&[u8], Vec<OwnedFd>) -> Result<Option<Payload>>;

/// A fixed point in the binary that entry offsets are measured from.
#[inline(never)]
fn anchor() {}

/// The position of `entry` relative to [`anchor`], the same in every run of this binary.
pub(crate) fn entry_offset(entry: EntryFn) -> i64 {
    entry as *const () as usize as i64 - anchor as *const () as usize as i64
}

/// Checks that `entry` lies in the same loaded object (executable or shared library) as
/// [`anchor`]: only then is their distance the same in a re-executed copy. (It differs when the
/// library is linked as a dylib and the target lives in the program.)
pub(crate) fn check_same_object(entry: EntryFn) -> Result<()> {
    let anchor_base = crate::sys::loaded_object_base(anchor as *const ());
    let entry_base = crate::sys::loaded_object_base(entry as *const ());
    if anchor_base.is_some() && anchor_base == entry_base {
        Ok(())
    } else {
        Err(crate::error::Error::ForkOnly)
    }
}

/// Turns an offset from [`entry_offset`] back into the entry function.
///
/// # Safety
/// `offset` must come from [`entry_offset`] in a process running this very binary.
pub(crate) unsafe fn entry_from_offset(offset: i64) -> EntryFn {
    let addr = (anchor as *const () as usize as i64 + offset) as usize;
    // SAFETY: by the contract, `addr` is the address of an `EntryFn` in this binary.
    unsafe { std::mem::transmute::<usize, EntryFn>(addr) }
}

/// Makes a value of the zero-sized target type `F` in a process that never received one.
fn conjure<F: Copy>() -> F {
    const {
        assert!(
            std::mem::size_of::<F>() == 0,
            "a process target must not capture variables: pass them as arguments"
        )
    };
    // SAFETY: F is zero-sized (checked above at compile time), so it has no bytes to read, and
    // `Copy`: the parent held a value of F, and duplicating a Copy value is always allowed.
    unsafe { std::ptr::NonNull::<F>::dangling().as_ptr().read() }
}

/// Entry for [`Process`](crate::Process): runs the target and drops what it returns.
pub(crate) fn run_discarding<F, Args>(args: &[u8], fds: Vec<OwnedFd>) -> Result<Option<Payload>>
where
    F: Target<Args>,
    Args: DeserializeOwned,
{
    let args: Args = codec::decode_with_fds(args, fds)?;
    drop(conjure::<F>().call(args));
    Ok(None)
}

/// Entry for [`spawn`](crate::spawn): runs the target and encodes what it returns.
pub(crate) fn run_returning<F, Args>(args: &[u8], fds: Vec<OwnedFd>) -> Result<Option<Payload>>
where
    F: Target<Args>,
    Args: DeserializeOwned,
    F::Output: Serialize,
{
    let args: Args = codec::decode_with_fds(args, fds)?;
    let out = conjure::<F>().call(args);
    // The result crosses a socket as a frame of bytes: a zero-copy buffer would not help.
    codec::encode(&out).map(|bytes| Some(Payload::Inline(std::sync::Arc::new(bytes))))
}

/// Checks at compile time that `F` captures nothing (used where a target is accepted, so the
/// error points at the caller's code rather than at the child's entry).
pub(crate) fn assert_zero_sized<F>() {
    const {
        assert!(
            std::mem::size_of::<F>() == 0,
            "a process target must not capture variables: pass them as arguments"
        )
    };
}

/// Entry for a pool task over a chunk: decodes a list of argument tuples, calls the target on
/// each in order, and encodes the list of results.
pub(crate) fn run_chunk<F, Args>(args: &[u8], fds: Vec<OwnedFd>) -> Result<Option<Payload>>
where
    F: Target<Args>,
    Args: DeserializeOwned,
    F::Output: Serialize,
{
    let f = conjure::<F>();
    let mut out: Vec<F::Output> = Vec::new();
    // Each argument is called as soon as it is decoded and dropped before the next is: a chunk
    // of large arguments then reuses one argument's memory instead of holding them all.
    codec::decode_each_with_fds(args, fds, |a: Args| out.push(f.call(a)))?;
    // A large result goes back to the pool in shared memory: copied once in, once out.
    Payload::encode(&out).map(Some)
}
