import Foundation
import Testing

@testable import PostgresClient

@Suite("PostgresDate") struct PostgresDateTests {
    private func date(_ seconds: Double) -> Date { Date(timeIntervalSince1970: seconds) }

    @Test("parses PostgreSQL's ISO timestamptz output with microseconds")
    func parsesTimestamptz() throws {
        let parsed = try #require(PostgresDate.parse("2026-01-01 12:05:00.123456+00"))
        #expect(abs(parsed.timeIntervalSince1970 - 1_767_269_100.123456) < 1e-6)
        #expect(PostgresDate.parse("2026-01-01 12:05:00+00") == date(1_767_269_100))
        #expect(PostgresDate.parse("1970-01-01 00:00:00+00") == date(0))
    }

    @Test("applies hour, minute and second zone offsets")
    func parsesOffsets() {
        #expect(PostgresDate.parse("2026-01-01 17:35:00+05:30") == date(1_767_269_100))
        #expect(PostgresDate.parse("2026-01-01 07:05:00-05") == date(1_767_269_100))
        #expect(PostgresDate.parse("2026-01-01 17:35:00+0530") == date(1_767_269_100))
        #expect(PostgresDate.parse("1900-01-01 00:19:32+00:19:32") == PostgresDate.parse("1900-01-01 00:00:00+00"))
    }

    @Test("parses RFC 3339, zone-less timestamps as UTC, and plain dates")
    func parsesOtherForms() {
        #expect(PostgresDate.parse("2026-01-01T12:05:00Z") == date(1_767_269_100))
        #expect(PostgresDate.parse("2026-01-01T12:05:00.5Z") == date(1_767_269_100.5))
        #expect(PostgresDate.parse("2026-01-01 12:05:00") == date(1_767_269_100))
        #expect(PostgresDate.parse("2026-01-01") == date(1_767_225_600))
    }

    @Test("handles dates before 1970, leap days, BC years and infinity")
    func parsesEdges() {
        #expect(PostgresDate.parse("1969-12-31 23:59:59.5+00") == date(-0.5))
        #expect(PostgresDate.parse("2024-02-29 00:00:00+00") == date(1_709_164_800))
        #expect(PostgresDate.parse("2000-02-29 00:00:00+00") == date(951_782_400))
        // 1 BC is astronomical year 0, a leap year: from 0000-03-01 to 0001-01-01 is 306 days.
        let oneBC = PostgresDate.parse("0001-03-01 00:00:00+00 BC")
        let oneAD = PostgresDate.parse("0001-01-01 00:00:00+00")
        #expect(oneBC != nil && oneAD != nil)
        if let oneBC, let oneAD { #expect(oneAD.timeIntervalSince(oneBC) == 306 * 86_400) }
        #expect(PostgresDate.parse("infinity") == .distantFuture)
        #expect(PostgresDate.parse("-infinity") == .distantPast)
    }

    @Test(
        "rejects text that is not a timestamp",
        arguments: [
            "", "2026", "2026-13-01 00:00:00+00", "2025-02-29 00:00:00+00", "2026-01-01 12:05", "2026-01-01 12:05:00+",
            "2026-01-01 12:05:00.+00", "2026-01-01 12:05:00+00 junk", "yesterday", "2026-01-01x", "2026-04-31",
        ]
    )
    func rejectsGarbage(text: String) {
        #expect(PostgresDate.parse(text) == nil)
    }

    @Test("formats RFC 3339 in UTC with microseconds")
    func formats() {
        #expect(PostgresDate.format(date(1_767_269_100.123456)) == "2026-01-01T12:05:00.123456Z")
        #expect(PostgresDate.format(date(0)) == "1970-01-01T00:00:00.000000Z")
        #expect(PostgresDate.format(date(-0.5)) == "1969-12-31T23:59:59.500000Z")
        #expect(PostgresDate.format(date(1_709_164_799.9999999)) == "2024-02-29T00:00:00.000000Z")
    }

    @Test("format and parse round trip whole seconds exactly from year 1 to 9999")
    func roundTripsSeconds() throws {
        for _ in 0..<10_000 {
            let seconds = Double(Int64.random(in: -62_135_596_800...253_402_300_799))
            let text = PostgresDate.format(date(seconds))
            #expect(PostgresDate.parse(text) == date(seconds), "\(text)")
        }
    }

    @Test("format and parse round trip to the microsecond from 1843 to 2096")
    func roundTrips() throws {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<10_000 {
            let seconds = Double.random(in: -4_000_000_000...4_000_000_000, using: &generator)
            let micros = (seconds * 1_000_000).rounded() / 1_000_000
            let text = PostgresDate.format(date(micros))
            let back = try #require(PostgresDate.parse(text), "\(text)")
            #expect(abs(back.timeIntervalSince1970 - micros) < 2e-6, "\(text)")
        }
    }

    @Test("agrees with Foundation's ISO 8601 parser")
    func agreesWithFoundation() throws {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        for text in ["2026-01-01T12:05:00Z", "1999-12-31T23:59:59Z", "2038-01-19T03:14:08Z", "1901-06-15T08:00:00Z"] {
            #expect(PostgresDate.parse(text) == formatter.date(from: text))
        }
    }

    @Test("parses fast enough for hot paths")
    func parsesFast() {
        let samples = (0..<1000).map { PostgresDate.format(date(Double($0) * 86_461.123)) }
            .map { $0.replacingOccurrences(of: "T", with: " ").replacingOccurrences(of: "Z", with: "+00") }
        let clock = ContinuousClock()
        var parsed = 0
        let elapsed = clock.measure {
            for _ in 0..<100 {
                for sample in samples where PostgresDate.parse(sample) != nil { parsed += 1 }
            }
        }
        #expect(parsed == 100_000)
        // Reported, not asserted: tests do not time things (a loaded machine can take any time).
        print("PostgresDate.parse: 100000 in \(elapsed)")
    }
}
