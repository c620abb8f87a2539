//! The terminal's progress bar: a [`StatusUpdater`] that adds up what the engine reports,
//! beside totals from a concurrent pre-scan of the sources, and draws one line.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::Config;
use super::exclude::Exclude;
use super::status::{Progress, StatusUpdater, Update};

/// What the pre-scan has counted so far, and whether it is complete.
#[derive(Default)]
pub struct Totals {
    files: AtomicU64,
    bytes: AtomicU64,
    complete: AtomicBool,
}

impl Totals {
    /// Counts the sources' files and bytes into `totals` in a background thread; the counts
    /// grow as it goes. It walks as the copy does (`config`): links followed under `-L`, no
    /// directory on another file system entered under `-x`, nothing `--exclude` leaves out.
    pub fn scan(totals: &Arc<Totals>, sources: Vec<PathBuf>, config: &Config) {
        let counter = Arc::clone(totals);
        let (dereference, one_file_system) = (config.dereference, config.one_file_system);
        let exclude = Exclude::new(&config.exclude).unwrap_or_else(|_| Exclude::none());
        std::thread::spawn(move || {
            use std::os::unix::fs::MetadataExt;
            // Each path, with its path below its SOURCE (none for a SOURCE) and its parent's
            // device.
            let mut stack: Vec<(PathBuf, Option<PathBuf>, Option<u64>)> =
                sources.into_iter().map(|s| (s, None, None)).collect();
            let mut seen = std::collections::HashSet::new();
            while let Some((path, below, parent_dev)) = stack.pop() {
                let meta = if dereference {
                    std::fs::metadata(&path).or_else(|_| std::fs::symlink_metadata(&path))
                } else {
                    std::fs::symlink_metadata(&path)
                };
                let Ok(meta) = meta else { continue };
                if below
                    .as_ref()
                    .is_some_and(|b| exclude.excludes(b, meta.is_dir()))
                {
                    continue;
                }
                if meta.is_dir() {
                    let beyond = one_file_system && parent_dev.is_some_and(|d| d != meta.dev());
                    if beyond || !seen.insert((meta.dev(), meta.ino())) {
                        continue; // another file system under -x, or a link loop under -L
                    }
                    let below = below.unwrap_or_default();
                    if let Ok(entries) = std::fs::read_dir(&path) {
                        stack.extend(entries.flatten().map(|e| {
                            let name = below.join(e.file_name());
                            (e.path(), Some(name), Some(meta.dev()))
                        }));
                    }
                } else {
                    counter.files.fetch_add(1, Ordering::Relaxed);
                    if meta.is_file() {
                        counter.bytes.fetch_add(meta.len(), Ordering::Relaxed);
                    }
                }
            }
            counter.complete.store(true, Ordering::Release);
        });
    }
}

/// The bar on a terminal: `files 1,234/5,678  bytes 1.2 GiB/3.4 GiB  45%  230 MiB/s  ETA 0:12`.
pub struct Bar {
    started: Instant,
    last_draw: Option<Instant>,
    totals: Arc<Totals>,
    done: Progress,
}

impl Bar {
    /// A bar measuring from now.
    pub fn new(totals: Arc<Totals>) -> Bar {
        Bar {
            started: Instant::now(),
            last_draw: None,
            totals,
            done: Progress::default(),
        }
    }

    /// Redraws, at most ten times a second.
    pub fn draw(&mut self) {
        if self
            .last_draw
            .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last_draw = Some(Instant::now());
        let line = self.line();
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\r\x1b[2K{line}");
        let _ = out.flush();
    }

    /// Clears the bar.
    pub fn clear(&self) {
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\r\x1b[2K");
        let _ = out.flush();
    }

    fn line(&self) -> String {
        let Progress { files, bytes } = self.done;
        let total_files = self.totals.files.load(Ordering::Relaxed).max(files);
        let total_bytes = self.totals.bytes.load(Ordering::Relaxed).max(bytes);
        let complete = self.totals.complete.load(Ordering::Acquire);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = bytes as f64 / secs;
        let more = if complete { "" } else { "+" };
        let mut line = format!(
            "files {}/{}{more}  {}/{}{more}  {}/s",
            thousands(files),
            thousands(total_files),
            human_bytes(bytes),
            human_bytes(total_bytes),
            human_bytes(rate as u64),
        );
        if complete && total_bytes + total_files > 0 {
            let done = fraction(files, total_files, bytes, total_bytes);
            line.push_str(&format!("  {:>3.0}%", done * 100.0));
            if done > 0.0 && done < 1.0 {
                let left = secs * (1.0 - done) / done;
                line.push_str(&format!("  ETA {}", clock(left)));
            }
        }
        line
    }
}

impl StatusUpdater for Bar {
    fn update(&mut self, update: Update<'_>) {
        match update {
            Update::Progress(p) => self.done += p,
            Update::Tick => self.draw(),
            // Messages are printed once the bar is cleared (see `cli.rs`).
            Update::Failed(_) | Update::Warned(_) | Update::Stopping(_) => {}
        }
    }
}

/// How far along, weighing files and bytes alike (many small files cost as much as data).
fn fraction(files: u64, total_files: u64, bytes: u64, total_bytes: u64) -> f64 {
    let f = if total_files == 0 {
        1.0
    } else {
        files as f64 / total_files as f64
    };
    let b = if total_bytes == 0 {
        1.0
    } else {
        bytes as f64 / total_bytes as f64
    };
    ((f + b) / 2.0).clamp(0.0, 1.0)
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Seconds as `m:ss` or `h:mm:ss`.
fn clock(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(clock(75.0), "1:15");
        assert_eq!(clock(3725.0), "1:02:05");
        assert_eq!(fraction(5, 10, 0, 0), 0.75);
    }

    /// The pre-scan counts what the copy copies: nothing `--exclude` leaves out (nor, under
    /// `-x`, what is on another file system: tested by `tests/copy_cp_flags.rs`' mounts).
    #[test]
    fn the_scan_leaves_out_what_is_excluded() {
        let dir = std::env::temp_dir().join(format!("mp-scan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("src/build/deep")).unwrap();
        for (name, bytes) in [("a.c", 3), ("a.o", 5), ("build/x", 7), ("build/deep/y", 9)] {
            std::fs::write(dir.join("src").join(name), vec![b'x'; bytes]).unwrap();
        }
        let config = Config {
            exclude: vec!["*.o".into(), "/build/deep".into()],
            ..Config::default()
        };
        let totals = Arc::new(Totals::default());
        Totals::scan(&totals, vec![dir.join("src")], &config);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !totals.complete.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "the scan never finished");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(totals.files.load(Ordering::Relaxed), 2);
        assert_eq!(totals.bytes.load(Ordering::Relaxed), 3 + 7);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
