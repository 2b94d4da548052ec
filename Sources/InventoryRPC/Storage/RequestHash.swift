import Contracts
internal import Crypto

/// What an idempotency key is bound to: the request it first came with. A later request with the same
/// user and key replays the hold when its hash is equal, and is `IDEMPOTENCY_KEY_REUSED` otherwise.
///
/// The hash is SHA-256 (hex) over a versioned, length-prefixed encoding of showtimeId, userId and the
/// seatIds in the order given (the hold's `seatIds` keep that order, so another order is another
/// request). The key itself is not part of it: it is the lookup. Length prefixes make the encoding
/// unambiguous whatever the identifiers contain.
public enum RequestHash {
    public static func of(_ request: HoldRequest) -> String {
        var bytes: [UInt8] = Array("inventory.hold.v1".utf8)
        func field(_ value: String) {
            let utf8 = Array(value.utf8)
            bytes.append(contentsOf: Array("\n\(utf8.count):".utf8))
            bytes.append(contentsOf: utf8)
        }
        field(request.showtimeId)
        field(request.userId)
        field(String(request.seatIds.count))
        for seatID in request.seatIds { field(seatID) }
        return SHA256.hex(bytes)
    }

    /// A best-available hold: its own version tag, so it never equals a hold of named seats; every field,
    /// absent ones as `-` (`together` absent and false are the same request).
    public static func of(_ request: BestAvailableHoldRequest) -> String {
        var bytes: [UInt8] = Array("inventory.hold.best.v1".utf8)
        func field(_ value: String) {
            let utf8 = Array(value.utf8)
            bytes.append(contentsOf: Array("\n\(utf8.count):".utf8))
            bytes.append(contentsOf: utf8)
        }
        field(request.showtimeId)
        field(request.userId)
        field(String(request.quantity))
        field(request.section.map { "+" + $0 } ?? "-")
        field(request.category.map { "+" + $0 } ?? "-")
        field((request.together ?? false) ? "together" : "any")
        return SHA256.hex(bytes)
    }
}

/// SHA-256 (swift-crypto) as lowercase hex. The request hash needs no secrecy: collision resistance is
/// all that matters. (The name shadows Crypto's `SHA256` inside this module.)
enum SHA256 {
    static func hex(_ message: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var characters: [UInt8] = []
        characters.reserveCapacity(64)
        for byte in Crypto.SHA256.hash(data: message) {
            characters.append(digits[Int(byte >> 4)])
            characters.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: characters, as: UTF8.self)
    }
}
