import Foundation

/// An n-dimensional NumPy array: a shape, an element type and the elements' bytes.
///
/// The elements are held in C (row-major) order as little-endian bytes, exactly as they
/// appear after the header of a C-order `.npy` file (see ``rawBytes``). A 0-d array
/// (NumPy scalar array) has shape `[]` and one element; an array with a zero dimension
/// has no elements.
///
/// Equality is bitwise: two arrays are equal when their shapes, dtypes and bytes are
/// (so a NaN equals the same NaN, and `0.0` differs from `-0.0`).
public struct NPYArray: Sendable, Equatable {
    private var storedShape: [Int]

    /// The dimensions, outermost first (C order). `[]` for a 0-d array.
    ///
    /// The shape can be changed to any shape with the same element count (a reshape
    /// that keeps the C-order element sequence).
    /// - Precondition: every new dimension is non-negative and their product equals
    ///   ``count``; setting an incompatible shape is a programming error and traps.
    public var shape: [Int] {
        get { storedShape }
        set {
            precondition(NPYArray.elementCount(of: newValue) == count,
                         "NPYArray.shape: new shape \(newValue) does not hold \(count) elements")
            storedShape = newValue
        }
    }

    /// The element type. Use the typed initializers to build an array of another dtype.
    public private(set) var dtype: NPYDType

    /// The number of elements: the product of the shape (1 for a 0-d array).
    public let count: Int

    /// The elements as little-endian bytes in C order, `count * dtype.itemSize` bytes long.
    /// Booleans are always the bytes 0 or 1.
    public private(set) var rawBytes: Data

    /// The number of dimensions (0 for a 0-d array).
    public var ndim: Int { storedShape.count }

    /// Creates an array from already-validated parts.
    init(validatedShape: [Int], dtype: NPYDType, count: Int, rawBytes: Data) {
        self.storedShape = validatedShape
        self.dtype = dtype
        self.count = count
        self.rawBytes = rawBytes
    }

    /// Creates an array from a shape, a dtype and little-endian C-order element bytes.
    ///
    /// Boolean bytes other than 0 are stored as 1.
    /// - Throws: ``NPYError/negativeDimension(_:)`` or ``NPYError/shapeOverflow`` for an
    ///   invalid shape; ``NPYError/truncatedData(expectedBytes:actualBytes:)`` or
    ///   ``NPYError/trailingBytes(_:)`` when `rawBytes` is not exactly
    ///   `count * dtype.itemSize` bytes long.
    public init(shape: [Int], dtype: NPYDType, rawBytes: Data) throws(NPYError) {
        let (count, byteCount) = try NPYArray.validate(shape: shape, itemSize: dtype.itemSize)
        if rawBytes.count < byteCount {
            throw .truncatedData(expectedBytes: byteCount, actualBytes: rawBytes.count)
        }
        if rawBytes.count > byteCount {
            throw .trailingBytes(rawBytes.count - byteCount)
        }
        // A slice of a larger Data keeps its indices; copy it so storage starts at index 0.
        var bytes = rawBytes.startIndex == 0 ? rawBytes : rawBytes.withUnsafeBytes { Data($0) }
        if dtype == .bool {
            bytes.withUnsafeMutableBytes { NPYArray.normalizeBooleans($0) }
        }
        self.init(validatedShape: shape, dtype: dtype, count: count, rawBytes: bytes)
    }

    /// Creates a `float64` array.
    /// - Precondition: the shape's dimensions are non-negative and multiply to `doubles.count`.
    public init(shape: [Int], doubles: [Double]) {
        self.init(checkedShape: shape, dtype: .float64, values: doubles)
    }

    /// Creates a `float32` array.
    /// - Precondition: the shape's dimensions are non-negative and multiply to `float32s.count`.
    public init(shape: [Int], float32s: [Float]) {
        self.init(checkedShape: shape, dtype: .float32, values: float32s)
    }

    /// Creates an `int64` array.
    /// - Precondition: the shape's dimensions are non-negative and multiply to `int64s.count`.
    public init(shape: [Int], int64s: [Int64]) {
        self.init(checkedShape: shape, dtype: .int64, values: int64s)
    }

    /// Creates an `int32` array.
    /// - Precondition: the shape's dimensions are non-negative and multiply to `int32s.count`.
    public init(shape: [Int], int32s: [Int32]) {
        self.init(checkedShape: shape, dtype: .int32, values: int32s)
    }

    /// Creates an `int16` array.
    /// - Precondition: the shape's dimensions are non-negative and multiply to `int16s.count`.
    public init(shape: [Int], int16s: [Int16]) {
        self.init(checkedShape: shape, dtype: .int16, values: int16s)
    }

    /// Creates an `int8` array.
    /// - Precondition: the shape's dimensions are non-negative and multiply to `int8s.count`.
    public init(shape: [Int], int8s: [Int8]) {
        self.init(checkedShape: shape, dtype: .int8, values: int8s)
    }

    /// Creates a `uint8` array.
    /// - Precondition: the shape's dimensions are non-negative and multiply to `uint8s.count`.
    public init(shape: [Int], uint8s: [UInt8]) {
        self.init(checkedShape: shape, dtype: .uint8, values: uint8s)
    }

    /// Creates a `bool` array.
    /// - Precondition: the shape's dimensions are non-negative and multiply to `bools.count`.
    public init(shape: [Int], bools: [Bool]) {
        self.init(checkedShape: shape, dtype: .bool, values: bools)
    }

    private init<T: BitwiseCopyable>(checkedShape shape: [Int], dtype: NPYDType, values: [T]) {
        precondition(MemoryLayout<T>.size == dtype.itemSize)
        precondition(NPYArray.elementCount(of: shape) == values.count,
                     "NPYArray: shape \(shape) does not hold \(values.count) elements")
        var bytes = values.withUnsafeBytes { Data($0) }
        #if _endian(big)
        bytes.withUnsafeMutableBytes { NPYArray.swapByteOrder($0, itemSize: dtype.itemSize) }
        #endif
        self.init(validatedShape: shape, dtype: dtype, count: values.count, rawBytes: bytes)
    }

    // MARK: - Element access

    /// The elements converted to `Double`, in C order.
    ///
    /// Every dtype converts exactly except `int64` values beyond ±2⁵³, which round to the
    /// nearest double. Booleans become 0 and 1. `float64` arrays are copied in bulk.
    public func doubles() -> [Double] {
        if dtype == .float64 { return elements(Double.self) }
        let count = self.count
        return [Double](unsafeUninitializedCapacity: count) { buffer, initialized in
            rawBytes.withUnsafeBytes { source in
                if count > 0 { NPYArray.storeDoubles(source, dtype: dtype, into: buffer.baseAddress!) }
            }
            initialized = count
        }
    }

    /// The elements converted to `Float`, in C order.
    ///
    /// `float64` values and integers beyond ±2²⁴ round to the nearest `Float`; booleans
    /// become 0 and 1. `float32` arrays are copied in bulk.
    public func float32s() -> [Float] {
        switch dtype {
        case .float32: return elements(Float.self)
        case .float64: return converted(UInt64.self) { Float(Double(bitPattern: $0)) }
        case .int64: return converted(Int64.self) { Float($0) }
        case .int32: return converted(Int32.self) { Float($0) }
        case .int16: return converted(Int16.self) { Float($0) }
        case .int8: return converted(Int8.self) { Float($0) }
        case .uint8, .bool: return converted(UInt8.self) { Float($0) }
        }
    }

    /// The elements converted to `Int64`, in C order.
    ///
    /// Integer and boolean arrays always convert (booleans become 0 and 1). Floating-point
    /// arrays convert only when every element is an integer in `Int64`'s range.
    /// - Throws: ``NPYError/nonIntegerValue(index:)`` naming the first floating-point
    ///   element that is fractional, NaN, infinite or outside `Int64`'s range.
    public func int64s() throws(NPYError) -> [Int64] {
        switch dtype {
        case .int64: return elements(Int64.self)
        case .int32: return converted(Int32.self) { Int64($0) }
        case .int16: return converted(Int16.self) { Int64($0) }
        case .int8: return converted(Int8.self) { Int64($0) }
        case .uint8, .bool: return converted(UInt8.self) { Int64($0) }
        case .float64:
            let values = elements(Double.self)
            return try NPYArray.integral(values)
        case .float32:
            let values = converted(UInt32.self) { Double(Float(bitPattern: $0)) }
            return try NPYArray.integral(values)
        }
    }

    /// The elements as `Bool`, in C order: `true` for every non-zero element (NaN counts
    /// as non-zero, as in NumPy).
    public func bools() -> [Bool] {
        switch dtype {
        case .bool: return elements(Bool.self)
        case .uint8, .int8: return converted(UInt8.self) { $0 != 0 }
        case .int16: return converted(UInt16.self) { $0 != 0 }
        case .int32: return converted(UInt32.self) { $0 != 0 }
        case .int64: return converted(UInt64.self) { $0 != 0 }
        case .float32: return converted(UInt32.self) { Float(bitPattern: $0) != 0 }
        case .float64: return converted(UInt64.self) { Double(bitPattern: $0) != 0 }
        }
    }

    private static func integral(_ values: [Double]) throws(NPYError) -> [Int64] {
        var result = [Int64]()
        result.reserveCapacity(values.count)
        for (index, value) in values.enumerated() {
            // 2^63 is exactly representable; Int64's range is [-2^63, 2^63).
            guard value.rounded(.towardZero) == value,
                  value >= -9_223_372_036_854_775_808.0, value < 9_223_372_036_854_775_808.0
            else { throw .nonIntegerValue(index: index) }
            result.append(Int64(value))
        }
        return result
    }

    /// Copies the bytes into an array of `T` (same size as the dtype) in one bulk copy.
    private func elements<T: BitwiseCopyable>(_: T.Type) -> [T] {
        precondition(MemoryLayout<T>.size == dtype.itemSize)
        let count = self.count
        let result = [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            rawBytes.withUnsafeBytes { source in
                if count > 0 {
                    UnsafeMutableRawBufferPointer(buffer).copyMemory(from: source)
                }
            }
            initialized = count
        }
        #if _endian(big)
        var swapped = result
        swapped.withUnsafeMutableBytes { NPYArray.swapByteOrder($0, itemSize: dtype.itemSize) }
        return swapped
        #else
        return result
        #endif
    }

    /// Loads each element as the little-endian integer type `Raw` and maps it.
    private func converted<Raw: FixedWidthInteger, T>(_: Raw.Type, _ transform: (Raw) -> T) -> [T] {
        precondition(MemoryLayout<Raw>.size == dtype.itemSize)
        let count = self.count
        return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            rawBytes.withUnsafeBytes { source in
                if count > 0 { NPYArray.store(source, buffer.baseAddress!, Raw.self, transform) }
            }
            initialized = count
        }
    }

    /// Converts little-endian elements of `dtype` to doubles, stored (initialized) at
    /// `destination`, one per element of `source`. Booleans become 0 and 1.
    static func storeDoubles(_ source: UnsafeRawBufferPointer, dtype: NPYDType, into destination: UnsafeMutablePointer<Double>) {
        switch dtype {
        case .float64: store(source, destination, UInt64.self) { Double(bitPattern: $0) }
        case .float32: store(source, destination, UInt32.self) { Double(Float(bitPattern: $0)) }
        case .int64: store(source, destination, Int64.self) { Double($0) }
        case .int32: store(source, destination, Int32.self) { Double($0) }
        case .int16: store(source, destination, Int16.self) { Double($0) }
        case .int8: store(source, destination, Int8.self) { Double($0) }
        case .uint8, .bool: store(source, destination, UInt8.self) { Double($0) }
        }
    }

    /// Loads each little-endian `Raw` element of `source` and initializes the matching
    /// element at `destination` with its transform.
    private static func store<Raw: FixedWidthInteger, T>(_ source: UnsafeRawBufferPointer, _ destination: UnsafeMutablePointer<T>,
                                                         _: Raw.Type, _ transform: (Raw) -> T) {
        let size = MemoryLayout<Raw>.size
        for index in 0..<(source.count / size) {
            let raw = source.loadUnaligned(fromByteOffset: index &* size, as: Raw.self)
            (destination + index).initialize(to: transform(Raw(littleEndian: raw)))
        }
    }

    // MARK: - Shape and byte helpers

    /// The element count of a shape, or `nil` if a dimension is negative or the count overflows.
    static func elementCount(of shape: [Int]) -> Int? {
        try? validate(shape: shape, itemSize: 1).count
    }

    /// Validates a shape and returns its element count and byte size.
    ///
    /// The product of the non-zero dimensions times the item size must fit in `Int`, even
    /// when another dimension is zero, so the result does not depend on dimension order.
    static func validate(shape: [Int], itemSize: Int) throws(NPYError) -> (count: Int, byteCount: Int) {
        var product = 1
        var hasZero = false
        for dimension in shape {
            if dimension < 0 { throw .negativeDimension(dimension) }
            if dimension == 0 { hasZero = true; continue }
            let (next, overflow) = product.multipliedReportingOverflow(by: dimension)
            if overflow { throw .shapeOverflow }
            product = next
        }
        let (bytes, overflow) = product.multipliedReportingOverflow(by: itemSize)
        if overflow { throw .shapeOverflow }
        return hasZero ? (0, 0) : (product, bytes)
    }

    /// Reverses the byte order of every `itemSize`-byte element in place.
    static func swapByteOrder(_ buffer: UnsafeMutableRawBufferPointer, itemSize: Int) {
        switch itemSize {
        case 2: swapElements(buffer, UInt16.self)
        case 4: swapElements(buffer, UInt32.self)
        case 8: swapElements(buffer, UInt64.self)
        default: break
        }
    }

    private static func swapElements<T: FixedWidthInteger>(_ buffer: UnsafeMutableRawBufferPointer, _: T.Type) {
        let size = MemoryLayout<T>.size
        for offset in stride(from: 0, to: buffer.count - size + 1, by: size) {
            let value = buffer.loadUnaligned(fromByteOffset: offset, as: T.self)
            buffer.storeBytes(of: value.byteSwapped, toByteOffset: offset, as: T.self)
        }
    }

    /// Rewrites every non-zero byte as 1.
    static func normalizeBooleans(_ buffer: UnsafeMutableRawBufferPointer) {
        for index in buffer.indices where buffer[index] > 1 {
            buffer[index] = 1
        }
    }
}
