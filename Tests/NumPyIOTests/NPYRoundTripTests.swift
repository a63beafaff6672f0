import Foundation
import NumPyIO
import Testing

@Suite("NPY encoding and decoding")
struct NPYRoundTripTests {
    /// A 2×3 array of each dtype holding extreme and ordinary values.
    static func sample(_ dtype: NPYDType, shape: [Int] = [2, 3]) -> NPYArray {
        switch dtype {
        case .float64: return NPYArray(shape: shape, doubles: [-.infinity, -1.5, 0, .leastNonzeroMagnitude, 1e308, .nan])
        case .float32: return NPYArray(shape: shape, float32s: [-.greatestFiniteMagnitude, -0.0, 0.1, 3, .infinity, .nan])
        case .int64: return NPYArray(shape: shape, int64s: [.min, -1, 0, 1, 1 << 53 + 1, .max])
        case .int32: return NPYArray(shape: shape, int32s: [.min, -1, 0, 1, 65536, .max])
        case .int16: return NPYArray(shape: shape, int16s: [.min, -1, 0, 1, 255, .max])
        case .int8: return NPYArray(shape: shape, int8s: [.min, -1, 0, 1, 100, .max])
        case .uint8: return NPYArray(shape: shape, uint8s: [0, 1, 127, 128, 254, 255])
        case .bool: return NPYArray(shape: shape, bools: [true, false, false, true, true, false])
        }
    }

    @Test("Every dtype survives encode then decode bit for bit", arguments: NPYDType.allCases)
    func roundTripEveryDType(dtype: NPYDType) throws {
        let array = Self.sample(dtype)
        let encoded = NPYFormat.encode(array)
        let decoded = try NPYFormat.decode(encoded)
        #expect(decoded == array)
        #expect(decoded.dtype == dtype)
        #expect(decoded.shape == [2, 3])
        #expect(decoded.count == 6)
        #expect(decoded.rawBytes.count == 6 * dtype.itemSize)
        #expect(NPYFormat.encode(decoded) == encoded)
    }

    @Test("Shapes of every rank round-trip, including 0-d and empty",
          arguments: [[], [0], [0, 5], [5, 0], [7], [1, 1], [2, 3, 4], [2, 1, 3, 2], [3, 0, 2, 1, 4]] as [[Int]])
    func roundTripShapes(shape: [Int]) throws {
        let count = shape.reduce(1, *)
        let values = (0..<count).map { Double($0) * 0.25 - 3 }
        let array = NPYArray(shape: shape, doubles: values)
        #expect(array.count == count)
        #expect(array.ndim == shape.count)
        let decoded = try NPYFormat.decode(NPYFormat.encode(array))
        #expect(decoded.shape == shape)
        #expect(decoded.count == count)
        #expect(decoded.doubles() == values)
    }

    @Test("A 0-d array has shape () and exactly one element")
    func zeroDimensional() throws {
        let array = NPYArray(shape: [], int64s: [42])
        let encoded = NPYFormat.encode(array)
        let text = String(decoding: encoded.prefix(80), as: UTF8.self)
        #expect(text.contains("'shape': (), }"))
        let decoded = try NPYFormat.decode(encoded)
        #expect(decoded.shape == [])
        #expect(decoded.count == 1)
        #expect(try decoded.int64s() == [42])
    }

    @Test("The header is written exactly as np.save writes it: version 1.0, padded to 64 bytes, newline-terminated")
    func headerLayoutMatchesNumPy() throws {
        let encoded = NPYFormat.encode(NPYArray(shape: [2, 3], doubles: [1, 2, 3, 4, 5, 6]))
        #expect(Array(encoded.prefix(8)) == [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0])
        let headerLength = Int(encoded.littleEndian(at: 8, as: UInt16.self))
        #expect((10 + headerLength) % 64 == 0)
        #expect(encoded.count == 10 + headerLength + 48)
        let header = String(decoding: encoded[10..<(10 + headerLength)], as: UTF8.self)
        let dictionary = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }"
        // NumPy: 21 - len(repr(shape[0])) spaces of growth room, then padding, then "\n".
        let padding = 64 - (10 + dictionary.utf8.count + 20 + 1) % 64
        #expect(header == dictionary + String(repeating: " ", count: 20 + padding) + "\n")
    }

    @Test("A header longer than 65535 bytes is written as version 2.0 with a 4-byte length")
    func version2WhenHeaderIsHuge() throws {
        let shape = [Int](repeating: 1, count: 22_000) // "1, " × 22000 > 65535 bytes
        let array = NPYArray(shape: shape, doubles: [2.5])
        let encoded = NPYFormat.encode(array)
        #expect(encoded[6] == 2 && encoded[7] == 0)
        let headerLength = Int(encoded.littleEndian(at: 8, as: UInt32.self))
        #expect(headerLength > 65535)
        #expect((12 + headerLength) % 64 == 0)
        #expect(encoded[12 + headerLength - 1] == UInt8(ascii: "\n"))
        let decoded = try NPYFormat.decode(encoded)
        #expect(decoded.shape == shape)
        #expect(decoded.doubles() == [2.5])
    }

    @Test("Version 2.0 and 3.0 headers are read, including UTF-8 in a 3.0 header")
    func readsVersions2And3() throws {
        let body = littleEndianBytes([Int32(7), -8])
        for major in [UInt8(2), 3] {
            let data = craftNPY(header: headerText(descr: "<i4", shape: "(2,)"), major: major, body: body)
            let array = try NPYFormat.decode(data)
            #expect(array.dtype == .int32)
            #expect(try array.int64s() == [7, -8])
        }
        // A (meaningless) non-ASCII string is still parsed as a string in version 3.0, so
        // the descr is reported as unsupported rather than malformed.
        let utf8 = craftNPY(header: headerText(descr: "<fé", shape: "(2,)"), major: 3, body: body)
        #expect(throws: NPYError.unsupportedDType("'<f?'")) { try NPYFormat.decode(utf8) }
    }

    @Test("Fortran-order data of every item size and rank is returned in C order",
          arguments: [[2, 3], [3, 2], [70, 45], [2, 3, 4], [4, 1, 3], [2, 3, 2, 2], [1, 5]] as [[Int]])
    func fortranOrderIsConvertedToCOrder(shape: [Int]) throws {
        let count = shape.reduce(1, *)
        let shapeText = "(" + shape.map(String.init).joined(separator: ", ") + ")"
        let int64Values = (0..<count).map { Int64($0) * 1_000_003 - 77 }
        let cases: [(descr: String, bytes: [UInt8], expected: [Int64])] = [
            ("<i8", littleEndianBytes(fortranOrdered(int64Values, shape: shape)), int64Values),
            ("<i4", littleEndianBytes(fortranOrdered(int64Values.map { Int32(truncatingIfNeeded: $0) }, shape: shape)),
             int64Values.map { Int64(Int32(truncatingIfNeeded: $0)) }),
            ("<i2", littleEndianBytes(fortranOrdered(int64Values.map { Int16(truncatingIfNeeded: $0) }, shape: shape)),
             int64Values.map { Int64(Int16(truncatingIfNeeded: $0)) }),
            ("|u1", littleEndianBytes(fortranOrdered(int64Values.map { UInt8(truncatingIfNeeded: $0) }, shape: shape)),
             int64Values.map { Int64(UInt8(truncatingIfNeeded: $0)) }),
        ]
        for (descr, bytes, expected) in cases {
            let data = craftNPY(header: headerText(descr: descr, fortran: true, shape: shapeText), body: bytes)
            let array = try NPYFormat.decode(data)
            #expect(array.shape == shape, "\(descr)")
            #expect(try array.int64s() == expected, "\(descr) \(shape)")
        }
        // Float64, big-endian and Fortran at once.
        let doubles = (0..<count).map { Double($0) / 8 }
        let beBytes = bigEndianBytes(fortranOrdered(doubles, shape: shape).map(\.bitPattern))
        let array = try NPYFormat.decode(craftNPY(header: headerText(descr: ">f8", fortran: true, shape: shapeText), body: beBytes))
        #expect(array.doubles() == doubles)
    }

    @Test("Fortran order is irrelevant for 0-d, 1-D and empty arrays")
    func fortranOrderTrivialShapes() throws {
        let scalar = craftNPY(header: headerText(descr: "<f8", fortran: true, shape: "()"), body: littleEndianBytes([Double(4).bitPattern]))
        #expect(try NPYFormat.decode(scalar).doubles() == [4])
        let vector = craftNPY(header: headerText(descr: "<i2", fortran: true, shape: "(3,)"), body: littleEndianBytes([Int16(1), 2, 3]))
        #expect(try NPYFormat.decode(vector).int64s() == [1, 2, 3])
        let empty = craftNPY(header: headerText(descr: "<f4", fortran: true, shape: "(0, 4)"))
        #expect(try NPYFormat.decode(empty).shape == [0, 4])
    }

    @Test("Big-endian dtypes are byte-swapped to little-endian", arguments: ["i2", "i4", "i8", "f4", "f8"])
    func bigEndianIsConverted(code: String) throws {
        let values: [Int64] = [1, -2, 300, -32768]
        let bytes: [UInt8]
        switch code {
        case "i2": bytes = bigEndianBytes(values.map { Int16($0) })
        case "i4": bytes = bigEndianBytes(values.map { Int32($0) })
        case "i8": bytes = bigEndianBytes(values)
        case "f4": bytes = bigEndianBytes(values.map { Float($0).bitPattern })
        default: bytes = bigEndianBytes(values.map { Double($0).bitPattern })
        }
        let array = try NPYFormat.decode(craftNPY(header: headerText(descr: ">" + code, shape: "(4,)"), body: bytes))
        #expect(try array.int64s() == values)
        #expect(array.dtype == NPYDType(descr: "<" + code))
        // Re-encoding writes the little-endian descr.
        #expect(String(decoding: NPYFormat.encode(array).prefix(30), as: UTF8.self).contains("'<\(code)'"))
    }

    @Test("Header spellings accepted by NumPy's literal parser are read")
    func lenientHeaderSpellings() throws {
        let body = littleEndianBytes([Double(1).bitPattern, Double(2).bitPattern])
        let headers = [
            "{\"descr\": \"<f8\", \"fortran_order\": False, \"shape\": (2,)}",
            "{'shape': (2,), 'fortran_order': False, 'descr': '<f8'}",
            "{ 'descr' : '<f8' ,\t'fortran_order':False,'shape':( 2 , ) , }   \n",
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2L,), }\n",
            "{'descr': 'f8', 'fortran_order': False, 'shape': (2,), }\n",
            "{'descr': '=f8', 'fortran_order': False, 'shape': (2,), }\n",
            "{'descr': '|f8', 'fortran_order': False, 'shape': (2,), }\n",
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2, ), }\n",
        ]
        for header in headers {
            let array = try NPYFormat.decode(craftNPY(header: header, body: body))
            #expect(array.doubles() == [1, 2], "\(header)")
        }
        // Data need not start on a 64-byte boundary (old NumPy aligned to 16).
        let unaligned = craftNPY(header: "{'descr': '<i2', 'fortran_order': False, 'shape': (1,)}", body: [5, 0])
        #expect(try NPYFormat.decode(unaligned).int64s() == [5])
    }

    @Test("Decoding works on a Data slice that does not start at index 0")
    func decodesSlices() throws {
        let encoded = NPYFormat.encode(NPYArray(shape: [3], int64s: [1, 2, 3]))
        let padded = Data([1, 2, 3]) + encoded + Data([9])
        let slice = padded[3..<(3 + encoded.count)]
        #expect(slice.startIndex == 3)
        #expect(try NPYFormat.decode(slice).int64s() == [1, 2, 3])
        #expect(try NPYFormat.decode(slice).rawBytes.startIndex == 0)
    }

    @Test("A million-element float64 array round-trips exactly")
    func largeRoundTrip() throws {
        var generator = SplitMix64(seed: 7)
        let values = (0..<1_000_000).map { _ in Double(bitPattern: generator.next()) }
        let array = NPYArray(shape: [1000, 1000], doubles: values)
        let encoded = NPYFormat.encode(array)
        #expect(encoded.count == 128 + 8_000_000)
        let decoded = try NPYFormat.decode(encoded)
        #expect(decoded == array)
        #expect(decoded.doubles().elementsEqual(values) { $0.bitPattern == $1.bitPattern })
    }

    @Test("Files can be written and read through URLs")
    func fileHelpers() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("NumPyIOTests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let array = NPYArray(shape: [2, 2], float32s: [1, 2, 3, 4])
        let npy = directory.appendingPathComponent("a.npy")
        try NPYFormat.write(array, to: npy)
        #expect(try NPYFormat.read(contentsOf: npy) == array)
        let npz = directory.appendingPathComponent("a.npz")
        try NPZFormat.write([("a", array)], compressed: true, to: npz)
        #expect(try NPZFormat.read(contentsOf: npz) == ["a": array])
        #expect(throws: (any Error).self) { try NPYFormat.read(contentsOf: directory.appendingPathComponent("missing.npy")) }
    }
}

@Suite("NPYArray conversions and validation")
struct NPYArrayTests {
    @Test("doubles() converts every dtype", arguments: NPYDType.allCases)
    func doublesConvertsEveryDType(dtype: NPYDType) {
        let array = NPYRoundTripTests.sample(dtype)
        let expected: [Double]
        switch dtype {
        case .float64: expected = [-.infinity, -1.5, 0, .leastNonzeroMagnitude, 1e308, .nan]
        case .float32: expected = [-Double(Float.greatestFiniteMagnitude), -0.0, Double(Float(0.1)), 3, .infinity, .nan]
        case .int64: expected = [-9.223372036854775808e18, -1, 0, 1, 9007199254740992, 9.223372036854775808e18]
        case .int32: expected = [-2147483648, -1, 0, 1, 65536, 2147483647]
        case .int16: expected = [-32768, -1, 0, 1, 255, 32767]
        case .int8: expected = [-128, -1, 0, 1, 100, 127]
        case .uint8: expected = [0, 1, 127, 128, 254, 255]
        case .bool: expected = [1, 0, 0, 1, 1, 0]
        }
        let doubles = array.doubles()
        #expect(doubles.count == 6)
        for (got, want) in zip(doubles, expected) {
            #expect(got == want || (got.isNaN && want.isNaN))
        }
        #expect(array.float32s().count == 6)
    }

    @Test("int64s() converts integers and booleans, and integral floats")
    func int64sConverts() throws {
        #expect(try NPYArray(shape: [3], bools: [true, false, true]).int64s() == [1, 0, 1])
        #expect(try NPYArray(shape: [2], uint8s: [0, 255]).int64s() == [0, 255])
        #expect(try NPYArray(shape: [2], int8s: [-128, 127]).int64s() == [-128, 127])
        let floats = NPYArray(shape: [5], doubles: [0, -0.0, 3, -4_611_686_018_427_387_904, 9_223_372_036_854_774_784])
        #expect(try floats.int64s() == [0, 0, 3, -(1 << 62), 9_223_372_036_854_774_784])
        #expect(try NPYArray(shape: [1], doubles: [-9.223372036854775808e18]).int64s() == [.min])
        #expect(try NPYArray(shape: [2], float32s: [16_777_216, -2]).int64s() == [16_777_216, -2])
    }

    @Test("int64s() throws nonIntegerValue naming the first bad element",
          arguments: [([1, 2.5], 1), ([.nan], 0), ([0, 0, .infinity], 2), ([9.223372036854775808e18], 0), ([-1e19], 0)] as [([Double], Int)])
    func int64sRejectsNonIntegers(values: [Double], index: Int) {
        let array = NPYArray(shape: [values.count], doubles: values)
        #expect(throws: NPYError.nonIntegerValue(index: index)) { try array.int64s() }
        let float32 = NPYArray(shape: [values.count], float32s: values.map(Float.init))
        #expect(throws: NPYError.nonIntegerValue(index: index)) { try float32.int64s() }
    }

    @Test("bools() treats every non-zero value, including NaN, as true")
    func boolsConverts() {
        #expect(NPYArray(shape: [4], doubles: [0, -0.0, .nan, 2]).bools() == [false, false, true, true])
        #expect(NPYArray(shape: [3], int16s: [0, -1, 256]).bools() == [false, true, true])
    }

    @Test("The raw-bytes initializer validates the byte count and normalizes booleans")
    func rawBytesInitializer() throws {
        #expect(throws: NPYError.truncatedData(expectedBytes: 16, actualBytes: 15)) {
            try NPYArray(shape: [2], dtype: .float64, rawBytes: Data(count: 15))
        }
        #expect(throws: NPYError.trailingBytes(1)) {
            try NPYArray(shape: [2], dtype: .float64, rawBytes: Data(count: 17))
        }
        #expect(throws: NPYError.negativeDimension(-2)) {
            try NPYArray(shape: [3, -2], dtype: .int8, rawBytes: Data())
        }
        #expect(throws: NPYError.shapeOverflow) {
            try NPYArray(shape: [1 << 62, 2], dtype: .float64, rawBytes: Data())
        }
        let bools = try NPYArray(shape: [3], dtype: .bool, rawBytes: Data([0, 2, 255]))
        #expect(bools.rawBytes == Data([0, 1, 1]))
        #expect(bools.bools() == [false, true, true])
        let slice = Data([9, 9, 1, 0, 2, 0])[2...]
        let int16 = try NPYArray(shape: [2], dtype: .int16, rawBytes: slice)
        #expect(int16.rawBytes.startIndex == 0)
        #expect(try int16.int64s() == [1, 2])
    }

    @Test("Setting shape reshapes when the element count is kept")
    func reshape() {
        var array = NPYArray(shape: [2, 3], int64s: [1, 2, 3, 4, 5, 6])
        array.shape = [3, 2]
        #expect(array.shape == [3, 2])
        array.shape = [6]
        #expect(array.count == 6)
        var scalar = NPYArray(shape: [1, 1], doubles: [5])
        scalar.shape = []
        #expect(scalar.ndim == 0)
    }

    @Test("Descr strings match NumPy's and parse back")
    func descrStrings() {
        let expected: [NPYDType: String] = [
            .float64: "<f8", .float32: "<f4", .int64: "<i8", .int32: "<i4",
            .int16: "<i2", .int8: "|i1", .uint8: "|u1", .bool: "|b1",
        ]
        for dtype in NPYDType.allCases {
            #expect(dtype.descr == expected[dtype])
            #expect(NPYDType(descr: dtype.descr) == dtype)
            #expect(NPYDType(descr: ">" + dtype.descr.dropFirst()) == dtype)
        }
        #expect(NPYDType(descr: "<u2") == nil)
        #expect(NPYDType(descr: "|O") == nil)
        #expect(NPYDType(descr: "") == nil)
    }
}
