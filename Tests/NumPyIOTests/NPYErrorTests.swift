import Foundation
import NumPyIO
import Testing

@Suite("NPY decoding errors")
struct NPYErrorTests {
    static let validHeader = headerText(descr: "<f8", shape: "(2,)")
    static let twoDoubles = littleEndianBytes([Double(1).bitPattern, Double(2).bitPattern])

    @Test("Data that does not start with \\x93NUMPY throws badMagic")
    func badMagic() {
        #expect(throws: NPYError.badMagic) { try NPYFormat.decode(Data("hello, world, not numpy".utf8)) }
        #expect(throws: NPYError.badMagic) { try NPYFormat.decode(Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])) }
        #expect(throws: NPYError.badMagic) { try NPYFormat.decode(Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x5A, 1, 0, 0, 0])) }
        // An .npz (ZIP) archive is not an .npy file.
        #expect(throws: NPYError.badMagic) { try NPYFormat.decode(try NPZFormat.encode([])) }
    }

    @Test("Data that ends inside the header throws truncatedHeader")
    func truncatedHeader() throws {
        let valid = craftNPY(header: Self.validHeader, body: Self.twoDoubles)
        #expect(throws: NPYError.truncatedHeader) { try NPYFormat.decode(Data()) }
        #expect(throws: NPYError.truncatedHeader) { try NPYFormat.decode(Data([0x93, 0x4E, 0x55])) }
        for length in [6, 7, 8, 9, 10, 11, 30, valid.count - 17] {
            #expect(throws: NPYError.truncatedHeader, "prefix of \(length) bytes") { try NPYFormat.decode(valid.prefix(length)) }
        }
        // Version 2.0 needs a 4-byte length field.
        let v2 = craftNPY(header: Self.validHeader, major: 2)
        #expect(throws: NPYError.truncatedHeader) { try NPYFormat.decode(v2.prefix(11)) }
        // A length field pointing past the end.
        #expect(throws: NPYError.truncatedHeader) {
            try NPYFormat.decode(craftNPY(header: Self.validHeader, headerLength: 5000, body: Self.twoDoubles))
        }
    }

    @Test("Versions other than 1.0, 2.0 and 3.0 throw unsupportedVersion",
          arguments: [(0, 0), (4, 0), (1, 1), (2, 5), (255, 255)] as [(UInt8, UInt8)])
    func unsupportedVersion(major: UInt8, minor: UInt8) {
        let data = craftNPY(header: Self.validHeader, major: major, minor: minor, body: Self.twoDoubles)
        #expect(throws: NPYError.unsupportedVersion(major: Int(major), minor: Int(minor))) { try NPYFormat.decode(data) }
    }

    @Test("Header lengths beyond the 1 MiB limit throw headerTooLarge before anything is read")
    func headerTooLarge() {
        let huge = craftNPY(header: Self.validHeader, major: 2, headerLength: 0x7FFF_FFFF)
        #expect(throws: NPYError.headerTooLarge(0x7FFF_FFFF)) { try NPYFormat.decode(huge) }
        let all = craftNPY(header: Self.validHeader, major: 3, headerLength: 0xFFFF_FFFF)
        #expect(throws: NPYError.headerTooLarge(0xFFFF_FFFF)) { try NPYFormat.decode(all) }
        let justOver = craftNPY(header: Self.validHeader, major: 2, headerLength: NPYFormat.maxHeaderLength + 1)
        #expect(throws: NPYError.headerTooLarge(NPYFormat.maxHeaderLength + 1)) { try NPYFormat.decode(justOver) }
        // Exactly at the limit is allowed (a header padded with spaces).
        let padded = Self.validHeader + String(repeating: " ", count: NPYFormat.maxHeaderLength - Self.validHeader.utf8.count)
        #expect(throws: Never.self) { try NPYFormat.decode(craftNPY(header: padded, major: 2, body: Self.twoDoubles)) }
    }

    @Test("Headers that are not the expected dictionary throw malformedHeader", arguments: [
        "",
        "   \n",
        "[1, 2]",
        "{'descr': '<f8', 'fortran_order': False}",
        "{'descr': '<f8', 'shape': (2,)}",
        "{'fortran_order': False, 'shape': (2,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'extra': 1}",
        "{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (2,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': [2]}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': 2}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2.0,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': ('2',)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,",
        "{'descr': '<f8', 'fortran_order': 0, 'shape': (2,)}",
        "{'descr': '<f8', 'fortran_order': 'False', 'shape': (2,)}",
        "{'descr': '<f8', 'fortran_order': Falsey, 'shape': (2,)}",
        "{'descr': '<f8', 'fortran_order': None, 'shape': (2,)}",
        "{'descr': 8, 'fortran_order': False, 'shape': (2,)}",
        "{'descr': (1,), 'fortran_order': False, 'shape': (2,)}",
        "{'descr': '<f8, 'fortran_order': False, 'shape': (2,)}",
        "{'descr': '<f8\n', 'fortran_order': False, 'shape': (2,)}",
        "{descr: '<f8', 'fortran_order': False, 'shape': (2,)}",
        "{'descr' '<f8', 'fortran_order': False, 'shape': (2,)}",
        "{'descr': '<f8' 'fortran_order': False, 'shape': (2,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,)} x",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,)}}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,)",
        "{'descr': [('a', '<f8'), 'fortran_order': False, 'shape': (2,)}",
    ])
    func malformedHeader(header: String) {
        let data = craftNPY(header: header, body: Self.twoDoubles)
        let error = #expect(throws: NPYError.self) { try NPYFormat.decode(data) }
        guard case .malformedHeader(let detail)? = error else {
            Issue.record("expected malformedHeader, got \(String(describing: error))")
            return
        }
        #expect(!detail.isEmpty)
    }

    @Test("Dtypes outside the supported eight throw unsupportedDType with the descr", arguments: [
        ("'<u2'", "'<u2'"), ("'<u4'", "'<u4'"), ("'<u8'", "'<u8'"), ("'<f2'", "'<f2'"), ("'<c16'", "'<c16'"),
        ("'|O'", "'|O'"), ("'<U5'", "'<U5'"), ("'|S3'", "'|S3'"), ("'<M8[ns]'", "'<M8[ns]'"), ("'|V8'", "'|V8'"),
        ("'<f16'", "'<f16'"), ("''", "''"), ("'<'", "'<'"), ("'float64'", "'float64'"),
        ("[('a', '<i4'), ('b', '<f8')]", "[('a', '<i4'), ('b', '<f8')]"),
        ("[('x', '<f8', (2, 2))]", "[('x', '<f8', (2, 2))]"),
        ("'\\x01\\x02'", "'x01x02'"),
    ] as [(String, String)])
    func unsupportedDType(descr: String, reported: String) {
        let header = "{'descr': \(descr), 'fortran_order': False, 'shape': (2,), }"
        #expect(throws: NPYError.unsupportedDType(reported)) {
            try NPYFormat.decode(craftNPY(header: header, body: Self.twoDoubles))
        }
    }

    @Test("Structured and subarray descrs (a list, or a tuple starting with a type) are reported as such, not as a bad shape",
          arguments: ["('<f8', (2,))", "('<i4', (2, 3))", "( '<f8', 3)", "([('a', '<f8')], (2,))", "[('a', '<f8')]"])
    func structuredDType(descr: String) {
        let header = "{'descr': \(descr), 'fortran_order': False, 'shape': (3,), }"
        let error = #expect(throws: NPYError.unsupportedDType(descr)) {
            try NPYFormat.decode(craftNPY(header: header, body: [UInt8](repeating: 0, count: 48)))
        }
        let text = error?.description ?? ""
        #expect(text.hasPrefix("The structured or subarray dtype \(descr) is not supported"), "\(text)")
        #expect(!text.contains("shape"), "\(text)")
    }

    @Test("The unsupported-dtype message offers the numeric dtypes only, not bool")
    func unsupportedDTypeAdvice() {
        let text = NPYError.unsupportedDType("'|b1'").description
        #expect(text.hasPrefix("The dtype '|b1' is not supported"), "\(text)")
        for name in ["float64", "float32", "int64", "int32", "int16", "int8", "uint8"] {
            #expect(text.contains(name), "\(name) in \(text)")
        }
        #expect(!text.contains("or bool"), "\(text)")
        #expect(text.components(separatedBy: "bool").count == 1, "\(text)")
    }

    @Test("Long unsupported descrs are shortened and made printable in the error")
    func unsupportedDTypeIsSanitized() {
        let descr = "<" + String(repeating: "z", count: 100) + "\u{7}"
        let data = craftNPY(header: "{'descr': '\(descr)', 'fortran_order': False, 'shape': (2,)}", body: Self.twoDoubles)
        let error = #expect(throws: NPYError.self) { try NPYFormat.decode(data) }
        guard case .unsupportedDType(let text)? = error else {
            Issue.record("expected unsupportedDType, got \(String(describing: error))")
            return
        }
        #expect(text.count == 43 && text.hasSuffix("…'") && text.hasPrefix("'<zzz"))
    }

    @Test("Too few data bytes throw truncatedData with both byte counts")
    func truncatedData() {
        let header = headerText(descr: "<f8", shape: "(10,)")
        #expect(throws: NPYError.truncatedData(expectedBytes: 80, actualBytes: 79)) {
            try NPYFormat.decode(craftNPY(header: header, body: [UInt8](repeating: 0, count: 79)))
        }
        #expect(throws: NPYError.truncatedData(expectedBytes: 80, actualBytes: 0)) {
            try NPYFormat.decode(craftNPY(header: header))
        }
        let encoded = NPYFormat.encode(NPYArray(shape: [2, 2], int32s: [1, 2, 3, 4]))
        #expect(throws: NPYError.truncatedData(expectedBytes: 16, actualBytes: 12)) {
            try NPYFormat.decode(encoded.dropLast(4))
        }
        // A huge claimed size on a tiny file is a truncation, not an allocation.
        #expect(throws: NPYError.truncatedData(expectedBytes: 8 << 40, actualBytes: 0)) {
            try NPYFormat.decode(craftNPY(header: headerText(descr: "<f8", shape: "(1024, 1073741824)")))
        }
    }

    @Test("Extra bytes after the data throw trailingBytes")
    func trailingBytes() {
        let header = headerText(descr: "<i2", shape: "(3,)")
        #expect(throws: NPYError.trailingBytes(1)) {
            try NPYFormat.decode(craftNPY(header: header, body: [UInt8](repeating: 0, count: 7)))
        }
        let encoded = NPYFormat.encode(NPYArray(shape: [], doubles: [1]))
        #expect(throws: NPYError.trailingBytes(8)) { try NPYFormat.decode(encoded + encoded.suffix(8)) }
        let empty = craftNPY(header: headerText(descr: "<f8", shape: "(0, 3)"), body: [0])
        #expect(throws: NPYError.trailingBytes(1)) { try NPYFormat.decode(empty) }
    }

    @Test("Shapes whose size overflows throw shapeOverflow", arguments: [
        ("<f8", "(4611686018427387904, 4)"),
        ("<f8", "(2305843009213693952,)"),
        ("|u1", "(4294967296, 4294967296)"),
        ("|u1", "(99999999999999999999,)"),
        ("|u1", "(1, 9223372036854775808)"),
        ("<i4", "(0, 4611686018427387904, 4611686018427387904)"),
    ] as [(String, String)])
    func shapeOverflow(descr: String, shape: String) {
        #expect(throws: NPYError.shapeOverflow) {
            try NPYFormat.decode(craftNPY(header: headerText(descr: descr, shape: shape)))
        }
    }

    @Test("Negative dimensions throw negativeDimension")
    func negativeDimension() {
        #expect(throws: NPYError.negativeDimension(-1)) {
            try NPYFormat.decode(craftNPY(header: headerText(descr: "<f8", shape: "(-1, 3)")))
        }
        #expect(throws: NPYError.negativeDimension(-5)) {
            try NPYFormat.decode(craftNPY(header: headerText(descr: "<f8", shape: "(2, -5L)")))
        }
        // "-0" is zero.
        #expect(throws: Never.self) {
            try NPYFormat.decode(craftNPY(header: headerText(descr: "<f8", shape: "(-0,)")))
        }
    }

    @Test("Every error description is one sentence without file names")
    func descriptionsAreSentences() {
        let errors: [NPYError] = [
            .badMagic, .unsupportedVersion(major: 9, minor: 1), .truncatedHeader, .headerTooLarge(5_000_000),
            .malformedHeader("the key 'shape' is missing"), .unsupportedDType("'<u2'"),
            .truncatedData(expectedBytes: 80, actualBytes: 79), .trailingBytes(3), .shapeOverflow,
            .negativeDimension(-1), .nonIntegerValue(index: 4),
        ]
        for error in errors {
            let text = error.description
            #expect(text.first?.isUppercase == true, "\(text)")
            #expect(text.hasSuffix("."), "\(text)")
            #expect(!text.contains("\n"), "\(text)")
            #expect(!text.contains(".npy'") && !text.contains("/"), "\(text)")
        }
        #expect(NPYError.truncatedData(expectedBytes: 80, actualBytes: 79).description.contains("80"))
        #expect(NPYError.unsupportedVersion(major: 9, minor: 1).description.contains("9.1"))
        #expect(NPYError.unsupportedDType("'<u2'").description.contains("'<u2'"))
    }
}
