import Foundation
import TestSupport
import Testing

/// The short fault run of the test command: `faults/run.sh --duration 30 --seed 45 --kinds ...` on its own
/// private PostgreSQL, Redis and RabbitMQ (never the shared ones), the cores in network namespaces of their
/// own, with the binaries this test run was built with: a partition of the relay leader's database link
/// (the leadership must pass on), two faults at once, a partition of a core's broker link, a core killed
/// after its commits. Seeded: the same faults, cores, links and directions every run. About a minute; set
/// FAULTS_SKIP=1 to leave it out.
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

    /// In this order (faults/run.sh --kinds): at least one partition, the relay's handover, a double fault.
    static let kinds = "partition-relay-db,double,partition-rabbitmq,kill-core-after-commit,partition-redis"

    @Test(
        "30 s of faults (partitions, kills, two at once) under contended load: no anomaly, every fault recovered",
        .enabled(if: enabled),
        .timeLimit(.minutes(10))
    )
    func shortRun() async throws {
        // The run's report and logs: kept when it fails (the path is in the output), removed when it passes.
        let out = Self.repository.appendingPathComponent(".build/faults/test-\(getpid())")
        // On a thread of its own: a run of minutes must not hold one of Swift's cooperative threads (2 on a
        // 2-core machine), or every other test waiting to resume starves (a 300 s hold of another test then
        // expired before its next step, in a clean-clone run).
        let run = try await blocking {
            try runProcess(
                "/bin/bash",
                [
                    Self.repository.appendingPathComponent("faults/run.sh").path, "--duration", "30", "--seed", "45",
                    "--gap", "1-2", "--kinds", Self.kinds, "--bin", Self.binaries!.path, "--out", out.path,
                ],
                currentDirectory: Self.repository.path
            )
        }
        let text = run.output
        if run.status != 0 { print(text) }
        #expect(run.status == 0, "faults/run.sh failed (logs in \(out.path)):\n\(text.suffix(6_000))")
        #expect(text.contains("PASS: no anomaly"))
        if run.status == 0 { try? FileManager.default.removeItem(at: out) }
    }
}
