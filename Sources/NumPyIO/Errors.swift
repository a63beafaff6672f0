/// An error reading or building a NumPy `.npy` array.
///
/// Descriptions are single sentences meant for the user; they never name a file, so the
/// caller can prefix the path it read from.
public enum NPYError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The data does not start with the `.npy` magic string `\x93NUMPY`.
    case badMagic
    /// The format version is not 1.0, 2.0 or 3.0.
    case unsupportedVersion(major: Int, minor: Int)
    /// The data ends before the end of the header.
    case truncatedHeader
    /// The header length field exceeds ``NPYFormat/maxHeaderLength``.
    case headerTooLarge(Int)
    /// The header is not a valid `{'descr': …, 'fortran_order': …, 'shape': …}` dictionary.
    case malformedHeader(String)
    /// The header names a dtype this library does not handle (see ``NPYDType``).
    case unsupportedDType(String)
    /// Fewer data bytes are present than the shape and dtype require.
    case truncatedData(expectedBytes: Int, actualBytes: Int)
    /// More data bytes are present than the shape and dtype require.
    case trailingBytes(Int)
    /// The element count or byte size of the shape does not fit in `Int`.
    case shapeOverflow
    /// The shape contains a negative dimension.
    case negativeDimension(Int)
    /// Reading the file failed; the text is the system's description of the error.
    case readFailed(String)
    /// ``NPYArray/int64s()`` met a floating-point element that is not an integer
    /// representable as `Int64` (fractional, NaN, infinite or out of range).
    case nonIntegerValue(index: Int)

    /// One sentence for the user, without a file name (the caller adds the path).
    public var description: String {
        switch self {
        case .badMagic:
            return "The data is not a NumPy .npy array: it does not start with the magic string \\x93NUMPY."
        case let .unsupportedVersion(major, minor):
            return "The .npy format version \(major).\(minor) is not supported; only versions 1.0, 2.0 and 3.0 can be read."
        case .truncatedHeader:
            return "The .npy data ends inside its header; the file is truncated or is not a .npy file."
        case let .headerTooLarge(length):
            return "The .npy header claims \(length) bytes, more than the \(NPYFormat.maxHeaderLength)-byte limit; the file is corrupt or not a plain numeric array."
        case let .malformedHeader(detail):
            return "The .npy header is malformed: \(detail)."
        case let .unsupportedDType(descr):
            let kind = descr.hasPrefix("[") || descr.hasPrefix("(") ? "structured or subarray dtype" : "dtype"
            return "The \(kind) \(descr) is not supported; save the array as a plain numeric float64, float32, int64, int32, int16, int8 or uint8 array (for example with arr.astype(np.float64))."
        case let .truncatedData(expected, actual):
            return "The array data is truncated: \(expected) bytes are needed for the shape and dtype but only \(actual) are present."
        case let .trailingBytes(count):
            return "There are \(count) unexpected bytes after the array data; the file is corrupt or has other data appended."
        case .shapeOverflow:
            return "The array shape is too large: its element count or byte size does not fit in a 64-bit integer."
        case let .negativeDimension(dimension):
            return "The array shape contains the negative dimension \(dimension); dimensions must be zero or positive."
        case let .readFailed(reason):
            return "Reading the .npy file failed: \(reason)."
        case let .nonIntegerValue(index):
            return "Element \(index) is not an integer that fits in Int64, so the floating-point array cannot be read as integers."
        }
    }
}

/// An error reading or writing a NumPy `.npz` archive (a ZIP file of `.npy` members).
///
/// Descriptions are single sentences meant for the user; they never name the archive
/// file, so the caller can prefix the path it read from.
public enum NPZError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The data has no ZIP end-of-central-directory record.
    case notAZip
    /// The ZIP structure is inconsistent; the associated text says what is wrong.
    case corrupt(String)
    /// A member (named without its `.npy` suffix) is not a valid `.npy` array.
    case badMember(name: String, NPYError)
    /// Two members map to the same array name (when reading), or two arrays were given
    /// the same name (when writing).
    case duplicateMember(String)
    /// A member uses a ZIP compression method other than stored (0) or deflate (8).
    case unsupportedCompression(Int)
    /// An array name passed to ``NPZFormat/encode(_:compressed:)`` cannot be stored.
    case invalidMemberName(String)
    /// zlib failed while compressing a member.
    case compressionFailed(String)
    /// A member (named without its `.npy` suffix) records an uncompressed size, header
    /// included, larger than the caller's limit for it.
    case memberTooLarge(name: String, bytes: Int, limit: Int)

    /// One sentence for the user, without a file name (the caller adds the path).
    public var description: String {
        switch self {
        case .notAZip:
            return "The data is not a ZIP archive, so it cannot be a NumPy .npz file."
        case let .corrupt(detail):
            return "The .npz archive is corrupt: \(detail)."
        case let .badMember(name, error):
            return "The array '\(name)' in the .npz archive is invalid: \(error.description)"
        case let .duplicateMember(name):
            return "The array name '\(name)' occurs more than once; every array in an .npz archive needs a unique name."
        case let .unsupportedCompression(method):
            return "An .npz member uses ZIP compression method \(method); only stored (0) and deflate (8), as written by np.savez and np.savez_compressed, are supported."
        case let .invalidMemberName(reason):
            return "The array name cannot be stored in an .npz archive: \(reason)."
        case let .compressionFailed(detail):
            return "Compressing the .npz archive failed: \(detail)."
        case let .memberTooLarge(name, bytes, limit):
            return "The array '\(name)' in the .npz archive takes \(bytes) bytes uncompressed, more than the \(limit) bytes allowed for it."
        }
    }
}
