"""The seeds' multiprocessing folder copier, fixed to copy a whole tree.

This is the copier of the seed notes ("案例 实现copy" / "高并发copy器"), kept as close to them as
works, as a peer for `bench/copy.sh`:

- the main process makes the destination folders and hands every file to a
  ``multiprocessing.Pool`` with ``apply_async(copy_file, args=(q, ...))``;
- each worker copies one file (read, then write) and puts its name on a
  ``multiprocessing.Manager().Queue()``;
- the main process takes one name off the queue per file and prints the progress
  ("拷贝的进度为：xx.xx%") until every file is done.

What had to be fixed for it to run at all on a real tree:
- it walks the tree (``os.walk``) instead of one ``os.listdir``, and makes every folder;
- symlinks are made again as symlinks (the seed would follow them, and die on a dangling one);
  FIFOs, sockets and devices are skipped with a warning (opening a FIFO would block);
- blocks of 1 MiB instead of the seed's 1024 bytes (which would only time Python's loop);
- a worker's error is put on the queue too and reported at the end, exit status 1
  (the seed's pool swallowed errors, and its progress loop then waited forever);
- the seed's typos (``apply_async(q, copy_file, ...)``, ``new_f.write()``, ``copy_on_num``).

Like the seeds it keeps no metadata at all: no modes, times, owners, xattrs or hard links.

Usage: python3 copy_pool.py [-j N] [--quiet] SRC DST
DST must not exist (it becomes the copy); if DST is an existing folder, SRC is copied into it,
as ``cp -r`` does.
"""

import argparse
import multiprocessing
import os
import stat
import sys

BLOCK = 1 << 20


def copy_file(q, rel, src_root, dst_root):
    """Copy one file; put (name, error or None) on the queue when done."""
    try:
        with open(os.path.join(src_root, rel), "rb") as source_file:
            with open(os.path.join(dst_root, rel), "wb") as dest_file:
                while True:
                    data = source_file.read(BLOCK)
                    if not data:
                        break
                    dest_file.write(data)
        q.put((rel, None))
    except BaseException as e:  # the queue must hear of every file, or main waits forever
        q.put((rel, "%s: %s" % (type(e).__name__, e)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-j", "--jobs", type=int, default=2, help="pool size (default 2)")
    ap.add_argument("--quiet", action="store_true", help="print no progress")
    ap.add_argument("src")
    ap.add_argument("dst")
    args = ap.parse_args()

    src = args.src.rstrip("/") or "/"
    dst = args.dst
    if os.path.isdir(dst):
        dst = os.path.join(dst, os.path.basename(os.path.abspath(src)))
    os.mkdir(dst)

    # 1. walk the source: folders and symlinks here, files for the pool
    file_names = []
    for dirpath, dirnames, filenames in os.walk(src):
        rel_dir = os.path.relpath(dirpath, src)
        for name in dirnames + filenames:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            s, d = os.path.join(src, rel), os.path.join(dst, rel)
            mode = os.lstat(s).st_mode
            if stat.S_ISLNK(mode):
                os.symlink(os.readlink(s), d)
            elif stat.S_ISDIR(mode):
                os.mkdir(d)
            elif stat.S_ISREG(mode):
                file_names.append(rel)
            else:
                print("skipped (not a file, folder or symlink): %s" % s, file=sys.stderr)

    # 2. the pool copies, the queue tells the main process what is done
    po = multiprocessing.Pool(args.jobs)
    q = multiprocessing.Manager().Queue()
    for file_name in file_names:
        po.apply_async(copy_file, args=(q, file_name, src, dst))
    po.close()

    all_file_num = len(file_names)
    copy_ok_num = 0
    errors = []
    shown = -1
    while copy_ok_num < all_file_num:
        file_name, err = q.get()
        copy_ok_num += 1
        if err is not None:
            errors.append((file_name, err))
        if not args.quiet:
            pct = copy_ok_num * 10000 // all_file_num
            if pct != shown:
                shown = pct
                print("\r拷贝的进度为：%.2f%%" % (pct / 100), end="", flush=True)
    po.join()
    if not args.quiet and all_file_num:
        print()
    for file_name, err in errors[:20]:
        print("error: %s: %s" % (file_name, err), file=sys.stderr)
    if errors:
        print("%d of %d files failed" % (len(errors), all_file_num), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
