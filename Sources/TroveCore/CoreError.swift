/// Errors from decoding values: malformed objects, packs and ids.
public struct CoreError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case malformedObject = "malformed-object"
        case unsupportedVersion = "unsupported-version"
        case invalidName = "invalid-name"
        case integrity = "integrity"
        case compression = "compression"
        case invalidArgument = "invalid-argument"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
