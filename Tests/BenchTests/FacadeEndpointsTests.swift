import Testing

@testable import Bench

@Suite("The benchmark's facade URLs")
struct FacadeEndpointsTests {
    @Test("one facade URL gives one host and port")
    func one() throws {
        let endpoints = try BenchRunner.httpEndpoints("http://localhost:3005")
        #expect(endpoints.map(\.0) == ["localhost"])
        #expect(endpoints.map(\.1) == [3005])
    }

    @Test("several facade URLs separated by commas give each host and port in order")
    func several() throws {
        let endpoints = try BenchRunner.httpEndpoints("http://127.0.0.1:3005, http://127.0.0.1:3105")
        #expect(endpoints.map(\.0) == ["127.0.0.1", "127.0.0.1"])
        #expect(endpoints.map(\.1) == [3005, 3105])
    }

    @Test("an empty entry or a URL without a host is an error")
    func bad() {
        #expect(throws: BenchError.self) { try BenchRunner.httpEndpoints("http://a:1,,http://b:2") }
        #expect(throws: BenchError.self) { try BenchRunner.httpEndpoints("http://a:1,") }
        #expect(throws: BenchError.self) { try BenchRunner.httpEndpoints("not a url") }
    }
}
