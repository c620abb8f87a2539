#!/usr/bin/env bash
# bench/copy.sh: benchmark `mp copy` against other folder copiers (see shared BENCH_PLAN,
# "Copier"). Warm-cache wall times by hyperfine, one more run timed with `sync`, a fidelity
# check of every tool's copy against `cp -a`'s, and the physical ceilings of this disk.
#
# Usage:
#   bench/copy.sh [--install-only] [small|large|mixed ...]     (default: all three datasets)
#
# What it does:
#   1. installs the peers if missing: hyperfine and rsync from Debian (apt-get, as root or
#      with sudo); xcp, fcp and cpz from crates.io with `cargo install --root bench/.peers`
#      (a crate that fails to build is skipped with a warning, and not retried on later
#      runs unless RETRY_PEERS=1; logs in bench/.peers/logs). cp -a and tar | tar are
#      coreutils/tar; the seeds' Python Pool copier is bench/python/copy_pool.py.
#   2. `mp`: $MP if set, else `cargo build --release -p multiprocess-cli` and target/release/mp. It is
#      skipped (with a warning) when `$MP copy --help` fails.
#   3. generates the datasets under $MP_BENCH_DIR/data, only if missing (or made with other
#      parameters): seeded, incompressible (Python's Mersenne Twister, seeded per folder/file):
#        small  SMALL_FILES files of 1-16 KiB in a 10x10x10 tree (1000 leaf folders)
#        large  LARGE_FILES files of LARGE_MIB MiB
#        mixed  real trees of this machine copied with cp -a (the cargo registry sources,
#               /usr/include, /usr/share/doc, /usr/share/man, /usr/share/zoneinfo, git's
#               libexec folder (hard links), the Rust toolchain's lib folder), special files
#               removed, plus a small seeded "extras" tree: hard-link groups, a sparse
#               file, odd names (spaces, newline, non-UTF-8 bytes), modes 0700/2775/1777/
#               4755/0600, ns mtimes on files, folders and symlinks, dangling and folder
#               symlinks, an xattr, a deep chain of folders. No FIFOs, sockets or devices.
#   4. per dataset: warms the cache (tar of the source into a pipe), makes the cp -a
#      reference copy (removed afterwards unless KEEP_REF=1), then for every tool:
#      hyperfine --runs RUNS with --prepare "mv DST trash/; sync", one more run of "TOOL && sync"
#      (the "with sync" column), and tree_compare.py of that last copy against the reference.
#   5. ceilings, cheaply, on the same file system: for small, creating the same tree of
#      SMALL_FILES empty files with 2 processes; for large, writing the same number of MiB
#      with one dd and with two in parallel (no sync; the faster is the ceiling), dd
#      reading it back (warm), and dd writing with fsync. fio is not used.
#   6. prints a markdown summary (tool | small | large | mixed | fidelity: median seconds,
#      files/s or MiB/s, x the fastest), a table per dataset (runs, min-max, MiB/s, files/s,
#      x fastest, % of the ceiling, with sync, fidelity) and the ceilings. Everything is
#      kept in $MP_BENCH_DIR/results/<date>/ (hyperfine JSON, verdicts, report.md).
#
# Environment (defaults in brackets):
#   MP_BENCH_DIR  work folder: datasets, reference copies, destinations, results
#                 [/tmp/mp-copy-bench]; must be on the file system you mean to measure
#   RUNS          hyperfine runs per tool and dataset [3]
#   SLOW_TOOLS    tools run only SLOW_RUNS times on small and mixed ["rsync pypool"]
#   SLOW_RUNS     [1];  SKIP_SLOW=1 leaves the SLOW_TOOLS out altogether
#   TOOLS         which tools, of: cp rsync xcp fcp cpz tar pypool mp [all]
#   MP            the mp binary (no build when set);  MP_JOBS  its -j [3]
#   SETTLE        seconds to wait after deleting a dataset's copies [65] (see aside())
#   FRESH_FS      1: each tool copies inside a fresh loop-mounted ext4 image (source copied
#                 in first) [1 as root]; 0: on $MP_BENCH_DIR's own file system
#   PYTHON        the Python for the helpers and the seeds' copier [python3]
#   PY_JOBS       the Python copier's pool size [2]
#   SMALL_FILES [100000]  LARGE_FILES [8]  LARGE_MIB [128]  SEED [1]
#   MIXED_SRCS    space-separated folders for mixed [the list above, those that exist]
#   MIXED_EXTRAS  add the extras tree to mixed [1]
#   TOOL_TIMEOUT  seconds before one run of a tool is killed, 0 for none [3600]
#   KEEP_OUT=1    keep each tool's last copy under $MP_BENCH_DIR/out (needs room for all)
#   KEEP_REF=1    keep the cp -a reference copies for the next run (else made each run)
#   RETRY_PEERS=1 try again to install crates that failed before
#
# Disk: the datasets stay in $MP_BENCH_DIR/data (about 1.2 + 1 + 1 GiB at the defaults);
# while a dataset is measured, its reference copy and one tool's copy take twice its size
# more. The script checks the free space first and stops if it is short.
#
# Examples:
#   bench/copy.sh                                  # everything, as in BENCH_PLAN (long)
#   RUNS=5 SKIP_SLOW=1 bench/copy.sh small         # small only, no rsync / Python
#   MP=target/release/mp SMALL_FILES=2000 LARGE_FILES=2 LARGE_MIB=16 \
#     MIXED_SRCS="/usr/share/zoneinfo" MP_BENCH_DIR=/tmp/cb bench/copy.sh   # a quick trial
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
PEERS=$BENCH/.peers
WORK=${MP_BENCH_DIR:-/tmp/mp-copy-bench}
RUNS=${RUNS:-3}
SLOW_TOOLS=${SLOW_TOOLS:-rsync pypool}
SLOW_RUNS=${SLOW_RUNS:-1}
SKIP_SLOW=${SKIP_SLOW:-0}
TOOLS=${TOOLS:-cp rsync xcp fcp cpz tar pypool mp}
MP_JOBS=${MP_JOBS:-3}
SETTLE=${SETTLE:-65}
# A fresh ext4 image (loop-mounted, no journal like the disk here) per tool and dataset: every
# tool starts on the same clean file system. 1 by default where we can mount (root).
if [ -z "${FRESH_FS:-}" ]; then
    if [ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null; then FRESH_FS=1; else FRESH_FS=0; fi
fi
PY_JOBS=${PY_JOBS:-2}
SMALL_FILES=${SMALL_FILES:-100000}
LARGE_FILES=${LARGE_FILES:-8}
LARGE_MIB=${LARGE_MIB:-128}
SEED=${SEED:-1}
MIXED_EXTRAS=${MIXED_EXTRAS:-1}
TOOL_TIMEOUT=${TOOL_TIMEOUT:-3600}
KEEP_OUT=${KEEP_OUT:-0}
KEEP_REF=${KEEP_REF:-0}
RETRY_PEERS=${RETRY_PEERS:-0}
PYTHON=${PYTHON:-python3}

log() { printf '\n==> [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*" >&2; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
q() { printf '%q' "$1"; }
has_word() { [[ " $1 " == *" $2 "* ]]; }

install_only=0
datasets=()
for arg in "$@"; do
    case $arg in
        small|large|mixed) has_word "${datasets[*]:-}" "$arg" || datasets+=("$arg") ;;
        --install-only) install_only=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $arg (expected small, large, mixed, --install-only)" ;;
    esac
done
((${#datasets[@]})) || datasets=(small large mixed)
for t in $TOOLS; do
    has_word "cp rsync xcp fcp cpz tar pypool mp" "$t" || die "unknown tool in TOOLS: $t"
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number"
# the interpreter itself, not a pyenv shim (a shim costs ~0.2 s per start, in the timings too)
PYTHON=$("$PYTHON" -c 'import sys; print(sys.executable)') || die "python3 is needed"

# ---------------------------------------------------------------- 1. peers
install_peers() {
    local missing=() c sudo=
    command -v hyperfine >/dev/null || missing+=(hyperfine)
    if has_word "$TOOLS" rsync && ! command -v rsync >/dev/null; then missing+=(rsync); fi
    if ((${#missing[@]})); then
        [ "$(id -u)" = 0 ] || sudo=sudo
        log "apt-get install ${missing[*]}"
        $sudo apt-get update -qq || warn "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" || warn "apt-get install ${missing[*]} failed"
    fi
    command -v hyperfine >/dev/null || die "hyperfine is needed and could not be installed"

    mkdir -p "$PEERS/logs"
    for c in xcp fcp cpz; do
        has_word "$TOOLS" "$c" || continue
        [ -x "$PEERS/bin/$c" ] && continue
        if [ -e "$PEERS/logs/$c.failed" ] && [ "$RETRY_PEERS" != 1 ]; then
            warn "$c: its install failed before (bench/.peers/logs/$c.log); skipped (RETRY_PEERS=1 retries)"
            continue
        fi
        command -v cargo >/dev/null || { warn "no cargo: $c skipped"; continue; }
        log "cargo install $c into bench/.peers (log: bench/.peers/logs/$c.log)"
        # Outside the workspace, with a target folder of its own; --locked first (the
        # crate's own Cargo.lock), then without, in case that lock no longer builds.
        if (cd / && cargo install --locked --root "$PEERS" --target-dir "$PEERS/build" "$c") \
                >"$PEERS/logs/$c.log" 2>&1 ||
           (cd / && cargo install --root "$PEERS" --target-dir "$PEERS/build" "$c") \
                >>"$PEERS/logs/$c.log" 2>&1; then
            rm -f "$PEERS/logs/$c.failed"
        else
            touch "$PEERS/logs/$c.failed"
            warn "cargo install $c failed; $c is skipped. Last lines of its log:"
            grep -E '^error' "$PEERS/logs/$c.log" | tail -n 5 >&2 || tail -n 5 "$PEERS/logs/$c.log" >&2
        fi
    done
    rm -rf "$PEERS/build"
}
install_peers
((install_only)) && { log "peers installed in $PEERS"; exit 0; }

tool_bin() { # the peer's binary: bench/.peers/bin first, then PATH; empty if none
    if [ -x "$PEERS/bin/$1" ]; then echo "$PEERS/bin/$1"; else command -v "$1" || true; fi
}

# ---------------------------------------------------------------- 2. mp
if has_word "$TOOLS" mp; then
    if [ -z "${MP:-}" ]; then
        log "cargo build --release -p multiprocess-cli"
        (cd "$ROOT" && cargo build --release -p multiprocess-cli) || warn "cargo build failed"
        MP=$ROOT/target/release/mp
    fi
    [[ $MP == */* ]] && MP=$(cd "$(dirname "$MP")" 2>/dev/null && pwd)/$(basename "$MP") || true
    if ! "$MP" copy --help >/dev/null 2>&1; then
        warn "'$MP copy --help' fails: mp is skipped"
        MP=
    fi
fi

# the tools that will run, in the order of the tables
declare -A LABEL BIN
LABEL=([cp]="cp -a" [rsync]="rsync -a" [xcp]="xcp -r" [fcp]="fcp" [cpz]="cpz"
       [tar]="tar | tar" [pypool]="python Pool($PY_JOBS) (seeds)" [mp]="mp copy -j $MP_JOBS")
tools=()
for t in $TOOLS; do
    case $t in
        cp) BIN[cp]=$(command -v cp) ;;
        tar) BIN[tar]=$(command -v tar) ;;
        pypool) BIN[pypool]=$PYTHON ;;
        mp) BIN[mp]=${MP:-} ;;
        *) BIN[$t]=$(tool_bin "$t") ;;
    esac
    if [ -z "${BIN[$t]}" ]; then warn "${LABEL[$t]}: not available, skipped"; continue; fi
    if [ "$SKIP_SLOW" = 1 ] && has_word "$SLOW_TOOLS" "$t"; then
        warn "${LABEL[$t]}: skipped (SKIP_SLOW=1)"; continue
    fi
    tools+=("$t")
done
((${#tools[@]})) || die "no tool to run"

# The shell command that copies $2 to $3 (which must not exist) with tool $1.
tool_cmd() {
    local t=$1 s d to=
    s=$(q "$2"); d=$(q "$3")
    [ "$TOOL_TIMEOUT" != 0 ] && to="timeout -k 10 $TOOL_TIMEOUT "
    case $t in
        cp) echo "${to}cp -a $s $d" ;;
        rsync) echo "${to}$(q "${BIN[rsync]}") -a $s/ $d/" ;;
        xcp) echo "${to}$(q "${BIN[xcp]}") -r $s $d" ;;
        fcp) echo "${to}$(q "${BIN[fcp]}") $s $d" ;;
        cpz) echo "${to}$(q "${BIN[cpz]}") $s $d" ;;
        tar) echo "set -o pipefail; mkdir $d && ${to}tar -C $s -cf - . | ${to}tar -C $d -xf -" ;;
        pypool) echo "${to}$(q "${BIN[pypool]}") $(q "$BENCH/python/copy_pool.py") -j $PY_JOBS --quiet $s $d" ;;
        mp) echo "${to}$(q "$MP") copy -j $MP_JOBS --quiet $s $d" ;;
    esac
}

# ---------------------------------------------------------------- helpers (Python)
HELP=$WORK/helpers
DATA=$WORK/data
mkdir -p "$HELP" "$DATA" "$WORK/ref" "$WORK/out"
cat >"$HELP/gen.py" <<'PY'
"""Dataset generator, dataset statistics and the small-file ceiling for bench/copy.sh."""
import json, os, random, stat, sys


def fill_tree(root, procs, leaf_body):
    """Make root/a/b/c (10x10x10) in `procs` processes, each taking whole top folders a;
    leaf_body(path, j) fills leaf j = 100a + 10b + c right after it is made."""
    os.mkdir(root)
    def body(tops):
        for a in tops:
            os.mkdir("%s/%d" % (root, a))
            for b in range(10):
                os.mkdir("%s/%d/%d" % (root, a, b))
                for c in range(10):
                    leaf = "%s/%d/%d/%d" % (root, a, b, c)
                    os.mkdir(leaf)
                    leaf_body(leaf, 100 * a + 10 * b + c)
    split(list(range(10)), procs)(body)

def split(items, procs):
    """Run body(part) in `procs` forked processes, part i = items[i::procs]."""
    def run(body):
        pids = []
        for i in range(procs):
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    body(items[i::procs])
                except BaseException as e:
                    print("error:", e, file=sys.stderr); code = 1
                os._exit(code)
            pids.append(pid)
        bad = [p for p in pids if os.waitpid(p, 0)[1] != 0]
        if bad:
            sys.exit(1)
    return run

def small(root, n, seed, procs=2):
    # file i goes to leaf i % 1000; every leaf has its own seeded generator
    def leaf_body(leaf, j):
        rng = random.Random("%s-small-%d" % (seed, j))
        for i in range(j, n, 1000):
            with open("%s/f%06d.bin" % (leaf, i), "wb") as f:
                f.write(rng.randbytes(rng.randint(1024, 16384)))
    fill_tree(root, procs, leaf_body)

def large(root, count, mib, seed, procs=2):
    os.mkdir(root)
    def body(part):
        for i in part:
            rng = random.Random("%s-large-%d" % (seed, i))
            with open("%s/large%02d.bin" % (root, i), "wb") as f:
                for _ in range(mib):
                    f.write(rng.randbytes(1 << 20))
    split(list(range(count)), procs)(body)

def extras(root, seed):
    """The odd cases of a real tree, seeded; no FIFOs, sockets or devices."""
    rng = random.Random("%s-extras" % seed)
    data = lambda n: rng.randbytes(n)
    def put(path, n, mode=0o644):
        with open(path, "wb") as f:
            f.write(data(n))
        os.chmod(path, mode)
    os.mkdir(root)
    j = lambda *p: os.path.join(root, *p)
    # hard links: two groups in one folder, one across folders, one of 4
    for d in ("hardlinks", "hardlinks/a", "hardlinks/b"):
        os.mkdir(j(d))
    put(j("hardlinks/one"), 5000); os.link(j("hardlinks/one"), j("hardlinks/one-again"))
    put(j("hardlinks/two"), 70000); os.link(j("hardlinks/two"), j("hardlinks/two-again"))
    put(j("hardlinks/a/x"), 3000); os.link(j("hardlinks/a/x"), j("hardlinks/b/y"))
    put(j("hardlinks/four"), 100)
    for k in range(3):
        os.link(j("hardlinks/four"), j("hardlinks/four-%d" % k))
    # a sparse file: 1 MiB data, 62 MiB hole, 1 MiB data
    with open(j("sparse.img"), "wb") as f:
        f.write(data(1 << 20)); f.seek(63 << 20); f.write(data(1 << 20))
    # odd names
    os.mkdir(j("names"))
    for name in ["with space.txt", "tab\tname", "new\nline", "ünïcödé-名字.txt", "-leading-dash",
                 "*star?", "back\\slash", "quote'\"s", ".hidden", "x" * 255]:
        put(os.path.join(j("names"), name), rng.randint(0, 4000))
    put(os.path.join(os.fsencode(j("names")), b"latin1-\xe9\xff.bin"), 1234)
    put(j("names", "empty"), 0)
    # modes
    os.mkdir(j("modes"))
    for name, mode in [("private", 0o600), ("exec", 0o755), ("setuid", 0o4755), ("readonly", 0o444)]:
        put(j("modes", name), 2000, mode)
    for name, mode in [("d0700", 0o700), ("d2775", 0o2775), ("d1777", 0o1777), ("d0555", 0o555)]:
        os.mkdir(j("modes", name)); put(j("modes", name, "f"), 100)
        os.chmod(j("modes", name), mode)
    # symlinks
    os.mkdir(j("links")); os.mkdir(j("links", "dir"))
    put(j("links", "dir", "target"), 500)
    os.symlink("dir/target", j("links", "to-file"))
    os.symlink("dir", j("links", "to-dir"))
    os.symlink("nowhere/at/all", j("links", "dangling"))
    os.symlink("/etc/hostname", j("links", "absolute"))
    os.symlink("../../sparse.img", j("links", "dir", "up"))
    # deep chain, empty folders
    p = j("deep")
    for k in range(40):
        p = os.path.join(p, "level%02d" % k)
    os.makedirs(p); put(os.path.join(p, "bottom"), 10)
    os.makedirs(j("empty", "nested", "empty"))
    # an xattr, where the file system takes user.* ones
    try:
        os.setxattr(j("names", "with space.txt"), "user.mp-bench", b"kept?")
    except OSError:
        pass
    # seeded times to the ns, children before parents (making entries changes the parent's)
    base = 1_000_000_000_000_000_000
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames + ["."]:
            path = os.path.join(dirpath, name)
            t = base + rng.randrange(10**17)
            os.utime(path, ns=(t, t), follow_symlinks=False)

def stats(root):
    files = dirs = links = other = size = 0
    inos = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirs += 1
        for name in filenames + dirnames:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode):
                if st.st_nlink > 1:
                    inos[st.st_ino] = inos.get(st.st_ino, 0) + 1
                    if inos[st.st_ino] > 1:
                        continue  # a hard link: counted once
                files += 1; size += st.st_size
            elif stat.S_ISLNK(st.st_mode):
                links += 1
            elif not stat.S_ISDIR(st.st_mode):
                other += 1
    return {"files": files, "bytes": size, "dirs": dirs, "symlinks": links, "special": other,
            "hardlink_groups": sum(1 for v in inos.values() if v > 1)}

def ceil_create(root, n, procs):
    """The small-file ceiling: the same 10x10x10 tree, n empty files, procs processes."""
    def leaf_body(leaf, j):
        for i in range(j, n, 1000):
            os.close(os.open("%s/f%06d.bin" % (leaf, i), os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644))
    fill_tree(root, procs, leaf_body)

if __name__ == "__main__":
    cmd, *a = sys.argv[1:]
    if cmd == "small": small(a[0], int(a[1]), a[2])
    elif cmd == "large": large(a[0], int(a[1]), int(a[2]), a[3])
    elif cmd == "extras": extras(a[0], a[1])
    elif cmd == "stats": print(json.dumps(stats(a[0])))
    elif cmd == "ceil-create": ceil_create(a[0], int(a[1]), int(a[2]))
    else: sys.exit("unknown command " + cmd)
PY

# ---------------------------------------------------------------- 3. datasets
default_mixed_srcs() {
    local cargo_home=${CARGO_HOME:-$HOME/.cargo} sysroot=
    command -v rustc >/dev/null && sysroot=$(rustc --print sysroot 2>/dev/null || true)
    local d
    for d in "$cargo_home/registry/src" /usr/include /usr/share/doc /usr/share/man \
             /usr/share/zoneinfo /usr/local/libexec/git-core /usr/lib/git-core \
             ${sysroot:+"$sysroot/lib"}; do
        [ -d "$d" ] && printf '%s\n' "$d"
    done
    return 0
}
if [ -n "${MIXED_SRCS:-}" ]; then
    read -r -a mixed_srcs <<<"$MIXED_SRCS"
else
    mapfile -t mixed_srcs < <(default_mixed_srcs)
fi

free_bytes() { df -PB1 "$WORK" | awk 'NR == 2 {print $4}'; }
need_space() { # $1: bytes, $2: what for; stops the run rather than fill the disk
    local have
    have=$(free_bytes)
    if ((have < $1 + (256 << 20))); then
        die "not enough free space in $WORK for $2: need $(($1 >> 20)) MiB + 256 MiB, have $((have >> 20)) MiB"
    fi
}

dataset_params() {
    case $1 in
        small) echo "small files=$SMALL_FILES seed=$SEED" ;;
        large) echo "large files=$LARGE_FILES mib=$LARGE_MIB seed=$SEED" ;;
        mixed) echo "mixed srcs=${mixed_srcs[*]} extras=$MIXED_EXTRAS seed=$SEED" ;;
    esac
}

make_dataset() { # $1: name; regenerates when its parameters changed
    local ds=$1 dir=$DATA/$1 stamp=$DATA/.$1.stamp params tmp src name
    params=$(dataset_params "$ds")
    if [ -d "$dir" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$params" ]; then
        return 0
    fi
    log "generating dataset $ds ($params)"
    rm -rf "$dir" "$stamp" "$dir.tmp"
    case $ds in # the dataset, its reference copy and one tool's copy
        small) need_space $((3 * (SMALL_FILES * 12288 + (1111 << 12)))) "dataset small" ;;
        large) need_space $((3 * LARGE_FILES * LARGE_MIB << 20)) "dataset large" ;;
        mixed) ((${#mixed_srcs[@]})) || die "mixed: no source folder (MIXED_SRCS)"
               need_space $((3 * $(du -scB1 "${mixed_srcs[@]}" 2>/dev/null | tail -n1 | cut -f1))) "dataset mixed" ;;
    esac
    tmp=$dir.tmp
    case $ds in
        small) "$PYTHON" "$HELP/gen.py" small "$tmp" "$SMALL_FILES" "$SEED" ;;
        large) "$PYTHON" "$HELP/gen.py" large "$tmp" "$LARGE_FILES" "$LARGE_MIB" "$SEED" ;;
        mixed)
            mkdir "$tmp"
            for src in "${mixed_srcs[@]}"; do
                [ -d "$src" ] || { warn "mixed: $src is not a folder, left out"; continue; }
                name=${src#/}; name=${name//\//_}
                cp -a "$src" "$tmp/$name"
            done
            # no FIFOs, sockets or devices (a FIFO blocks some copiers forever)
            find "$tmp" ! -type f ! -type d ! -type l -print -delete >&2
            [ "$MIXED_EXTRAS" = 1 ] && "$PYTHON" "$HELP/gen.py" extras "$tmp/extras" "$SEED"
            ;;
    esac
    mv "$tmp" "$dir"
    echo "$params" >"$stamp"
}

# ---------------------------------------------------------------- 4./5. measure
RUN=$WORK/results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$RUN"
ln -sfn "$RUN" "$WORK/results/latest"
printf '%s\n' "${datasets[@]}" >"$RUN/datasets"
: >"$RUN/tools.tsv"
for t in "${tools[@]}"; do
    printf '%s\t%s\t%s\n' "$t" "${LABEL[$t]}" "$(tool_cmd "$t" SRC DST)" >>"$RUN/tools.tsv"
done
{
    echo "date: $(date -Is)"
    echo "host: $(uname -srm), $(nproc) cores, $(df -hT "$WORK" | awk 'NR==2 {print $2" on "$1}')"
    echo "hyperfine: $(hyperfine --version)"
    for t in "${tools[@]}"; do
        case $t in
            pypool) v=$("$PYTHON" --version 2>&1) ;;
            tar) v=$(tar --version | head -n1) ;;
            *) v=$("${BIN[$t]}" --version 2>&1 | head -n1 || true) ;;
        esac
        echo "${LABEL[$t]}: ${v:-?}"
    done
    echo "RUNS=$RUNS SLOW_TOOLS=($SLOW_TOOLS) SLOW_RUNS=$SLOW_RUNS"
} >"$RUN/versions.txt"

HF=(hyperfine --shell bash --style basic)

# hyperfine NAME JSON RUNS PREPARE COMMAND; its output on stderr, returns its status
bench() {
    "${HF[@]}" --runs "$3" ${4:+--prepare "$4"} --export-json "$2" -n "$1" "$5" >&2
}

# The --prepare command that moves the last copy at $1 aside, not deletes it. Without a
# journal, ext4 skips inodes freed in the last 60 s (more while their table is dirty) when it
# allocates new ones, and the scan (recently_deleted() in the kernel's perf profile) made
# runs after an `rm -rf` of the last copy up to 10x slower: 13-18 s instead of 2 s for
# cp -a on 30k files, and deleting between tools did not help (the slowness lasted longer
# than a minute). So every copy of small and mixed piles up in the trash until the dataset is
# done (mind the free space); `settle` then empties it and waits before the next dataset.
# Dropping the page cache before each tool was tried too: it made most tools 2-4x slower
# (the allocator's bitmaps and inode tables must then be read back from disk).
aside() { # $1: the copy, $2: the trash folder (on the same file system) [$WORK/trash]
    local trash=${2:-$WORK/trash}
    echo "mkdir -p $(q "$trash") && { [ ! -e $(q "$1") ] || mv $(q "$1") $(q "$trash")/\$(date +%s%N); } && sync"
}

FS=$WORK/fs
# Makes a fresh ext4 image big enough for $1 bytes of copies, mounts it at $FS.
fs_up() {
    fs_down
    need_space "$1" "a fresh file system of $(($1 >> 20)) MiB"
    truncate -s "$1" "$WORK/fs.img"
    mkfs.ext4 -q -F -O ^has_journal -i 4096 "$WORK/fs.img"
    mkdir -p "$FS"
    mount -o loop "$WORK/fs.img" "$FS"
}

fs_down() {
    if mountpoint -q "$FS" 2>/dev/null; then umount "$FS"; fi
    rm -f "$WORK/fs.img"
}
trap fs_down EXIT

settle() {
    [ -d "$WORK/trash" ] || return 0
    log "emptying the trash, then ${SETTLE}s for the file system to settle"
    rm -rf "$WORK/trash"
    sync
    sleep "$SETTLE"
}

ceilings() { # $1: dataset
    local c=$CEIL_DIR/ceiling mib
    case $1 in
        small)
            log "ceiling: create $SMALL_FILES empty files in the same tree, 2 processes"
            bench "create $SMALL_FILES empty files (2 procs)" "$RUN/ceil.small-create.json" "$RUNS" \
                "$(aside "$c" "$CEIL_DIR/trash")" "$(q "$PYTHON") $(q "$HELP/gen.py") ceil-create $(q "$c") $SMALL_FILES 2" ||
                warn "the small-file ceiling failed"
            mkdir -p "$CEIL_DIR/trash" && mv "$c" "$CEIL_DIR/trash/ceiling.last" 2>/dev/null || true
            ;;
        large)
            mib=$((LARGE_FILES * LARGE_MIB))
            log "ceiling: dd write and read of $mib MiB, and 2 dd writing half each"
            bench "2 dd write $((mib / 2)) MiB each" "$RUN/ceil.large-write2.json" "$RUNS" "rm -f $(q "$c")* && sync" \
                "dd if=/dev/zero of=$(q "$c.1") bs=1M count=$((mib / 2)) status=none & dd if=/dev/zero of=$(q "$c.2") bs=1M count=$((mib - mib / 2)) status=none && wait \$!" ||
                warn "2 dd write failed"
            bench "dd write $mib MiB" "$RUN/ceil.large-write.json" "$RUNS" "rm -f $(q "$c")* && sync" \
                "dd if=/dev/zero of=$(q "$c") bs=1M count=$mib status=none" || warn "dd write failed"
            bench "dd read $mib MiB (warm)" "$RUN/ceil.large-read.json" "$RUNS" "" \
                "dd if=$(q "$c") of=/dev/null bs=1M status=none" || warn "dd read failed"
            bench "dd write $mib MiB + fsync" "$RUN/ceil.large-write-sync.json" 1 "rm -f $(q "$c") && sync" \
                "dd if=/dev/zero of=$(q "$c") bs=1M count=$mib conv=fsync status=none" ||
                warn "dd write+fsync failed"
            rm -f "$c" "$c.1" "$c.2"
            ;;
    esac
}

for ds in "${datasets[@]}"; do
    make_dataset "$ds"
    src=$DATA/$ds
    ref=$WORK/ref/$ds
    res=$RUN/$ds
    mkdir -p "$res"
    "$PYTHON" "$HELP/gen.py" stats "$src" >"$RUN/meta.$ds.json"
    [ "$ds" = mixed ] && echo "mixed is made of: ${mixed_srcs[*]}$([ "$MIXED_EXTRAS" = 1 ] && echo " and the extras tree")" >"$RUN/sources.txt"
    log "dataset $ds: $(cat "$RUN/meta.$ds.json")"

    size=$(du -sB1 "$src" | cut -f1)
    if ! { [ -d "$ref" ] && [ "$(cat "$WORK/ref/.$ds.stamp" 2>/dev/null)" = "$(cat "$DATA/.$ds.stamp")" ]; }; then
        log "reference copy (cp -a) of $ds"
        rm -rf "$ref" "$WORK/ref/.$ds.stamp"
        need_space $((2 * size)) "the reference copy of $ds and one tool's copy"
        cp -a "$src" "$ref"
        cp "$DATA/.$ds.stamp" "$WORK/ref/.$ds.stamp"
    fi
    need_space "$size" "one tool's copy of $ds"
    log "warming the cache: $ds"
    tar -C "$src" -cf - . | cat >/dev/null

    # The image holds the source, a copy per run and the trash: room for RUNS + 3 of them.
    fs_bytes=$(((RUNS + 3) * size * 6 / 5 + (1 << 30)))
    CEIL_DIR=$WORK
    if [ "$FRESH_FS" = 1 ]; then
        fs_up "$fs_bytes"
        CEIL_DIR=$FS
    fi
    ceilings "$ds"

    for t in "${tools[@]}"; do
        tsrc=$src
        dst=$WORK/out/$ds.$t
        trash=$WORK/trash
        if [ "$FRESH_FS" = 1 ]; then
            fs_up "$fs_bytes"
            cp -a "$src" "$FS/src"
            sync # or the first run competes with writing the source back
            tar -C "$FS/src" -cf - . | cat >/dev/null
            tsrc=$FS/src
            dst=$FS/out
            trash=$FS/trash
        fi
        runs=$RUNS
        if [ "$ds" != large ] && has_word "$SLOW_TOOLS" "$t" && ((SLOW_RUNS < RUNS)); then
            runs=$SLOW_RUNS
        fi
        cmd=$(tool_cmd "$t" "$tsrc" "$dst")
        if [ "$ds" = large ]; then
            prep="rm -rf $(q "$dst") && sync" # a few inodes: nothing to skip
        else
            prep=$(aside "$dst" "$trash")
        fi
        log "$ds: ${LABEL[$t]}  ($runs runs)  $cmd"
        if ! bench "${LABEL[$t]}" "$res/$t.json" "$runs" "$prep" "$cmd"; then
            rm -f "$res/$t.json"
            rm -rf "$dst"
            err=$(bash -c "$cmd" 2>&1 | tail -n 3 | tr '\n' ' ' | cut -c1-300 || true)
            echo "failed: ${err:-non-zero exit}" >"$res/$t.verdict"
            warn "${LABEL[$t]} failed on $ds: $err"
            rm -rf "$dst"
            continue
        fi
        bench "${LABEL[$t]} + sync" "$res/$t.sync.json" 1 "$prep" "$cmd && sync" ||
            warn "${LABEL[$t]} + sync failed on $ds"
        if [ -d "$dst" ]; then
            "$PYTHON" "$BENCH/python/tree_compare.py" -v --json "$res/$t.compare.json" "$ref" "$dst" \
                >"$res/$t.verdict" 2>"$res/$t.compare.log" || true
        else
            echo "no copy made" >"$res/$t.verdict"
        fi
        echo "fidelity of ${LABEL[$t]} on $ds: $(cat "$res/$t.verdict")" >&2
        if [ "$FRESH_FS" = 1 ]; then
            fs_down # KEEP_OUT does not apply: the image goes
        elif [ "$KEEP_OUT" = 1 ]; then
            :
        elif [ "$ds" = large ]; then
            rm -rf "$dst"
        else
            mkdir -p "$WORK/trash" && mv "$dst" "$WORK/trash/$t.last" 2>/dev/null || true
        fi
    done
    if [ "$KEEP_REF" != 1 ]; then
        mkdir -p "$WORK/trash" && mv "$ref" "$WORK/trash/ref.$ds" && rm -f "$WORK/ref/.$ds.stamp"
    fi
    fs_down
    settle
done

# ---------------------------------------------------------------- 6. report
"$PYTHON" - "$RUN" <<'PY' | tee "$RUN/report.md"
import json, os, sys

run = sys.argv[1]
datasets = open(os.path.join(run, "datasets")).read().split()
tools = [l.rstrip("\n").split("\t") for l in open(os.path.join(run, "tools.tsv")) if l.strip()]

def load(path):
    try:
        with open(path) as f:
            return json.load(f)["results"][0]
    except (OSError, ValueError, KeyError, IndexError):
        return None

def read(path):
    try:
        return open(path).read().strip()
    except OSError:
        return None

def md(s):
    return s.replace("|", "\\|")

def secs(t):
    return "%.3g s" % t if t < 100 else "%.0f s" % t

def rate(x, unit=""):
    if x >= 1e6: s = "%.1fM" % (x / 1e6)
    elif x >= 1e4: s = "%.0fk" % (x / 1e3)
    elif x >= 1e3: s = "%.1fk" % (x / 1e3)
    else: s = "%.0f" % x
    return s + " " + unit if unit else s

meta, res, ceil = {}, {}, {}
for ds in datasets:
    meta[ds] = json.load(open(os.path.join(run, "meta.%s.json" % ds)))
    for tid, label, _ in tools:
        r = load(os.path.join(run, ds, tid + ".json"))
        res[ds, tid] = {
            "median": r["median"] if r else None,
            "min": r["min"] if r else None, "max": r["max"] if r else None,
            "runs": len(r["times"]) if r else 0,
            "sync": (load(os.path.join(run, ds, tid + ".sync.json")) or {}).get("median"),
            "verdict": read(os.path.join(run, ds, tid + ".verdict")) or "?",
        }
for name in ("small-create", "large-write", "large-write2", "large-read", "large-write-sync"):
    r = load(os.path.join(run, "ceil.%s.json" % name))
    if r:
        ceil[name] = r["median"]

def mib(ds):
    return meta[ds]["bytes"] / 2**20

def ceiling_fraction(ds, t):
    """A tool's throughput as a fraction of the ceiling's (ceiling time / tool time)."""
    if ds == "small" and "small-create" in ceil:
        return ceil["small-create"] / t
    writes = [ceil[k] for k in ("large-write", "large-write2") if k in ceil]
    if ds == "large" and writes:
        return min(writes) / t
    return None

fastest = {}
for ds in datasets:
    ts = [res[ds, tid]["median"] for tid, _, _ in tools if res[ds, tid]["median"]]
    fastest[ds] = min(ts) if ts else None

def cell(ds, tid):
    r = res[ds, tid]
    if r["median"] is None:
        return "failed" if r["verdict"].startswith("failed") else "—"
    t = r["median"]
    m = meta[ds]
    parts = [secs(t)]
    if ds in ("small", "mixed"):
        parts.append(rate(m["files"] / t, "files/s"))
    if ds in ("large", "mixed"):
        parts.append(rate(mib(ds) / t, "MiB/s"))
    parts.append("×%.2f" % (t / fastest[ds]))
    return " · ".join(parts)

out = []
p = out.append
p("## Copier benchmark (`bench/copy.sh`)\n")
p("```")
p(read(os.path.join(run, "versions.txt")) or "")
p("```\n")
p("Datasets: " + "; ".join(
    "%s: %d files, %.0f MiB, %d folders, %d symlinks, %d hard-link groups" % (
        ds, meta[ds]["files"], mib(ds), meta[ds]["dirs"], meta[ds]["symlinks"],
        meta[ds]["hardlink_groups"]) for ds in datasets) + ".\n")
if read(os.path.join(run, "sources.txt")):
    p(read(os.path.join(run, "sources.txt")) + ".\n")
p("Median warm-cache wall time (hyperfine), throughput, and × the fastest tool of the dataset.\n")
p("| tool | " + " | ".join(datasets) + " | fidelity vs cp -a |")
p("| --- |" + " --- |" * len(datasets) + " --- |")
for tid, label, _ in tools:
    verdicts = {ds: res[ds, tid]["verdict"] for ds in datasets}
    vs = set(verdicts.values())
    fid = vs.pop() if len(vs) == 1 else "; ".join("%s: %s" % (ds, v) for ds, v in verdicts.items())
    p("| %s | %s | %s |" % (md(label), " | ".join(cell(ds, tid) for ds in datasets), md(fid)))
p("")

for ds in datasets:
    m = meta[ds]
    p("### %s (%d files, %.0f MiB)\n" % (ds, m["files"], mib(ds)))
    p("| tool | runs | median | min–max | files/s | MiB/s | × fastest | of ceiling | with sync | fidelity |")
    p("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    order = sorted(tools, key=lambda x: res[ds, x[0]]["median"] or float("inf"))
    for tid, label, _ in order:
        r = res[ds, tid]
        if r["median"] is None:
            p("| %s | 0 | — | — | — | — | — | — | — | %s |" % (md(label), md(r["verdict"])))
            continue
        t = r["median"]
        f = ceiling_fraction(ds, t)
        p("| %s | %d | %s | %.3g–%.3g | %s | %s | ×%.2f | %s | %s | %s |" % (
            md(label), r["runs"], secs(t), r["min"], r["max"],
            rate(m["files"] / t), rate(mib(ds) / t), t / fastest[ds],
            "%.0f%%" % (100 * f) if f else "—",
            secs(r["sync"]) if r["sync"] else "—", md(r["verdict"])))
    p("")

lines = []
if "small-create" in ceil:
    t = ceil["small-create"]
    lines.append("| small: create %d empty files in the same tree, 2 processes | %s | %s |" % (
        meta["small"]["files"], secs(t), rate(meta["small"]["files"] / t, "files/s")))
if "large-write" in ceil or "large-write2" in ceil:
    size = mib("large")
    for name, what in (("large-write", "dd write, no sync"),
                       ("large-write2", "2 dd in parallel writing half each, no sync"),
                       ("large-read", "dd read, warm"), ("large-write-sync", "dd write + fsync")):
        if name in ceil:
            lines.append("| large: %s, %.0f MiB | %s | %s |" % (what, size, secs(ceil[name]),
                                                              rate(size / ceil[name], "MiB/s")))
if lines:
    p("### Ceilings on this file system\n")
    p("| what | median | rate |")
    p("| --- | --- | --- |")
    out.extend(lines)
    p("\n\"of ceiling\" = the ceiling's time / the tool's time: small against creating the same "
      "number of empty files, large against the faster dd write of the same bytes, one dd or two "
      "(a copy has to write them all).\n")

p("Commands (SRC, DST):\n")
for tid, label, cmd in tools:
    p("- %s: `%s`" % (md(label), cmd))
p("\nResults: %s" % run)
print("\n".join(out))
PY
log "done; the report is $RUN/report.md"
