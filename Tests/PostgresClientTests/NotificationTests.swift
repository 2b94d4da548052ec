import Foundation
import Testing

@testable import PostgresClient

@Suite("LISTEN / NOTIFY") struct NotificationTests {
    @Test("a notification from another connection is delivered with its payload and sender")
    func delivered() throws {
        try TestDatabase.withConnection { listener in
            try TestDatabase.withConnection { sender in
                // Quoting keeps case and punctuation, and makes the name safe.
                let channel = TestDatabase.uniqueName("Seats \"A\"; x")
                try listener.listen(channel)
                try sender.notify(channel, payload: #"{"seat":"A-1","note":"it's"}"#)
                let notifications = try listener.waitForNotifications(timeout: .seconds(5))
                #expect(notifications.count == 1)
                #expect(notifications.first?.channel == channel)
                #expect(notifications.first?.payload == #"{"seat":"A-1","note":"it's"}"#)
                #expect(notifications.first?.pid == sender.backendPID)
            }
        }
    }

    @Test("several notifications come together, and ones already received return at once")
    func several() throws {
        try TestDatabase.withConnection { listener in
            try TestDatabase.withConnection { sender in
                let channel = TestDatabase.uniqueName("chan")
                try listener.listen(channel)
                try sender.transaction { sender in
                    for i in 1...3 { try sender.notify(channel, payload: "n\(i)") }
                }
                var received: [PostgresNotification] = []
                let clock = ContinuousClock()
                let deadline = clock.now.advanced(by: .seconds(5))
                while received.count < 3, clock.now < deadline {
                    received += try listener.waitForNotifications(timeout: .seconds(1))
                }
                #expect(received.map(\.payload) == ["n1", "n2", "n3"])

                // Delivered while the listener runs a query: kept by libpq, returned without waiting.
                try sender.notify(channel, payload: "during query")
                try listener.query("SELECT pg_sleep(0.2)")
                let start = clock.now
                var pending = try listener.waitForNotifications(timeout: .seconds(30))
                if pending.isEmpty { pending = try listener.waitForNotifications(timeout: .seconds(30)) }
                #expect(pending.map(\.payload) == ["during query"])
                // Returned without waiting for the 30 s timeout.
                #expect(start.duration(to: clock.now) < .seconds(15))
            }
        }
    }

    @Test("waiting with nothing sent returns empty after the timeout")
    func timeout() throws {
        try TestDatabase.withConnection { listener in
            try listener.listen(TestDatabase.uniqueName("quiet"))
            let clock = ContinuousClock()
            let start = clock.now
            #expect(try listener.waitForNotifications(timeout: .milliseconds(200)).isEmpty)
            let waited = start.duration(to: clock.now)
            #expect(waited >= .milliseconds(190))
            #expect(waited < .seconds(10))
            #expect(try listener.waitForNotifications(timeout: .zero).isEmpty)
        }
    }

    @Test("after unlisten nothing more arrives")
    func unlisten() throws {
        try TestDatabase.withConnection { listener in
            try TestDatabase.withConnection { sender in
                let channel = TestDatabase.uniqueName("chan")
                try listener.listen(channel)
                try listener.unlisten(channel)
                try sender.notify(channel, payload: "ignored")
                #expect(try listener.waitForNotifications(timeout: .milliseconds(300)).isEmpty)
            }
        }
    }
}
