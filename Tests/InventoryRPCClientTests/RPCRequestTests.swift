import AMQPClient
import Contracts
import Testing

@testable import InventoryRPCClient

@Suite("RPC request properties and reply headers")
struct RPCRequestTests {
    @Test("a request carries reply_to, correlation and message id, content type, and both deadline forms")
    func properties() {
        let request = RPCRequest(.hold, body: Array("{}".utf8), timeout: .seconds(5))
        let properties = request.properties(
            base: AMQPProperties(),
            correlationID: "abc-1",
            remaining: .milliseconds(1500),
            epochMilliseconds: 1_000_000
        )
        #expect(request.exchange == "inventory.rpc" && request.routingKey == "hold.request")
        #expect(properties.replyTo == "amq.rabbitmq.reply-to")
        #expect(properties.correlationID == "abc-1")
        #expect(properties.messageID == "abc-1")
        #expect(properties.contentType == "application/json")
        #expect(properties.expiration == "1500")
        #expect(properties.headers == ["x-deadline": .int(1_001_500)])
        #expect(!properties.persistent)
    }

    @Test("the time left is rounded up to whole milliseconds, and is at least one")
    func rounding() {
        let request = RPCRequest(exchange: "", routingKey: "q", body: [], timeout: .seconds(1))
        func expiration(_ remaining: Duration) -> String? {
            request.properties(base: AMQPProperties(), correlationID: "c", remaining: remaining, epochMilliseconds: 0)
                .expiration
        }
        #expect(expiration(.microseconds(1_999_001)) == "2000")
        #expect(expiration(.milliseconds(2000)) == "2000")
        #expect(expiration(.microseconds(10)) == "1")
        #expect(expiration(.zero) == "1")
        #expect(expiration(.milliseconds(-5)) == "1")
    }

    @Test("the connection's base properties and the request's headers travel; the client's own fields win")
    func baseAndHeaders() {
        var base = AMQPProperties(correlationID: "overridden", headers: ["x-caller": .string("facade")])
        base.type = "rpc"
        let request = RPCRequest(
            .hold,
            body: [],
            timeout: .seconds(1),
            headers: ["idempotency-key": .string("k-1"), "x-deadline": .int(1), "x-caller": .string("bench")]
        )
        let properties = request.properties(
            base: base,
            correlationID: "c-9",
            remaining: .seconds(1),
            epochMilliseconds: 5_000
        )
        #expect(properties.type == "rpc")
        #expect(properties.correlationID == "c-9")
        #expect(
            properties.headers == [
                "idempotency-key": .string("k-1"), "x-caller": .string("bench"), "x-deadline": .int(6_000),
            ]
        )
    }

    @Test("x-idempotent-replayed is read as the core may write it")
    func replayed() {
        func response(_ value: AMQPFieldValue?) -> RPCResponse {
            var properties = AMQPProperties()
            properties.headers["x-idempotent-replayed"] = value
            return RPCResponse(body: [], properties: properties)
        }
        #expect(response(.bool(true)).isIdempotentReplay)
        #expect(response(.string("TRUE")).isIdempotentReplay)
        #expect(response(.int(1)).isIdempotentReplay)
        #expect(!response(.bool(false)).isIdempotentReplay)
        #expect(!response(.string("no")).isIdempotentReplay)
        #expect(!response(nil).isIdempotentReplay)
    }

    @Test("correlation ids do not repeat, within a generator or across two")
    func correlationIDs() {
        let first = CorrelationIDs()
        let second = CorrelationIDs()
        let ids = (0..<1000).map { _ in first.next() } + (0..<1000).map { _ in second.next() }
        #expect(Set(ids).count == 2000)
    }
}
