import Foundation
import TestSupport
import Testing

/// The short fault run of the test command: `faults/run.sh --duration 45` on its own private PostgreSQL,
/// Redis and RabbitMQ (never the shared ones), with the binaries this test run was built with. About a
/// minute and a half; set FAULTS_SKIP=1 to leave it out.
@Suite("Fault suite, short run")
struct FaultRunTests {
    static let repository = Repository.root

    /// Where `swift build --build-tests` put the service's binaries, if it built all three.
    static let binaries: URL? = Products.directory.flatMap { directory in
        ["inventory-rpc", "http-facade", "inventory-faults"].allSatisfy {
            FileManager.default.isExecutableFile(atPath: directory.appendingPathComponent($0).path)
        } ? directory : nil
    }

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
        let run = try runProcess(
            "/bin/bash",
            [
                Self.repository.appendingPathComponent("faults/run.sh").path, "--duration", "45", "--bin",
                Self.binaries!.path, "--out", out.path,
            ],
            currentDirectory: Self.repository.path
        )
        let text = run.output
        if run.status != 0 { print(text) }
        #expect(run.status == 0, "faults/run.sh failed (logs in \(out.path)):\n\(text.suffix(6_000))")
        #expect(text.contains("PASS: no anomaly"))
        if run.status == 0 { try? FileManager.default.removeItem(at: out) }
    }
}
