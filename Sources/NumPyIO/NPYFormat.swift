import Foundation

/// Reads and writes NumPy `.npy` files (format versions 1.0, 2.0 and 3.0).
///
/// Decoding accepts C-order and Fortran-order arrays of the dtypes in ``NPYDType``, in
/// either byte order, and returns them in C order, little-endian. Encoding writes what
/// `np.save` writes for a C-contiguous little-endian array, byte for byte: version 1.0
/// (2.0 when the header exceeds 65535 bytes), a header padded with spaces and a newline so
/// the data starts at a multiple of 64 bytes, then the raw data.
///
/// Both directions copy the element data in bulk; only Fortran-order input, big-endian
/// input and boolean input need a per-element pass.
public enum NPYFormat {
    /// The largest header length accepted by ``decode(_:)`` and
    /// ``readHeader(fileDescriptor:)``: 1 MiB.
    ///
    /// NumPy itself refuses headers over 10000 bytes unless told otherwise; real headers
    /// are under 200 bytes. The limit keeps a corrupt length field from being trusted.
    public static let maxHeaderLength = 1 << 20

    /// The `.npy` magic string, `\x93NUMPY`.
    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]

    /// Decodes the contents of an `.npy` file.
    ///
    /// - Parameter data: the complete file contents (a slice is fine).
    /// - Returns: the array in C order with little-endian elements.
    /// - Throws: ``NPYError/badMagic``, ``NPYError/truncatedHeader``,
    ///   ``NPYError/unsupportedVersion(major:minor:)``, ``NPYError/headerTooLarge(_:)``,
    ///   ``NPYError/malformedHeader(_:)``, ``NPYError/unsupportedDType(_:)``,
    ///   ``NPYError/negativeDimension(_:)``, ``NPYError/shapeOverflow``,
    ///   ``NPYError/truncatedData(expectedBytes:actualBytes:)`` or
    ///   ``NPYError/trailingBytes(_:)``, as the data requires.
    public static func decode(_ data: Data) throws(NPYError) -> NPYArray {
        let result = data.withUnsafeBytes { raw in
            Result { () throws(NPYError) -> NPYArray in try decode(bytes: raw) }
        }
        return try result.get()
    }

    /// Encodes an array as an `.npy` file, exactly as `np.save` would write it.
    ///
    /// The output is C order and little-endian, format version 1.0 unless the header needs
    /// version 2.0 (more than 65535 bytes, which takes thousands of dimensions). This
    /// cannot fail: every ``NPYArray`` is valid.
    public static func encode(_ array: NPYArray) -> Data {
        let header = headerBytes(for: array)
        var output = Data(capacity: header.count + array.rawBytes.count)
        output.append(contentsOf: header)
        output.append(array.rawBytes)
        return output
    }

    /// Reads and decodes an `.npy` file. The file is memory-mapped when possible.
    /// - Throws: the file system's error if the file cannot be read, otherwise an ``NPYError``.
    public static func read(contentsOf url: URL) throws -> NPYArray {
        let data = try Data(contentsOf: url, options: .mappedIfSafe)
        return try decode(data)
    }

    /// Encodes an array and writes it to a file atomically.
    /// - Throws: the file system's error if the file cannot be written.
    public static func write(_ array: NPYArray, to url: URL) throws {
        try encode(array).write(to: url, options: .atomic)
    }

    // MARK: - Decoding

    /// Decodes `.npy` bytes; used directly by the `.npz` reader to avoid copies.
    static func decode(bytes raw: UnsafeRawBufferPointer) throws(NPYError) -> NPYArray {
        let total = raw.count
        let preamble = try parsePreamble(raw)
        guard total >= preamble.dataOffset else { throw .truncatedHeader }
        let header = try parseHeader(
            UnsafeRawBufferPointer(rebasing: raw[preamble.headerStart..<preamble.dataOffset]), preamble: preamble)
        try header.checkDataSize(available: total - header.dataOffset)

        let itemSize = header.dtype.itemSize
        let source = UnsafeRawBufferPointer(rebasing: raw[header.dataOffset..<total])
        var bytes: Data
        if header.fortranOrder && header.shape.count > 1 && header.count > 0 {
            bytes = Data(count: header.byteCount)
            bytes.withUnsafeMutableBytes { destination in
                fortranToC(source: source, destination: destination, shape: header.shape, itemSize: itemSize)
            }
        } else {
            bytes = header.byteCount == 0 ? Data() : Data(bytes: source.baseAddress!, count: header.byteCount)
        }
        if header.bigEndian {
            bytes.withUnsafeMutableBytes { NPYArray.swapByteOrder($0, itemSize: itemSize) }
        }
        if header.dtype == .bool {
            bytes.withUnsafeMutableBytes { NPYArray.normalizeBooleans($0) }
        }
        return NPYArray(validatedShape: header.shape, dtype: header.dtype, count: header.count, rawBytes: bytes)
    }

    /// Where an `.npy` file's header dictionary lies, as its fixed-size start says.
    struct Preamble {
        /// The offset of the header dictionary: 10 for version 1.0, 12 otherwise.
        var headerStart: Int
        /// The header length field: the dictionary's byte count, padding included.
        var headerLength: Int
        /// Whether the header is UTF-8 (version 3.0) rather than Latin-1.
        var utf8: Bool
        /// The offset of the array data: the end of the header.
        var dataOffset: Int { headerStart + headerLength }
    }

    /// The most bytes ``parsePreamble(_:)`` looks at: magic, version and a 4-byte length.
    static let maxPreambleLength = 12

    /// Checks the magic string and version at the start of `raw` and reads the header
    /// length field. `raw` may be just the first ``maxPreambleLength`` bytes of a file.
    /// - Throws: ``NPYError/badMagic``, ``NPYError/truncatedHeader``,
    ///   ``NPYError/unsupportedVersion(major:minor:)`` or ``NPYError/headerTooLarge(_:)``.
    static func parsePreamble(_ raw: UnsafeRawBufferPointer) throws(NPYError) -> Preamble {
        let total = raw.count
        for index in 0..<min(total, magic.count) where raw[index] != magic[index] {
            throw .badMagic
        }
        guard total >= 8 else { throw .truncatedHeader }
        let major = Int(raw[6])
        let minor = Int(raw[7])
        guard (1...3).contains(major), minor == 0 else {
            throw .unsupportedVersion(major: major, minor: minor)
        }
        let lengthFieldSize = major == 1 ? 2 : 4
        guard total >= 8 + lengthFieldSize else { throw .truncatedHeader }
        let headerLength = lengthFieldSize == 2
            ? Int(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt16.self)))
            : Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        guard headerLength <= maxHeaderLength else { throw .headerTooLarge(headerLength) }
        return Preamble(headerStart: 8 + lengthFieldSize, headerLength: headerLength, utf8: major == 3)
    }

    /// Parses the header dictionary (exactly `preamble.headerLength` bytes) and checks that
    /// the shape's element count and byte size fit in `Int`.
    /// - Throws: ``NPYError/malformedHeader(_:)``, ``NPYError/unsupportedDType(_:)``,
    ///   ``NPYError/negativeDimension(_:)`` or ``NPYError/shapeOverflow``.
    static func parseHeader(_ dictionary: UnsafeRawBufferPointer, preamble: Preamble) throws(NPYError) -> NPYFileHeader {
        let header = try NPYHeaderParser.parse(dictionary, utf8: preamble.utf8)
        return try NPYFileHeader(shape: header.shape, dtype: header.dtype, fortranOrder: header.fortranOrder,
                                 bigEndian: header.bigEndian, dataOffset: preamble.dataOffset)
    }

    /// Reorders Fortran-order (column-major) elements into C order.
    static func fortranToC(source: UnsafeRawBufferPointer, destination: UnsafeMutableRawBufferPointer,
                           shape: [Int], itemSize: Int) {
        switch itemSize {
        case 1: fortranToC(source, destination, shape, UInt8.self)
        case 2: fortranToC(source, destination, shape, UInt16.self)
        case 4: fortranToC(source, destination, shape, UInt32.self)
        default: fortranToC(source, destination, shape, UInt64.self)
        }
    }

    private static func fortranToC<T: FixedWidthInteger>(
        _ source: UnsafeRawBufferPointer, _ destination: UnsafeMutableRawBufferPointer,
        _ shape: [Int], _: T.Type
    ) {
        let rank = shape.count
        let size = MemoryLayout<T>.size
        // Element strides of the Fortran-order source: axis 0 varies fastest.
        var strides = [Int](repeating: 1, count: rank)
        for axis in 1..<rank {
            strides[axis] = strides[axis - 1] * shape[axis - 1]
        }
        let count = destination.count / size
        let inner = shape[rank - 1]
        let innerStride = strides[rank - 1]
        let outerAxes = rank - 1
        if outerAxes == 1 {
            // 2-D: a blocked transpose keeps both sides in cache.
            let rows = shape[0]
            let block = 32
            for rowStart in stride(from: 0, to: rows, by: block) {
                let rowEnd = min(rowStart + block, rows)
                for columnStart in stride(from: 0, to: inner, by: block) {
                    let columnEnd = min(columnStart + block, inner)
                    for row in rowStart..<rowEnd {
                        for column in columnStart..<columnEnd {
                            let value = source.loadUnaligned(fromByteOffset: (row + column * rows) * size, as: T.self)
                            destination.storeBytes(of: value, toByteOffset: (row * inner + column) * size, as: T.self)
                        }
                    }
                }
            }
            return
        }
        var index = [Int](repeating: 0, count: outerAxes)
        var base = 0 // source element offset of `index` (with the last axis at 0)
        var output = 0
        while output < count {
            var sourceOffset = base
            for _ in 0..<inner {
                let value = source.loadUnaligned(fromByteOffset: sourceOffset * size, as: T.self)
                destination.storeBytes(of: value, toByteOffset: output * size, as: T.self)
                sourceOffset += innerStride
                output += 1
            }
            // Advance the outer index like an odometer, last outer axis fastest.
            var axis = outerAxes - 1
            while axis >= 0 {
                index[axis] += 1
                base += strides[axis]
                if index[axis] < shape[axis] { break }
                base -= strides[axis] * shape[axis]
                index[axis] = 0
                axis -= 1
            }
        }
    }

    // MARK: - Encoding

    /// The complete header (magic, version, length, dictionary, padding, newline) that
    /// `np.save` writes for `array`.
    static func headerBytes(for array: NPYArray) -> [UInt8] {
        headerBytes(shape: array.shape, dtype: array.dtype)
    }

    /// The header `np.save` writes for a C-order array of `shape` and `dtype`: write it,
    /// then the elements' little-endian bytes, to stream an array to a file without
    /// building it in memory first.
    public static func header(shape: [Int], dtype: NPYDType) -> Data {
        Data(headerBytes(shape: shape, dtype: dtype))
    }

    static func headerBytes(shape: [Int], dtype: NPYDType) -> [UInt8] {
        let shapeText: String
        switch shape.count {
        case 0: shapeText = "()"
        case 1: shapeText = "(\(shape[0]),)"
        default: shapeText = "(" + shape.map(String.init).joined(separator: ", ") + ")"
        }
        var dictionary = "{'descr': '\(dtype.descr)', 'fortran_order': False, 'shape': \(shapeText), }"
        // NumPy leaves room to grow the first axis in place (GROWTH_AXIS_MAX_DIGITS = 21).
        if let first = shape.first {
            dictionary += String(repeating: " ", count: max(0, 21 - String(first).count))
        }
        let text = Array(dictionary.utf8)
        let withNewline = text.count + 1
        var major: UInt8 = 1
        var lengthFieldSize = 2
        var padding = 64 - (8 + lengthFieldSize + withNewline) % 64
        if withNewline + padding > Int(UInt16.max) {
            major = 2
            lengthFieldSize = 4
            padding = 64 - (8 + lengthFieldSize + withNewline) % 64
        }
        let headerLength = withNewline + padding
        var bytes = magic
        bytes.reserveCapacity(8 + lengthFieldSize + headerLength)
        bytes.append(major)
        bytes.append(0)
        if lengthFieldSize == 2 {
            withUnsafeBytes(of: UInt16(headerLength).littleEndian) { bytes.append(contentsOf: $0) }
        } else {
            withUnsafeBytes(of: UInt32(headerLength).littleEndian) { bytes.append(contentsOf: $0) }
        }
        bytes.append(contentsOf: text)
        bytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: padding))
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }
}
