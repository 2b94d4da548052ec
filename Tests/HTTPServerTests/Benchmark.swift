import Dispatch
import Foundation
import HTTPServer
import TestSupport
import Testing

/// `HTTPSERVER_BENCH=1 swift test -c release --filter HTTPServerTests.Benchmark` runs `wrk` (if installed)
/// against a trivial handler, answered in the handler and from another thread, and prints its report.
@Suite("Benchmark", .serialized, .enabled(if: ProcessInfo.processInfo.environment["HTTPSERVER_BENCH"] != nil))
struct Benchmark {
    @Test("wrk against a trivial handler", arguments: ["in-handler", "other-thread"])
    func wrk(mode: String) async throws {
        let body = HTTPResponse.text(200, "ok")
        let daemon = try startDaemon(handler: { _, responder in
            if mode == "in-handler" {
                responder.respond(body)
            } else {
                DispatchQueue.global().async { responder.respond(body) }
            }
        })
        defer { daemon.shutdown(timeout: .seconds(2)) }
        let port = daemon.port
        let output = try await blocking { () -> String in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/wrk")
            process.arguments = ["-t2", "-c64", "-d5s", "http://127.0.0.1:\(port)/"]
            let pipe = Pipe()
            process.standardOutput = pipe
            try process.run()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return String(decoding: data, as: UTF8.self)
        }
        print("wrk, answered \(mode):\n\(output)")
        #expect(output.contains("Requests/sec"))
        #expect(daemon.inFlight == 0)
    }
}
