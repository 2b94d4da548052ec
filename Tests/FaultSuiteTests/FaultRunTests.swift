import Foundation
import Testing

/// The short fault run of the test command: `faults/run.sh --duration 45` on its own private PostgreSQL,
/// Redis and RabbitMQ (never the shared ones), with the binaries this test run was built with. About a
/// minute and a half; set FAULTS_SKIP=1 to leave it out.
@Suite("Fault suite, short run")
struct FaultRunTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The directory of the test executable: where `swift build --build-tests` put the service's binaries.
    static let binaries: URL? = {
        let candidates = [
            Bundle.main.executableURL?.deletingLastPathComponent(),
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
            repository.appendingPathComponent(".build/debug"),
        ]
        return candidates.compactMap { $0 }.first { directory in
            ["inventory-rpc", "http-facade", "inventory-faults"].allSatisfy {
                FileManager.default.isExecutableFile(atPath: directory.appendingPathComponent($0).path)
            }
        }
    }()

    /// Root is needed to run the private PostgreSQL as `postgres` and RabbitMQ as `rabbitmq` (as
    /// scripts/services.sh needs it for the shared ones).
    static var enabled: Bool {
        ProcessInfo.processInfo.environment["FAULTS_SKIP"] != "1" && binaries != nil && getuid() == 0
    }

    @Test(
        "45 s of faults under contended load: no anomaly of any kind, every fault recovered",
        .enabled(if: enabled),
        .timeLimit(.minutes(10))
    )
    func shortRun() throws {
        // The run's report and logs: kept when it fails (the path is in the output), removed when it passes.
        let out = Self.repository.appendingPathComponent(".build/faults/test-\(getpid())")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [
            Self.repository.appendingPathComponent("faults/run.sh").path, "--duration", "45", "--bin",
            Self.binaries!.path, "--out", out.path,
        ]
        process.currentDirectoryURL = Self.repository
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        if process.terminationStatus != 0 { print(text) }
        #expect(process.terminationStatus == 0, "faults/run.sh failed (logs in \(out.path)):\n\(text.suffix(6_000))")
        #expect(text.contains("PASS: no anomaly"))
        if process.terminationStatus == 0 { try? FileManager.default.removeItem(at: out) }
    }
}
