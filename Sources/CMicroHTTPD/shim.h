#ifndef CMICROHTTPD_SHIM_H
#define CMICROHTTPD_SHIM_H
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <microhttpd.h>

// MHD_start_daemon and MHD_get_*_info are variadic, which Swift cannot call; these static inline
// wrappers fix the argument lists the HTTPServer module uses.

/// Receives libmicrohttpd's log lines, already formatted (Swift cannot format a va_list portably).
typedef void (*cmhd_log_line_fn)(void *context, const char *line);

typedef struct {
    cmhd_log_line_fn log_line;
    void *context;
} cmhd_log_sink;

static inline void cmhd_log_trampoline(void *cls, const char *format, va_list arguments) {
    const cmhd_log_sink *sink = (const cmhd_log_sink *)cls;
    char line[1024];
    vsnprintf(line, sizeof line, format, arguments);
    sink->log_line(sink->context, line);
}

/// Starts a daemon with an internal polling thread (or pool), bound to `bind_address`.
/// `thread_pool_size` <= 1 means a single internal thread. `log_sink` must outlive the daemon.
static inline struct MHD_Daemon *cmhd_start_daemon(unsigned int flags,
                                                   const struct sockaddr *bind_address,
                                                   unsigned int thread_pool_size,
                                                   unsigned int connection_limit,
                                                   unsigned int connection_timeout_seconds,
                                                   MHD_AccessHandlerCallback access_handler,
                                                   void *access_handler_cls,
                                                   MHD_RequestCompletedCallback completed,
                                                   void *completed_cls,
                                                   const cmhd_log_sink *log_sink) {
    // The port argument is ignored when MHD_OPTION_SOCK_ADDR is given. The logger must come first, or
    // messages about the options before it go to stderr.
    if (thread_pool_size > 1) {
        return MHD_start_daemon(flags, 0, NULL, NULL, access_handler, access_handler_cls,
                                MHD_OPTION_EXTERNAL_LOGGER, cmhd_log_trampoline, (void *)log_sink,
                                MHD_OPTION_SOCK_ADDR, bind_address,
                                MHD_OPTION_THREAD_POOL_SIZE, thread_pool_size,
                                MHD_OPTION_CONNECTION_LIMIT, connection_limit,
                                MHD_OPTION_CONNECTION_TIMEOUT, connection_timeout_seconds,
                                MHD_OPTION_NOTIFY_COMPLETED, completed, completed_cls,
                                MHD_OPTION_END);
    }
    return MHD_start_daemon(flags, 0, NULL, NULL, access_handler, access_handler_cls,
                            MHD_OPTION_EXTERNAL_LOGGER, cmhd_log_trampoline, (void *)log_sink,
                            MHD_OPTION_SOCK_ADDR, bind_address,
                            MHD_OPTION_CONNECTION_LIMIT, connection_limit,
                            MHD_OPTION_CONNECTION_TIMEOUT, connection_timeout_seconds,
                            MHD_OPTION_NOTIFY_COMPLETED, completed, completed_cls,
                            MHD_OPTION_END);
}

/// The port the daemon's listening socket is bound to (0 if unknown).
static inline uint16_t cmhd_bound_port(struct MHD_Daemon *daemon) {
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    return info == NULL ? 0 : info->port;
}

#endif
