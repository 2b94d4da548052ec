import Foundation
import Testing

@testable import PostgresClient

/// Throughput of a hold-shaped transaction in three styles. Off by default (it only prints numbers);
/// run with `POSTGRES_BENCH=1 swift test -c release --filter PostgresClientTests.Benchmarks`.
@Suite("Benchmarks", .enabled(if: ProcessInfo.processInfo.environment["POSTGRES_BENCH"] != nil))
struct Benchmarks {
    static let rounds = 2000

    private func setUp(_ connection: PostgresConnection) throws -> (holds: String, seats: String) {
        let holds = TestDatabase.uniqueName("bench_holds")
        let seats = TestDatabase.uniqueName("bench_seats")
        try connection.simpleQuery(
            """
            CREATE TEMP TABLE \(seats) (seat_id text PRIMARY KEY, hold_id text);
            INSERT INTO \(seats) SELECT 'S' || g, NULL FROM generate_series(1, \(Self.rounds)) g;
            CREATE TEMP TABLE \(holds) (hold_id text PRIMARY KEY, seat_ids text[] NOT NULL, expires_at timestamptz NOT NULL);
            ANALYZE \(seats);
            """
        )
        return (holds, seats)
    }

    private func report(_ label: String, _ elapsed: Duration) {
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("bench \(label): \(Self.rounds) transactions in \(elapsed), \(Int(Double(Self.rounds) / seconds))/s")
    }

    @Test("hold transactions: four round trips, prepared, pipelined")
    func holds() throws {
        try TestDatabase.withConnection { connection in
            let clock = ContinuousClock()
            let insert = "INSERT INTO %@ (hold_id, seat_ids, expires_at) VALUES ($1, $2, $3)"
            let update = "UPDATE %@ SET hold_id = $1 WHERE seat_id = ANY($2::text[]) AND hold_id IS NULL"

            var tables = try setUp(connection)
            report(
                "plain",
                clock.measure {
                    for i in 0..<Self.rounds {
                        try? connection.transaction { connection in
                            try connection.query(
                                insert.replacingOccurrences(of: "%@", with: tables.holds),
                                ["h\(i)", ["S\(i + 1)"], Date()]
                            )
                            try connection.query(
                                update.replacingOccurrences(of: "%@", with: tables.seats),
                                ["h\(i)", ["S\(i + 1)"]]
                            )
                        }
                    }
                }
            )

            tables = try setUp(connection)
            try connection.prepare(
                "bench_insert_\(tables.holds)",
                insert.replacingOccurrences(of: "%@", with: tables.holds)
            )
            try connection.prepare(
                "bench_update_\(tables.seats)",
                update.replacingOccurrences(of: "%@", with: tables.seats)
            )
            report(
                "prepared",
                clock.measure {
                    for i in 0..<Self.rounds {
                        try? connection.transaction { connection in
                            try connection.execute(
                                prepared: "bench_insert_\(tables.holds)",
                                ["h\(i)", ["S\(i + 1)"], Date()]
                            )
                            try connection.execute(prepared: "bench_update_\(tables.seats)", ["h\(i)", ["S\(i + 1)"]])
                        }
                    }
                }
            )

            tables = try setUp(connection)
            try connection.prepare(
                "bench_insert_\(tables.holds)",
                insert.replacingOccurrences(of: "%@", with: tables.holds)
            )
            try connection.prepare(
                "bench_update_\(tables.seats)",
                update.replacingOccurrences(of: "%@", with: tables.seats)
            )
            var failures = 0
            report(
                "pipelined",
                clock.measure {
                    for i in 0..<Self.rounds {
                        let outcomes = try? connection.pipeline([
                            .query("BEGIN"),
                            .prepared("bench_insert_\(tables.holds)", ["h\(i)", ["S\(i + 1)"], Date()]),
                            .prepared("bench_update_\(tables.seats)", ["h\(i)", ["S\(i + 1)"]]),
                            .query("COMMIT"),
                        ])
                        if outcomes?.allSatisfy({ (try? $0.get()) != nil }) != true { failures += 1 }
                    }
                }
            )
            #expect(failures == 0)
            let held = try connection.query("SELECT count(*) AS n FROM \(tables.seats) WHERE hold_id IS NOT NULL").rows[
                0
            ]
            #expect(try held.decode("n", as: Int.self) == Self.rounds)
        }
    }

    @Test("decoding: timestamps and text arrays")
    func decoding() throws {
        let clock = ContinuousClock()
        let stamp = "2026-01-01 12:05:00.123456+00"
        var sink = 0.0
        let dates = clock.measure {
            for _ in 0..<1_000_000 { sink += PostgresDate.parse(stamp)?.timeIntervalSince1970 ?? 0 }
        }
        print("bench PostgresDate.parse: 1M in \(dates) (\(sink > 0))")
        let array = PostgresArrayLiteral.encode((0..<20).map { "A-\($0)" })
        var count = 0
        let arrays = clock.measure {
            for _ in 0..<100_000 { count += (try? [String](postgresText: array))?.count ?? 0 }
        }
        print("bench [String] decode (20 elements): 100k in \(arrays) (\(count))")
    }
}
