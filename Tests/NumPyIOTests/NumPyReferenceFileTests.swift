import Foundation
import NumPyIO
import Testing

/// Files written by NumPy 2.x itself (Resources/generate.py).
@Suite("Reference files written by NumPy")
struct NumPyReferenceFileTests {
    struct Expectation: Sendable, CustomTestStringConvertible {
        var file: String
        var dtype: NPYDType
        var shape: [Int]
        var doubles: [Double]
        var testDescription: String { file }
    }

    static let expectations: [Expectation] = [
        .init(file: "f64_2x3.npy", dtype: .float64, shape: [2, 3], doubles: [-1, -0.5, 0, 0.5, 1e300, -2.5e-300]),
        .init(file: "f32_3.npy", dtype: .float32, shape: [3], doubles: [1.5, -2.25, Double(Float(0.1))]),
        .init(file: "i64_2x2.npy", dtype: .int64, shape: [2, 2], doubles: [1, -2, 1_099_511_627_776, -4_611_686_018_427_387_904]),
        .init(file: "i32_4.npy", dtype: .int32, shape: [4], doubles: [0, -1, 2_147_483_647, -2_147_483_648]),
        .init(file: "i16_3.npy", dtype: .int16, shape: [3], doubles: [-32768, 0, 32767]),
        .init(file: "i8_3.npy", dtype: .int8, shape: [3], doubles: [-128, 0, 127]),
        .init(file: "u8_2x2.npy", dtype: .uint8, shape: [2, 2], doubles: [0, 1, 254, 255]),
        .init(file: "bool_3.npy", dtype: .bool, shape: [3], doubles: [1, 0, 1]),
        .init(file: "scalar_f64.npy", dtype: .float64, shape: [], doubles: [3.25]),
        .init(file: "empty_0x5.npy", dtype: .float64, shape: [0, 5], doubles: []),
        .init(file: "fortran_f64_2x3x4.npy", dtype: .float64, shape: [2, 3, 4], doubles: (0..<24).map(Double.init)),
        .init(file: "fortran_i32_3x2.npy", dtype: .int32, shape: [3, 2], doubles: [1, 2, 3, 4, 5, 6]),
        .init(file: "be_f8_2x2.npy", dtype: .float64, shape: [2, 2], doubles: [1, -2, 3.5, 1e-10]),
        .init(file: "be_i4_3.npy", dtype: .int32, shape: [3], doubles: [1, -2, 70000]),
        .init(file: "v2_f64_3.npy", dtype: .float64, shape: [3], doubles: [1, 2, 3]),
        .init(file: "v3_i64_2.npy", dtype: .int64, shape: [2], doubles: [7, -8]),
    ]

    @Test("NumPy's .npy files decode to the values NumPy wrote", arguments: expectations)
    func decodesNumPyFiles(expected: Expectation) throws {
        let array = try NPYFormat.decode(Fixture.data(expected.file))
        #expect(array.dtype == expected.dtype)
        #expect(array.shape == expected.shape)
        #expect(array.count == expected.doubles.count)
        #expect(array.doubles() == expected.doubles)
    }

    @Test("int64 values beyond 2^53 are exact", arguments: ["i64_2x2.npy", "v3_i64_2.npy"])
    func int64Exact(file: String) throws {
        let values = try NPYFormat.decode(Fixture.data(file)).int64s()
        #expect(values == (file == "v3_i64_2.npy" ? [7, -8] : [1, -2, 1 << 40, -(1 << 62)]))
    }

    @Test("Re-encoding a C-order little-endian file reproduces NumPy's bytes exactly", arguments: [
        "f64_2x3.npy", "f32_3.npy", "i64_2x2.npy", "i32_4.npy", "i16_3.npy", "i8_3.npy",
        "u8_2x2.npy", "bool_3.npy", "scalar_f64.npy", "empty_0x5.npy",
    ])
    func encodeMatchesNumPyByteForByte(file: String) throws {
        let original = try Fixture.data(file)
        #expect(NPYFormat.encode(try NPYFormat.decode(original)) == original)
    }

    @Test("Fortran-order and big-endian files re-encode like their C-order little-endian equivalents")
    func convertedFilesReencode() throws {
        let fortran = try NPYFormat.decode(Fixture.data("fortran_i32_3x2.npy"))
        #expect(fortran == NPYArray(shape: [3, 2], int32s: [1, 2, 3, 4, 5, 6]))
        let bigEndian = try NPYFormat.decode(Fixture.data("be_f8_2x2.npy"))
        #expect(bigEndian == NPYArray(shape: [2, 2], doubles: [1, -2, 3.5, 1e-10]))
        #expect(String(decoding: NPYFormat.encode(bigEndian).prefix(64), as: UTF8.self).contains("'descr': '<f8', 'fortran_order': False"))
    }

    @Test("Header versions 2.0 and 3.0 written by NumPy are read")
    func versionsFromNumPy() throws {
        #expect(try Fixture.data("v2_f64_3.npy")[6] == 2)
        #expect(try Fixture.data("v3_i64_2.npy")[6] == 3)
    }

    @Test("NumPy files with unsupported dtypes are refused with their descr", arguments: [
        ("unsupported_u16.npy", "'<u2'"), ("unsupported_c16.npy", "'<c16'"), ("unsupported_object.npy", "'|O'"),
        ("unsupported_structured.npy", "[('a', '<i4'), ('b', '<f8')]"),
    ] as [(String, String)])
    func unsupportedNumPyFiles(file: String, descr: String) throws {
        let data = try Fixture.data(file)
        #expect(throws: NPYError.unsupportedDType(descr)) { try NPYFormat.decode(data) }
    }

    @Test("np.savez archives (stored members) decode by name")
    func savez() throws {
        let data = try Fixture.data("savez.npz")
        let entries = try data.withUnsafeBytes { try ZipReader.entries(in: $0) }
        #expect(entries.map(\.method) == [0, 0, 0])
        let members = try NPZFormat.decodeMembers(data)
        #expect(members.map { $0.name } == ["a", "b", "c"])
        try Self.checkSavezArrays(NPZFormat.decode(data))
    }

    @Test("np.savez_compressed archives (deflated members) decode by name")
    func savezCompressed() throws {
        let data = try Fixture.data("savez_compressed.npz")
        let entries = try data.withUnsafeBytes { try ZipReader.entries(in: $0) }
        #expect(entries.map(\.method) == [8, 8, 8, 8])
        let arrays = try NPZFormat.decode(data)
        try Self.checkSavezArrays(arrays)
        #expect(arrays["zeros"] == NPYArray(shape: [200], doubles: [Double](repeating: 0, count: 200)))
    }

    @Test("np.savez positional arrays are named arr_0, arr_1, …")
    func savezPositional() throws {
        let arrays = try NPZFormat.decode(Fixture.data("savez_positional.npz"))
        #expect(Set(arrays.keys) == ["arr_0", "arr_1"])
        #expect(arrays["arr_0"] == NPYArray(shape: [], doubles: [1.5]))
        #expect(arrays["arr_1"] == NPYArray(shape: [2], bools: [true, false]))
    }

    @Test("Reference files load from URLs with the read(contentsOf:) helpers")
    func readFromURLs() throws {
        #expect(try NPYFormat.read(contentsOf: Fixture.url("i16_3.npy")).int64s() == [-32768, 0, 32767])
        try Self.checkSavezArrays(NPZFormat.read(contentsOf: Fixture.url("savez_compressed.npz")))
    }

    static func checkSavezArrays(_ arrays: [String: NPYArray]) throws {
        #expect(arrays["a"] == NPYArray(shape: [2, 2], doubles: [1, 2, 3, 4]))
        #expect(arrays["b"] == NPYArray(shape: [5], int64s: [0, 1, 2, 3, 4]))
        // c was saved with np.asfortranarray: fortran_order True in the member header.
        #expect(arrays["c"] == NPYArray(shape: [2, 3], float32s: [0, 1, 2, 3, 4, 5]))
    }
}
