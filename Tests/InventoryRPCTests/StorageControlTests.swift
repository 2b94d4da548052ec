#if INVENTORY_CONTROL_UNSAFE_CLAIM
import Contracts
import Foundation
import PostgresClient
import TestSupport
import Testing

@testable import InventoryRPC

/// The control run: only compiled in the control build, where the store claims seats WITHOUT the
/// availability condition. There the storm test must fail, which proves it can catch a double hold.
///
///     swift build --build-tests --scratch-path .build-control -Xswiftc -DINVENTORY_CONTROL_UNSAFE_CLAIM
///     swift test --skip-build --scratch-path .build-control --filter StorageControl
///
/// The database's own guard trigger (seat_states_live_hold) would still refuse the takeovers, so the
/// first test turns it off in its scratch database to see the bare race; the second leaves it on.
@Suite("Storage: control (unsafe claim)", .serialized)
struct StorageControlTests {
    private func storm(disableGuard: Bool) throws -> (created: Int, errors: Int, unavailable: Int, activeHolds: Int) {
        try withTestDatabase { url in
            let setup = try StoreFixture(url)
            try setup.define("show", ["A1"])
            if disableGuard {
                try setup.connection.simpleQuery("ALTER TABLE seat_states DISABLE TRIGGER seat_states_guard_update")
            }
            let connections = StorageConcurrencyTests.connections
            let perThread = 200 / connections + 1
            let outcomes = try onThreads(connections) { index, start in
                let f = try StoreFixture(url)
                start()
                var mine: [String] = []
                for attempt in 0..<perThread where index * perThread + attempt < 200 {
                    do {
                        switch try f.hold("show", ["A1"], user: "user_\(index)_\(attempt)") {
                        case .created: mine.append("created")
                        case .unavailable: mine.append("unavailable")
                        default: mine.append("other")
                        }
                    } catch {
                        mine.append("error")
                    }
                }
                return mine
            }.flatMap { $0 }
            let active = try setup.int("SELECT count(*) AS n FROM holds WHERE status = 'active'")
            return (
                outcomes.filter { $0 == "created" }.count, outcomes.filter { $0 == "error" }.count,
                outcomes.filter { $0 == "unavailable" }.count, active
            )
        }
    }

    @Test("without the claim's condition (and the guard trigger off) the one-seat storm has many winners")
    func unsafeClaimIsCaught() throws {
        let result = try storm(disableGuard: true)
        print("CONTROL unsafe claim, guard off: \(result)")
        // The same expectation as StorageConcurrencyTests.oneSeatStorm: here it must FAIL.
        #expect(result.created == 1, "control: the storm test catches the double holds")
    }

    @Test("without the claim's condition but with the guard trigger, the database still refuses the takeovers")
    func guardTriggerStillHolds() throws {
        let result = try storm(disableGuard: false)
        print("CONTROL unsafe claim, guard on: \(result)")
        #expect(result.created == 1)
    }
}
#endif
