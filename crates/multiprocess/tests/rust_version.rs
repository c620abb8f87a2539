//! The workspace's `rust-version` is true for the locked dependencies.
//!
//! Only one toolchain exists where this project is built, so the minimum cannot be proven by
//! building with it. Instead this reads `cargo metadata` (`--locked`: the lock file as
//! committed) and fails when a package in the resolved graph for this platform declares a
//! `rust-version` above the workspace's, or when the workspace's members disagree. Clippy's
//! `incompatible_msrv` lint (run by `.ci/run`) checks our own use of `std` against the same
//! number.

use std::process::Command;

use serde_json::Value;

/// `"1.85"` or `"1.85.0"` as a comparable `(1, 85, 0)`.
fn version(text: &str) -> (u64, u64, u64) {
    let mut parts = text.split('.').map(|p| {
        p.parse()
            .unwrap_or_else(|_| panic!("rust-version {text:?}"))
    });
    let mut next = || parts.next().unwrap_or(0);
    (next(), next(), next())
}

/// The output of a command that must succeed.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// A package's name.
fn name(package: &Value) -> &str {
    package["name"].as_str().unwrap_or("?")
}

#[test]
fn rust_version_is_true_for_the_locked_dependencies() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let host = run(&rustc, &["-vV"])
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc -vV names the host");
    let metadata: Value = serde_json::from_str(&run(
        &cargo,
        &[
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--offline",
            "--filter-platform",
            &host,
        ],
    ))
    .expect("cargo metadata gives JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let by_id = |id: &Value| {
        packages
            .iter()
            .find(|p| p["id"] == *id)
            .unwrap_or_else(|| panic!("no package {id}"))
    };
    let members: Vec<&Value> = metadata["workspace_members"]
        .as_array()
        .expect("workspace_members")
        .iter()
        .map(by_id)
        .collect();
    let declared = members[0]["rust_version"].as_str().expect("rust-version");
    for m in &members {
        assert_eq!(
            m["rust_version"].as_str(),
            Some(declared),
            "{} declares another rust-version than the workspace",
            name(m)
        );
    }
    let too_new: Vec<String> = metadata["resolve"]["nodes"]
        .as_array()
        .expect("resolve")
        .iter()
        .map(|node| by_id(&node["id"]))
        .filter_map(|p| {
            let needs = p["rust_version"].as_str()?;
            (version(needs) > version(declared)).then(|| {
                format!(
                    "{} {} needs Rust {needs}",
                    name(p),
                    p["version"].as_str().unwrap_or("?")
                )
            })
        })
        .collect();
    assert!(
        too_new.is_empty(),
        "rust-version {declared} is not true for the locked dependencies (raise it in the root \
         Cargo.toml, or pin an older version: cargo update -p NAME --precise VERSION):\n{}",
        too_new.join("\n")
    );
}
