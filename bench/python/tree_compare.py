"""Compare a copied tree with a reference copy (made by ``cp -a``): the fidelity check of
``bench/copy.sh``.

Usage: python3 tree_compare.py [-v] [--json FILE] REF COPY

Compares every entry under the two roots (the roots included, as "."), without following
symlinks:
- entries missing from COPY, extra in COPY, of another type;
- regular files: contents (byte for byte), and sparseness (a file with holes in REF that is
  fully allocated in COPY);
- modes (permission bits with setuid/setgid/sticky) of files and folders;
- mtimes to the nanosecond of files, folders and symlinks;
- owners (uid, gid);
- symlink targets;
- xattrs;
- hard links: the groups of paths that share an inode in REF must share one in COPY
  ("hard links lost"), and COPY must not join paths that are apart in REF ("hard links added").

Prints one line: "ok", or what differs with counts, e.g.
"dir mtimes differ (1110), hard links lost (3 groups)". With -v, up to 5 examples of each
difference go to stderr. Exit status: 0 when ok, 1 when something differs, 2 on bad usage.
"""

import argparse
import json
import os
import stat
import sys

CHUNK = 1 << 20
EXAMPLES = 5


def walk(root):
    """Return {relative path: lstat result} for root and everything under it."""
    entries = {".": os.lstat(root)}
    stack = [(root, ".")]
    while stack:
        path, rel = stack.pop()
        with os.scandir(path) as it:
            for e in it:
                r = e.name if rel == "." else rel + "/" + e.name
                st = e.stat(follow_symlinks=False)
                entries[r] = st
                if stat.S_ISDIR(st.st_mode):
                    stack.append((e.path, r))
    return entries


def kind(mode):
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "special"


def same_contents(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x = fa.read(CHUNK)
            y = fb.read(CHUNK)
            if x != y:
                return False
            if not x:
                return True


def xattrs(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for n in names:
        try:
            out[n] = os.getxattr(path, n, follow_symlinks=False)
        except OSError:
            out[n] = None
    return out


def hardlink_groups(entries):
    """Groups (frozensets of paths, 2 or more) of regular files sharing an inode."""
    by_ino = {}
    for rel, st in entries.items():
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            by_ino.setdefault((st.st_dev, st.st_ino), set()).add(rel)
    return [frozenset(g) for g in by_ino.values() if len(g) > 1]


def compare(ref, copy):
    diffs = {}  # label -> list of paths

    def add(label, rel):
        diffs.setdefault(label, []).append(rel)

    a = walk(ref)
    b = walk(copy)
    for rel in sorted(set(a) - set(b)):
        add("missing", rel)
    for rel in sorted(set(b) - set(a)):
        add("extra", rel)

    for rel in sorted(set(a) & set(b)):
        sa, sb = a[rel], b[rel]
        ka, kb = kind(sa.st_mode), kind(sb.st_mode)
        if ka != kb:
            add("type differs", rel)
            continue
        pa, pb = os.path.join(ref, rel), os.path.join(copy, rel)
        if ka == "file":
            if sa.st_size != sb.st_size or not same_contents(pa, pb):
                add("contents differ", rel)
            elif (sa.st_blocks * 512 < sa.st_size
                  and sb.st_blocks * 512 >= sb.st_size > 0):
                add("sparseness lost", rel)
        if ka == "symlink":
            if os.readlink(pa) != os.readlink(pb):
                add("symlink targets differ", rel)
        elif stat.S_IMODE(sa.st_mode) != stat.S_IMODE(sb.st_mode):
            add(ka + " modes differ", rel)
        if sa.st_mtime_ns != sb.st_mtime_ns:
            add(ka + " mtimes differ", rel)
        if (sa.st_uid, sa.st_gid) != (sb.st_uid, sb.st_gid):
            add("owners differ", rel)
        if ka != "symlink" and xattrs(pa) != xattrs(pb):  # no user.* xattrs on symlinks
            add("xattrs differ", rel)

    # hard links
    ga = hardlink_groups(a)
    b_ino = {rel: (st.st_dev, st.st_ino) for rel, st in b.items() if stat.S_ISREG(st.st_mode)}
    lost = 0
    for g in ga:
        inos = {b_ino.get(rel) for rel in g}
        if len(inos) != 1 or None in inos:
            lost += 1
            diffs.setdefault("hard links lost", []).append(sorted(g)[0])
    group_of = {}
    for i, g in enumerate(ga):
        for rel in g:
            group_of[rel] = i
    for g in hardlink_groups(b):
        ids = {group_of.get(rel, ("alone", rel)) for rel in g}
        if len(ids) > 1:
            diffs.setdefault("hard links added", []).append(sorted(g)[0])
    return diffs, len(a), len(b)


ORDER = ["missing", "extra", "type differs", "contents differ", "sparseness lost",
         "symlink targets differ", "file modes differ", "dir modes differ", "special modes differ",
         "file mtimes differ", "dir mtimes differ", "symlink mtimes differ",
         "special mtimes differ", "owners differ", "xattrs differ",
         "hard links lost", "hard links added"]


def verdict(diffs):
    if not diffs:
        return "ok"
    parts = []
    for label in ORDER + sorted(set(diffs) - set(ORDER)):
        if label in diffs:
            n = len(diffs[label])
            unit = " groups" if label.startswith("hard links") else ""
            parts.append("%s (%d%s)" % (label, n, unit))
    return ", ".join(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-v", "--verbose", action="store_true", help="examples of each difference on stderr")
    ap.add_argument("--json", metavar="FILE", help="write the counts and examples as JSON")
    ap.add_argument("ref")
    ap.add_argument("copy")
    args = ap.parse_args()
    for p in (args.ref, args.copy):
        if not os.path.isdir(p) or os.path.islink(p):
            print("not a folder: %s" % p, file=sys.stderr)
            print("copy missing" if p == args.copy else "reference missing")
            return 2
    diffs, na, nb = compare(args.ref, args.copy)
    line = verdict(diffs)
    print(line)
    if args.verbose:
        for label, rels in diffs.items():
            for rel in rels[:EXAMPLES]:
                print("  %s: %r" % (label, rel), file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"verdict": line, "entries_ref": na, "entries_copy": nb,
                       "counts": {k: len(v) for k, v in diffs.items()},
                       "examples": {k: [os.fsencode(r).decode("utf-8", "backslashreplace")
                                        for r in v[:EXAMPLES]] for k, v in diffs.items()}},
                      f, indent=1, ensure_ascii=False)
    return 0 if not diffs else 1


if __name__ == "__main__":
    sys.exit(main())
