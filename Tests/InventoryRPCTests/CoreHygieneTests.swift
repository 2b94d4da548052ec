import AMQPClient
import Contracts
import Foundation
import TestSupport
import Testing

@testable import InventoryRPC

extension CoreServiceTests {
    /// RPC hygiene: hostile input, missing reply_to, deadlines.
    @Suite("Core RPC hygiene")
    struct CoreHygieneTests {
        @Test("1,000 malformed or hostile messages, then a valid request is answered")
        func hostileMessages() async throws {
            try await withCore(workers: 4) { core in
                let showtimeID = try await core.showtime(seats: 5)
                let past = Int64(Date().timeIntervalSince1970 * 1000) - 1000
                let huge = "[" + Array(repeating: "\"s1\"", count: 20_000).joined(separator: ",") + "]"
                let deep = String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000)
                let bodies: [String] = [
                    "{not json", "", "null", "[]", "42", "\"text\"", #"{"showtimeId":1,"seatIds":"s1","userId":true}"#,
                    #"{"showtimeId":"\#(showtimeID)","seatIds":\#(huge),"userId":"u"}"#, deep,
                    #"{"showtimeId":"\#(showtimeID)","seatIds":["s1"],"userId":"u","extra":{"a":[1,2,3]}}"#,
                    #"{"showtimeId":"\#(showtimeID)","seatIds":[null],"userId":"u"}"#, "\u{0}\u{1}\u{2}",
                    #"{"holdId":{"$gt":""}}"#, String(repeating: "a", count: 70_000),
                ]
                let operations = RPCOperation.allCases
                var replies: [Task<RPCAnswer, any Error>] = []
                for index in 0..<1000 {
                    let operation = operations[index % operations.count]
                    let body = Array(bodies[index % bodies.count].utf8)
                    switch index % 10 {
                    case 0:  // no reply_to: acked and dropped, no answer
                        core.client.send(
                            routingKey: operation.routingKey,
                            body: body,
                            properties: AMQPProperties(
                                contentType: "application/json",
                                correlationID: "no-reply-\(index)"
                            )
                        )
                    case 1:  // past its deadline: dropped without acting, even if valid
                        core.client.send(
                            routingKey: RPCOperation.hold.routingKey,
                            body: try ContractJSON.encode(
                                HoldRequest(showtimeId: showtimeID, seatIds: ["s\(index % 5 + 1)"], userId: "late")
                            ),
                            properties: AMQPProperties(
                                contentType: "application/json",
                                correlationID: "late-\(index)",
                                replyTo: "amq.rabbitmq.reply-to",
                                headers: ["x-deadline": .int(past)]
                            )
                        )
                    case 2:  // hostile headers
                        replies.append(
                            Task {
                                try await core.client.call(
                                    operation,
                                    body: body,
                                    headers: ["x-deadline": .string("soon"), "idempotency-key": .int(7)]
                                )
                            }
                        )
                    default:
                        replies.append(Task { try await core.client.call(operation, body: body) })
                    }
                }
                var codes: [String: Int] = [:]
                for reply in replies {
                    let answer = try await reply.value
                    let code = answer.errorCode?.rawValue ?? "ok"
                    codes[code, default: 0] += 1
                }
                #expect(codes["INTERNAL"] == nil, "no hostile body is an internal error: \(codes)")
                #expect(
                    codes.keys.allSatisfy {
                        ["ok", "VALIDATION_FAILED", "HOLD_NOT_FOUND", "SHOWTIME_NOT_FOUND"].contains($0)
                    },
                    "\(codes)"
                )

                // Still alive and acting: a valid hold is answered.
                let valid = try await core.hold(showtimeID, ["s1"], user: "after")
                #expect(valid.errorCode == nil)
                // Nothing acted on a late request: the only hold is the valid one.
                let rows = try core.query("SELECT user_id FROM holds WHERE showtime_id = $1", [showtimeID])
                #expect(rows.map { $0["user_id"] } == ["after"])
            }
        }

        @Test("a request without reply_to is acknowledged (not requeued) and one past its deadline is not acted on")
        func droppedRequests() async throws {
            try await withCore(workers: 2) { core in
                let showtimeID = try await core.showtime(seats: 2)
                core.client.send(
                    routingKey: RPCOperation.hold.routingKey,
                    body: try ContractJSON.encode(
                        HoldRequest(showtimeId: showtimeID, seatIds: ["s1"], userId: "nobody")
                    ),
                    properties: AMQPProperties(contentType: "application/json", correlationID: "c-1")
                )
                let past = Int64(Date().timeIntervalSince1970 * 1000) - 1
                let late = Task {
                    try await core.client.call(
                        .hold,
                        HoldRequest(showtimeId: showtimeID, seatIds: ["s2"], userId: "late"),
                        headers: ["x-deadline": .int(past)],
                        timeout: .seconds(2)
                    )
                }
                await #expect(throws: RPCTimeout.self) { _ = try await late.value }
                // A reply_to that names no consumer (a stale or forged direct reply-to name): the reply goes
                // nowhere, the request is still acked, the worker keeps its channel.
                for index in 0..<3 {
                    core.client.send(
                        routingKey: RPCOperation.ping.routingKey,
                        body: Array("{}".utf8),
                        properties: AMQPProperties(
                            contentType: "application/json",
                            correlationID: "bogus-\(index)",
                            replyTo: "amq.rabbitmq.reply-to.bogus\(index)"
                        )
                    )
                    core.client.send(
                        routingKey: RPCOperation.ping.routingKey,
                        body: Array("{}".utf8),
                        properties: AMQPProperties(
                            contentType: "application/json",
                            correlationID: "gone-\(index)",
                            replyTo: "no-such-queue-\(index)"
                        )
                    )
                }
                // A future deadline is fine.
                let future = Int64(Date().timeIntervalSince1970 * 1000) + 60_000
                let onTime = try await core.hold(
                    showtimeID,
                    ["s2"],
                    user: "on-time",
                    headers: ["x-deadline": .int(future)]
                )
                #expect(onTime.errorCode == nil)
                let rows = try core.query("SELECT user_id FROM holds WHERE showtime_id = $1", [showtimeID])
                #expect(rows.map { $0["user_id"] } == ["on-time"])
                // Both dropped messages were acked: the queue is empty.
                let queue = try AMQPConnection(
                    configuration: try AMQPConfiguration(url: core.rabbitmqURL),
                    logger: testLogger
                )
                defer { queue.close() }
                #expect(try queue.inspectQueue(RPCOperation.hold.queueName).messageCount == 0)
                #expect(try queue.inspectQueue(RPCOperation.ping.queueName).messageCount == 0)
            }
        }
    }
}
