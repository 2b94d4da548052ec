import Contracts
import HTTPServer
import Logging
import ServiceSupport

/// The facade's operations port (`FACADE_OPS_PORT` on `FACADE_OPS_BIND`, loopback by default): `GET
/// /metrics` in the Prometheus text format, and `GET /healthz`. Kept off `PORT` so the public never
/// reads the facade's counters; nothing here needs a token.
final class OpsServer: Sendable {
    private let daemon: HTTPDaemon

    var port: Int { daemon.port }

    /// `beforeMetrics` runs before each `/metrics` answer (it brings pull-only counters up to date).
    init(
        port: Int,
        bindAddress: String,
        logger: Logger,
        beforeMetrics: @escaping @Sendable () -> Void = {}
    ) throws {
        let configuration = HTTPServerConfiguration(
            port: port,
            bindAddress: bindAddress,
            maxBodyBytes: 1_024,
            threads: 1,
            connectionLimit: 64
        )
        daemon = try HTTPDaemon(configuration: configuration, logger: logger) { request, responder in
            if request.path == "/metrics" { beforeMetrics() }
            responder.respond(Self.answer(method: request.method, path: request.path))
        }
    }

    static func answer(method: String, path: String) -> HTTPResponse {
        let json = [("Content-Type", ContractHeaders.contentType)]
        let body: [UInt8]
        switch path {
        case "/metrics":
            guard method == "GET" else { return methodNotAllowed(path) }
            return HTTPResponse(
                status: 200,
                headers: [("Content-Type", MetricsSetup.contentType)],
                body: MetricsSetup.exposition()
            )
        case "/healthz":
            guard method == "GET" else { return methodNotAllowed(path) }
            body = Array(#"{"status":"ok"}"#.utf8)
            return HTTPResponse(status: 200, headers: json, body: body)
        default:
            body = ErrorBody(code: .notFound, message: "No route \(path)", details: ["path": .string(path)]).restBody()
            return HTTPResponse(status: 404, headers: json, body: body)
        }
    }

    private static func methodNotAllowed(_ path: String) -> HTTPResponse {
        HTTPResponse(
            status: 405,
            headers: [("Content-Type", ContractHeaders.contentType), ("Allow", "GET")],
            body: ErrorBody(code: .methodNotAllowed, message: "\(path) accepts GET", details: ["allow": .string("GET")])
                .restBody()
        )
    }

    func shutdown() {
        daemon.shutdown(timeout: .seconds(1))
    }
}
