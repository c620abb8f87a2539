//! The command line of `mp copy`: its arguments (clap), the [`Config`] and the top-level copies
//! they make (`plan.rs`), and running it: the bar (`progress.rs`), what is printed as it goes
//! and at the end (`report.rs`), `--dry-run` (`dry_run.rs`), the command that resumes an
//! interrupted copy. The engine knows none of this.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, ValueEnum};

use super::config::{Config, Reflink};
use super::coordinator::{self, Coordinator};
use super::exclude::Exclude;
use super::plan;
use super::progress::{Bar, Totals};
use super::report::{failures_line, json_summary, summary_line, wrap, Places, Terminal};

/// `mp copy`'s arguments.
#[derive(Args, Debug)]
#[command(
    about = "Copy files and folders like `cp -a`, on several processes",
    override_usage = "mp copy [OPTIONS] SOURCE... DEST\n       \
        mp copy [OPTIONS] -t DIR SOURCE...",
    long_about = "Copy files and folders like `cp -a`, on several processes.\n\n\
        Placement follows `cp -r`: with one SOURCE and a DEST that does not exist, DEST \
        becomes the copy; otherwise DEST must be a directory and each SOURCE is copied into \
        it under its own name (two directories of one name are merged, a second file of one \
        name is refused).\n\n\
        Like `cp -a`, the copy keeps contents, modes, owners (where permitted), access and \
        modification times of files and directories, extended attributes, symbolic links \
        (never followed unless -L), hard links, holes in sparse files, FIFOs and devices \
        (as root). A file only ever appears under its name once it is complete. A source is \
        never copied onto itself, nor onto the file a link of it points to (refused, as \
        `cp` refuses \"the same file\"). So `-a`, `-r`, `-R` and `-p` are accepted, as \
        `cp` users type them, and change nothing.\n\n\
        -u/--update copies a file only where the source is newer than what is at its \
        destination (or nothing is), as `cp -u`: a newer file is never replaced. --resume \
        finishes an interrupted copy: it skips files whose size and modification time \
        already match. Both together skip what either skips.",
    after_help = "Exit status: 0 when everything was copied, 1 when something failed (each \
        failure is listed), 130 when interrupted.\n\nExamples:\n  \
        mp copy photos /mnt/backup/          copy the folder into /mnt/backup\n  \
        mp copy --resume photos /mnt/backup/ resume: skip what is already copied\n  \
        mp copy -u photos /mnt/backup/       only what is newer than the backup's\n  \
        mp copy -j 8 --json src dst          eight workers, a JSON summary"
)]
pub struct CopyArgs {
    /// The files or folders to copy (SOURCE...), then where to copy them (DEST); with -t,
    /// only SOURCEs.
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Copy every SOURCE into DIR (as `cp -t`): all the paths given are sources. Not with
    /// -T.
    #[arg(short = 't', long, value_name = "DIR")]
    target_directory: Option<PathBuf>,
    /// Accepted for `cp`'s habits, and does nothing: `mp copy` always copies as `cp -a`
    /// does (recursively, everything preserved).
    #[arg(short = 'a', long, overrides_with = "archive")]
    archive: bool,
    /// Accepted for `cp`'s habits, and does nothing: folders are always copied whole.
    #[arg(
        short = 'r',
        visible_short_alias = 'R',
        long,
        overrides_with = "recursive"
    )]
    recursive: bool,
    /// Accepted for `cp`'s habits, and does nothing: modes, owners and times are always
    /// preserved.
    #[arg(short = 'p', overrides_with = "preserve")]
    preserve: bool,
    /// Worker processes [default: the number of CPUs + 1].
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    jobs: Option<u16>,
    /// Treat DEST as the copy itself, even if it is a directory (merge into it): how an
    /// interrupted `mp copy SOURCE NEW` resumes.
    #[arg(short = 'T', long)]
    no_target_directory: bool,
    /// Follow symbolic links in SOURCE (copy what they point to); names that reach one
    /// file are hard links of one another in the copy, as with `cp -aL`.
    #[arg(short = 'L', long)]
    dereference: bool,
    /// Copy a file only when the source is newer than what is at its destination, or
    /// nothing is (as `cp -u`): never replace a newer file. Directories are merged into.
    #[arg(short, long)]
    update: bool,
    /// Never replace anything at a destination, as `cp -n`: a file (or link, FIFO,
    /// device) whose destination exists is skipped (and counted), whatever is there;
    /// directories are merged into. Exits 0 when only that is skipped, silently (`cp` 9.1's
    /// -n, newer `cp`'s --update=none).
    #[arg(short = 'n', long)]
    no_clobber: bool,
    /// Stay on the file systems of the sources, as `cp -x`: a directory on another one (a
    /// mount point) is made, empty, with its metadata; what is inside it is not copied.
    #[arg(short = 'x', long)]
    one_file_system: bool,
    /// Leave out what PATTERN matches (repeatable): gitignore's globs, matched against each
    /// entry's path below its SOURCE. `*.o` or `node_modules` match a name at any depth;
    /// `/build` only SOURCE/build; `cache/` directories only; `!keep.o` takes back. An
    /// excluded directory is not walked; excluded entries are neither copied nor counted.
    #[arg(long, value_name = "PATTERN")]
    exclude: Vec<String>,
    /// Resume an interrupted copy: skip files whose size and modification time already
    /// match, and remove what a killed copy left in DEST (hidden `.mp-copy-*` entries).
    /// With --update, skip what either skips.
    #[arg(long)]
    resume: bool,
    /// Re-read every copied file and its source and compare checksums.
    #[arg(long)]
    verify: bool,
    /// Copy-on-write clones: where possible (auto), required (always) or never.
    #[arg(long, value_enum, value_name = "WHEN", default_value = "auto")]
    reflink: ReflinkWhen,
    /// Print nothing but errors (no progress bar, no warnings, no summary).
    #[arg(short, long, conflicts_with_all = ["json", "progress"])]
    quiet: bool,
    /// Print a JSON summary (files, bytes, seconds, failures) on stdout; its schema is in
    /// the README.
    #[arg(long)]
    json: bool,
    /// Print `'SOURCE' -> 'DEST'` on stdout for each entry copied, as `cp -v`.
    #[arg(short, long)]
    verbose: bool,
    /// Print what would be copied (as -v does) and copy nothing: nothing is written.
    #[arg(long, conflicts_with = "json")]
    dry_run: bool,
    /// Show the progress bar on stderr even when it is not a terminal (it is shown by
    /// default when stderr is a terminal, unless -v prints to that terminal too).
    #[arg(long)]
    progress: bool,
}

/// `--reflink`'s values: [`Reflink`] as the command line spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ReflinkWhen {
    /// Clone where the file system can, copy elsewhere.
    Auto,
    /// Clone or fail.
    Always,
    /// Always copy the bytes.
    Never,
}

impl From<ReflinkWhen> for Reflink {
    fn from(when: ReflinkWhen) -> Reflink {
        match when {
            ReflinkWhen::Auto => Reflink::Auto,
            ReflinkWhen::Always => Reflink::Always,
            ReflinkWhen::Never => Reflink::Never,
        }
    }
}

/// How `mp copy` ended, as an exit code.
pub enum Status {
    Success,
    Failed,
    Interrupted,
}

impl Status {
    /// The process exit code.
    pub fn code(&self) -> u8 {
        match self {
            Status::Success => 0,
            Status::Failed => 1,
            Status::Interrupted => 130,
        }
    }
}

/// Runs `mp copy`.
pub fn run(args: CopyArgs) -> Status {
    let started = Instant::now();
    let (sources, dest) = match operands(&args) {
        Ok(operands) => operands,
        Err(message) => {
            eprintln!("mp: {message}");
            return Status::Failed;
        }
    };
    if let Err(message) = Exclude::new(&args.exclude) {
        eprintln!("mp: {message}");
        return Status::Failed;
    }
    // By default on a terminal; not where -v's lines go to that terminal too (as `cp -v`).
    let stdout_terminal = std::io::stdout().is_terminal();
    let by_default = std::io::stderr().is_terminal() && !(args.verbose && stdout_terminal);
    let show_bar = !args.quiet && !args.dry_run && (args.progress || by_default);
    let config = Config {
        jobs: args.jobs.map(usize::from).unwrap_or_else(default_jobs),
        reflink: args.reflink.into(),
        dereference: args.dereference,
        update: args.update,
        resume: args.resume,
        no_clobber: args.no_clobber,
        one_file_system: args.one_file_system,
        exclude: args.exclude.clone(),
        verify: args.verify,
        progress: show_bar,
        verbose: args.verbose,
    };
    let rules = plan::Rules {
        dereference: args.dereference,
        no_target_dir: args.no_target_directory,
        no_clobber: args.no_clobber,
    };
    let plan = match plan::plan(sources, dest, rules) {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("mp: {message}");
            return Status::Failed;
        }
    };
    let places = Places::new(plan.copies.iter().map(|c| (c.src.clone(), c.dst.clone())));
    if args.dry_run {
        return super::dry_run::run(&plan, &places, &config);
    }
    super::stop::catch_interrupts();
    rustix::process::umask(rustix::fs::Mode::empty());
    let totals = Arc::new(Totals::default());
    let mut terminal = Terminal {
        places,
        bar: show_bar.then(|| Bar::new(Arc::clone(&totals), args.progress)),
        verbose: args.verbose,
        stdout_terminal,
        quiet: args.quiet,
    };
    let mut coordinator = match Coordinator::new(config.clone(), &mut terminal) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mp: cannot start the workers: {e}");
            return Status::Failed;
        }
    };
    if show_bar {
        let sources = plan.copies.iter().map(|c| c.src.clone()).collect();
        Totals::scan(&totals, sources, &config);
    }
    let resume_hint = resume_command(&args, (sources, dest), plan.dest_is_copy);
    for failure in plan.refused {
        coordinator.fail(failure);
    }
    for warning in plan.warnings {
        coordinator.warn(warning);
    }
    coordinator.skip(plan.skipped);
    for copy in plan.copies {
        coordinator.add(copy);
    }
    let outcome = coordinator.run();
    if let Some(bar) = &mut terminal.bar {
        bar.finish();
    }
    let seconds = started.elapsed().as_secs_f64();
    report(&outcome, seconds, &args, &terminal);
    if outcome.interrupted() {
        eprintln!("mp: interrupted; to resume, run: {resume_hint}");
    } else if outcome.disk_full().is_some() {
        eprintln!("mp: once there is room, to resume, run: {resume_hint}");
    }
    if outcome.interrupted() {
        Status::Interrupted
    } else if outcome.failures.is_empty() && outcome.disk_full().is_none() {
        Status::Success
    } else {
        Status::Failed
    }
}

/// The sources and the destination among the paths given, as `cp` tells them: the last
/// path is DEST, unless `-t DIR` gives it (which must be a directory). Refused with `cp`'s
/// message (and its hint where an operand is missing).
fn operands(args: &CopyArgs) -> Result<(&[PathBuf], &Path), String> {
    let hint = "\nTry 'mp copy --help' for more information.";
    if args.paths.is_empty() {
        return Err(format!("missing file operand{hint}"));
    }
    if args.target_directory.is_some() && args.no_target_directory {
        return Err("cannot combine --target-directory (-t) and --no-target-directory (-T)".into());
    }
    let Some(dir) = &args.target_directory else {
        return match args.paths.split_last() {
            Some((dest, sources)) if !sources.is_empty() => Ok((sources, dest)),
            _ => Err(format!(
                "missing destination file operand after '{}'{hint}",
                args.paths[0].display()
            )),
        };
    };
    match rustix::fs::stat(dir) {
        Ok(st) if rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir() => {
            Ok((&args.paths, dir))
        }
        Ok(_) => Err(format!(
            "target directory '{}': Not a directory",
            dir.display()
        )),
        Err(e) => Err(format!(
            "target directory '{}': {}",
            dir.display(),
            reason(e.into())
        )),
    }
}

/// What went wrong, as `cp` says it: without Rust's "(os error N)".
fn reason(e: std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// The command that resumes this copy: the same one with `--resume`, and `-T` where DEST
/// was the copy itself (given `-T`, or made by this copy: it now exists, and would
/// otherwise receive a second copy inside).
fn resume_command(
    args: &CopyArgs,
    (sources, dest): (&[PathBuf], &Path),
    dest_is_copy: bool,
) -> String {
    let mut words = vec!["mp copy --resume".to_string()];
    if dest_is_copy {
        words.push("-T".into());
    }
    let quote = |p: &Path| {
        let s = p.to_string_lossy();
        if s.chars()
            .all(|c| c.is_alphanumeric() || "/._-+:@".contains(c))
        {
            s.into_owned()
        } else {
            format!("'{}'", s.replace('\'', "'\\''"))
        }
    };
    if let Some(jobs) = args.jobs {
        words.push(format!("-j {jobs}"));
    }
    for (on, flag) in [
        (args.dereference, "-L"),
        (args.update, "--update"),
        (args.no_clobber, "--no-clobber"),
        (args.one_file_system, "--one-file-system"),
        (args.verify, "--verify"),
        (args.verbose, "-v"),
        (args.quiet, "--quiet"),
        (args.json, "--json"),
    ] {
        if on {
            words.push(flag.into());
        }
    }
    for pattern in &args.exclude {
        words.push(format!("--exclude {}", quote(Path::new(pattern))));
    }
    if args.reflink != ReflinkWhen::Auto {
        words.push(format!("--reflink={:?}", args.reflink).to_lowercase());
    }
    words.extend(sources.iter().map(|s| quote(s)));
    words.push(quote(dest));
    words.join(" ")
}

/// Workers by default: one per CPU and one more, since a copy waits on the disk as much as
/// it computes (measured on 2 cores: 3 workers copy small files up to 10% faster than 2).
fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) + 1
}

/// Prints what the end says: the number of failures (each was printed as it happened), why
/// the copy stopped, and the summary (a line on stderr after the bar, JSON with `--json`).
fn report(outcome: &coordinator::Outcome, seconds: f64, args: &CopyArgs, terminal: &Terminal) {
    if let Some(full) = outcome.disk_full() {
        let message = terminal.places.message(full);
        eprintln!("mp: stopped: the destination is full ({message})");
    }
    if !outcome.failures.is_empty() {
        eprintln!("{}", failures_line(outcome.failures.len()));
    }
    if args.json {
        println!("{}", json_summary(outcome, seconds, &terminal.places));
    } else if terminal.bar.is_some() {
        let width = console::Term::stderr()
            .size_checked()
            .map(|(_, w)| usize::from(w));
        eprintln!("{}", wrap(&summary_line(outcome, seconds), width));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `mp copy`'s arguments alone.
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CopyArgs,
    }

    fn resume_of(words: &[&str], dest_is_copy: bool) -> String {
        let words = std::iter::once("copy").chain(words.iter().copied());
        let cli = Cli::try_parse_from(words).expect("valid arguments");
        let operands = operands(&cli.args).expect("a source and a destination");
        resume_command(&cli.args, operands, dest_is_copy)
    }

    #[test]
    fn the_resume_command_resumes_with_the_same_options() {
        assert_eq!(
            resume_of(&["src", "dst"], true),
            "mp copy --resume -T src dst"
        );
        assert_eq!(
            resume_of(&["-u", "-L", "-j", "2", "a b", "dst/"], false),
            "mp copy --resume -j 2 -L --update 'a b' dst/"
        );
        assert_eq!(
            resume_of(&["--resume", "-T", "src", "dst"], true),
            "mp copy --resume -T src dst"
        );
    }
}
