//! `ShareableList` (Python's `shared_memory.ShareableList`): a fixed-length list of plain
//! values in a named block, made in one process and opened by name (or received as an
//! argument) in children under every start method and in a process the library did not start.

mod common;

use std::process::Command;

use common::{join, shm_exists as exists, unique_shm_name as unique, DEADLINE};
use multiprocess::{Error, Process, ShareableList, SharedMemory, StartMethod};

multiprocess::init_on_load!();

#[test]
fn get_set_len_iter() {
    let name = unique("basic");
    let list = ShareableList::new_named(&name, (0..100u64).map(|i| i * i)).unwrap();
    assert_eq!(
        (list.name(), list.len(), list.is_empty()),
        (name.as_str(), 100, false)
    );
    assert_eq!(list.get(7).unwrap(), 49);
    assert!(matches!(
        list.get(100),
        Err(Error::IndexOutOfRange {
            index: 100,
            len: 100
        })
    ));
    assert!(matches!(
        list.set(100, 1),
        Err(Error::IndexOutOfRange {
            index: 100,
            len: 100
        })
    ));

    let other = ShareableList::<u64>::open(&name).unwrap();
    assert!(!other.shm().is_owner());
    other.set(99, 1).unwrap();
    assert_eq!(list.get(99).unwrap(), 1);
    let mut want: Vec<u64> = (0..100).map(|i| i * i).collect();
    want[99] = 1;
    assert_eq!(list.iter().collect::<Vec<_>>(), want);
    assert_eq!(other.to_vec(), want);

    let empty = ShareableList::<f64>::new([]).unwrap();
    assert!(empty.is_empty());
    assert_eq!(ShareableList::<f64>::open(empty.name()).unwrap().len(), 0);

    drop(other);
    assert!(exists(&name), "only the creator removes the name");
    drop(list);
    assert!(!exists(&name));
}

/// Fixed-capacity byte strings and user types with an alignment of their own.
#[test]
fn byte_strings_and_wide_items() {
    let list = ShareableList::new([[0u8; 24]; 3]).unwrap();
    let mut s = [0u8; 24];
    s[..5].copy_from_slice(b"hello");
    list.set(2, s).unwrap();
    let other = ShareableList::<[u8; 24]>::open(list.name()).unwrap();
    assert_eq!(&other.get(2).unwrap()[..5], b"hello");

    let wide = ShareableList::new([u128::MAX, 3, 5]).unwrap();
    assert_eq!(
        ShareableList::<u128>::open(wide.name()).unwrap().to_vec(),
        [u128::MAX, 3, 5]
    );
}

/// A block that holds no list, or a list of items of another layout or tag, is refused with
/// an error.
#[test]
fn other_blocks_are_refused() {
    let list = ShareableList::new([1u32, 2, 3]).unwrap();
    let tagged = ShareableList::new_tagged(7, [1u32, 2, 3]).unwrap();
    for err in [
        ShareableList::<u64>::open(list.name()).unwrap_err(), // another size
        ShareableList::<[u8; 4]>::open(list.name()).unwrap_err(), // same size, another alignment
        ShareableList::<[u16; 2]>::open(list.name()).unwrap_err(),
        ShareableList::<u32>::open_tagged(list.name(), 7).unwrap_err(), // another tag
        ShareableList::<u32>::open(tagged.name()).unwrap_err(),
        ShareableList::<u32>::open_tagged(tagged.name(), 8).unwrap_err(),
    ] {
        assert!(
            matches!(&err, Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidData),
            "{err}"
        );
    }
    let plain = SharedMemory::create(4096).unwrap();
    assert!(ShareableList::<u32>::open(plain.name()).is_err());
    let tiny = SharedMemory::create(8).unwrap();
    assert!(ShareableList::<u32>::open(tiny.name()).is_err());
    assert!(ShareableList::<u32>::open(&unique("missing")).is_err());
}

/// The item type is known by its layout, not its name: the same `#[repr(C)]` struct defined
/// twice (as two programs would, each in its own module) opens the other's list, and a tag
/// tells apart the lists of types that share a layout.
#[test]
fn same_layout_opens_and_tags_tell_apart() {
    mod producer {
        #[derive(Clone, Copy, Debug, PartialEq, multiprocess::Plain)]
        #[repr(C)]
        pub struct Reading {
            pub at: u64,
            pub celsius: f64,
        }
    }
    mod consumer {
        #[derive(Clone, Copy, Debug, PartialEq, multiprocess::Plain)]
        #[repr(C)]
        pub struct Sample {
            pub time: u64,
            pub value: f64,
        }
    }
    let made = [1, 2].map(|at| producer::Reading { at, celsius: 20.5 });
    let list = ShareableList::new_named(&unique("layout"), made).unwrap();
    let opened = ShareableList::<consumer::Sample>::open(list.name()).unwrap();
    assert_eq!(
        opened.get(1).unwrap(),
        consumer::Sample {
            time: 2,
            value: 20.5
        }
    );
    assert_eq!(opened.tag(), 0);
    // Same layout, so u32 and i32 open each other's untagged lists.
    let numbers = ShareableList::new([1u32, u32::MAX]).unwrap();
    assert_eq!(
        ShareableList::<i32>::open(numbers.name()).unwrap().to_vec(),
        [1, -1]
    );
    // A tag keeps them apart.
    const SIGNED: u64 = 1;
    const UNSIGNED: u64 = 2;
    let signed = ShareableList::new_named_tagged(&unique("tagged"), SIGNED, [-1i32]).unwrap();
    assert_eq!(signed.tag(), SIGNED);
    assert!(ShareableList::<u32>::open_tagged(signed.name(), UNSIGNED).is_err());
    let again = ShareableList::<i32>::open_tagged(signed.name(), SIGNED).unwrap();
    assert_eq!((again.to_vec(), again.tag()), (vec![-1], SIGNED));
}

/// Items aligned beyond a page (the block's start) would be misaligned: refused, both when
/// making a list and when opening one.
#[test]
fn items_aligned_beyond_a_page_are_refused() {
    #[derive(Clone, Copy, Debug, multiprocess::Plain)]
    #[repr(C, align(8192))]
    struct Huge([u8; 8192]);

    let err = ShareableList::new([Huge([1; 8192])]).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument(why) if why.contains("4096")),
        "{err}"
    );
    let err = ShareableList::new_named(&unique("huge"), [Huge([1; 8192])]).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let bytes = ShareableList::new([[0u8; 8192]]).unwrap();
    let err = ShareableList::<Huge>::open(bytes.name()).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");

    #[derive(Clone, Copy, Debug, multiprocess::Plain)]
    #[repr(C, align(4096))]
    struct Page([u8; 4096]);
    // Reads check their alignment in debug builds: page-aligned items are placed on pages.
    let pages = ShareableList::new([Page([3; 4096]), Page([4; 4096])]).unwrap();
    let opened = ShareableList::<Page>::open(pages.name()).unwrap();
    assert_eq!(opened.get(1).unwrap().0, [4; 4096]);
    assert_eq!(
        std::ptr::from_ref(&opened.get(0).unwrap()).align_offset(4096),
        0
    );
}

fn attach_and_double(name: String, by_handle: ShareableList<i64>) {
    let by_name = ShareableList::<i64>::open(&name).unwrap();
    assert_eq!(by_name.len(), by_handle.len());
    for i in 0..by_name.len() {
        by_handle.set(i, by_name.get(i).unwrap() * 2).unwrap();
    }
}

/// Children open the list by name and receive it as an argument, under every start method;
/// their writes are the parent's to read, and their handles never remove the name.
fn children_attach(method: StartMethod) {
    let list = ShareableList::new_named(&unique("child"), [1i64, -2, 3]).unwrap();
    let p = Process::new(
        attach_and_double,
        (
            list.name().to_string(),
            ShareableList::<i64>::open(list.name()).unwrap(),
        ),
    )
    .start_method(method)
    .start()
    .unwrap();
    assert_eq!(join(&p), 0);
    assert_eq!(list.to_vec(), [2, -4, 6]);
    assert!(exists(list.name()));
}

per_method!(children_attach);

/// A process the library did not start (the test binary, run as a plain command) opens the
/// list by name, checks it and answers in it.
#[test]
fn an_unrelated_process_attaches_by_name() {
    let list = ShareableList::new_named(&unique("unrelated"), (0..1000u32).map(|i| i * 3)).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "unrelated_attacher", "--ignored", "--nocapture"])
        .env("MP_TEST_LIST_NAME", list.name())
        .spawn()
        .unwrap();
    assert!(
        common::wait_gone(child.id(), DEADLINE),
        "the attacher did not finish"
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "the attacher failed: {status}");
    assert_eq!(list.get(0).unwrap(), u32::MAX, "no answer in the list");
}

/// The other side of [`an_unrelated_process_attaches_by_name`] (does nothing when run alone).
#[test]
#[ignore = "run by an_unrelated_process_attaches_by_name as an independent process"]
fn unrelated_attacher() {
    let Ok(name) = std::env::var("MP_TEST_LIST_NAME") else {
        return;
    };
    let list = ShareableList::<u32>::open(&name).unwrap();
    assert_eq!(list.len(), 1000);
    for (i, x) in list.iter().enumerate().skip(1) {
        assert_eq!(x, i as u32 * 3);
    }
    list.set(0, u32::MAX).unwrap();
}
