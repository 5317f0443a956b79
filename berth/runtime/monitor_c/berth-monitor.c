/*
 * berth-monitor: Berth's per-container monitor. One small process per container that is the OCI
 * runtime's parent, holds the container's stdio, writes its log, serves attach and records its exit,
 * and outlives berthd.
 *
 * Usage (berthd builds the command line; see berth/runtime/berthmon.py):
 *   berth-monitor --version
 *   berth-monitor -r RUNTIME -R RUNTIME_ROOT -b BUNDLE -c ID -l LOG -x EXIT_FILE -p PIDFILE
 *                 -s SYNC_FD -g GO_FD [-S LOG_SIZE_MAX] [-F LOG_MAX_FILE] [-t] [-i]
 *
 * Life of a container:
 *   1. berthd runs us in a new session; we fork, the first process exits at once (berthd reaps it),
 *      and the second one (the monitor) calls setsid() and becomes a child subreaper, so it is not
 *      berthd's child and the container's init is reparented to it when the runtime exits.
 *   2. In the bundle directory the monitor creates the stdio pipes (or, with -t, a console socket for
 *      the runtime to hand over the pty master), the attach socket "attach", the control fifo "ctl"
 *      and "monitor.pid", opens the log, and writes "ready <monitor pid>\n" on SYNC_FD.
 *   3. It waits for one byte on GO_FD (berthd's "start"). EOF there means berthd gave up or died
 *      before start: the monitor removes what it made and exits 0; no runtime state exists.
 *   4. It accepts the attach clients already queued, then forks and execs
 *      `RUNTIME --root RUNTIME_ROOT run --detach --bundle BUNDLE --pid-file PIDFILE ID`: one exec
 *      creates and starts the container. When the runtime exits 0 it writes "<container pid>\n" on
 *      SYNC_FD; otherwise "-1 <runtime's error output>\n", and exits 1.
 *   5. It copies the container's output to the log and to attach clients, feeds stdin from attach
 *      clients, applies resizes from "ctl", and reaps the container with a signalfd (no polling).
 *   6. When the container's init has exited it drains the output, marks an OOM kill by creating the
 *      file "oom" in the bundle (the container cgroup's memory oom_kill counter is above zero), writes
 *      the exit code to EXIT_FILE through a temporary and rename(2), and exits.
 *
 * Log: Kubernetes' CRI format ("k8s-file"), one record per line:
 *   <RFC3339Nano local time with offset> <stdout|stderr> <F|P> <bytes>\n
 * F ends a line; P is a partial line continued by the next record. With -S, a record that would take
 * the file past LOG_SIZE_MAX bytes starts a new file first: with -F N (N > 1) the current file is
 * renamed LOG.1 (LOG.1 to LOG.2 and so on, at most N - 1 old files); otherwise the file is replaced.
 *
 * Attach protocol (socket "attach" in the bundle, AF_UNIX SOCK_SEQPACKET, conmon-compatible framing):
 *   monitor -> client: one packet per read of the container's output: 1 byte stream (2 stdout or tty,
 *                      3 stderr) followed by at most 8192 bytes of data.
 *   client -> monitor: each packet is data for the container's stdin (or the tty). A client that shuts
 *                      down its sending side (or hangs up) closes the container's stdin when -i was
 *                      given and there is no tty (Docker's StdinOnce).
 *   The monitor closes every client when the container has exited and its output is drained.
 * Control fifo "ctl": text lines "<type> <a> <b>\n"; type 1 is a terminal resize to a rows, b columns.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define VERSION "berth-monitor 1"
#define BUF 8192
#define MAX_CLIENTS 16

static const char *runtime, *rt_root, *bundle, *cid, *log_path, *exit_file, *pidfile;
static long long log_max = -1, log_size;
static int log_files = 1, tty, want_stdin, log_fd = -1;
static int clients[MAX_CLIENTS], input_done[MAX_CLIENTS], nclients;
static int stdin_fd = -1; /* where client data goes: stdin pipe or pty master */

static void die_sync(int sync_fd, const char *msg) {
    if (sync_fd >= 0) dprintf(sync_fd, "-1 %s\n", msg);
    _exit(1);
}

static void cleanup_files(void) {
    unlink("attach");
    unlink("ctl");
    unlink("console.sock");
    unlink("monitor.pid");
}

/* ---------------------------------------------------------------- log */

static void open_log(int truncate) {
    if (log_fd >= 0) close(log_fd);
    log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0640);
    struct stat st;
    log_size = (log_fd >= 0 && fstat(log_fd, &st) == 0) ? st.st_size : 0;
}

static int mid_line; /* the last record written was a P: its line is not finished */

static void rotate(void) {
    char from[4096], to[4096];
    if (log_files > 1) {
        for (int k = log_files - 1; k >= 2; k--) {
            snprintf(from, sizeof from, "%s.%d", log_path, k - 1);
            snprintf(to, sizeof to, "%s.%d", log_path, k);
            rename(from, to);
        }
        snprintf(to, sizeof to, "%s.1", log_path);
        rename(log_path, to);
        open_log(1);
        return;
    }
    /* one file: a fresh file replaces it, so a reader holding the old one sees no truncation */
    snprintf(to, sizeof to, "%s.tmp", log_path);
    int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd >= 0) {
        close(fd);
        rename(to, log_path);
    }
    open_log(0);
}

static int timestamp(char *out, size_t n) {
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    long off = tm.tm_gmtoff / 60;
    char sign = off < 0 ? '-' : '+';
    if (off < 0) off = -off;
    size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
    return (int)k + snprintf(out + k, n - k, ".%09ld%c%02ld:%02ld", ts.tv_nsec, sign, off / 60, off % 60);
}

static void log_record(const char *ts, int tslen, const char *stream, int final, const char *data, size_t len) {
    if (log_fd < 0) return;
    char head[96];
    int hl = snprintf(head, sizeof head, "%.*s %s %c ", tslen, ts, stream, final ? 'F' : 'P');
    long long total = hl + (long long)len + 1;
    /* a line's P records and its closing F stay in one file (a rotation between them would leave the
     * oldest file starting with a fragment once its head is rotated away): the file may pass LOG_SIZE_MAX
     * by the rest of a line, but never past twice LOG_SIZE_MAX (output without newlines still rotates) */
    if (log_max > 0 && log_size > 0 && log_size + total > log_max && (!mid_line || log_size + total > 2 * log_max))
        rotate();
    struct iovec iov[3] = {{head, (size_t)hl}, {(void *)data, len}, {"\n", 1}};
    ssize_t w = writev(log_fd, iov, 3);
    if (w > 0) log_size += w;
    mid_line = !final;
}

static void log_chunk(int stream, const char *buf, size_t len) {
    char ts[64];
    int tl = timestamp(ts, sizeof ts);
    const char *name = stream == 3 ? "stderr" : "stdout";
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == '\n') {
            log_record(ts, tl, name, 1, buf + start, i - start);
            start = i + 1;
        }
    }
    if (start < len) log_record(ts, tl, name, 0, buf + start, len - start);
}

/* ---------------------------------------------------------------- attach */

/* a dropped client is marked -1 and compacted away by compact_clients() after each poll round */
static void drop_client(int i) {
    if (clients[i] >= 0) close(clients[i]);
    clients[i] = -1;
}

static void compact_clients(void) {
    int k = 0;
    for (int i = 0; i < nclients; i++)
        if (clients[i] >= 0) {
            input_done[k] = input_done[i];
            clients[k++] = clients[i];
        }
    nclients = k;
}

static void accept_clients(int lfd) {
    while (nclients < MAX_CLIENTS) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) return;
        /* output is sent blocking (backpressure), but never for longer than 5 s per packet */
        int fl = fcntl(fd, F_GETFL);
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
        struct timeval tv = {5, 0};
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        input_done[nclients] = 0;
        clients[nclients++] = fd;
    }
}

static void broadcast(int stream, const char *buf, size_t len) {
    char pkt[BUF + 1];
    pkt[0] = (char)stream;
    memcpy(pkt + 1, buf, len);
    for (int i = 0; i < nclients; i++)
        if (clients[i] >= 0 && send(clients[i], pkt, len + 1, MSG_NOSIGNAL) < 0) drop_client(i);
}

static void close_stdin(void) {
    if (!tty && stdin_fd >= 0) {
        close(stdin_fd);
        stdin_fd = -1;
    }
}

static void client_input(int i) {
    char buf[BUF];
    if (clients[i] < 0) return;
    ssize_t n = recv(clients[i], buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        /* the client is done sending: stdin closes, output keeps flowing to it until it hangs up */
        close_stdin();
        input_done[i] = 1;
        if (n < 0) drop_client(i);
        return;
    }
    if (stdin_fd >= 0) {
        ssize_t off = 0;
        while (off < n) {
            ssize_t w = write(stdin_fd, buf + off, n - off);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) break;
            off += w;
        }
    }
}

/* ---------------------------------------------------------------- helpers */

static int listen_unix(const char *name) {
    unlink(name);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, name, sizeof a.sun_path - 1);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 16) < 0) return -1;
    return fd;
}

static int listen_stream(const char *name) {
    unlink(name);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, name, sizeof a.sun_path - 1);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 1) < 0) return -1;
    return fd;
}

/* the pty master the runtime sends over the console socket */
static int recv_master(int lfd) {
    int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) return -1;
    char data[256], ctrl[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {data, sizeof data};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl, .msg_controllen = sizeof ctrl};
    int fd = -1;
    if (recvmsg(c, &m, MSG_CMSG_CLOEXEC) >= 0) {
        struct cmsghdr *h = CMSG_FIRSTHDR(&m);
        if (h && h->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(h), sizeof fd);
    }
    close(c);
    return fd;
}

static ssize_t read_all(int fd, char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += r;
    }
    return got;
}

/* the memory cgroup of pid: v1 "N:memory:/path", else the v2 "0::/path" */
static void memory_cgroup(pid_t pid, char *out, size_t n) {
    char path[64], line[1024], v2[1024] = "";
    out[0] = 0;
    snprintf(path, sizeof path, "/proc/%d/cgroup", pid);
    FILE *f = fopen(path, "re");
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
        if (!b) continue;
        *b = 0;
        /* a container that already exited reads as the root cgroup, whose counters are the host's */
        if (strcmp(b + 1, "/") == 0) continue;
        if (strcmp(a + 1, "memory") == 0) snprintf(out, n, "/sys/fs/cgroup/memory%s/memory.oom_control", b + 1);
        else if (a[1] == 0) snprintf(v2, sizeof v2, "/sys/fs/cgroup%s/memory.events", b + 1);
    }
    fclose(f);
    if (!out[0] && v2[0]) snprintf(out, n, "%s", v2);
}

static int oom_killed(const char *file) {
    FILE *f = file[0] ? fopen(file, "re") : NULL;
    if (!f) return 0;
    char key[64];
    long long v;
    int hit = 0;
    while (fscanf(f, "%63s %lld", key, &v) == 2)
        if (strcmp(key, "oom_kill") == 0 && v > 0) hit = 1;
    fclose(f);
    return hit;
}

static void write_exit(int code) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", exit_file);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;
    dprintf(fd, "%d", code);
    close(fd);
    rename(tmp, exit_file);
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv) {
    int sync_fd = -1, go_fd = -1, opt;
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        puts(VERSION);
        return 0;
    }
    while ((opt = getopt(argc, argv, "r:R:b:c:l:x:p:s:g:S:F:ti")) != -1) {
        switch (opt) {
        case 'r': runtime = optarg; break;
        case 'R': rt_root = optarg; break;
        case 'b': bundle = optarg; break;
        case 'c': cid = optarg; break;
        case 'l': log_path = optarg; break;
        case 'x': exit_file = optarg; break;
        case 'p': pidfile = optarg; break;
        case 's': sync_fd = atoi(optarg); break;
        case 'g': go_fd = atoi(optarg); break;
        case 'S': log_max = atoll(optarg); break;
        case 'F': log_files = atoi(optarg); break;
        case 't': tty = 1; break;
        case 'i': want_stdin = 1; break;
        default: return 2;
        }
    }
    if (!runtime || !rt_root || !bundle || !cid || !log_path || !exit_file || !pidfile || sync_fd < 0 || go_fd < 0) {
        fprintf(stderr, "berth-monitor: missing arguments\n");
        return 2;
    }
    if (log_files < 1) log_files = 1;
    if (chdir(bundle) < 0) die_sync(sync_fd, "cannot enter the bundle directory");

    /* 1. detach from berthd: the first process exits, the monitor lives on in its own session */
    pid_t p = fork();
    if (p < 0) die_sync(sync_fd, "fork failed");
    if (p > 0) _exit(0);
    setsid();
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    signal(SIGPIPE, SIG_IGN);
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0) {
        dup2(devnull, 0), dup2(devnull, 1), dup2(devnull, 2);
        fcntl(0, F_SETFD, 0), fcntl(1, F_SETFD, 0), fcntl(2, F_SETFD, 0);
    }
    fcntl(sync_fd, F_SETFD, FD_CLOEXEC);
    fcntl(go_fd, F_SETFD, FD_CLOEXEC);

    /* 2. stdio, sockets, log */
    int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1}, in_pipe[2] = {-1, -1}, console = -1;
    if (tty) {
        console = listen_stream("console.sock");
        if (console < 0) die_sync(sync_fd, "cannot create the console socket");
        if (pipe2(err_pipe, O_CLOEXEC) < 0) die_sync(sync_fd, "cannot create the error pipe");
    } else {
        if (pipe2(out_pipe, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0)
            die_sync(sync_fd, "cannot create the stdio pipes");
        if (want_stdin && pipe2(in_pipe, O_CLOEXEC) < 0) die_sync(sync_fd, "cannot create the stdin pipe");
    }
    int attach = listen_unix("attach");
    if (attach < 0) die_sync(sync_fd, "cannot create the attach socket");
    unlink("ctl");
    if (mkfifo("ctl", 0600) < 0) die_sync(sync_fd, "cannot create the control fifo");
    int ctl = open("ctl", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    open_log(0);
    if (log_fd < 0) die_sync(sync_fd, "cannot open the log file");
    unlink(exit_file);
    unlink("oom");
    {
        FILE *f = fopen("monitor.pid.tmp", "we");
        if (f) {
            fprintf(f, "%d", getpid());
            fclose(f);
            rename("monitor.pid.tmp", "monitor.pid");
        }
    }
    dprintf(sync_fd, "ready %d\n", getpid());

    /* 3. wait for start */
    char go;
    ssize_t g;
    do g = read(go_fd, &go, 1); while (g < 0 && errno == EINTR);
    close(go_fd);
    if (g != 1) {
        cleanup_files();
        _exit(0);
    }
    accept_clients(attach);

    /* 4. one exec: the runtime creates and starts the container, then exits */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    unlink(pidfile);
    pid_t rt = fork();
    if (rt == 0) {
        sigprocmask(SIG_UNBLOCK, &chld, NULL);
        if (!tty) {
            dup2(want_stdin ? in_pipe[0] : devnull, 0);
            dup2(out_pipe[1], 1);
        }
        dup2(err_pipe[1], 2); /* with a tty only the runtime's own messages */
        char root_arg[4096], pid_arg[4096];
        snprintf(root_arg, sizeof root_arg, "--root=%s", rt_root);
        snprintf(pid_arg, sizeof pid_arg, "--pid-file=%s", pidfile);
        const char *args[16];
        int k = 0;
        args[k++] = runtime, args[k++] = root_arg, args[k++] = "run", args[k++] = "--detach";
        args[k++] = "--bundle", args[k++] = bundle, args[k++] = pid_arg;
        if (tty) args[k++] = "--console-socket=console.sock";
        args[k++] = cid, args[k] = NULL;
        execv(runtime, (char **)args);
        dprintf(2, "cannot execute %s: %s", runtime, strerror(errno));
        _exit(127);
    }
    if (rt < 0) die_sync(sync_fd, "fork failed");
    close(err_pipe[1]);
    if (!tty) {
        close(out_pipe[1]);
        if (want_stdin) {
            close(in_pipe[0]);
            stdin_fd = in_pipe[1];
        }
    } else {
        /* the runtime hands over the pty master before it exits; a failing runtime just exits */
        int pfd = (int)syscall(SYS_pidfd_open, rt, 0);
        struct pollfd w[2] = {{console, POLLIN, 0}, {pfd, POLLIN, 0}};
        while (poll(w, pfd >= 0 ? 2 : 1, -1) < 0 && errno == EINTR) {}
        if (w[0].revents & POLLIN) stdin_fd = recv_master(console);
        if (pfd >= 0) close(pfd);
        close(console);
        unlink("console.sock");
    }
    int status = 0;
    while (waitpid(rt, &status, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char msg[BUF] = "";
        ssize_t n = 0;
        fcntl(err_pipe[0], F_SETFL, O_NONBLOCK);
        n = read(err_pipe[0], msg, sizeof msg - 1);
        if (!tty) {
            if (n <= 0) {
                fcntl(out_pipe[0], F_SETFL, O_NONBLOCK);
                n = read(out_pipe[0], msg, sizeof msg - 1);
            }
        }
        msg[n > 0 ? n : 0] = 0;
        for (char *c = msg; *c; c++)
            if (*c == '\n') *c = ' ';
        if (!msg[0]) snprintf(msg, sizeof msg, "%s run exited with status %d", runtime, WEXITSTATUS(status));
        cleanup_files();
        die_sync(sync_fd, msg);
    }
    char pbuf[32] = "";
    int pf = open(pidfile, O_RDONLY | O_CLOEXEC);
    if (pf >= 0) {
        read_all(pf, pbuf, sizeof pbuf - 1);
        close(pf);
    }
    pid_t child = (pid_t)atoi(pbuf);
    if (child <= 0) {
        cleanup_files();
        die_sync(sync_fd, "the runtime wrote no container pid");
    }
    char oom_file[1200];
    memory_cgroup(child, oom_file, sizeof oom_file);
    dprintf(sync_fd, "%d\n", child);
    close(sync_fd);
    if (tty) close(err_pipe[0]);

    /* 5. serve until the container's init exits */
    int out = tty ? stdin_fd : out_pipe[0], err = tty ? -1 : err_pipe[0];
    int exited = 0, code = 255;
    char buf[BUF];
    for (;;) {
        struct pollfd fds[5 + MAX_CLIENTS];
        int n = 0, i_out = -1, i_err = -1;
        fds[n++] = (struct pollfd){sfd, POLLIN, 0};
        fds[n++] = (struct pollfd){attach, POLLIN, 0};
        fds[n++] = (struct pollfd){ctl, POLLIN, 0};
        if (out >= 0) i_out = n, fds[n++] = (struct pollfd){out, POLLIN, 0};
        if (err >= 0) i_err = n, fds[n++] = (struct pollfd){err, POLLIN, 0};
        int first_client = n, first_nclients = nclients;
        for (int c = 0; c < nclients; c++) fds[n++] = (struct pollfd){clients[c], input_done[c] ? 0 : POLLIN, 0};
        /* once init has exited, wait briefly for the rest of its output, then stop */
        int r = poll(fds, n, exited ? 100 : -1);
        if (r < 0 && errno == EINTR) continue;
        if (r == 0) break;
        if (fds[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0) {}
            pid_t w;
            while ((w = waitpid(-1, &status, WNOHANG)) > 0)
                if (w == child) {
                    exited = 1;
                    code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                }
        }
        if (fds[1].revents & POLLIN) accept_clients(attach); /* appended after the polled ones */
        if (fds[2].revents & POLLIN) {
            char line[128];
            ssize_t k = read(ctl, line, sizeof line - 1);
            if (k > 0) {
                line[k] = 0;
                int type, a, b;
                if (sscanf(line, "%d %d %d", &type, &a, &b) == 3 && type == 1 && tty && stdin_fd >= 0) {
                    struct winsize ws = {.ws_row = (unsigned short)a, .ws_col = (unsigned short)b};
                    ioctl(stdin_fd, TIOCSWINSZ, &ws);
                }
            }
        }
        int idx[2] = {i_out, i_err}, stream[2] = {2, 3};
        for (int s = 0; s < 2; s++) {
            if (idx[s] < 0 || !fds[idx[s]].revents) continue;
            ssize_t k = read(fds[idx[s]].fd, buf, sizeof buf);
            if (k > 0) {
                log_chunk(stream[s], buf, (size_t)k);
                broadcast(stream[s], buf, (size_t)k);
            } else if (k == 0 || (errno != EAGAIN && errno != EINTR)) {
                /* EOF (EIO on a pty whose last slave closed) */
                if (s == 0) out = -1; else err = -1;
                if (!tty) close(fds[idx[s]].fd);
            }
        }
        for (int c = 0; c < first_nclients; c++) {
            short ev = fds[first_client + c].revents;
            if (ev & POLLIN) client_input(c);
            else if (ev & (POLLHUP | POLLERR)) drop_client(c);
        }
        compact_clients();
        if (exited && out < 0 && err < 0) break;
    }

    /* 6. record the exit */
    if (oom_killed(oom_file)) {
        int fd = open("oom", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0) close(fd);
    }
    write_exit(code);
    for (int c = 0; c < nclients; c++) close(clients[c]);
    close(attach);
    unlink("attach");
    unlink("ctl");
    return 0;
}
