import Foundation
import NumPyIO
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Writes `data` to a new temporary file, opens it read-only and passes the descriptor
/// to `body`; the file is closed and removed afterwards.
@discardableResult
func withTemporaryFile<R>(_ data: Data, _ body: (Int32) throws -> R) throws -> R {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("ntk-npy-\(UUID().uuidString).npy")
    try data.write(to: url)
    defer { try? FileManager.default.removeItem(at: url) }
    let fd = open(url.path, O_RDONLY)
    try #require(fd >= 0, "cannot open \(url.path)")
    defer { close(fd) }
    return try body(fd)
}

/// Reads a file's header then its data as doubles, as the engine does.
func readDoublesFromFile(_ data: Data) throws -> (header: NPYFileHeader, values: [Double]) {
    try withTemporaryFile(data) { fd in
        let header = try NPYFormat.readHeader(fileDescriptor: fd)
        return (header, try NPYFormat.readDoubles(fileDescriptor: fd, header: header))
    }
}

@Suite("Reading .npy files from a file descriptor")
struct NPYFileReaderTests {
    /// Arrays of every numeric dtype with values spanning its range.
    static func sample(_ dtype: NPYDType, shape: [Int]) -> NPYArray {
        let count = shape.reduce(1, *)
        var generator = SplitMix64(seed: 7)
        let bits = (0..<count).map { _ in generator.next() }
        switch dtype {
        case .float64: return NPYArray(shape: shape, doubles: bits.map { Double(Int64(bitPattern: $0)) / 3e15 })
        case .float32: return NPYArray(shape: shape, float32s: bits.map { Float(Int32(truncatingIfNeeded: $0)) / 7 })
        case .int64: return NPYArray(shape: shape, int64s: bits.map { Int64(bitPattern: $0) })
        case .int32: return NPYArray(shape: shape, int32s: bits.map { Int32(truncatingIfNeeded: $0) })
        case .int16: return NPYArray(shape: shape, int16s: bits.map { Int16(truncatingIfNeeded: $0) })
        case .int8: return NPYArray(shape: shape, int8s: bits.map { Int8(truncatingIfNeeded: $0) })
        case .uint8, .bool: return NPYArray(shape: shape, uint8s: bits.map { UInt8(truncatingIfNeeded: $0) })
        }
    }

    static let numericDTypes = NPYDType.allCases.filter { $0 != .bool }

    @Test("Every numeric dtype read through a descriptor equals the in-memory decode, bit for bit",
          arguments: numericDTypes, [[3, 4], [], [0, 5], [7]])
    func roundTrip(dtype: NPYDType, shape: [Int]) throws {
        let array = Self.sample(dtype, shape: shape)
        let encoded = NPYFormat.encode(array)
        let (header, values) = try readDoublesFromFile(encoded)
        #expect(header.shape == shape)
        #expect(header.dtype == dtype)
        #expect(!header.fortranOrder && !header.bigEndian)
        #expect(header.dataOffset == NPYFormat.header(shape: shape, dtype: dtype).count)
        #expect(header.count == array.count)
        #expect(header.byteCount == array.count * dtype.itemSize)
        #expect(values.map(\.bitPattern) == array.doubles().map(\.bitPattern))
    }

    @Test("Arrays larger than one 4 MiB read chunk are read whole", arguments: [NPYDType.float64, .int16, .uint8])
    func severalChunks(dtype: NPYDType) throws {
        let count = (9 << 20) / dtype.itemSize + 3 // two full chunks and a partial one
        let array = Self.sample(dtype, shape: [count])
        let (_, values) = try readDoublesFromFile(NPYFormat.encode(array))
        #expect(values.map(\.bitPattern) == array.doubles().map(\.bitPattern))
    }

    @Test("Big-endian and Fortran-order data of every item size come back little-endian in C order",
          arguments: ["i1", "u1", "i2", "i4", "i8", "f4", "f8"], [[2, 3], [3, 4, 5], [1, 6], [4]])
    func fortranAndBigEndian(type: String, shape: [Int]) throws {
        let count = shape.reduce(1, *)
        // Values exact in every dtype, with a sign where the dtype has one.
        let values: [Double] = (0..<count).map { Double(($0 * 7) % 200) - (type == "u1" ? 0 : 100) }
        let order = fortranOrdered(Array(0..<count), shape: shape)
        for bigEndian in [false, true] {
            for fortran in [false, true] {
                let stored = fortran ? order.map { values[$0] } : values
                let body: [UInt8]
                switch type {
                case "i1": body = stored.map { UInt8(bitPattern: Int8($0)) }
                case "u1": body = stored.map { UInt8($0) }
                case "i2": body = bigEndian ? bigEndianBytes(stored.map { Int16($0) }) : littleEndianBytes(stored.map { Int16($0) })
                case "i4": body = bigEndian ? bigEndianBytes(stored.map { Int32($0) }) : littleEndianBytes(stored.map { Int32($0) })
                case "i8": body = bigEndian ? bigEndianBytes(stored.map { Int64($0) }) : littleEndianBytes(stored.map { Int64($0) })
                case "f4":
                    let bits = stored.map { Float($0).bitPattern }
                    body = bigEndian ? bigEndianBytes(bits) : littleEndianBytes(bits)
                default:
                    let bits = stored.map { $0.bitPattern }
                    body = bigEndian ? bigEndianBytes(bits) : littleEndianBytes(bits)
                }
                let order = type.hasSuffix("1") ? "|" : (bigEndian ? ">" : "<")
                let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
                let data = craftNPY(header: headerText(descr: order + type, fortran: fortran, shape: shapeText), body: body)
                let (header, read) = try readDoublesFromFile(data)
                #expect(header.fortranOrder == fortran)
                #expect(header.bigEndian == (bigEndian && !type.hasSuffix("1")))
                #expect(read == values, "\(type) big-endian \(bigEndian) Fortran \(fortran)")
                #expect(read == (try NPYFormat.decode(data)).doubles())
            }
        }
    }

    @Test("Reading leaves the descriptor's file offset where it was (pread only)")
    func offsetUnchanged() throws {
        let data = NPYFormat.encode(NPYArray(shape: [5], int32s: [1, 2, 3, 4, 5]))
        try withTemporaryFile(data) { fd in
            #expect(lseek(fd, 3, SEEK_SET) == 3)
            let header = try NPYFormat.readHeader(fileDescriptor: fd)
            #expect(try NPYFormat.readDoubles(fileDescriptor: fd, header: header) == [1, 2, 3, 4, 5])
            #expect(lseek(fd, 0, SEEK_CUR) == 3)
        }
    }

    @Test("Boolean data is refused by readDoubles with its descr")
    func booleanRefused() throws {
        let data = NPYFormat.encode(NPYArray(shape: [2], bools: [true, false]))
        try withTemporaryFile(data) { fd in
            let header = try NPYFormat.readHeader(fileDescriptor: fd)
            #expect(header.dtype == .bool)
            #expect(throws: NPYError.unsupportedDType("'|b1'")) { try NPYFormat.readDoubles(fileDescriptor: fd, header: header) }
        }
    }

    @Test("A header declaring 8 TB of data over a 10-byte body fails in readHeader with truncatedData")
    func hugeDeclaredShape() throws {
        let data = craftNPY(header: headerText(descr: "<f8", shape: "(1000000, 1000000)"), body: [UInt8](repeating: 1, count: 10))
        try withTemporaryFile(data) { fd in
            #expect(throws: NPYError.truncatedData(expectedBytes: 8_000_000_000_000, actualBytes: 10)) {
                try NPYFormat.readHeader(fileDescriptor: fd)
            }
        }
    }

    @Test("Bytes after the data fail in readHeader with trailingBytes")
    func trailingBytes() throws {
        let data = NPYFormat.encode(NPYArray(shape: [2], int16s: [1, 2])) + Data([0, 0, 0])
        try withTemporaryFile(data) { fd in
            #expect(throws: NPYError.trailingBytes(3)) { try NPYFormat.readHeader(fileDescriptor: fd) }
        }
    }

    @Test("A 2^31-byte header length fails with headerTooLarge at once, although the (sparse) file is long enough")
    func hugeHeaderLength() throws {
        var data = craftNPY(header: "", major: 2, headerLength: 1 << 31)
        data.append(contentsOf: [UInt8](repeating: 0x20, count: 4))
        try withTemporaryFile(data) { fd in
            // Make the file 2 GiB longer without writing it, so a reader trusting the
            // length field would find the bytes and spend seconds reading them.
            let writable = open("/proc/self/fd/\(fd)", O_WRONLY)
            try #require(writable >= 0)
            defer { close(writable) }
            try #require(ftruncate(writable, off_t(12 + (1 << 31))) == 0)
            let clock = ContinuousClock()
            let start = clock.now
            #expect(throws: NPYError.headerTooLarge(1 << 31)) { try NPYFormat.readHeader(fileDescriptor: fd) }
            #expect(clock.now - start < .milliseconds(500))
        }
    }

    @Test("A file cut short after readHeader makes readDoubles throw truncatedData with the bytes found")
    func shortRead() throws {
        let data = NPYFormat.encode(NPYArray(shape: [600_000], int32s: [Int32](repeating: 9, count: 600_000)))
        try withTemporaryFile(data) { fd in
            let header = try NPYFormat.readHeader(fileDescriptor: fd)
            let writable = open("/proc/self/fd/\(fd)", O_WRONLY)
            try #require(writable >= 0)
            defer { close(writable) }
            try #require(ftruncate(writable, off_t(header.dataOffset + 2_000_003)) == 0)
            #expect(throws: NPYError.truncatedData(expectedBytes: 2_400_000, actualBytes: 2_000_003)) {
                try NPYFormat.readDoubles(fileDescriptor: fd, header: header)
            }
        }
    }

    @Test("A descriptor that cannot be read throws readFailed with the system's text")
    func readFailure() throws {
        #expect(throws: NPYError.readFailed("Bad file descriptor")) { try NPYFormat.readHeader(fileDescriptor: -1) }
        let directory = open(FileManager.default.temporaryDirectory.path, O_RDONLY)
        try #require(directory >= 0)
        defer { close(directory) }
        #expect(throws: NPYError.readFailed("Is a directory")) { try NPYFormat.readHeader(fileDescriptor: directory) }
        #expect(NPYError.readFailed("Is a directory").description == "Reading the .npy file failed: Is a directory.")
    }

    @Test("readHeader refuses each damaged file with the same error as the in-memory decoder", arguments: [
        craftNPY(header: ""),
        Data([0x93, 0x4E, 0x55]),
        Data("not numpy at all".utf8),
        craftNPY(header: headerText(descr: "<f8", shape: "(2,)"), major: 4),
        craftNPY(header: headerText(descr: "<f8", shape: "(2,)"), headerLength: 5000),
        craftNPY(header: headerText(descr: "<u4", shape: "(2,)"), body: [UInt8](repeating: 0, count: 8)),
        craftNPY(header: headerText(descr: "<f8", shape: "(-1, 2)")),
        craftNPY(header: headerText(descr: "<f8", shape: "(4611686018427387904, 4)")),
        craftNPY(header: "{'descr': '<f8', 'fortran_order': False}"),
        craftNPY(header: headerText(descr: "<f8", shape: "(3,)"), body: [UInt8](repeating: 0, count: 20)),
    ])
    func sameErrorsAsDecode(data: Data) throws {
        let expected = #expect(throws: NPYError.self) { try NPYFormat.decode(data) }
        try withTemporaryFile(data) { fd in
            let error = #expect(throws: NPYError.self) { try NPYFormat.readHeader(fileDescriptor: fd) }
            #expect(error == expected)
        }
    }
}
