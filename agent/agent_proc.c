/*
 * Child processes (see agent_proc.h). Between fork and execve the child
 * only calls async-signal-safe functions: the agent may have other threads
 * (none today, but libraries could add some).
 */
#include "agent_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"

/* After the group is killed, how long to wait for the pipe to close. */
#define DRAIN_GRACE_US 2000000

static int stdin_fd(const char *data, size_t len)
{
    if (data == NULL) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
    }
    /* A memory file rather than a pipe: the child may read it at its own
     * pace (or not at all) without the agent having to feed a pipe. */
    int fd = memfd_create("drover-stdin", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = -errno;
            close(fd);
            return e;
        }
        p += w;
        left -= (size_t)w;
    }
    if (lseek(fd, 0, SEEK_SET) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

int agent_proc_spawn(agent_proc_t *p, const char *path, char *const argv[], char *const envp[],
                     const char *stdin_data, size_t stdin_len, size_t out_max, uint32_t timeout_s)
{
    int in = -1, pipefd[2] = {-1, -1};
    int rc;
    char *out = malloc(out_max + 1);
    if (out == NULL)
        return -ENOMEM;
    in = stdin_fd(stdin_data, stdin_len);
    if (in < 0) {
        rc = in;
        goto fail;
    }
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        rc = -errno;
        goto fail;
    }
    pid_t pid = fork();
    if (pid < 0) {
        rc = -errno;
        goto fail;
    }
    if (pid == 0) {
        /* Child: own process group, default signal state, fds 0-2 only. */
        setpgid(0, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        if (dup2(in, 0) < 0 || dup2(pipefd[1], 1) < 0 || dup2(pipefd[1], 2) < 0)
            _exit(126);
        /* Nothing else: not every library marks its descriptors
         * close-on-exec (the MQTT socket), and a program that leaves a
         * daemon behind must not keep the agent's connection open. */
        if (close_range(3, ~0U, 0) < 0)
            for (int fd = 3; fd < 4096; fd++)
                close(fd);
        execve(path, argv, envp);
        _exit(127);
    }
    /* Also in the parent, so a kill right after fork finds the group. */
    setpgid(pid, pid);
    close(in);
    close(pipefd[1]);
    fcntl(pipefd[0], F_SETFL, fcntl(pipefd[0], F_GETFL) | O_NONBLOCK);
    memset(p, 0, sizeof(*p));
    p->pid = pid;
    p->out_fd = pipefd[0];
    p->out = out;
    p->out[0] = '\0';
    p->out_max = out_max;
    p->deadline_us = util_mono_us() + (int64_t)timeout_s * 1000000;
    return 0;
fail:
    if (in >= 0)
        close(in);
    if (pipefd[0] >= 0) {
        close(pipefd[0]);
        close(pipefd[1]);
    }
    free(out);
    return rc;
}

void agent_proc_read(agent_proc_t *p)
{
    char sink[4096];
    while (p->out_fd >= 0) {
        char *dst = sink;
        size_t room = sizeof(sink);
        if (p->out_len < p->out_max) {
            dst = p->out + p->out_len;
            room = p->out_max - p->out_len;
        }
        ssize_t r = read(p->out_fd, dst, room);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (r <= 0) {
            close(p->out_fd);
            p->out_fd = -1;
            break;
        }
        if (dst == sink)
            p->truncated = true;
        else
            p->out_len += (size_t)r;
    }
    p->out[p->out_len] = '\0';
}

void agent_proc_kill(agent_proc_t *p)
{
    /* The group, not just the child: whatever it started goes too. */
    if (p->pid > 0)
        kill(-p->pid, SIGKILL);
}

bool agent_proc_poll(agent_proc_t *p, int64_t now_us)
{
    if (p->pid <= 0)
        return true;
    if (!p->exited) {
        int st;
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
            p->exited = true;
            p->status = st;
        }
    }
    if (!p->killed && now_us >= p->deadline_us && (!p->exited || p->out_fd >= 0)) {
        /* A child that exited in time while something it started still
         * holds the pipe did not time out; that something is killed. */
        p->timed_out = !p->exited;
        p->killed = true;
        agent_proc_kill(p);
        p->deadline_us = now_us + DRAIN_GRACE_US;
        return false;
    }
    if (p->killed && p->exited && p->out_fd >= 0 && now_us >= p->deadline_us) {
        /* The child is gone but something it started keeps the pipe open
         * even after the kill: stop waiting for it. */
        agent_proc_read(p);
        if (p->out_fd >= 0) {
            close(p->out_fd);
            p->out_fd = -1;
        }
    }
    return p->exited && p->out_fd < 0;
}

void agent_proc_fini(agent_proc_t *p)
{
    if (p->pid > 0 && !p->exited) {
        kill(-p->pid, SIGKILL);
        int st;
        while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR) {
        }
        p->exited = true;
    }
    if (p->out_fd >= 0) {
        close(p->out_fd);
        p->out_fd = -1;
    }
    free(p->out);
    p->out = NULL;
    p->pid = 0;
}

void agent_proc_describe(const agent_proc_t *p, uint32_t timeout_s, char *buf, size_t len)
{
    if (p->timed_out)
        snprintf(buf, len, "timed out after %u s", timeout_s);
    else if (WIFEXITED(p->status))
        snprintf(buf, len, "exit code %d", WEXITSTATUS(p->status));
    else if (WIFSIGNALED(p->status))
        snprintf(buf, len, "killed by signal %d", WTERMSIG(p->status));
    else
        snprintf(buf, len, "ended with status %d", p->status);
}
