import Testing

/// The core's service layer over AMQP against the real PostgreSQL, Redis and RabbitMQ. One at a time:
/// the storms and the timing of the expiry test share two cores with everything else on the machine.
@Suite("Core service over AMQP", .serialized)
enum CoreServiceTests {}
