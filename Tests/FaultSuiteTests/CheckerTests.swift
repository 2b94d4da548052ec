import Testing

@testable import FaultSuite

@Suite("History checker")
struct CheckerTests {}
