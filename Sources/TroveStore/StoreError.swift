import TroveCore

/// Errors of the store, with a code the CLI maps to an exit status (Docs/cli.md).
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        /// A revision, ref, path or object that does not exist.
        case notFound = "not-found"
        /// Stored bytes that do not match their id, or a broken pack or index.
        case integrity = "integrity"
        /// A ref moved under us, a lock is held, or the working tree has changes in the way.
        case conflict = "conflict"
        /// The operating system refused a read or write (disk full, permissions, quota).
        case io = "io"
        /// Input that Trove will not accept: unsafe paths, malformed values, bad options.
        case invalidInput = "invalid-input"
        /// No store here.
        case notAStore = "not-a-store"
    }

    public var code: Code
    public var message: String
    /// What to do next, shown to people after the message.
    public var hint: String?
    public var underlying: Error?

    public init(_ code: Code, _ message: String, hint: String? = nil, underlying: Error? = nil) {
        self.code = code
        self.message = message
        self.hint = hint
        self.underlying = underlying
    }

    public var description: String { message }

    /// Wraps a core error from decoding stored bytes.
    static func from(_ error: CoreError, context: String) -> StoreError {
        switch error.code {
        case .integrity, .malformedObject, .compression, .unsupportedVersion:
            return StoreError(.integrity, "\(context): \(error.message)",
                              hint: "run `trove fsck --full` to see what is damaged", underlying: error)
        case .invalidName:
            return StoreError(.invalidInput, "\(context): \(error.message)", underlying: error)
        case .invalidArgument:
            return StoreError(.invalidInput, "\(context): \(error.message)", underlying: error)
        }
    }
}

/// Runs `body`, turning core decoding errors into store errors with `context`.
@inline(__always)
func decoding<T>(_ context: @autoclosure () -> String, _ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as CoreError { throw StoreError.from(e, context: context()) }
}
