// copy-calls: copies a tree on one thread with a chosen sequence of system calls, to tell
// what a copier's calls cost from what its own machinery costs (BENCHMARKS.md, "the calls
// or the machinery?"). Regular files and directories only; no error handling: a measuring
// tool for a generated tree, not a copier.
//
//   gcc -O2 -o /tmp/copy-calls bench/copy-calls.c
//   taskset -c 1 perf stat -e task-clock /tmp/copy-calls MODE SRC DST
//
// MODE is a sum of:
//   1  cp -a's fidelity: flistxattr on each source, futimens on each copy and directory
//   2  list first: open each file of a directory and fstat it, then copy them all
//      (otherwise each file is opened, then statted by name, as cpz does)
//   4  mp's flags: O_NOATIME | O_CLOEXEC | O_NOFOLLOW on sources, O_EXCL on copies, and
//      copy_file_range of the known size (otherwise O_TRUNC and "to the end", as cpz)
// 0 is cpz's sequence, 7 is mp's.
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

enum { FIDELITY = 1, LIST_FIRST = 2, MP_FLAGS = 4, MOST = 4096 };

struct entry {
    char name[256];
    unsigned char type;
    int fd;
    struct stat st;
};

struct linux_dirent64 {
    unsigned long d_ino;
    long d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static int mode;

static int list(int dir, struct entry *e) {
    char buf[32768];
    int n = 0;
    long got;
    while ((got = syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
        for (long at = 0; at < got;) {
            struct linux_dirent64 *d = (void *)(buf + at);
            if (strcmp(d->d_name, ".") && strcmp(d->d_name, "..") && n < MOST) {
                strcpy(e[n].name, d->d_name);
                e[n].type = d->d_type;
                e[n].fd = -1;
                n++;
            }
            at += d->d_reclen;
        }
    }
    return n;
}

static void copy_dir(int src, int dst) {
    struct entry *e = malloc(sizeof *e * MOST);
    int n = list(src, e);
    int source_flags = O_RDONLY | ((mode & MP_FLAGS) ? O_NOATIME | O_CLOEXEC | O_NOFOLLOW : 0);
    int copy_flags = O_WRONLY | O_CREAT | ((mode & MP_FLAGS) ? O_EXCL | O_CLOEXEC : O_TRUNC);
    for (int i = 0; (mode & LIST_FIRST) && i < n; i++) {
        if (e[i].type == DT_REG) {
            e[i].fd = openat(src, e[i].name, source_flags);
            fstat(e[i].fd, &e[i].st);
        } else {
            fstatat(src, e[i].name, &e[i].st, AT_SYMLINK_NOFOLLOW);
        }
    }
    for (int i = 0; i < n; i++) {
        if (e[i].type == DT_DIR) {
            if (!(mode & LIST_FIRST))
                fstatat(src, e[i].name, &e[i].st, AT_SYMLINK_NOFOLLOW);
            mkdirat(dst, e[i].name, 0755);
            int sub_src = openat(src, e[i].name, O_RDONLY | O_DIRECTORY);
            int sub_dst = openat(dst, e[i].name, O_RDONLY | O_DIRECTORY);
            copy_dir(sub_src, sub_dst);
            if (mode & FIDELITY) {
                struct timespec times[2] = {e[i].st.st_atim, e[i].st.st_mtim};
                futimens(sub_dst, times);
            }
            close(sub_src);
            close(sub_dst);
            continue;
        }
        int s = e[i].fd;
        if (s < 0) {
            s = openat(src, e[i].name, source_flags);
            fstatat(src, e[i].name, &e[i].st, 0);
        }
        int d = openat(dst, e[i].name, copy_flags, 0644);
        if (mode & MP_FLAGS) {
            loff_t in = 0, out = 0;
            copy_file_range(s, &in, d, &out, e[i].st.st_size, 0);
        } else {
            copy_file_range(s, NULL, d, NULL, 1L << 62, 0);
        }
        if (mode & FIDELITY) {
            flistxattr(s, NULL, 0);
            struct timespec times[2] = {e[i].st.st_atim, e[i].st.st_mtim};
            futimens(d, times);
        }
        close(d);
        close(s);
    }
    free(e);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: copy-calls MODE SRC DST\n");
        return 2;
    }
    mode = atoi(argv[1]);
    int src = open(argv[2], O_RDONLY | O_DIRECTORY);
    mkdir(argv[3], 0755);
    int dst = open(argv[3], O_RDONLY | O_DIRECTORY);
    if (src < 0 || dst < 0) {
        perror("copy-calls");
        return 1;
    }
    copy_dir(src, dst);
    return 0;
}
