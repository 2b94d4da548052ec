import Contracts
import Foundation
import Testing

@testable import Bench

@Suite("The benchmark's virtual clients")
struct WorkloadTests {
    private func configuration(buyerPerHold: Bool) -> WorkloadConfiguration {
        var configuration = WorkloadConfiguration(
            shape: .hot,
            showtimeIDs: ["run-st0"],
            seatsPerShowtime: 100,
            seatsPerHold: 1...4,
            hotFraction: 0,
            runID: "run"
        )
        configuration.buyerPerHold = buyerPerHold
        return configuration
    }

    /// Plays `cycles` hold cycles (each hold won, then released) and returns each request's user id.
    private func play(_ client: inout VirtualClient, cycles: Int) -> [(String, String)] {
        var seen: [(String, String)] = []
        for cycle in 0..<cycles {
            let hold = client.nextRequest()
            guard case .hold(let request) = hold else {
                Issue.record("expected a hold, got \(hold.operation)")
                return seen
            }
            seen.append(("hold", request.userId))
            #expect(request.userId == client.userID)
            let won = Hold(
                holdId: "h\(cycle)", showtimeId: request.showtimeId, userId: request.userId,
                seatIds: request.seatIds, status: .active, expiresAt: Date()
            )
            client.received(BenchReply(outcome: .won, hold: won), for: hold)
            guard case .release(let release) = client.nextRequest() else {
                Issue.record("expected the winner's release")
                return seen
            }
            seen.append(("release", release.userId ?? "(none)"))
            #expect(client.userID == request.userId, "the follow-up is sent as the hold's user")
        }
        return seen
    }

    @Test("buyer per hold: every hold comes from a new user, and its release from that same user")
    func buyerPerHold() {
        var client = VirtualClient(userID: "run-u0-0", configuration: configuration(buyerPerHold: true), seed: 7)
        let seen = play(&client, cycles: 5)
        let holders = seen.filter { $0.0 == "hold" }.map(\.1)
        #expect(holders == (1...5).map { "run-u0-0-b\($0)" })
        for index in stride(from: 0, to: seen.count, by: 2) { #expect(seen[index].1 == seen[index + 1].1) }
    }

    @Test("by default a client is one user for the whole run")
    func oneUser() {
        var client = VirtualClient(userID: "run-u0-0", configuration: configuration(buyerPerHold: false), seed: 7)
        #expect(Set(play(&client, cycles: 5).map(\.1)) == ["run-u0-0"])
    }
}
