//! The layering the crate's docs promise (`src/sys/mod.rs`): every call into the kernel or libc
//! lives under `src/sys/`, so no other source file of the library names `libc`.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {dir:?}: {e}"));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn only_sys_names_libc() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let sys = src.join("sys");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 20, "found only {files:?}");
    let offenders: Vec<String> = files
        .iter()
        .filter(|path| !path.starts_with(&sys))
        .flat_map(|path| {
            let text = std::fs::read_to_string(path).expect("read source file");
            text.lines()
                .enumerate()
                .filter(|(_, line)| {
                    let code = line.split("//").next().unwrap_or("");
                    code.contains("libc::") || code.contains("use libc")
                })
                .map(|(i, line)| format!("{}:{}: {}", path.display(), i + 1, line.trim()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "kernel calls outside src/sys/ (move them behind a function there):\n{}",
        offenders.join("\n")
    );
}
