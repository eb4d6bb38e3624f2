/*
 * Child processes for hooks and user commands: fork + execve (no shell),
 * its own process group so a timeout kills everything it started, stdin
 * from a memory file, stdout and stderr into one pipe that the agent's loop
 * drains without blocking, keeping at most out_max bytes.
 *
 * Runs on the agent's loop thread: agent_proc_read() when the pipe polls
 * readable, agent_proc_poll() on every loop turn (timeout and reaping).
 */
#ifndef DROVER_AGENT_PROC_H
#define DROVER_AGENT_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct agent_proc {
    pid_t pid;  /* 0 when not started */
    int out_fd; /* read end of the output pipe; -1 at EOF */
    char *out;  /* output kept, NUL-terminated */
    size_t out_len;
    size_t out_max;
    bool truncated;      /* more output came than out_max */
    int64_t deadline_us; /* monotonic */
    bool timed_out;      /* killed because it ran past the deadline */
    bool killed;         /* the group got SIGKILL (timeout or stray children) */
    bool exited;
    int status; /* waitpid status once exited */
} agent_proc_t;

/* Starts path with argv and envp (both NULL-terminated); stdin_data (may
 * be NULL: /dev/null) is what the program reads on stdin. timeout_s after
 * now the process group is killed. On success the caller owns p and must
 * agent_proc_fini() it. */
int agent_proc_spawn(agent_proc_t *p, const char *path, char *const argv[], char *const envp[],
                     const char *stdin_data, size_t stdin_len, size_t out_max, uint32_t timeout_s);

/* Drains the pipe (non-blocking). */
void agent_proc_read(agent_proc_t *p);

/* Kills the group at the deadline, reaps the child. True once the child
 * has exited and its output is complete (or the pipe was given up after
 * the kill because a grandchild still holds it). */
bool agent_proc_poll(agent_proc_t *p, int64_t now_us);

/* Kills the process group (SIGKILL). */
void agent_proc_kill(agent_proc_t *p);

/* Closes the pipe and frees the output; kills and reaps a child still
 * running. Accepts a zeroed struct. */
void agent_proc_fini(agent_proc_t *p);

/* "exit code 3", "killed by signal 9", "timed out after 5 s" into buf. */
void agent_proc_describe(const agent_proc_t *p, uint32_t timeout_s, char *buf, size_t len);

#endif
