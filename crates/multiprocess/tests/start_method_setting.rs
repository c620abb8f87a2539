//! G01 (process-wide part): setting the default start method. One test in this file, since it
//! changes process-wide state.

mod common;

use common::join;
use multiprocess::{
    get_all_start_methods, get_start_method, set_start_method, set_start_method_force, spawn,
    Error, StartMethod,
};

multiprocess::init_on_load!();

fn child_start_method() -> StartMethod {
    get_start_method()
}

#[test]
fn g01_set_and_get_the_default() {
    assert_eq!(get_all_start_methods(), &StartMethod::ALL);
    assert_eq!(get_start_method(), StartMethod::ForkServer);
    set_start_method(StartMethod::Spawn).unwrap();
    assert_eq!(get_start_method(), StartMethod::Spawn);
    assert!(matches!(
        set_start_method(StartMethod::Fork),
        Err(Error::StartMethodAlreadySet(StartMethod::Spawn))
    ));
    assert_eq!(
        spawn(child_start_method, ()).unwrap().join().unwrap(),
        StartMethod::Spawn
    );
    set_start_method_force(StartMethod::Fork);
    let h = spawn(child_start_method, ()).unwrap();
    assert_eq!(h.process().start_method(), StartMethod::Fork);
    let p = h.process().clone();
    assert_eq!(h.join().unwrap(), StartMethod::Fork);
    assert_eq!(join(&p), 0);
}
