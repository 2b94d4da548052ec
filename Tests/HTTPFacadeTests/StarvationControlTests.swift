import Foundation
import HTTPServer
import Logging
import TestSupport
import Testing

/// The control for "1,000 waiting requests starve nobody" (EndToEndTests.coreStopped): the same
/// measurement, on a daemon whose handler waits for its answer on the daemon thread instead of
/// suspending, must see `/healthz` starve. If it did not, the end-to-end test could not fail.
@Suite("Control: a blocking handler starves the daemon, and the measurement sees it")
struct StarvationControlTests {
    @Test("with the daemon threads blocked, /healthz waits as long as the slow requests")
    func blockingHandlerStarves() async throws {
        try await blocking {
            let hold: Duration = .milliseconds(1500)
            let daemon = try HTTPDaemon(
                configuration: HTTPServerConfiguration(port: 0, bindAddress: "127.0.0.1", threads: 2),
                logger: Logger(label: "control")
            ) { request, responder in
                if request.path == "/slow" {
                    // The bug under control: waiting for the answer on the daemon's thread.
                    let (seconds, attoseconds) = hold.components
                    usleep(UInt32(seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
                }
                responder.respond(HTTPResponse(status: 200))
            }
            defer { daemon.shutdown(timeout: .seconds(5)) }
            var sockets: [Int32] = []
            defer { for socket in sockets { close(socket) } }
            for _ in 0..<4 {
                let socket = try HTTPTestClient.open(port: daemon.port, timeout: .seconds(30))
                try HTTPTestClient.send(socket, HTTPTestClient.requestBytes("GET", "/slow", headers: [], body: nil))
                sockets.append(socket)
            }
            usleep(100_000)
            let started = ContinuousClock.now
            let health = try HTTPTestClient.request(port: daemon.port, "GET", "/healthz", timeout: .seconds(60))
            #expect(health.status == 200)
            // The end-to-end test requires under 1 s; here the same request takes at least one slow turn.
            #expect(started.duration(to: .now) >= .milliseconds(1000), "\(started.duration(to: .now))")
        }
    }
}
