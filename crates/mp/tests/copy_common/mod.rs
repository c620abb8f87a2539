//! Helpers for the `mp copy` tests: scratch directories, running commands with a deadline,
//! building trees (times, extended attributes, FIFOs, sparse files) and comparing two trees
//! entry by entry.

mod fixtures;

#[allow(unused_imports)] // Not every test file uses them.
pub use fixtures::*;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long any one command may run before the test kills it and fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The prefix of the copier's temporary names.
pub const TEMP_PREFIX: &[u8] = b".mp-copy-";

pub const KIB: usize = 1 << 10;
pub const MIB: usize = 1 << 20;

/// Whether the tests run as root (chown, mount, device nodes, other users).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

// ---------------------------------------------------------------------------------------
// Scratch directories
// ---------------------------------------------------------------------------------------

/// A directory of its own for one test, removed (read-only directories included) on drop.
pub struct Scratch {
    pub root: PathBuf,
}

impl Scratch {
    /// `$TMPDIR/mp-copy-test-NAME-PID`, empty.
    pub fn new(name: &str) -> Scratch {
        let root = std::env::temp_dir().join(format!("mp-copy-test-{name}-{}", std::process::id()));
        if fs::symlink_metadata(&root).is_ok() {
            remove_tree(&root);
        }
        fs::create_dir_all(&root).expect("create the scratch directory");
        Scratch { root }
    }

    /// A path inside the scratch directory.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        remove_tree(&self.root);
    }
}

/// Removes a tree, first making every directory in it writable.
pub fn remove_tree(root: &Path) {
    make_dirs_writable(root);
    if let Err(e) = fs::remove_dir_all(root) {
        eprintln!("cannot remove {}: {e}", root.display());
    }
}

fn make_dirs_writable(dir: &Path) {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        _ => return,
    }
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            make_dirs_writable(&entry.path());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------------------

/// How a finished command ended, and what it printed.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The exit code (`None` if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Asserts the exit code.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Output {
        assert_eq!(self.code(), Some(code), "unexpected exit status: {self}");
        self
    }

    /// Asserts a success that printed nothing on stderr.
    #[track_caller]
    pub fn expect_clean_success(&self) -> &Output {
        self.expect_code(0);
        assert_eq!(self.stderr, "", "stderr should be empty: {self}");
        self
    }

    /// stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// A started command: its process group is killed and the process reaped on drop if the test
/// has not waited for it.
pub struct Running {
    child: Child,
    reaped: bool,
    stdout: mpsc::Receiver<Vec<u8>>,
    stderr: mpsc::Receiver<Vec<u8>>,
    what: String,
}

impl Running {
    /// Starts `cmd` in a process group of its own, stdin empty, stdout and stderr captured.
    pub fn start(cmd: Command) -> Running {
        let what = format!("{cmd:?}");
        Running::try_start(cmd).unwrap_or_else(|e| panic!("cannot start {what}: {e}"))
    }

    /// [`Running::start`], or why `cmd` could not be started (a program not installed).
    pub fn try_start(mut cmd: Command) -> io::Result<Running> {
        let what = format!("{cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn()?;
        let stdout = read_in_background(child.stdout.take().expect("piped stdout"));
        let stderr = read_in_background(child.stderr.take().expect("piped stderr"));
        Ok(Running {
            child,
            reaped: false,
            stdout,
            stderr,
            what,
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Whether the process has ended (it is then reaped), without waiting.
    pub fn has_exited(&mut self) -> bool {
        let done = self.child.try_wait().expect("try_wait").is_some();
        self.reaped |= done;
        done
    }

    /// Sends `signal` to the process (not to its group).
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill has no memory-safety preconditions; the child is not reaped yet.
        let r = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(r, 0, "kill: {}", io::Error::last_os_error());
    }

    /// Waits at most `limit` for the process to end (polling), then for its output to close.
    /// Past the limit the process group is killed and the test fails.
    pub fn wait(mut self, limit: Duration) -> Output {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.reaped = true;
                break status;
            }
            if start.elapsed() > limit {
                self.kill_group();
                panic!("{} did not finish within {limit:?}", self.what);
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // The pipes close once every process holding them has exited: a worker that outlived
        // the command would keep them open.
        let grace = Duration::from_secs(10);
        let (stdout, stderr) = match (
            self.stdout.recv_timeout(grace),
            self.stderr.recv_timeout(grace),
        ) {
            (Ok(out), Ok(err)) => (out, err),
            _ => {
                self.kill_group();
                panic!(
                    "{}: its output stayed open {grace:?} after it exited \
                     (a process it started outlived it)",
                    self.what
                );
            }
        };
        Output {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    fn kill_group(&mut self) {
        // SAFETY: killpg has no memory-safety preconditions; the group is the child's own.
        unsafe {
            libc::killpg(self.pid(), libc::SIGKILL);
        }
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.reaped = true;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill_group();
        }
    }
}

fn read_in_background(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// Runs a command to completion (within [`DEADLINE`]).
pub fn run(cmd: Command) -> Output {
    Running::start(cmd).wait(DEADLINE)
}

/// Runs a command that may not be installed (`mkfs.xfs`, `filefrag`) to completion, within
/// [`DEADLINE`] as [`run`] does (past it the test fails, it does not hang): `None` when it
/// cannot be started.
pub fn run_if_installed(cmd: Command) -> Option<Output> {
    Some(Running::try_start(cmd).ok()?.wait(DEADLINE))
}

/// The `mp` binary under test.
pub fn mp_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mp"))
}

/// A command running `mp` with `args`.
pub fn mp_command(args: &[&dyn AsRef<OsStr>]) -> Command {
    let mut cmd = Command::new(mp_bin());
    cmd.args(args.iter().map(|a| a.as_ref()));
    cmd
}

/// Runs the shell command `line` in `dir` on a pseudo-terminal (util-linux `script`, which
/// shows on its stdout what the command prints on stdout and stderr alike); `None`, the
/// test skipped, where there is no `script`.
pub fn in_terminal(line: &str, dir: &Path) -> Option<Output> {
    if !Path::new("/usr/bin/script").exists() {
        eprintln!("skipped: util-linux `script` is needed for a pseudo-terminal");
        return None;
    }
    let mut cmd = Command::new("/usr/bin/script");
    cmd.args(["-qec", line, "/dev/null"]).current_dir(dir);
    Some(run(cmd))
}

/// Runs `mp` with `args` to completion.
pub fn mp(args: &[&dyn AsRef<OsStr>]) -> Output {
    run(mp_command(args))
}

/// Runs `cp -a SRC DST`, the reference copy.
pub fn cp_a(extra: &[&str], src: &Path, dst: &Path) -> Output {
    let mut cmd = Command::new("cp");
    cmd.arg("-a").args(extra).arg(src).arg(dst);
    let out = run(cmd);
    out.expect_code(0);
    out
}

/// Splits a shell command line as printed by `mp` (words, single quotes, `'\''`).
pub fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    w.push(q);
                }
            }
            '\\' => {
                if let Some(next) = chars.next() {
                    word.get_or_insert_with(String::new).push(next);
                }
            }
            c if c.is_whitespace() => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// Polls `ready` every few milliseconds until it holds or `limit` passes.
pub fn poll_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if ready() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

// ---------------------------------------------------------------------------------------
// Building trees
// ---------------------------------------------------------------------------------------

/// `len` pseudo-random bytes, the same for the same `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes a file, creating its parent directories.
pub fn write(path: &Path, contents: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create parent directories");
    }
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Creates a sparse file of `size` bytes holding `data` (offset, bytes) and holes elsewhere.
pub fn write_sparse(path: &Path, size: u64, data: &[(u64, Vec<u8>)]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create parent directories");
    }
    let file = fs::File::create(path).expect("create a sparse file");
    file.set_len(size).expect("set_len");
    for (offset, bytes) in data {
        file.write_all_at(bytes, *offset).expect("write_all_at");
    }
}

/// Sets permission bits (setuid, setgid and sticky included).
pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("no NUL in paths")
}

/// Creates a FIFO.
pub fn mkfifo(path: &Path, mode: u32) {
    // SAFETY: the path is a valid C string.
    let r = unsafe { libc::mkfifo(c_path(path).as_ptr(), mode as libc::mode_t) };
    assert_eq!(r, 0, "mkfifo: {}", io::Error::last_os_error());
}

/// Creates a character device (root only; may be refused in containers).
pub fn mknod_char(path: &Path, major: u32, minor: u32) -> io::Result<()> {
    let dev = libc::makedev(major, minor);
    // SAFETY: the path is a valid C string.
    let r = unsafe { libc::mknod(c_path(path).as_ptr(), libc::S_IFCHR | 0o644, dev) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets access and modification times (seconds, nanoseconds) without following links.
pub fn set_times(path: &Path, atime: Time, mtime: Time) {
    let ts = |(sec, nsec): Time| libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec as _,
    };
    let times = [ts(atime), ts(mtime)];
    // SAFETY: valid C string and a two-element timespec array.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c_path(path).as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(
        r,
        0,
        "utimensat {}: {}",
        path.display(),
        io::Error::last_os_error()
    );
}

/// Sets an extended attribute (not following links).
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let name = CString::new(name).expect("no NUL");
    // SAFETY: valid C strings and a buffer of the given length.
    let r = unsafe {
        libc::lsetxattr(
            c_path(path).as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Every extended attribute of `path` (not following links), by name.
pub fn xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let cpath = c_path(path);
    let mut names = vec![0u8; 64 * KIB];
    // SAFETY: valid C string and buffer.
    let len = unsafe { libc::llistxattr(cpath.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    let mut all = BTreeMap::new();
    if len <= 0 {
        return all;
    }
    for name in names[..len as usize].split(|&b| b == 0) {
        if name.is_empty() {
            continue;
        }
        let cname = CString::new(name).expect("no NUL");
        let mut value = vec![0u8; 64 * KIB];
        // SAFETY: valid C strings and buffer.
        let n = unsafe {
            libc::lgetxattr(
                cpath.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if n >= 0 {
            value.truncate(n as usize);
            all.insert(name.to_vec(), value);
        }
    }
    all
}

/// A time: seconds and nanoseconds.
pub type Time = (i64, i64);

/// The access and modification times given to each entry of a tree.
pub type Stamps = BTreeMap<PathBuf, (Time, Time)>;

/// Times to give entries: access times a day or two in the future (so that `relatime` never
/// updates them when the tree is read) and modification times far in the past; each entry
/// gets different values.
pub fn stamp_times(root: &Path) -> Stamps {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let tree = snapshot(root);
    let mut stamped = BTreeMap::new();
    // Names of one inode share its times.
    let mut by_inode = HashMap::new();
    // Reverse order: an entry before its parent, whose times it would otherwise change.
    for (i, (rel, node)) in tree.iter().rev().enumerate() {
        let i = i as i64;
        let times = *by_inode.entry(node.ino).or_insert_with(|| {
            let atime = (now + 2 * 86_400 + i, 100_000_000 + i * 1_001);
            let mtime = (1_000_000_000 + i * 3_600, 987_654_321 - i * 7);
            set_times(&join(root, rel), atime, mtime);
            (atime, mtime)
        });
        stamped.insert(rel.clone(), times);
    }
    stamped
}

/// The path of `rel` under `root` (`root` itself for the empty path).
pub fn join(root: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

// ---------------------------------------------------------------------------------------
// Looking at trees
// ---------------------------------------------------------------------------------------

/// The kind of a directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

/// What `lstat` (and `readlink`, `llistxattr`) says of one entry.
#[derive(Clone, Debug)]
pub struct Node {
    pub kind: Kind,
    /// `st_mode & 0o7777`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u64,
    pub ino: u64,
    pub rdev: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
    pub atime: Time,
    pub mtime: Time,
    pub target: Option<PathBuf>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Node {
    /// Whether the file has fewer blocks than its size needs (it has holes).
    pub fn is_sparse(&self) -> bool {
        self.kind == Kind::File && self.blocks * 512 < self.size
    }
}

/// Every entry under a root, by path relative to it (the root itself is the empty path).
pub type Tree = BTreeMap<PathBuf, Node>;

/// Stats every entry of the tree at `root`; each directory is stat'ed before it is read, so
/// the access times seen are those before this walk.
pub fn snapshot(root: &Path) -> Tree {
    let mut tree = Tree::new();
    walk(root, Path::new(""), &mut tree);
    tree
}

fn walk(root: &Path, rel: &Path, tree: &mut Tree) {
    let path = join(root, rel);
    let meta =
        fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_socket() {
        Kind::Socket
    } else if ft.is_char_device() {
        Kind::CharDevice
    } else if ft.is_block_device() {
        Kind::BlockDevice
    } else {
        Kind::File
    };
    let node = Node {
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        size: meta.size(),
        nlink: meta.nlink(),
        ino: meta.ino(),
        rdev: meta.rdev(),
        blocks: meta.blocks(),
        atime: (meta.atime(), meta.atime_nsec()),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        target: (kind == Kind::Symlink).then(|| fs::read_link(&path).expect("readlink")),
        xattrs: xattrs(&path),
    };
    tree.insert(rel.to_path_buf(), node);
    if kind == Kind::Dir {
        let mut names: Vec<OsString> = fs::read_dir(&path)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", path.display()))
            .map(|e| e.expect("a directory entry").file_name())
            .collect();
        names.sort();
        for name in names {
            walk(root, &rel.join(name), tree);
        }
    }
}

/// Whether two files hold the same bytes.
pub fn same_contents(a: &Path, b: &Path) -> bool {
    let open = |p: &Path| fs::File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let (mut fa, mut fb) = (open(a), open(b));
    let (mut ba, mut bb) = (vec![0u8; MIB], vec![0u8; MIB]);
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).expect("read") {
            0 => break,
            k => n += k,
        }
    }
    n
}

/// For every inode with several names in the tree, those names.
fn link_groups(tree: &Tree) -> HashMap<u64, Vec<PathBuf>> {
    let mut groups: HashMap<u64, Vec<PathBuf>> = HashMap::new();
    for (path, node) in tree {
        if node.kind != Kind::Dir && node.nlink > 1 {
            groups.entry(node.ino).or_default().push(path.clone());
        }
    }
    groups
}

fn group_of(groups: &HashMap<u64, Vec<PathBuf>>, path: &Path, node: &Node) -> Vec<PathBuf> {
    match groups.get(&node.ino) {
        Some(group) if node.kind != Kind::Dir && node.nlink > 1 => group.clone(),
        _ => vec![path.to_path_buf()],
    }
}

/// How many more 512-byte blocks a copy of a sparse file may have than the reference.
pub const SPARSE_SLACK_BLOCKS: u64 = 256;

/// Every difference between the trees at `a` (the reference) and `b`: entries, kinds,
/// modes, owners, modification times, sizes, contents, link counts and hard-link groups,
/// symbolic link targets, device numbers, extended attributes, and sparse files growing.
pub fn differences(a: &Path, b: &Path) -> Vec<String> {
    let (ta, tb) = (snapshot(a), snapshot(b));
    let (ga, gb) = (link_groups(&ta), link_groups(&tb));
    let mut diffs = Vec::new();
    let paths: BTreeSet<&PathBuf> = ta.keys().chain(tb.keys()).collect();
    for path in paths {
        let shown = format!("'{}'", path.display());
        let (x, y) = match (ta.get(path), tb.get(path)) {
            (Some(x), Some(y)) => (x, y),
            (Some(_), None) => {
                diffs.push(format!("{shown}: missing from {}", b.display()));
                continue;
            }
            _ => {
                diffs.push(format!("{shown}: only in {}", b.display()));
                continue;
            }
        };
        let mut check = |what: &str, l: String, r: String| {
            if l != r {
                diffs.push(format!("{shown}: {what} {l} != {r}"));
            }
        };
        check("kind", format!("{:?}", x.kind), format!("{:?}", y.kind));
        if x.kind != y.kind {
            continue;
        }
        check("mode", format!("{:o}", x.mode), format!("{:o}", y.mode));
        check(
            "owner",
            format!("{}:{}", x.uid, x.gid),
            format!("{}:{}", y.uid, y.gid),
        );
        check("mtime", format!("{:?}", x.mtime), format!("{:?}", y.mtime));
        check(
            "xattrs",
            format!("{:?}", x.xattrs),
            format!("{:?}", y.xattrs),
        );
        check("nlink", x.nlink.to_string(), y.nlink.to_string());
        match x.kind {
            Kind::File => {
                check(
                    "hard-link group",
                    format!("{:?}", group_of(&ga, path, x)),
                    format!("{:?}", group_of(&gb, path, y)),
                );
                check("size", x.size.to_string(), y.size.to_string());
                if x.size == y.size && !same_contents(&join(a, path), &join(b, path)) {
                    diffs.push(format!("{shown}: contents differ"));
                }
                if x.is_sparse() && y.blocks > x.blocks + SPARSE_SLACK_BLOCKS {
                    diffs.push(format!(
                        "{shown}: sparse file grew: {} blocks, the reference has {}",
                        y.blocks, x.blocks
                    ));
                }
            }
            Kind::Symlink => check(
                "link target",
                format!("{:?}", x.target),
                format!("{:?}", y.target),
            ),
            Kind::CharDevice | Kind::BlockDevice => {
                check("rdev", x.rdev.to_string(), y.rdev.to_string())
            }
            Kind::Dir | Kind::Fifo | Kind::Socket => {}
        }
    }
    diffs
}

/// Asserts that the tree at `b` is a faithful copy of the one at `a`.
#[track_caller]
pub fn assert_same_tree(a: &Path, b: &Path) {
    let diffs = differences(a, b);
    assert!(
        diffs.is_empty(),
        "{} differs from {} in {} ways:\n{}",
        b.display(),
        a.display(),
        diffs.len(),
        diffs
            .iter()
            .take(40)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Entries whose name starts with the copier's temporary prefix.
pub fn temp_files(root: &Path) -> Vec<PathBuf> {
    snapshot(root)
        .into_keys()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.as_bytes().starts_with(TEMP_PREFIX))
        })
        .collect()
}

/// Asserts that no temporary file is left under `root`.
#[track_caller]
pub fn assert_no_temp_files(root: &Path) {
    let left = temp_files(root);
    assert!(left.is_empty(), "temporary files left behind: {left:?}");
}

/// Asserts that every regular file present under `dst` is a complete copy of the file of the
/// same path under `src` (a stopped copy may lack files, never hold a partial one).
/// Returns how many files were present.
#[track_caller]
pub fn assert_present_files_complete(src: &Path, dst: &Path) -> usize {
    let (ts, td) = (snapshot(src), snapshot(dst));
    let mut present = 0;
    for (path, node) in &td {
        if node.kind != Kind::File {
            continue;
        }
        let source = ts
            .get(path)
            .unwrap_or_else(|| panic!("'{}' has no source", path.display()));
        assert_eq!(source.kind, Kind::File, "'{}'", path.display());
        assert_eq!(
            node.size,
            source.size,
            "'{}' is truncated or overlong",
            path.display()
        );
        assert!(
            same_contents(&join(src, path), &join(dst, path)),
            "'{}' differs from its source",
            path.display()
        );
        present += 1;
    }
    present
}

/// Whether the tree holds at least one regular file (an unreadable directory counts as
/// none yet).
pub fn has_a_file(root: &Path) -> bool {
    fn any(dir: &Path) -> bool {
        let Ok(entries) = fs::read_dir(dir) else {
            return false;
        };
        entries.flatten().any(|e| match e.file_type() {
            Ok(t) if t.is_file() => true,
            Ok(t) if t.is_dir() => any(&e.path()),
            _ => false,
        })
    }
    any(root)
}

/// What `mp copy --json` should count for a first copy of the tree at `root`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub files: u64,
    pub bytes: u64,
    pub directories: u64,
    pub symlinks: u64,
    pub specials: u64,
    pub hard_links: u64,
}

impl Counts {
    /// The counts of a tree: one file per inode, the other names as hard links.
    pub fn of(root: &Path) -> Counts {
        let mut counts = Counts::default();
        let mut seen = BTreeSet::new();
        for node in snapshot(root).values() {
            match node.kind {
                Kind::Dir => counts.directories += 1,
                Kind::Symlink => counts.symlinks += 1,
                Kind::File if node.nlink > 1 && !seen.insert(node.ino) => counts.hard_links += 1,
                Kind::File => {
                    counts.files += 1;
                    counts.bytes += node.size;
                }
                _ => counts.specials += 1,
            }
        }
        counts
    }

    /// The counts a `--json` summary reports.
    #[track_caller]
    pub fn from_json(summary: &serde_json::Value) -> Counts {
        let n = |key: &str| {
            summary[key]
                .as_u64()
                .unwrap_or_else(|| panic!("'{key}' is not a count: {summary}"))
        };
        Counts {
            files: n("files"),
            bytes: n("bytes"),
            directories: n("directories"),
            symlinks: n("symlinks"),
            specials: n("specials"),
            hard_links: n("hard_links"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Side by side with `cp -a`
// ---------------------------------------------------------------------------------------

/// `cp -a` and `mp copy` run on two identical worlds (a directory holding the sources and
/// the destinations), each from inside its world so that both name the paths alike.
pub struct SideBySide {
    pub cp_world: PathBuf,
    pub mp_world: PathBuf,
    pub cp: Output,
    pub mp: Output,
}

/// Builds a world in `root/cp` with the shell script `setup` (run there, `set -e`), copies
/// it to `root/mp` with `cp -a` (times, links and hard links kept), then runs
/// `cp -a CP_ARGS` in the first and `mp copy MP_ARGS` in the second.
pub fn side_by_side(root: &Path, setup: &str, cp_args: &[&str], mp_args: &[&str]) -> SideBySide {
    side_by_side_in(root, setup, "", cp_args, mp_args)
}

/// [`side_by_side`], with both commands run in the directory `cwd` of their world.
pub fn side_by_side_in(
    root: &Path,
    setup: &str,
    cwd: &str,
    cp_args: &[&str],
    mp_args: &[&str],
) -> SideBySide {
    let (cp_world, mp_world) = build_worlds(root, setup);
    let mut cp = Command::new("cp");
    cp.arg("-a").args(cp_args).current_dir(cp_world.join(cwd));
    let mut mp = mp_command(&[&"copy"]);
    mp.args(mp_args).current_dir(mp_world.join(cwd));
    SideBySide {
        cp: run(cp),
        mp: run(mp),
        cp_world,
        mp_world,
    }
}

/// Builds a world in `root/cp` with the shell script `setup` (run there, `set -e`) and
/// copies it to `root/mp` with `cp -a`; gives both.
pub fn build_worlds(root: &Path, setup: &str) -> (PathBuf, PathBuf) {
    let (cp_world, mp_world) = (root.join("cp"), root.join("mp"));
    fs::create_dir_all(&cp_world).expect("create the world");
    let mut build = Command::new("sh");
    build
        .arg("-c")
        .arg(format!("set -e\n{setup}"))
        .current_dir(&cp_world);
    run(build).expect_clean_success();
    let mut clone = Command::new("cp");
    clone.arg("-a").arg(&cp_world).arg(&mp_world);
    run(clone).expect_clean_success();
    (cp_world, mp_world)
}

impl SideBySide {
    /// Asserts that `mp copy` ended as `cp -a` did: the same exit code and messages
    /// ([`SideBySide::assert_same_messages`]) and the same worlds
    /// ([`SideBySide::assert_same_worlds`], `loose` as it takes them).
    #[track_caller]
    pub fn assert_same_outcome(&self, loose: &[&str]) {
        self.assert_same_messages();
        self.assert_same_worlds(loose);
    }

    /// Asserts that `mp copy` ended as `cp -a` did: the same exit code, each of `cp`'s
    /// messages among `mp`'s failures (`mp copy: PATH: MESSAGE`, one each, and no other).
    #[track_caller]
    pub fn assert_same_messages(&self) {
        let (cp, mp) = (&self.cp, &self.mp);
        let both = format!("cp -a:\n{cp}\nmp copy:\n{mp}");
        assert_eq!(cp.code(), mp.code(), "exit codes differ:\n{both}");
        let expected: Vec<&str> = cp
            .stderr
            .lines()
            .map(|l| l.strip_prefix("cp: ").unwrap_or(l))
            .collect();
        let failures: Vec<&str> = mp
            .stderr
            .lines()
            .filter(|l| !l.ends_with(" failure") && !l.ends_with(" failures"))
            .collect();
        assert_eq!(
            expected.len(),
            failures.len(),
            "not the same failures:\n{both}"
        );
        for message in &expected {
            let found = failures
                .iter()
                .filter(|l| l.ends_with(&format!(": {message}")));
            assert_eq!(found.count(), 1, "'{message}' not reported once:\n{both}");
        }
    }

    /// Asserts that the two worlds are the same, every entry compared (sources included:
    /// nothing lost). The directories `loose` (relative to the world) were written into and
    /// hold no copy's times: theirs are set alike first.
    #[track_caller]
    pub fn assert_same_worlds(&self, loose: &[&str]) {
        for dir in loose {
            for world in [&self.cp_world, &self.mp_world] {
                let path = join(world, Path::new(dir));
                if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                    set_times(&path, (1_000_000_000, 0), (1_000_000_000, 0));
                }
            }
        }
        assert_same_tree(&self.cp_world, &self.mp_world);
    }
}
