//! Keeps `mp`'s sources readable: no file under `src` over 700 lines, no function over 120
//! (the project's rule; `mp copy` was restructured to meet it, and this keeps it met).
//!
//! Functions are found as rustfmt lays them out: a line with `fn name` opens one, and the
//! first line after it that closes a block at the same indentation ends it.

use std::path::{Path, PathBuf};

/// The most lines a source file may have.
const FILE_LINES: usize = 700;

/// The most lines a function may have, from its `fn` line to its closing brace.
const FN_LINES: usize = 120;

/// Every `.rs` file below `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("a readable source directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The name of the function a line opens, if it opens one (and has a body to measure).
fn opens_fn(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace().peekable();
    while let Some(word) = words.next() {
        if word == "fn" {
            let name = words.next()?;
            let end = name.find(['(', '<']).unwrap_or(name.len());
            return Some(&name[..end]);
        }
        let qualifier = word.starts_with("pub")
            || matches!(
                word,
                "const" | "async" | "unsafe" | "extern" | "\"C\"" | "default"
            );
        if !qualifier {
            return None;
        }
    }
    None
}

/// The functions of `text` longer than [`FN_LINES`]: name, first line (1-based), length.
fn long_functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut long = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = opens_fn(line) else { continue };
        let indent = line.len() - line.trim_start().len();
        let closing = format!("{}}}", " ".repeat(indent));
        // A declaration without a body, or a body on one line.
        let trimmed = line.trim_end();
        if trimmed.ends_with(';') || trimmed.ends_with('}') {
            continue;
        }
        let end = lines[i + 1..]
            .iter()
            .position(|l| {
                l.trim_end() == closing || l.trim_end().starts_with(&format!("{closing} "))
            })
            .map_or(lines.len(), |k| i + 1 + k);
        let length = end - i + 1;
        if length > FN_LINES {
            long.push((name.to_string(), i + 1, length));
        }
    }
    long
}

#[test]
fn no_file_over_700_lines_and_no_function_over_120() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    for path in sources(&src) {
        let text = std::fs::read_to_string(&path).expect("a readable source file");
        let shown = path
            .strip_prefix(&src)
            .unwrap_or(&path)
            .display()
            .to_string();
        let lines = text.lines().count();
        if lines > FILE_LINES {
            problems.push(format!("{shown}: {lines} lines (at most {FILE_LINES})"));
        }
        for (name, line, length) in long_functions(&text) {
            problems.push(format!(
                "{shown}:{line}: fn {name} has {length} lines (at most {FN_LINES})"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_measure_finds_functions_as_rustfmt_writes_them() {
    let body = "        x += 1;\n".repeat(FN_LINES);
    let text = format!(
        "fn short() {{}}\n\
         pub(crate) fn long(x: u8) -> u8 {{\n{body}}}\n\
         impl A {{\n    pub async fn method(&self) {{\n{body}    }}\n}}\n\
         trait T {{\n    fn declared(&self);\n}}\n"
    );
    let found = long_functions(&text);
    let names: Vec<&str> = found.iter().map(|(name, _, _)| name.as_str()).collect();
    assert_eq!(names, ["long", "method"], "{found:?}");
    assert_eq!(found[0].1, 2);
    assert_eq!((found[0].2, found[1].2), (FN_LINES + 2, FN_LINES + 2));
}
