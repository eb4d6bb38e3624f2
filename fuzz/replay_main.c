/*
 * Corpus replay driver: the main() that turns a libFuzzer target into a
 * plain executable, so that the normal (gcc, ASan+UBSan) build runs every
 * committed corpus file through every target as a ctest.
 *
 * Arguments are files or directories (one level, no recursion); the files
 * of a directory run in name order so a failure reproduces the same way
 * every time. LLVMFuzzerInitialize is called first when the target defines
 * it (a weak reference, as libFuzzer itself does). Each input is copied
 * into a heap buffer of exactly its size, so that ASan catches a read one
 * byte past the end just as it would under libFuzzer.
 *
 * A target reports a finding by crashing (abort, a sanitizer report); the
 * driver itself only fails for unreadable arguments or an empty run.
 * Single-threaded.
 */
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* Inputs larger than this are skipped with a warning: libFuzzer's default
 * -max_len for these targets is 4096 and the committed corpus stays far
 * below this. */
#define REPLAY_MAX_INPUT (16 * 1024 * 1024)

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    if (buf == NULL)
        goto fail;
    for (;;) {
        if (len == cap) {
            if (cap >= REPLAY_MAX_INPUT) {
                fprintf(stderr, "replay: %s: larger than %d bytes, skipped\n", path,
                        REPLAY_MAX_INPUT);
                free(buf);
                fclose(f);
                return 0;
            }
            uint8_t *n = realloc(buf, cap * 2);
            if (n == NULL)
                goto fail;
            buf = n;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        fprintf(stderr, "replay: %s: read error\n", path);
        goto fail;
    }
    fclose(f);
    f = NULL;
    /* An exact-size copy: the slack of buf would hide over-reads. */
    uint8_t *exact = malloc(len ? len : 1);
    if (exact == NULL)
        goto fail;
    if (len)
        memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 1;
fail:
    free(buf);
    if (f != NULL)
        fclose(f);
    return -1;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue; /* ".", ".." and hidden files such as .gitkeep */
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            char **nn = realloc(names, ncap * sizeof(*nn));
            if (nn == NULL) {
                rc = -1;
                goto out;
            }
            names = nn;
            cap = ncap;
        }
        names[n] = strdup(e->d_name);
        if (names[n] == NULL) {
            rc = -1;
            goto out;
        }
        n++;
    }
    if (n > 0)
        qsort(names, n, sizeof(*names), cmp_names);
    for (size_t i = 0; i < n; i++) {
        size_t pl = strlen(dir) + 1 + strlen(names[i]) + 1;
        char *path = malloc(pl);
        if (path == NULL) {
            rc = -1;
            goto out;
        }
        snprintf(path, pl, "%s/%s", dir, names[i]);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            int r = run_file(path);
            if (r < 0)
                rc = -1;
            else if (rc >= 0)
                rc += r;
        }
        free(path);
    }
out:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    closedir(d);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    if (LLVMFuzzerInitialize != NULL)
        LLVMFuzzerInitialize(&argc, &argv);
    long total = 0;
    int status = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        int r;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            r = -1;
        } else if (S_ISDIR(st.st_mode)) {
            r = run_dir(argv[i]);
        } else {
            r = run_file(argv[i]);
        }
        if (r < 0)
            status = 1;
        else
            total += r;
    }
    fprintf(stderr, "replay: %ld inputs ran\n", total);
    if (total == 0)
        status = 1; /* an empty corpus would make the test pass vacuously */
    return status;
}
