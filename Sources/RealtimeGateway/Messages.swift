import Contracts
import Foundation

/// What a client may send (text frames, JSON objects):
/// `{"type": "subscribe", "showtimeId": "..."}`, `{"type": "unsubscribe", "showtimeId": "..."}` and
/// `{"type": "ping"}` (an application-level keep-alive for browsers, whose WebSocket API cannot send pings).
public enum ClientRequest: Sendable, Hashable {
    case subscribe(showtimeId: String)
    case unsubscribe(showtimeId: String)
    case ping

    /// Longest message a client may send; anything longer is refused (a subscribe is under 200 bytes).
    public static let maxBytes = 4_096

    /// Parses one text message; the error is what the client gets back (`VALIDATION_FAILED`, naming the field).
    public static func parse(_ text: String) -> Result<ClientRequest, ErrorBody> {
        func invalid(_ field: String, _ rule: ValidationRule, _ message: String) -> Result<ClientRequest, ErrorBody> {
            .failure(.validation([ValidationProblem(field: field, rule: rule, message: message)]))
        }
        guard text.utf8.count <= maxBytes else {
            return invalid("$", .type, "A message may be at most \(maxBytes) bytes")
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            return invalid("$", .json, "The message must be a JSON object")
        }
        guard let type = object["type"] else {
            return invalid("type", .required, "type is required: subscribe, unsubscribe or ping")
        }
        guard let type = type as? String else {
            return invalid("type", .type, "type must be a string: subscribe, unsubscribe or ping")
        }
        switch type {
        case "ping":
            return .success(.ping)
        case "subscribe", "unsubscribe":
            guard let value = object["showtimeId"] else {
                return invalid("showtimeId", .required, "showtimeId is required")
            }
            guard let showtimeId = value as? String else {
                return invalid("showtimeId", .type, "showtimeId must be a string")
            }
            if let problem = Identifier.problem(showtimeId, field: "showtimeId") {
                return .failure(.validation([problem]))
            }
            return .success(
                type == "subscribe" ? .subscribe(showtimeId: showtimeId) : .unsubscribe(showtimeId: showtimeId)
            )
        default:
            return invalid("type", .pattern, "type must be subscribe, unsubscribe or ping, not '\(type.prefix(64))'")
        }
    }
}

/// What the gateway sends (text frames, JSON objects with sorted keys, dates as RFC 3339 UTC).
public enum ServerMessage {
    /// An inventory event, as the exchange carried it but without `userId`, `holdId` and `orderId`: the
    /// gateway's subscribers are anonymous, and whose hold a seat is, the hold's handle and the order that
    /// bought it are no business of every browser on the seat map (decision 0011):
    /// `{"type": "hold.created", "eventId", "occurredAt", "showtimeId", "seatIds", "seatVersions",
    /// "expiresAt"?}`. `seatVersions` (seatId → the seat's version after this change) is what lets a client
    /// apply it per seat only when newer than what it shows (INTERFACE.md rule 8).
    struct Event: Encodable {
        var type: String
        var eventId: String
        var occurredAt: Date
        var showtimeId: String
        var seatIds: [String]
        var seatVersions: [String: Int64]
        var expiresAt: Date?
    }

    /// `{"type": "snapshot", "showtimeId", "availability": [...], "summary": {...}, "requestedAt"}`:
    /// the seat map as the `availability` RPC answered it, each seat with its `version`. `requestedAt`
    /// is when the gateway asked: an event that follows the snapshot on this connection either is
    /// reflected in it already (its versions are not newer than the snapshot's: a client applying per
    /// seat by version ignores it) or happened after it.
    struct Snapshot: Encodable {
        var type = "snapshot"
        var showtimeId: String
        var availability: [SeatAvailability]
        var summary: AvailabilitySummary
        var requestedAt: Date
    }

    struct Resync: Encodable {
        var type = "resync"
        var showtimeId: String
        var reason: String
    }

    struct Unsubscribed: Encodable {
        var type = "unsubscribed"
        var showtimeId: String
    }

    struct Pong: Encodable {
        var type = "pong"
    }

    struct Failure: Encodable {
        var type = "error"
        var code: ErrorCode
        var message: String
        var details: [String: JSONValue]
        var showtimeId: String?
    }

    public static func event(_ event: InventoryEvent) -> String {
        encode(
            Event(
                type: event.type.rawValue,
                eventId: event.eventId,
                occurredAt: event.occurredAt,
                showtimeId: event.showtimeId,
                seatIds: event.seatIds,
                seatVersions: event.seatVersions,
                expiresAt: event.expiresAt
            )
        )
    }

    public static func snapshot(_ availability: Availability, requestedAt: Date) -> String {
        encode(
            Snapshot(
                showtimeId: availability.showtimeId,
                availability: availability.availability,
                summary: availability.summary,
                requestedAt: requestedAt
            )
        )
    }

    /// `{"type": "resync", "showtimeId", "reason"}`: events of this showtime may have been missed (the
    /// gateway lost the broker, or the client's snapshot failed); a fresh snapshot follows.
    public static func resync(showtimeId: String, reason: String) -> String {
        encode(Resync(showtimeId: showtimeId, reason: reason))
    }

    public static func unsubscribed(showtimeId: String) -> String {
        encode(Unsubscribed(showtimeId: showtimeId))
    }

    public static let pong = encode(Pong())

    /// `{"type": "error", "code", "message", "details", "showtimeId"?}`, codes as INTERFACE.md's table.
    public static func error(_ body: ErrorBody, showtimeId: String? = nil) -> String {
        encode(Failure(code: body.code, message: body.message, details: body.details ?? [:], showtimeId: showtimeId))
    }

    private static func encode(_ value: some Encodable) -> String {
        do {
            return String(decoding: try ContractJSON.encoder().encode(value), as: UTF8.self)
        } catch {
            // Only finite dates and plain strings go in: encoding cannot fail.
            return #"{"code":"INTERNAL","details":{},"message":"Internal error","type":"error"}"#
        }
    }
}
