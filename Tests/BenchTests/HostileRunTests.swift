import Foundation
import TestSupport
import Testing

/// The smoke version of the hostile-traffic run (issue 14 item 7): `SHORT=1 bench/hostile.sh` with the
/// binaries this test run was built with, on a vhost and database of its own. It checks that the run
/// runs and reports both phases and every attack; it does not judge the numbers (no test times things:
/// the lead reads them, RELIABILITY.md keeps them). Under a minute; HOSTILE_SKIP=1 leaves it out.
@Suite("Hostile-traffic run, short")
struct HostileRunTests {
    static let binaries: URL? = Products.directory.flatMap { directory in
        ["inventory-rpc", "http-facade", "realtime-gateway", "inventory-bench"].allSatisfy {
            FileManager.default.isExecutableFile(atPath: directory.appendingPathComponent($0).path)
        } ? directory : nil
    }

    static var enabled: Bool {
        ProcessInfo.processInfo.environment["HOSTILE_SKIP"] != "1" && binaries != nil
    }

    @Test(
        "bench/hostile.sh SHORT=1 measures the buyers alone and attacked, and every attack runs",
        .enabled(if: enabled),
        .timeLimit(.minutes(5))
    )
    func shortRun() async throws {
        // On a thread of its own, off Swift's cooperative threads, which other tests need meanwhile.
        let run = try await blocking {
            try runProcess(
                "/bin/bash",
                [Repository.root.appendingPathComponent("bench/hostile.sh").path],
                environment: ["SHORT": "1", "BIN": Self.binaries!.path],
                currentDirectory: Repository.root.path
            )
        }
        let text = run.output
        print(text)
        #expect(run.status == 0, "bench/hostile.sh failed:\n\(text.suffix(6_000))")
        for line in [
            "buyers alone", "buyers attacked", "buyers under attack", "attack bot", "attack hammer",
            "attack slowloris", "attack wsflood", "availability requests answered during the attack phase",
        ] {
            #expect(text.contains(line), "no '\(line)' line")
        }
        // Each attack reached its target: the hammer was answered, the slowloris connections opened,
        // the subscribe frames went out.
        // (Counters are printed in name order: with the facade's edge on, "closed_by_server" comes first.)
        #expect(text.range(of: #"attack slowloris: .*opened [1-9]"#, options: .regularExpression) != nil)
        #expect(text.range(of: #"frames_sent [1-9]"#, options: .regularExpression) != nil)
        // Both phases' buyers ran to the end and their verifier passed (the calm phase's checks every won hold
        // and every event); the attack phase's showtimes passed `inventory-bench verify` once the attack stopped.
        #expect(text.range(of: #"buyers alone .*\(bench exit 0\)"#, options: .regularExpression) != nil)
        #expect(text.range(of: #"buyers attacked .*\(bench exit 0\)"#, options: .regularExpression) != nil)
        #expect(text.contains("inventory-bench verify, exit 0"))
    }
}
