import Dispatch
import Foundation
import HTTPServer
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

private func startEdgeDaemon(
    _ configure: (inout HTTPServerConfiguration) -> Void,
    handled: HandledCount = HandledCount()
) throws -> HTTPDaemon {
    var configuration = HTTPServerConfiguration(port: 0, bindAddress: "127.0.0.1")
    configure(&configuration)
    return try HTTPDaemon(configuration: configuration, logger: testLogger) { request, responder in
        handled.value.add(1, ordering: .relaxed)
        responder.respond(.text(200, "handled \(request.body.count) bytes"))
    }
}

/// Sends one byte every 300 ms (so libmicrohttpd's idle timeout never fires) until the server closes the
/// connection or `limit` passes; returns how long the server took, nil if it never closed.
private func trickleUntilClosed(_ fd: Int32, byte: UInt8, limit: Duration) -> Duration? {
    let started = ContinuousClock.now
    while started.duration(to: .now) < limit {
        var value = byte
        _ = send(fd, &value, 1, Int32(MSG_NOSIGNAL))
        if SourceAddressClient.closedByServer(fd, within: .milliseconds(300)) {
            return started.duration(to: .now)
        }
    }
    return nil
}

/// Polls `condition` (bounded) for what cannot be awaited: the daemon's counters.
private func pollUntil(within limit: Duration = .seconds(60), _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        if condition() { return true }
        usleep(20_000)
    }
    return condition()
}

@Suite("HTTPDaemon's connection edge: timeouts for heads and bodies, limits, memory by what arrived")
struct ConnectionEdgeTests {
    @Test("a head trickled a byte at a time is cut off at the header timeout (the idle timeout never fires)")
    func headerTimeout() async throws {
        let daemon = try startEdgeDaemon {
            $0.headerTimeout = .seconds(1)
            $0.connectionTimeout = .seconds(30)
        }
        defer { daemon.shutdown(timeout: .seconds(2)) }
        let port = daemon.port
        let took = try await blocking { () -> Duration? in
            let fd = try SourceAddressClient.open(from: "127.0.0.1", port: port)
            defer { close(fd) }
            try HTTPTestClient.send(fd, Array("GET /slow HTTP/1.1\r\nHost: x\r\nX-Trickle: ".utf8))
            return trickleUntilClosed(fd, byte: UInt8(ascii: "a"), limit: .seconds(15))
        }
        print("head trickled: connection closed after \(took.map { "\($0)" } ?? "never") (header timeout 1 s)")
        #expect(took != nil, "the connection was cut off")
        #expect(daemon.statistics.timedOut >= 1)
    }

    @Test("a body that never finishes is cut off at the body timeout, and the handler never sees it")
    func bodyTimeout() async throws {
        let handled = HandledCount()
        let daemon = try startEdgeDaemon(
            {
                $0.headerTimeout = .seconds(30)
                $0.bodyTimeout = .seconds(1)
            },
            handled: handled
        )
        defer { daemon.shutdown(timeout: .seconds(2)) }
        let port = daemon.port
        let took = try await blocking { () -> Duration? in
            let fd = try SourceAddressClient.open(from: "127.0.0.1", port: port)
            defer { close(fd) }
            try HTTPTestClient.send(
                fd,
                Array("POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789".utf8)
            )
            return trickleUntilClosed(fd, byte: UInt8(ascii: "b"), limit: .seconds(15))
        }
        print("body trickled: connection closed after \(took.map { "\($0)" } ?? "never") (body timeout 1 s)")
        #expect(took != nil, "the connection was cut off")
        #expect(handled.value.load(ordering: .relaxed) == 0)
        #expect(daemon.statistics.timedOut >= 1)
    }

    @Test("a 60 KiB Content-Length with 10 bytes sent costs what arrived, not what was announced")
    func memoryByWhatArrived() async throws {
        // Idle connections live 10 minutes here: the check is about buffers, not about the idle timeout.
        let daemon = try startEdgeDaemon { $0.connectionTimeout = .seconds(600) }
        defer { daemon.shutdown(timeout: .seconds(2)) }
        let port = daemon.port
        // Sending and measuring on one thread, with no await between them: on a busy machine a suspended
        // test may resume long after its requests were sent (it once saw nothing buffered after 60 s).
        let (arrived, buffered, drained) = try await blocking { () -> (Bool, Int, Bool) in
            let fds = try (0..<20).map { _ in
                let fd = try SourceAddressClient.open(from: "127.0.0.1", port: port)
                try HTTPTestClient.send(
                    fd,
                    Array("POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: 61440\r\n\r\n0123456789".utf8)
                )
                return fd
            }
            // The daemon's accounting shows the bytes once all of them arrived (bounded poll: nothing to await).
            let arrived = pollUntil { daemon.statistics.bufferedBodyBytes >= 20 * 10 }
            let buffered = daemon.statistics.bufferedBodyBytes
            for fd in fds { close(fd) }
            let drained = pollUntil {
                daemon.statistics.bufferedBodyBytes == 0 && daemon.statistics.openConnections == 0
            }
            return (arrived, buffered, drained)
        }
        print("20 requests announcing 61440 bytes, 10 sent each: \(buffered) body bytes buffered")
        #expect(arrived, "the 200 bytes sent reached the daemon's buffers")
        #expect(buffered <= 20 * 256, "a buffer per request grows with what arrived (was: 61440 reserved each)")
        #expect(drained, "closing the connections gives the buffers back")
    }

    @Test("connections over the per-address limit are closed at once; another address is served")
    func perAddressLimit() async throws {
        let daemon = try startEdgeDaemon {
            $0.maxConnectionsPerAddress = 5
            $0.headerTimeout = .seconds(30)
        }
        defer { daemon.shutdown(timeout: .seconds(2)) }
        let port = daemon.port
        let (closed, served) = try await blocking { () -> (Int, TestResponse) in
            let fds = try (0..<10).map { _ in
                let fd = try SourceAddressClient.open(from: "127.0.0.1", port: port)
                try HTTPTestClient.send(fd, Array("GET / HTTP/1.1\r\nHost: x\r\n".utf8))
                return fd
            }
            defer { for fd in fds { close(fd) } }
            let closed = fds.filter { SourceAddressClient.closedByServer($0, within: .milliseconds(500)) }.count
            let served = try SourceAddressClient.request(from: "127.0.0.2", port: port, "GET", "/")
            return (closed, served)
        }
        #expect(closed == 5)
        #expect(daemon.statistics.refusedPerAddress == 5)
        #expect(served.status == 200)
    }

    @Test("over the total limit a new connection's request is answered 503 with Connection: close, not queued")
    func totalLimit() async throws {
        let daemon = try startEdgeDaemon {
            $0.maxConnections = 20
            $0.connectionLimit = 40
        }
        defer { daemon.shutdown(timeout: .seconds(2)) }
        let port = daemon.port
        let (over, after) = try await blocking { () -> (TestResponse, TestResponse) in
            var fds = try (0..<20).map { _ in try SourceAddressClient.open(from: "127.0.0.1", port: port) }
            guard pollUntil({ daemon.statistics.openConnections == 20 }) else { throw TestFailure("not open") }
            let over = try SourceAddressClient.request(from: "127.0.0.2", port: port, "GET", "/")
            for fd in fds { close(fd) }
            fds = []
            guard pollUntil({ daemon.statistics.openConnections == 0 }) else { throw TestFailure("not closed") }
            let after = try SourceAddressClient.request(from: "127.0.0.2", port: port, "GET", "/")
            return (over, after)
        }
        #expect(over.status == 503)
        #expect(over.header("connection")?.lowercased() == "close")
        #expect(over.header("retry-after") == "1")
        #expect(after.status == 200)
        #expect(daemon.statistics.refusedOverloaded == 1)
    }
}
