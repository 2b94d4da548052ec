#ifndef CRABBITMQ_SHIM_H
#define CRABBITMQ_SHIM_H
// <sys/time.h> first, or every `struct timeval *` in amqp.h imports as OpaquePointer.
#include <sys/time.h>
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>

// amqp_login is variadic and does not import into Swift.
static inline amqp_rpc_reply_t crabbitmq_login_plain(amqp_connection_state_t state, const char *vhost,
                                                     int channel_max, int frame_max, int heartbeat,
                                                     const char *user, const char *password) {
    return amqp_login(state, vhost, channel_max, frame_max, heartbeat, AMQP_SASL_METHOD_PLAIN, user, password);
}
#endif
