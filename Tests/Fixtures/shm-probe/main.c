// berth-shm-probe: a test helper that makes SysV shared memory visible from outside a
// process, to tell which IPC namespace a container is in (a segment made in one pod
// container must show in its siblings, and in no other container).
//
//   berth-shm-probe create KEY   shmget(KEY, 4096, IPC_CREAT | 0600); prints the shmid
//   berth-shm-probe rm KEY       removes the segment with that key (IPC_RMID)
//
// KEY is decimal. Exit 0 on success, 1 when the kernel refuses (the reason on stderr),
// 64 for a usage error. Linked statically without the Swift runtime (Package.swift,
// noswift.c), so it can be copied into a minimal root file system and run there.
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>

static int usage(void) {
    fprintf(stderr, "usage: berth-shm-probe create KEY | berth-shm-probe rm KEY\n");
    return 64;
}

int main(int argc, char **argv) {
    if (argc != 3) return usage();
    // A decimal key, nothing else: strtol alone would take "12x" or an empty string.
    char *end;
    errno = 0;
    long key = strtol(argv[2], &end, 10);
    if (errno != 0 || end == argv[2] || *end != '\0' || key < INT_MIN || key > INT_MAX) return usage();

    if (strcmp(argv[1], "create") == 0) {
        int id = shmget((key_t)key, 4096, IPC_CREAT | 0600);
        if (id < 0) {
            fprintf(stderr, "berth-shm-probe: shmget %ld: %s\n", key, strerror(errno));
            return 1;
        }
        printf("%d\n", id);
        return 0;
    }
    if (strcmp(argv[1], "rm") == 0) {
        int id = shmget((key_t)key, 0, 0);
        if (id < 0 || shmctl(id, IPC_RMID, NULL) < 0) {
            fprintf(stderr, "berth-shm-probe: remove %ld: %s\n", key, strerror(errno));
            return 1;
        }
        return 0;
    }
    return usage();
}
