#ifndef CRABBITMQ_SHIM_H
#define CRABBITMQ_SHIM_H
// <sys/time.h> first, or every `struct timeval *` in amqp.h imports as OpaquePointer.
#include <sys/time.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>

// amqp_login is variadic and does not import into Swift.
static inline amqp_rpc_reply_t crabbitmq_login_plain(amqp_connection_state_t state, const char *vhost,
                                                     int channel_max, int frame_max, int heartbeat,
                                                     const char *user, const char *password) {
    return amqp_login(state, vhost, channel_max, frame_max, heartbeat, AMQP_SASL_METHOD_PLAIN, user, password);
}

// amqp_login_with_properties is variadic too. rabbitmq-c merges `properties` with its own defaults
// (product, capabilities such as authentication_failure_close).
static inline amqp_rpc_reply_t crabbitmq_login_plain_with_properties(
    amqp_connection_state_t state, const char *vhost, int channel_max, int frame_max, int heartbeat,
    const amqp_table_t *properties, const char *user, const char *password) {
    return amqp_login_with_properties(state, vhost, channel_max, frame_max, heartbeat, properties,
                                      AMQP_SASL_METHOD_PLAIN, user, password);
}

// The method-number macros are casts, which Swift does not import: re-export them as typed constants.
static const amqp_method_number_t crabbitmq_basic_deliver_method = AMQP_BASIC_DELIVER_METHOD;
static const amqp_method_number_t crabbitmq_basic_ack_method = AMQP_BASIC_ACK_METHOD;
static const amqp_method_number_t crabbitmq_basic_nack_method = AMQP_BASIC_NACK_METHOD;
static const amqp_method_number_t crabbitmq_basic_return_method = AMQP_BASIC_RETURN_METHOD;
static const amqp_method_number_t crabbitmq_basic_cancel_method = AMQP_BASIC_CANCEL_METHOD;
static const amqp_method_number_t crabbitmq_channel_close_method = AMQP_CHANNEL_CLOSE_METHOD;
static const amqp_method_number_t crabbitmq_channel_close_ok_method = AMQP_CHANNEL_CLOSE_OK_METHOD;
static const amqp_method_number_t crabbitmq_connection_close_method = AMQP_CONNECTION_CLOSE_METHOD;
static const amqp_method_number_t crabbitmq_connection_close_ok_method = AMQP_CONNECTION_CLOSE_OK_METHOD;
static const amqp_method_number_t crabbitmq_connection_blocked_method = AMQP_CONNECTION_BLOCKED_METHOD;
static const amqp_method_number_t crabbitmq_connection_unblocked_method = AMQP_CONNECTION_UNBLOCKED_METHOD;

// Field values are a tagged union; building them here keeps the union handling out of Swift.
static inline amqp_field_value_t crabbitmq_field_utf8(amqp_bytes_t value) {
    amqp_field_value_t field;
    field.kind = AMQP_FIELD_KIND_UTF8;
    field.value.bytes = value;
    return field;
}
static inline amqp_field_value_t crabbitmq_field_i64(int64_t value) {
    amqp_field_value_t field;
    field.kind = AMQP_FIELD_KIND_I64;
    field.value.i64 = value;
    return field;
}
static inline amqp_field_value_t crabbitmq_field_bool(int value) {
    amqp_field_value_t field;
    field.kind = AMQP_FIELD_KIND_BOOLEAN;
    field.value.boolean = value ? 1 : 0;
    return field;
}
static inline amqp_field_value_t crabbitmq_field_f64(double value) {
    amqp_field_value_t field;
    field.kind = AMQP_FIELD_KIND_F64;
    field.value.f64 = value;
    return field;
}
#endif
