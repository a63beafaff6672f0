/// Exit statuses of the tool, in the sysexits(3) convention.
public enum ExitStatus: Int32, Sendable, CaseIterable {
    case success = 0
    /// Bad flags or flag combinations.
    case usage = 64
    /// An input file exists but is malformed or inconsistent (data, model, parameters).
    case dataError = 65
    /// An input does not exist or cannot be read.
    case noInput = 66
    /// An internal error (a bug, or a numerical failure that should not happen).
    case software = 70
    /// The output cannot be created.
    case cannotCreate = 73
    /// An I/O error while writing.
    case ioError = 74
    /// Interrupted but resumable.
    case interrupted = 75
}

/// The one error type of a job: what went wrong, in a sentence a user can act on, and
/// the exit status it maps to.
public struct NTKError: Error, CustomStringConvertible, Sendable {
    public let status: ExitStatus
    public let message: String

    public init(_ status: ExitStatus, _ message: String) {
        self.status = status
        self.message = message
    }

    public var description: String { message }
}
