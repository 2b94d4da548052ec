import AMQPClient
import Contracts
import InventoryRPCClient
import Logging

/// Snapshots through the core's `availability.request` RPC, with the shared `RPCClient` on a thread
/// (and AMQP connection) of its own.
///
/// Requests made while the broker is away wait for the connection until their deadline (the client's
/// `.waitForConnection`): a browser that subscribes during a broker restart gets its snapshot late
/// rather than an error.
final class AvailabilityRPC: AvailabilitySource {
    typealias Completion = @Sendable (Result<Availability, ErrorBody>) -> Void

    private let client: RPCClient
    private let timeout: Duration
    private let logger: Logger

    init(amqp: AMQPConfiguration, timeout: Duration, logger: Logger) throws(AMQPError) {
        var amqp = amqp
        amqp.connectionName = (amqp.connectionName ?? "realtime-gateway") + " rpc"
        client = try RPCClient(
            configuration: .init(amqp: amqp, whileDisconnected: .waitForConnection, name: "gateway-rpc"),
            logger: logger
        )
        self.timeout = timeout
        self.logger = logger
        client.start()
    }

    func requestAvailability(showtimeId: String, completion: @escaping Completion) {
        // A showtimeId is a validated identifier: a plain JSON string.
        let body = Array(#"{"showtimeId":"\#(showtimeId)"}"#.utf8)
        client.call(RPCRequest(.availability, body: body, timeout: timeout)) { [logger] outcome in
            completion(Self.availability(outcome, logger: logger))
        }
    }

    func shutdown() async {
        await client.shutdown()
    }

    /// The snapshot, or the error a subscriber is told.
    static func availability(
        _ outcome: Result<RPCResponse, RPCFailure>,
        logger: Logger
    ) -> Result<
        Availability, ErrorBody
    > {
        switch outcome {
        case .success(let reply):
            do {
                return try ContractJSON.decode(RPCReply<Availability>.self, from: reply.body).result
            } catch {
                logger.error(
                    "the core's availability reply does not match the contract",
                    metadata: ["error": "\(error)"]
                )
                return .failure(ErrorBody(code: .internalError, message: "The core's reply could not be read"))
            }
        case .failure(.timedOut):
            return .failure(
                ErrorBody(code: .upstreamTimeout, message: "The core did not answer the availability request in time")
            )
        case .failure(.notConnected):
            return .failure(unavailable("the gateway cannot reach the broker"))
        case .failure(.connectionLost):
            return .failure(unavailable("lost the broker connection"))
        case .failure(.unroutable):
            return .failure(unavailable("no core is consuming availability requests"))
        case .failure(.stopped):
            return .failure(unavailable("the gateway is stopping"))
        case .failure(.duplicateCorrelationID):
            return .failure(ErrorBody(code: .internalError, message: "The availability request could not be sent"))
        }
    }

    static func unavailable(_ why: String) -> ErrorBody {
        ErrorBody(code: .serviceUnavailable, message: "Availability is unavailable: \(why)")
    }
}
