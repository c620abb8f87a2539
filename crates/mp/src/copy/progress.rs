//! The progress bar, on stderr (stdout stays for `-v` and `--json`): an `indicatif` bar that
//! adds up what the engine reports beside totals from a concurrent pre-scan of the sources,
//! and fits whatever width the terminal has at each redraw (it follows a resize).
//!
//! `[#####>-----] 1,234/5,678 files  1.2 GiB/3.4 GiB  230 MiB/s  0:07 ETA 0:12`
//!
//! What the bar counts as files is what the summary counts (`report.rs`): every name that is
//! not a directory (files, links, FIFOs, ...), once done: copied, linked or up to date. The
//! rate is a recent one (the last few seconds weigh most), not the average since the start.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::config::Config;
use super::exclude::Exclude;
use super::status::Progress;

/// What the pre-scan has counted so far, and whether it is complete.
#[derive(Default)]
pub struct Totals {
    files: AtomicU64,
    bytes: AtomicU64,
    complete: AtomicBool,
}

impl Totals {
    /// Counts the sources' names (those that are not directories, as the copy counts them)
    /// and bytes into `totals` in a background thread; the counts grow as it goes. It walks
    /// as the copy does (`config`): links followed under `-L`, no directory on another file
    /// system entered under `-x`, nothing `--exclude` leaves out.
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

    /// Files, bytes counted so far; whether the count is complete.
    fn get(&self) -> (u64, u64, bool) {
        let complete = self.complete.load(Ordering::Acquire);
        (
            self.files.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            complete,
        )
    }
}

/// What a file costs beside its bytes, in the bar's measure of work done: many small files
/// take as long as a few large ones.
const FILE_COST: u64 = 64 << 10;

/// How long the rate remembers: a change shows within a few seconds.
const RATE_MEMORY: f64 = 3.0;

/// The bar on stderr.
pub struct Bar {
    bar: ProgressBar,
    totals: Arc<Totals>,
    done: Progress,
    /// Bytes per second, recent.
    rate: Rate,
    /// The last redraw.
    drawn: Option<Instant>,
    /// The terminal's width now (asked at each redraw: it follows a resize).
    columns: Box<dyn Fn() -> u16>,
}

impl Bar {
    /// A bar measuring from now; drawn on stderr when it is a terminal, or even when not
    /// (`forced`: `--progress`).
    pub fn new(totals: Arc<Totals>, forced: bool) -> Bar {
        let target = match console::Term::stderr() {
            term if forced && !term.is_term() => ProgressDrawTarget::term_like(Box::new(term)),
            term => ProgressDrawTarget::term(term, 10),
        };
        let columns = || match console::Term::stderr().size_checked() {
            Some((_, columns)) => columns,
            None => 80,
        };
        Bar::drawn_to(target, Box::new(columns), totals)
    }

    /// A bar drawn to `target`, `columns()` wide.
    fn drawn_to(
        target: ProgressDrawTarget,
        columns: Box<dyn Fn() -> u16>,
        totals: Arc<Totals>,
    ) -> Bar {
        let bar = ProgressBar::hidden();
        bar.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
        bar.set_draw_target(target);
        Bar {
            bar,
            totals,
            done: Progress::default(),
            rate: Rate::new(Instant::now()),
            drawn: None,
            columns,
        }
    }

    /// Adds what finished.
    pub fn add(&mut self, progress: Progress) {
        self.done += progress;
    }

    /// Redraws, at most ten times a second, to the terminal's width now.
    pub fn draw(&mut self) {
        let now = Instant::now();
        if self
            .drawn
            .is_some_and(|t| now.duration_since(t) < Duration::from_millis(100))
        {
            return;
        }
        self.drawn = Some(now);
        self.rate.note(now, self.done.bytes);
        let (files, bytes, complete) = self.totals.get();
        let (total_files, total_bytes) = (files.max(self.done.files), bytes.max(self.done.bytes));
        let work = |files: u64, bytes: u64| files * FILE_COST + bytes;
        let eta = (complete && self.bar.position() > 0).then(|| self.bar.eta());
        let counts = Counts {
            files: (self.done.files, total_files),
            bytes: (self.done.bytes, total_bytes),
            complete,
            rate: self.rate.per_sec,
            elapsed: self.bar.elapsed(),
            eta,
        };
        // A column to spare: a line as wide as the terminal may wrap on some.
        let width = usize::from((self.columns)()).saturating_sub(1);
        let (text, room) = counts.fit(width);
        let template = match room >= MIN_BAR {
            true => format!("{{bar:{room}}} {{msg}}"),
            false => "{msg}".to_string(),
        };
        let style = ProgressStyle::with_template(&template)
            .expect("a valid template")
            .progress_chars("#>-");
        self.bar.set_style(style);
        self.bar.set_message(text);
        self.bar.set_length(work(total_files, total_bytes));
        self.bar
            .set_position(work(self.done.files, self.done.bytes));
    }

    /// Runs `f` (which prints) with the bar out of the way, then redraws it.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    /// Draws the last state (what a log of the terminal keeps), then clears the bar for
    /// good.
    pub fn finish(&mut self) {
        self.drawn = None;
        self.draw();
        self.bar.finish_and_clear();
    }
}

/// The narrowest bar worth drawing.
const MIN_BAR: usize = 10;

/// What the line says.
struct Counts {
    files: (u64, u64),
    bytes: (u64, u64),
    complete: bool,
    rate: f64,
    elapsed: Duration,
    eta: Option<Duration>,
}

impl Counts {
    /// The text for a line `width` columns wide, the most telling parts first, and the room
    /// left for the bar (the bar and the text are one column apart).
    fn fit(&self, width: usize) -> (String, usize) {
        let more = if self.complete { "" } else { "+" };
        let mut parts = vec![format!(
            "{}/{}{more} files",
            thousands(self.files.0),
            thousands(self.files.1)
        )];
        parts.push(format!(
            "{}/{}{more}",
            human_bytes(self.bytes.0),
            human_bytes(self.bytes.1)
        ));
        parts.push(format!("{}/s", human_bytes(self.rate as u64)));
        let mut times = clock(self.elapsed.as_secs_f64());
        if let Some(eta) = self.eta {
            times.push_str(&format!(" ETA {}", clock(eta.as_secs_f64())));
        }
        parts.push(times);
        // Drop parts from the end until what is left fits, with room for a bar if possible.
        let mut text = parts.join("  ");
        while parts.len() > 1 && text.chars().count() + 1 + MIN_BAR > width {
            parts.pop();
            text = parts.join("  ");
        }
        // Even the first part alone may not fit: cut it.
        let text: String = text.chars().take(width.saturating_sub(1)).collect();
        let room = width.saturating_sub(text.chars().count() + 1);
        (text, room)
    }
}

/// A rate that remembers the last few seconds most ([`RATE_MEMORY`]).
struct Rate {
    at: Instant,
    count: u64,
    per_sec: f64,
    started: bool,
}

impl Rate {
    fn new(now: Instant) -> Rate {
        Rate {
            at: now,
            count: 0,
            per_sec: 0.0,
            started: false,
        }
    }

    /// Notes the count at `now`.
    fn note(&mut self, now: Instant, count: u64) {
        let dt = now.duration_since(self.at).as_secs_f64();
        if dt < 0.05 {
            return;
        }
        let instant = count.saturating_sub(self.count) as f64 / dt;
        let keep = match self.started {
            true => (-dt / RATE_MEMORY).exp(),
            false => 0.0,
        };
        self.per_sec = self.per_sec * keep + instant * (1.0 - keep);
        self.started = true;
        self.at = now;
        self.count = count;
    }
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
    }

    fn counts() -> Counts {
        Counts {
            files: (1234, 5678),
            bytes: (1 << 30, 3 << 30),
            complete: true,
            rate: 230.0 * 1024.0 * 1024.0,
            elapsed: Duration::from_secs(7),
            eta: Some(Duration::from_secs(12)),
        }
    }

    #[test]
    fn the_line_fits_any_width() {
        let (wide, room) = counts().fit(120);
        assert_eq!(
            wide,
            "1,234/5,678 files  1.0 GiB/3.0 GiB  230.0 MiB/s  0:07 ETA 0:12"
        );
        assert_eq!(room, 120 - wide.len() - 1);
        for width in 1..120 {
            let (text, room) = counts().fit(width);
            let used = text.chars().count() + 1 + if room >= MIN_BAR { room } else { 0 };
            assert!(used <= width.max(1), "{width}: {text:?} and {room}");
        }
        assert_eq!(counts().fit(40).0, "1,234/5,678 files");
    }

    /// A terminal in memory, of a width the test changes.
    #[derive(Debug, Clone, Default)]
    struct Screen {
        text: Arc<std::sync::Mutex<String>>,
        width: Arc<std::sync::atomic::AtomicU16>,
    }

    impl Screen {
        /// What the last redraw left on the line.
        fn line(&self) -> String {
            let text = self.text.lock().unwrap();
            let last = text.rsplit(['\r', '\n']).find(|l| !l.is_empty());
            last.unwrap_or_default().to_string()
        }
    }

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            self.width.load(Ordering::Relaxed)
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(&format!("{s}\n"))
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.text.lock().unwrap().push_str(s);
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            self.write_str("\r")
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A resize shows at the next redraw: the line fits the new width.
    #[test]
    fn a_redraw_follows_a_resize() {
        let screen = Screen::default();
        screen.width.store(100, Ordering::Relaxed);
        let target = ProgressDrawTarget::term_like(Box::new(screen.clone()));
        let width = Arc::clone(&screen.width);
        let columns = Box::new(move || width.load(Ordering::Relaxed));
        let totals = Arc::new(Totals::default());
        totals.files.store(10, Ordering::Relaxed);
        totals.bytes.store(10 << 20, Ordering::Relaxed);
        totals.complete.store(true, Ordering::Release);
        let mut bar = Bar::drawn_to(target, columns, totals);
        bar.add(Progress {
            files: 4,
            bytes: 4 << 20,
        });
        bar.draw();
        let wide = screen.line();
        assert!(wide.contains("4/10 files  4.0 MiB/10.0 MiB"), "{wide:?}");
        // Our line leaves a column; indicatif may pad to the width, never past it.
        assert_eq!(wide.trim_end().chars().count(), 99, "{wide:?}");
        assert!(wide.chars().count() <= 100, "{wide:?}");
        screen.width.store(30, Ordering::Relaxed);
        bar.drawn = None; // the next tick
        bar.draw();
        let narrow = screen.line();
        assert!(narrow.trim_end().ends_with(" 4/10 files"), "{narrow:?}");
        assert_eq!(narrow.trim_end().chars().count(), 29, "{narrow:?}");
        assert!(narrow.chars().count() <= 30, "{narrow:?}");
    }

    #[test]
    fn the_rate_is_a_recent_one() {
        let start = Instant::now();
        let mut rate = Rate::new(start);
        // 100 MB/s for 20 s, then nothing for 10 s: the rate falls near 0, where the
        // average since the start would still say 67 MB/s.
        for tenth in 1..=200 {
            rate.note(
                start + Duration::from_millis(100 * tenth),
                tenth * 10_000_000,
            );
        }
        assert!((rate.per_sec - 100e6).abs() < 1e6, "{}", rate.per_sec);
        for tenth in 201..=300 {
            rate.note(start + Duration::from_millis(100 * tenth), 2_000_000_000);
        }
        assert!(rate.per_sec < 5e6, "{}", rate.per_sec);
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
