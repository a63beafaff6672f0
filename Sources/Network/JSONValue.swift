import Foundation

/// A parsed JSON document, kept exact about types: a boolean is never a number, and a
/// number written as an integer stays an integer.
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    /// A number written with a fraction or an exponent (`64.0`, `1e15`), or an integer
    /// literal too large for `Int`.
    case number(Double)
    /// A number written as an integer literal (`64`, `-3`) that fits in `Int`.
    case integer(Int)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// The deepest nesting of arrays and objects accepted; deeper documents are refused
    /// rather than risking the parser's stack.
    static let maximumDepth = 512

    /// Parses a JSON text (RFC 8259) strictly: one value with optional surrounding
    /// whitespace (and an optional UTF-8 byte order mark), UTF-8 strings with every escape
    /// (surrogate pairs combined, lone surrogates refused), and no key twice in an object.
    ///
    /// The parser reads the bytes once, recursing only into arrays and objects, so its
    /// time is linear in the size of the text.
    /// - Throws: ``JSONError`` naming the line and column of the first problem.
    static func parse(_ data: Data) throws(JSONError) -> JSONValue {
        let result = data.withUnsafeBytes { raw in
            Result { () throws(JSONError) -> JSONValue in
                var parser = JSONParser(bytes: raw)
                do throws(JSONParser.Failure) {
                    return try parser.parseDocument()
                } catch {
                    throw JSONError(error, in: raw)
                }
            }
        }
        return try result.get()
    }

    /// The value as an integer when it is one: an integer literal, or a number with no
    /// fractional part that fits in `Int` (`64.0`, `1e15`).
    var integerValue: Int? {
        switch self {
        case .integer(let value): return value
        case .number(let value): return Int(exactly: value)
        default: return nil
        }
    }

    /// The value as a number when it is one (an integer literal converts to the nearest double).
    var numberValue: Double? {
        switch self {
        case .integer(let value): return Double(value)
        case .number(let value): return value
        default: return nil
        }
    }
}

/// One step from a JSON value into one of its members.
enum JSONPathComponent: Equatable {
    case key(String)
    case index(Int)
}

/// Why ``JSONValue/parse(_:)`` refused a text, and where.
struct JSONError: Error, Equatable {
    enum Reason: Equatable {
        /// The text is not JSON; the phrase says what was found ("unexpected character '}'").
        case syntax(String)
        /// An object has the key twice.
        case duplicateKey(String)
    }

    var reason: Reason
    /// The 1-based line of the problem.
    var line: Int
    /// The 1-based column of the problem, counted in Unicode scalars.
    var column: Int
    /// The keys and indices leading from the top-level value to the innermost array or
    /// object that holds the problem (empty for the top level itself).
    var path: [JSONPathComponent]
}

extension JSONError {
    /// Places a parser failure by line and column in the text.
    fileprivate init(_ failure: JSONParser.Failure, in bytes: UnsafeRawBufferPointer) {
        reason = failure.reason
        path = failure.reversedPath.reversed()
        var line = 1
        var lineStart = 0
        let end = min(failure.offset, bytes.count)
        for index in 0..<end where bytes[index] == 0x0A {
            line += 1
            lineStart = index + 1
        }
        self.line = line
        // A column counts scalars: every byte but UTF-8 continuation bytes starts one.
        column = 1 + bytes[lineStart..<end].reduce(0) { $0 + ($1 & 0xC0 == 0x80 ? 0 : 1) }
    }
}

/// A recursive-descent parser over UTF-8 bytes.
///
/// Written for speed in debug builds too (model files of tens of megabytes must be
/// refused or read in seconds): bytes are read through a plain pointer, tokens are
/// compared with byte values rather than `UInt8(ascii:)`, and strings without escapes
/// or non-ASCII bytes are copied into a `String` in one piece.
private struct JSONParser {
    /// A refusal at a byte offset; the path is collected innermost first as the error
    /// leaves each array and object.
    struct Failure: Error {
        var reason: JSONError.Reason
        var offset: Int
        var reversedPath: [JSONPathComponent] = []

        func inside(_ component: JSONPathComponent) -> Failure {
            var copy = self
            copy.reversedPath.append(component)
            return copy
        }
    }

    // Byte values of the structural characters.
    private static let quote: UInt8 = 0x22, backslash: UInt8 = 0x5C, comma: UInt8 = 0x2C, colon: UInt8 = 0x3A
    private static let openBrace: UInt8 = 0x7B, closeBrace: UInt8 = 0x7D, openBracket: UInt8 = 0x5B, closeBracket: UInt8 = 0x5D
    private static let minus: UInt8 = 0x2D, plus: UInt8 = 0x2B, dot: UInt8 = 0x2E, zero: UInt8 = 0x30

    private let base: UnsafePointer<UInt8>
    private let end: Int
    private var position = 0
    private var depth = 0

    init(bytes: UnsafeRawBufferPointer) {
        // An empty text may have no address; nothing is read from it then.
        base = bytes.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) } ?? UnsafePointer(bitPattern: 1)!
        end = bytes.count
    }

    mutating func parseDocument() throws(Failure) -> JSONValue {
        if end >= 3, base[0] == 0xEF, base[1] == 0xBB, base[2] == 0xBF {
            position = 3
        }
        skipWhitespace()
        let value = try parseValue()
        skipWhitespace()
        if position < end { throw unexpected() }
        return value
    }

    // MARK: - Values

    private mutating func parseValue() throws(Failure) -> JSONValue {
        guard position < end else { throw unexpected() }
        switch base[position] {
        case 0x7B: return try parseObject() // {
        case 0x5B: return try parseArray() // [
        case 0x22: return .string(try parseString()) // "
        case 0x74: try expectWord("true"); return .bool(true)
        case 0x66: try expectWord("false"); return .bool(false)
        case 0x6E: try expectWord("null"); return .null
        case 0x2D, 0x30...0x39: return try parseNumber() // - and digits
        default: throw unexpected()
        }
    }

    private mutating func parseObject() throws(Failure) -> JSONValue {
        try enterContainer()
        defer { depth -= 1 }
        position += 1 // {
        skipWhitespace()
        if position < end && base[position] == Self.closeBrace {
            position += 1
            return .object([:])
        }
        var object = [String: JSONValue](minimumCapacity: 4)
        while true {
            skipWhitespace()
            guard position < end && base[position] == Self.quote else { throw unexpected() }
            let keyOffset = position
            let key = try parseString()
            skipWhitespace()
            guard position < end && base[position] == Self.colon else { throw unexpected() }
            position += 1
            skipWhitespace()
            let value: JSONValue
            do {
                value = try parseValue()
            } catch {
                throw error.inside(.key(key))
            }
            if object.updateValue(value, forKey: key) != nil {
                throw Failure(reason: .duplicateKey(key), offset: keyOffset)
            }
            if try endsContainer(with: Self.closeBrace) { return .object(object) }
        }
    }

    private mutating func parseArray() throws(Failure) -> JSONValue {
        try enterContainer()
        defer { depth -= 1 }
        position += 1 // [
        skipWhitespace()
        if position < end && base[position] == Self.closeBracket {
            position += 1
            return .array([])
        }
        var array: [JSONValue] = []
        while true {
            skipWhitespace()
            do {
                array.append(try parseValue())
            } catch {
                throw error.inside(.index(array.count))
            }
            if try endsContainer(with: Self.closeBracket) { return .array(array) }
        }
    }

    /// Consumes what follows a member: a comma (returns false, another member follows) or
    /// the container's closing byte (returns true).
    private mutating func endsContainer(with closing: UInt8) throws(Failure) -> Bool {
        skipWhitespace()
        guard position < end else { throw unexpected() }
        let separator = base[position]
        guard separator == closing || separator == Self.comma else { throw unexpected() }
        position += 1
        return separator == closing
    }

    private mutating func enterContainer() throws(Failure) {
        guard depth < JSONValue.maximumDepth else {
            throw Failure(reason: .syntax("more than \(JSONValue.maximumDepth) nested arrays and objects"), offset: position)
        }
        depth += 1
    }

    // MARK: - Strings

    /// Parses a string starting at its opening quote. Text without escapes is converted
    /// in one piece; an escape switches to building the bytes one at a time.
    private mutating func parseString() throws(Failure) -> String {
        let openingQuote = position
        let start = position + 1
        var index = start
        var allBits: UInt8 = 0 // the OR of every byte: below 0x80 means ASCII
        while index < end {
            let byte = base[index]
            if byte == Self.quote {
                position = index + 1
                return try makeString(start: start, count: index - start, ascii: allBits < 0x80)
            }
            if byte == Self.backslash { break }
            if byte < 0x20 {
                position = index
                throw controlCharacter(byte)
            }
            allBits |= byte
            index += 1
        }
        position = index
        var content = [UInt8](UnsafeBufferPointer(start: base + start, count: index - start))
        while true {
            guard position < end else {
                throw Failure(reason: .syntax("a string that is not closed"), offset: openingQuote)
            }
            let byte = base[position]
            if byte == Self.quote {
                position += 1
                guard let text = content.withUnsafeBufferPointer({ Self.validatedString($0) }) else { throw invalidUTF8(at: start) }
                return text
            }
            if byte < 0x20 { throw controlCharacter(byte) }
            if byte != Self.backslash {
                content.append(byte)
                position += 1
                continue
            }
            try parseEscape(into: &content)
        }
    }

    /// Parses the escape at the current backslash and appends its UTF-8 bytes.
    private mutating func parseEscape(into content: inout [UInt8]) throws(Failure) {
        let escapeOffset = position
        position += 1
        guard position < end else { throw unexpected() }
        let escaped = base[position]
        position += 1
        switch escaped {
        case 0x22, 0x5C, 0x2F: content.append(escaped) // " \ /
        case 0x62: content.append(0x08) // b
        case 0x66: content.append(0x0C) // f
        case 0x6E: content.append(0x0A) // n
        case 0x72: content.append(0x0D) // r
        case 0x74: content.append(0x09) // t
        case 0x75: // u
            var scalar = try parseHexQuad()
            if (0xD800...0xDBFF).contains(scalar) {
                // A high surrogate must be followed by an escaped low surrogate.
                guard end - position >= 2, base[position] == Self.backslash, base[position + 1] == 0x75 else {
                    throw loneSurrogate(scalar, at: escapeOffset)
                }
                position += 2
                let low = try parseHexQuad()
                guard (0xDC00...0xDFFF).contains(low) else { throw loneSurrogate(scalar, at: escapeOffset) }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if (0xDC00...0xDFFF).contains(scalar) {
                throw loneSurrogate(scalar, at: escapeOffset)
            }
            content.append(contentsOf: UTF8.encode(Unicode.Scalar(scalar)!)!)
        default:
            let shown = (0x21..<0x7F).contains(escaped)
                ? "'\\\(Character(Unicode.Scalar(escaped)))'" : "'\\' followed by U+\(Self.hex(UInt32(escaped)))"
            throw Failure(reason: .syntax("an invalid escape \(shown) in a string"), offset: escapeOffset)
        }
    }

    /// Reads the four hex digits of a `\u` escape.
    private mutating func parseHexQuad() throws(Failure) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard position < end else { throw unexpected() }
            let byte = base[position]
            let digit: UInt8
            switch byte {
            case 0x30...0x39: digit = byte - 0x30 // 0-9
            case 0x61...0x66: digit = byte - 0x61 + 10 // a-f
            case 0x41...0x46: digit = byte - 0x41 + 10 // A-F
            default: throw Failure(reason: .syntax("a \\u escape without four hex digits"), offset: position)
            }
            value = value << 4 | UInt32(digit)
            position += 1
        }
        return value
    }

    /// The string of `count` bytes at `start`, refusing invalid UTF-8.
    private func makeString(start: Int, count: Int, ascii: Bool) throws(Failure) -> String {
        if ascii {
            return String(unsafeUninitializedCapacity: count) { buffer in
                buffer.baseAddress?.initialize(from: base + start, count: count)
                return count
            }
        }
        guard let text = Self.validatedString(UnsafeBufferPointer(start: base + start, count: count)) else {
            throw invalidUTF8(at: start)
        }
        return text
    }

    /// The string of UTF-8 bytes, or nil if they are not valid UTF-8.
    private static func validatedString(_ utf8: UnsafeBufferPointer<UInt8>) -> String? {
        String(validating: utf8, as: UTF8.self)
    }

    // MARK: - Numbers

    /// Parses a number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    ///
    /// Integer literals that fit in `Int` are exact. A decimal with at most 15 significant
    /// digits and a power of ten within ±22 is one correctly rounded multiplication or
    /// division (both operands are exact doubles); other numbers go through `Double(_:)`.
    private mutating func parseNumber() throws(Failure) -> JSONValue {
        let start = position
        let negative = base[position] == Self.minus
        var index = negative ? position + 1 : position
        guard index < end, base[index] &- Self.zero < 10 else {
            position = index
            throw unexpected()
        }
        // The integer part, accumulated towards the sign so that Int.min fits.
        var integer = 0
        var overflow = false
        if base[index] == Self.zero {
            index += 1
            if index < end, base[index] &- Self.zero < 10 {
                throw Failure(reason: .syntax("a number with a leading zero"), offset: start)
            }
        } else {
            while index < end {
                let digit = base[index] &- Self.zero
                if digit >= 10 { break }
                let (times10, o1) = integer.multipliedReportingOverflow(by: 10)
                let (next, o2) = negative ? times10.subtractingReportingOverflow(Int(digit))
                                          : times10.addingReportingOverflow(Int(digit))
                overflow = overflow || o1 || o2
                integer = next
                index += 1
            }
        }
        let integerDigits = index - start - (negative ? 1 : 0)
        var fractionDigits = 0
        var fraction = 0 // the fraction's digits as an integer, while they are few
        if index < end, base[index] == Self.dot {
            index += 1
            let fractionStart = index
            while index < end {
                let digit = base[index] &- Self.zero
                if digit >= 10 { break }
                if index - fractionStart < 16 { fraction = fraction * 10 + Int(digit) }
                index += 1
            }
            fractionDigits = index - fractionStart
            guard fractionDigits > 0 else {
                position = index
                throw unexpected()
            }
        }
        var exponent = 0
        var hasExponent = false
        if index < end, base[index] | 0x20 == 0x65 { // e or E
            hasExponent = true
            index += 1
            var exponentNegative = false
            if index < end, base[index] == Self.minus || base[index] == Self.plus {
                exponentNegative = base[index] == Self.minus
                index += 1
            }
            let exponentStart = index
            while index < end {
                let digit = base[index] &- Self.zero
                if digit >= 10 { break }
                if exponent < 100_000 { exponent = exponent * 10 + Int(digit) }
                index += 1
            }
            guard index > exponentStart else {
                position = index
                throw unexpected()
            }
            if exponentNegative { exponent = -exponent }
        }
        position = index
        if fractionDigits == 0 && !hasExponent && !overflow { return .integer(integer) }

        let scale = exponent - fractionDigits
        if !overflow, integerDigits + fractionDigits <= 15, (-22...22).contains(scale) {
            // The significant digits as one integer below 10^15, exact as a double.
            var significand = abs(integer)
            for _ in 0..<fractionDigits { significand *= 10 }
            significand += fraction
            var power = 1.0
            for _ in 0..<abs(scale) { power *= 10 }
            let magnitude = scale < 0 ? Double(significand) / power : Double(significand) * power
            return .number(negative ? -magnitude : magnitude)
        }
        let text = String(decoding: UnsafeBufferPointer(start: base + start, count: index - start), as: UTF8.self)
        guard let value = Double(text), value.isFinite else {
            throw Failure(reason: .syntax("the number \(text.prefix(40)) is out of range"), offset: start)
        }
        return .number(value)
    }

    // MARK: - Tokens

    private mutating func expectWord(_ word: StaticString) throws(Failure) {
        let start = position
        for offset in 0..<word.utf8CodeUnitCount {
            guard position < end, base[position] == word.utf8Start[offset] else {
                throw start == position ? unexpected() : Failure(reason: .syntax("an unknown word"), offset: start)
            }
            position += 1
        }
    }

    private mutating func skipWhitespace() {
        while position < end {
            let byte = base[position]
            guard byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 else { return }
            position += 1
        }
    }

    /// "unexpected character 'x'" (or the end of the text) at the current position.
    private func unexpected() -> Failure {
        guard position < end else {
            return Failure(reason: .syntax("unexpected end of the text"), offset: position)
        }
        let byte = base[position]
        if byte >= 0x80 {
            // Name the whole character when it is valid UTF-8.
            let length = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : 2
            let available = min(end, position + length) - position
            if let text = Self.validatedString(UnsafeBufferPointer(start: base + position, count: available)),
               let scalar = text.unicodeScalars.first {
                return Failure(reason: .syntax("unexpected character '\(scalar)' (U+\(Self.hex(scalar.value)))"), offset: position)
            }
            return Failure(reason: .syntax("unexpected byte 0x\(String(byte, radix: 16, uppercase: true)), which is not UTF-8"),
                           offset: position)
        }
        let shown = (0x21..<0x7F).contains(byte) ? "'\(Character(Unicode.Scalar(byte)))'" : "U+\(Self.hex(UInt32(byte)))"
        return Failure(reason: .syntax("unexpected character \(shown)"), offset: position)
    }

    private func controlCharacter(_ byte: UInt8) -> Failure {
        Failure(reason: .syntax("a control character U+\(Self.hex(UInt32(byte))) in a string (write it as an escape)"), offset: position)
    }

    private func loneSurrogate(_ value: UInt32, at offset: Int) -> Failure {
        Failure(reason: .syntax("a lone surrogate \\u\(Self.hex(value)) in a string"), offset: offset)
    }

    private func invalidUTF8(at offset: Int) -> Failure {
        Failure(reason: .syntax("a string that is not valid UTF-8"), offset: offset)
    }

    private static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}
