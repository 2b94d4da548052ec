internal import Crypto

/// SHA-1 (swift-crypto), only to name Lua scripts the way Redis does for EVALSHA. Not for security.
enum SHA1 {
    static func hexDigest(_ text: String) -> String {
        Insecure.SHA1.hash(data: Array(text.utf8)).hexString
    }
}

extension Sequence<UInt8> {
    /// Lowercase hex, two digits a byte.
    var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var characters: [UInt8] = []
        for byte in self {
            characters.append(digits[Int(byte >> 4)])
            characters.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: characters, as: UTF8.self)
    }
}
