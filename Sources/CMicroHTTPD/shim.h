#ifndef CMICROHTTPD_SHIM_H
#define CMICROHTTPD_SHIM_H
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
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

/// `MHD_OPTION_URI_LOG_CALLBACK`'s function: sees the raw request target (before percent-decoding);
/// its result becomes the request's `*con_cls`.
typedef void *(*cmhd_uri_log_fn)(void *cls, const char *uri, struct MHD_Connection *connection);

/// What `cmhd_start_daemon` passes to libmicrohttpd. Zero / NULL members are left at the library's default.
typedef struct {
    unsigned int flags;
    const struct sockaddr *bind_address;
    /// <= 1: a single internal thread.
    unsigned int thread_pool_size;
    unsigned int connection_limit;
    unsigned int connection_timeout_seconds;
    /// MHD_OPTION_CONNECTION_MEMORY_LIMIT: each connection's pool (request head and read buffer).
    size_t connection_memory_limit;
    unsigned int listen_backlog;
    MHD_AccessHandlerCallback access_handler;
    void *access_handler_cls;
    MHD_RequestCompletedCallback completed;
    void *completed_cls;
    cmhd_uri_log_fn uri_log;
    void *uri_log_cls;
    MHD_NotifyConnectionCallback notify_connection;
    void *notify_connection_cls;
    /// Must outlive the daemon.
    const cmhd_log_sink *log_sink;
} cmhd_daemon_options;

/// Starts a daemon with an internal polling thread (or pool), bound to `options->bind_address`.
static inline struct MHD_Daemon *cmhd_start_daemon(const cmhd_daemon_options *options) {
    // The port argument is ignored when MHD_OPTION_SOCK_ADDR is given. The logger must come first, or
    // messages about the options before it go to stderr. Options with two pointer arguments carry the
    // first as `intptr_t` (MHD_OPTION_ARRAY's rule).
    struct MHD_OptionItem items[16];
    int n = 0;
    items[n++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)cmhd_log_trampoline,
                                         (void *)options->log_sink};
    items[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, (void *)options->bind_address};
    if (options->thread_pool_size > 1) {
        items[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, options->thread_pool_size, NULL};
    }
    items[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, options->connection_limit, NULL};
    items[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, options->connection_timeout_seconds, NULL};
    if (options->connection_memory_limit > 0) {
        items[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                             (intptr_t)options->connection_memory_limit, NULL};
    }
    if (options->listen_backlog > 0) {
        items[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_BACKLOG_SIZE, options->listen_backlog, NULL};
    }
    if (options->completed != NULL) {
        items[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)options->completed,
                                             options->completed_cls};
    }
    if (options->uri_log != NULL) {
        items[n++] = (struct MHD_OptionItem){MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)options->uri_log,
                                             options->uri_log_cls};
    }
    if (options->notify_connection != NULL) {
        items[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)options->notify_connection,
                                             options->notify_connection_cls};
    }
    items[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    return MHD_start_daemon(options->flags, 0, NULL, NULL, options->access_handler, options->access_handler_cls,
                            MHD_OPTION_ARRAY, items, MHD_OPTION_END);
}

/// The port the daemon's listening socket is bound to (0 if unknown).
static inline uint16_t cmhd_bound_port(struct MHD_Daemon *daemon) {
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    return info == NULL ? 0 : info->port;
}

/// The connection's socket, or -1.
static inline int cmhd_connection_fd(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    return info == NULL ? -1 : info->connect_fd;
}

/// `address` as text (IPv4 dotted or IPv6; an IPv4-mapped IPv6 address as IPv4); false if not IP.
static inline bool cmhd_format_address(const struct sockaddr *address, char *buffer, size_t size) {
    if (address->sa_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)address;
        return inet_ntop(AF_INET, &v4->sin_addr, buffer, (socklen_t)size) != NULL;
    }
    if (address->sa_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)address;
        if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
            return inet_ntop(AF_INET, &v6->sin6_addr.s6_addr[12], buffer, (socklen_t)size) != NULL;
        }
        return inet_ntop(AF_INET6, &v6->sin6_addr, buffer, (socklen_t)size) != NULL;
    }
    return false;
}

/// The TCP peer's address as text (IPv4 dotted or IPv6; an IPv4-mapped IPv6 address as IPv4) into
/// `buffer`; false if unknown.
static inline bool cmhd_connection_peer(struct MHD_Connection *connection, char *buffer, size_t size) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (info == NULL || info->client_addr == NULL) {
        return false;
    }
    return cmhd_format_address(info->client_addr, buffer, size);
}

/// What the connection-notify callback stored in `*socket_context` (NULL if nothing).
static inline void *cmhd_socket_context(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info == NULL ? NULL : info->socket_context;
}

#endif
