import Foundation
import ServiceSupport
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Facade under slowloris: other clients are still served", .serialized)
struct SlowlorisTests {
    /// Opens `count` connections from 127.0.0.1 that each send part of a head and nothing more.
    private func openSlowloris(_ count: Int, port: Int) throws -> [Int32] {
        var fds: [Int32] = []
        for _ in 0..<count {
            let fd = try SourceAddressClient.open(from: "127.0.0.1", port: port)
            fds.append(fd)
            try? HTTPTestClient.send(fd, Array("POST /hold HTTP/1.1\r\nHost: x\r\nX-Slow: ".utf8))
        }
        return fds
    }

    @Test(
        "with 1,000 slowloris connections open from one address, POST /hold from 127.0.0.2 is served",
        arguments: [2_000, EdgeSettings().maxConnectionsPerAddress]
    )
    func slowloris(perAddressLimit: Int) async throws {
        try await blocking {
            let stack = Stack()
            stack.edge.maxConnectionsPerAddress = perAddressLimit
            defer { stack.close() }
            try stack.start()
            let showtime = try stack.showtime(seats: 5)
            let port = stack.port
            let fds = try openSlowloris(1_000, port: port)
            defer { for fd in fds { close(fd) } }
            // Wait (bounded) until the facade has taken all of them in: open, or refused over the limit.
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline {
                let statistics = try #require(stack.facade?.httpStatistics)
                if statistics.openConnections + statistics.refusedPerAddress >= 1_000 { break }
                usleep(20_000)
            }
            let statistics = try #require(stack.facade?.httpStatistics)
            #expect(statistics.openConnections + statistics.refusedPerAddress >= 1_000)
            if perAddressLimit >= 1_000 {
                #expect(statistics.openConnections >= 1_000, "all 1,000 are open at once")
            } else {
                #expect(statistics.refusedPerAddress == 1_000 - perAddressLimit)
            }
            let started = ContinuousClock.now
            let response = try SourceAddressClient.request(
                from: "127.0.0.2",
                port: port,
                "POST",
                "/hold",
                headers: [Stack.bearer, ("Content-Type", "application/json")],
                body: #"{"showtimeId":"\#(showtime)","seatIds":["s1"],"userId":"test-operator"}"#
            )
            let took = started.duration(to: .now)
            print(
                "slowloris: \(statistics.openConnections) connections open from 127.0.0.1 (per-address limit "
                    + "\(perAddressLimit), \(statistics.refusedPerAddress) refused); POST /hold from 127.0.0.2: "
                    + "\(response.status) in \(took)"
            )
            #expect(response.status == 201, "\(response.text)")
        }
    }
}
