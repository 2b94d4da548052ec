import Dispatch
import Foundation
import HTTPServer
import Logging
import Synchronization

/// Starts a daemon on a free loopback port. Callers `defer` its shutdown.
func startDaemon(
    maxBodyBytes: Int = 65_536,
    threads: Int = 2,
    handler: @escaping @Sendable (HTTPRequest, HTTPResponder) -> Void
) throws -> HTTPDaemon {
    var configuration = HTTPServerConfiguration(port: 0, bindAddress: "127.0.0.1", maxBodyBytes: maxBodyBytes)
    configuration.threads = threads
    return try HTTPDaemon(configuration: configuration, logger: testLogger, handler: handler)
}

let testLogger: Logger = {
    var logger = Logger(label: "HTTPServerTests")
    logger.logLevel = .info
    return logger
}()

/// A value set on a daemon thread and read by the test.
final class Captured<Value: Sendable>: Sendable {
    private let value = Mutex<Value?>(nil)

    func set(_ newValue: Value) {
        value.withLock { $0 = newValue }
    }

    var current: Value? {
        value.withLock { $0 }
    }
}

extension HTTPResponse {
    static func text(_ status: Int, _ text: String, headers: [(String, String)] = []) -> HTTPResponse {
        HTTPResponse(status: status, headers: [("Content-Type", "text/plain")] + headers, body: Array(text.utf8))
    }
}
