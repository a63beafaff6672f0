import Foundation
import Testing
@testable import Network

/// Parses a JSON text given as a Swift string.
private func parse(_ text: String) throws(JSONError) -> JSONValue {
    try JSONValue.parse(Data(text.utf8))
}

@Suite struct JSONValueTests {
    @Test("every kind of value parses to its case; integer literals stay integers, other numbers are doubles")
    func values() throws {
        let value = try parse(#" { "a": [null, true, false, 0, -0, 64, 64.0, 1e2, -2.5E-3, "s", {}, []] } "#)
        #expect(value == .object(["a": .array([
            .null, .bool(true), .bool(false), .integer(0), .integer(0), .integer(64), .number(64), .number(100),
            .number(-0.0025), .string("s"), .object([:]), .array([]),
        ])]))
        #expect(try parse("9223372036854775807") == .integer(Int.max))
        #expect(try parse("-9223372036854775808") == .integer(Int.min))
        // Integer literals beyond Int become the nearest double.
        #expect(try parse("9223372036854775808") == .number(9_223_372_036_854_775_808))
        #expect(try parse("-99999999999999999999") == .number(-1e20))
        #expect(try parse("\u{FEFF}[1]") == .array([.integer(1)]))
    }

    @Test("every escape decodes, surrogate pairs combine, and text without escapes is kept as written")
    func escapes() throws {
        #expect(try parse(#""a\"b\\c\/d\b\f\n\r\t""#) == .string("a\"b\\c/d\u{8}\u{C}\n\r\t"))
        #expect(try parse(#""\u0041\u00e9\u20AC\uD83D\uDE00\u0000""#) == .string("Aé€😀\u{0}"))
        #expect(try parse(#""é€😀 plain""#) == .string("é€😀 plain"))
        #expect(try parse(#""pre \u00E9 post é""#) == .string("pre é post é"))
    }

    @Test("texts outside RFC 8259 are refused with what was found and where", arguments: [
        ("", "unexpected end of the text", 1, 1),
        ("[1,]", "unexpected character ']'", 1, 4),
        ("{\"a\" 1}", "unexpected character '1'", 1, 6),
        ("{'a': 1}", "unexpected character '''", 1, 2),
        ("[01]", "a number with a leading zero", 1, 2),
        ("[1.]", "unexpected character ']'", 1, 4),
        ("[.5]", "unexpected character '.'", 1, 2),
        ("[+1]", "unexpected character '+'", 1, 2),
        ("[1e]", "unexpected character ']'", 1, 4),
        ("[-]", "unexpected character ']'", 1, 3),
        ("[NaN]", "unexpected character 'N'", 1, 2),
        ("[1e400]", "the number 1e400 is out of range", 1, 2),
        ("[tru]", "an unknown word", 1, 2),
        ("[nulll]", "unexpected character 'l'", 1, 6),
        ("[1] [2]", "unexpected character '['", 1, 5),
        ("\"abc", "a string that is not closed", 1, 1),
        ("\"a\tb\"", "a control character U+0009 in a string (write it as an escape)", 1, 3),
        (#""\x""#, "an invalid escape '\\x' in a string", 1, 2),
        (#""\u12G4""#, "a \\u escape without four hex digits", 1, 6),
        (#""\uD800""#, "a lone surrogate \\uD800 in a string", 1, 2),
        (#""\uD800\u0041""#, "a lone surrogate \\uD800 in a string", 1, 2),
        (#""\uDC00""#, "a lone surrogate \\uDC00 in a string", 1, 2),
        ("[1]\n\n  é", "unexpected character 'é' (U+00E9)", 3, 3),
        ("{\n  \"é\": 1,\n  \"b\" 2}", "unexpected character '2'", 3, 7),
    ] as [(String, String, Int, Int)])
    func refused(text: String, reason: String, line: Int, column: Int) {
        let error = #expect(throws: JSONError.self) { try parse(text) }
        #expect(error?.reason == .syntax(reason))
        #expect(error?.line == line && error?.column == column, "\(String(describing: error))")
    }

    @Test("bytes that are not UTF-8 are refused inside and outside strings")
    func invalidUTF8() {
        let inString = #expect(throws: JSONError.self) { try JSONValue.parse(Data([0x22, 0x61, 0xC3, 0x28, 0x22])) }
        #expect(inString?.reason == .syntax("a string that is not valid UTF-8"))
        let outside = #expect(throws: JSONError.self) { try JSONValue.parse(Data([0x5B, 0xFF, 0x5D])) }
        #expect(outside?.reason == .syntax("unexpected byte 0xFF, which is not UTF-8"))
    }

    @Test("a key twice in one object is refused, naming the key and the path to the object")
    func duplicateKeys() {
        let top = #expect(throws: JSONError.self) { try parse(#"{"a": 1, "b": 2, "a": 3}"#) }
        #expect(top == JSONError(reason: .duplicateKey("a"), line: 1, column: 18, path: []))
        let nested = #expect(throws: JSONError.self) { try parse(#"{"x": [0, {"k": 1}, {"k": 1, "k": 1}]}"#) }
        #expect(nested?.reason == .duplicateKey("k"))
        #expect(nested?.path == [.key("x"), .index(2)])
        // The same key in different objects is fine.
        #expect(throws: Never.self) { try parse(#"[{"k": 1}, {"k": 2, "j": {"k": 3}}]"#) }
    }

    @Test("arrays and objects nest up to 512 deep; one more is refused, and 100000 neither crashes nor recurses that deep")
    func depthLimit() throws {
        let deepest = String(repeating: "[", count: 511) + "{\"a\": 1}" + String(repeating: "]", count: 511)
        #expect(throws: Never.self) { try parse(deepest) }
        let tooDeep = String(repeating: "[", count: 512) + "{\"a\": 1}" + String(repeating: "]", count: 512)
        let error = #expect(throws: JSONError.self) { try parse(tooDeep) }
        #expect(error?.reason == .syntax("more than 512 nested arrays and objects"))
        #expect(error?.column == 513)
        #expect(error?.path.count == 512)
        let hostile = String(repeating: "[", count: 100_000)
        #expect(throws: JSONError.self) { try parse(hostile) }
    }
}
