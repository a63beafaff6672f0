/// The element types that `NumPyIO` reads and writes.
///
/// Each case corresponds to one NumPy dtype and is written with the descr string NumPy
/// itself uses (see ``descr``). Arrays are always stored little-endian in memory and on
/// write. When reading, big-endian descrs (`'>f8'`, `'>i4'`, …) and descrs without a byte
/// order (`'f8'`, `'=f8'`, read as little-endian) are accepted as well: big-endian data is byte-swapped to
/// little-endian while decoding, so the resulting ``NPYArray`` is indistinguishable from
/// one read from a little-endian file.
///
/// Every other NumPy dtype (unsigned integers wider than 8 bits, float16, complex, strings,
/// datetimes, Python objects, structured records) is refused with
/// ``NPYError/unsupportedDType(_:)``.
public enum NPYDType: Sendable, Equatable, Hashable, CaseIterable {
    /// IEEE 754 double precision, NumPy `float64` (`'<f8'`).
    case float64
    /// IEEE 754 single precision, NumPy `float32` (`'<f4'`).
    case float32
    /// Signed 64-bit integer, NumPy `int64` (`'<i8'`).
    case int64
    /// Signed 32-bit integer, NumPy `int32` (`'<i4'`).
    case int32
    /// Signed 16-bit integer, NumPy `int16` (`'<i2'`).
    case int16
    /// Signed 8-bit integer, NumPy `int8` (`'|i1'`).
    case int8
    /// Unsigned 8-bit integer, NumPy `uint8` (`'|u1'`).
    case uint8
    /// Boolean stored as one byte that is 0 or 1, NumPy `bool` (`'|b1'`).
    case bool

    /// The size of one element in bytes.
    public var itemSize: Int {
        switch self {
        case .float64, .int64: return 8
        case .float32, .int32: return 4
        case .int16: return 2
        case .int8, .uint8, .bool: return 1
        }
    }

    /// The NumPy descr string written to `.npy` headers, exactly as NumPy writes it
    /// (for example `'<f8'`, `'|u1'`, `'|b1'`).
    public var descr: String {
        switch self {
        case .float64: return "<f8"
        case .float32: return "<f4"
        case .int64: return "<i8"
        case .int32: return "<i4"
        case .int16: return "<i2"
        case .int8: return "|i1"
        case .uint8: return "|u1"
        case .bool: return "|b1"
        }
    }

    /// Whether the elements are floating-point numbers.
    public var isFloatingPoint: Bool { self == .float64 || self == .float32 }

    /// Creates the dtype named by a NumPy descr string such as `'<f8'`, `'>i4'` or `'|b1'`.
    ///
    /// Returns `nil` for descrs this library does not support. The byte order is not part
    /// of the result: use it only to identify the element type.
    public init?(descr: String) {
        guard let parsed = NPYDType.parse(descr: descr) else { return nil }
        self = parsed.dtype
    }

    /// Parses a descr string into a dtype and whether its data is big-endian (and must be
    /// byte-swapped). Returns `nil` for unsupported descrs.
    static func parse(descr: String) -> (dtype: NPYDType, bigEndian: Bool)? {
        var body = Substring(descr)
        var order: Character = "="
        if let first = body.first, "<>|=".contains(first) {
            order = first
            body = body.dropFirst()
        }
        let dtype: NPYDType
        switch body {
        case "f8": dtype = .float64
        case "f4": dtype = .float32
        case "i8": dtype = .int64
        case "i4": dtype = .int32
        case "i2": dtype = .int16
        case "i1": dtype = .int8
        case "u1": dtype = .uint8
        case "b1": dtype = .bool
        default: return nil
        }
        return (dtype, order == ">" && dtype.itemSize > 1)
    }
}
