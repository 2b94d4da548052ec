import Foundation
import TestSupport
import Testing

/// The short fault run on the cluster (issue 18): `faults/run.sh --cluster` on a PRIVATE topology of its own
/// (scripts/cluster.sh with CLUSTER_PORT_BASE 6700 and its own state directory, purged at the start and at
/// the end), with the binaries this test run was built with: the PostgreSQL primary killed (Patroni fails
/// over; every hold committed before must be on the new primary), the RabbitMQ node a core is connected to
/// killed, the Redis master killed (the Sentinels promote the replica), one RabbitMQ node partitioned from its
/// peers and clients, each node started again afterwards. Seeded. Its cost includes, on a fresh machine, the
/// Debian packages cluster.sh installs (patroni, etcd, redis-sentinel) and the cold `cluster.sh up`: a few
/// minutes. Same enabling rules as the single-node run: root, the binaries built, FAULTS_SKIP=1 leaves it out.
@Suite("Fault suite, short run on the cluster")
struct ClusterFaultRunTests {
    static let repository = Repository.root

    /// The four node faults of the cluster, in this order (faults/run.sh --kinds).
    static let kinds = "kill-pg-primary,kill-rabbit-node,kill-redis-master,partition-rabbit-node"

    /// FAULTS_CLUSTER_PORT_BASE moves the topology (default 6700: not the developers' 5800, not the full
    /// fault runs' 6600).
    static var portBase: String { ProcessInfo.processInfo.environment["FAULTS_CLUSTER_PORT_BASE"] ?? "6700" }

    @Test(
        "the cluster's node kills, failovers and a partition under contended load: no anomaly, no committed hold lost",
        .enabled(if: FaultRunTests.enabled),
        .timeLimit(.minutes(30))
    )
    func clusterRun() async throws {
        // The run's report and logs: kept when it fails (the path is in the output), removed when it passes.
        let out = Self.repository.appendingPathComponent(".build/faults/cluster-test-\(getpid())")
        // On a thread of its own: a run of minutes must not hold one of Swift's cooperative threads (2 on a
        // 2-core machine), or every other test waiting to resume starves (a 300 s hold of another test then
        // expired before its next step, in a clean-clone run).
        let run = try await blocking {
            try runProcess(
                "/bin/bash",
                [
                    Self.repository.appendingPathComponent("faults/run.sh").path, "--cluster", "--duration", "180",
                    "--seed", "18", "--gap", "1-2", "--kinds", Self.kinds, "--bin", FaultRunTests.binaries!.path,
                    "--out", out.path,
                ],
                environment: [
                    "CLUSTER_PORT_BASE": Self.portBase,
                    "CLUSTER_DIR": "/var/tmp/seat-inventory-cluster-test-\(Self.portBase)",
                ],
                currentDirectory: Self.repository.path
            )
        }
        let text = run.output
        if run.status != 0 { print(text) }
        #expect(run.status == 0, "faults/run.sh --cluster failed (logs in \(out.path)):\n\(text.suffix(8_000))")
        #expect(text.contains("PASS: no anomaly"))
        for kind in Self.kinds.split(separator: ",") {
            #expect(text.contains("  \(kind): "), "no \(kind) was injected")
        }
        // The explicit count: at least one failover, and every hold answered ok before it in the database.
        #expect(text.contains("primary failovers (every committed hold must survive):"))
        if run.status == 0 { try? FileManager.default.removeItem(at: out) }
    }
}
