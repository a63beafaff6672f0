/// The parsed contents of an `.npy` header dictionary.
struct NPYHeader: Equatable {
    var dtype: NPYDType
    var bigEndian: Bool
    var fortranOrder: Bool
    var shape: [Int]
}

/// A strict parser for the Python dict literal in an `.npy` header, for example
/// `{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }` followed by padding.
///
/// It accepts what NumPy writes and what `ast.literal_eval` would accept for these three
/// keys: single- or double-quoted strings, `True`/`False`, tuples of non-negative integers
/// (optionally with Python 2's `L` suffix, with the trailing comma required for 1-tuples),
/// any whitespace between tokens and trailing whitespace. Exactly the keys `descr`,
/// `fortran_order` and `shape` must be present, each once.
struct NPYHeaderParser {
    private enum Value {
        case string(String)
        case bool(Bool)
        case tuple([Int])
        case integer
        /// A list or tuple descr (a structured or subarray dtype), as written.
        case structured(String)
    }

    private let bytes: UnsafeRawBufferPointer
    private let utf8: Bool
    private var position = 0

    /// - Parameters:
    ///   - bytes: the header bytes (between the length field and the array data).
    ///   - utf8: whether strings are UTF-8 (version 3.0) rather than Latin-1.
    init(bytes: UnsafeRawBufferPointer, utf8: Bool) {
        self.bytes = bytes
        self.utf8 = utf8
    }

    static func parse(_ bytes: UnsafeRawBufferPointer, utf8: Bool) throws(NPYError) -> NPYHeader {
        var parser = NPYHeaderParser(bytes: bytes, utf8: utf8)
        return try parser.parseHeader()
    }

    private mutating func parseHeader() throws(NPYError) -> NPYHeader {
        var descr: Value?
        var fortranOrder: Value?
        var shape: Value?

        skipWhitespace()
        try expect(UInt8(ascii: "{"), "it must be a dictionary starting with '{'")
        skipWhitespace()
        while peek() != UInt8(ascii: "}") {
            guard let quote = peek(), quote == UInt8(ascii: "'") || quote == UInt8(ascii: "\"") else {
                throw malformed("expected a quoted key")
            }
            let key = try parseString()
            skipWhitespace()
            try expect(UInt8(ascii: ":"), "expected ':' after the key '\(Self.sanitized(key))'")
            skipWhitespace()
            let value = try parseValue(forKey: key)
            switch key {
            case "descr":
                if descr != nil { throw .malformedHeader("the key 'descr' appears twice") }
                descr = value
            case "fortran_order":
                if fortranOrder != nil { throw .malformedHeader("the key 'fortran_order' appears twice") }
                fortranOrder = value
            case "shape":
                if shape != nil { throw .malformedHeader("the key 'shape' appears twice") }
                shape = value
            default:
                throw .malformedHeader("it has the unexpected key '\(Self.sanitized(key))'")
            }
            skipWhitespace()
            if peek() == UInt8(ascii: ",") {
                position += 1
                skipWhitespace()
            } else if peek() != UInt8(ascii: "}") {
                throw malformed("expected ',' or '}'")
            }
        }
        position += 1 // the closing brace
        skipWhitespace()
        if position < bytes.count {
            throw malformed("unexpected text after the dictionary")
        }

        // Resolve the descr first so that unsupported dtypes are reported as such.
        let dtype: NPYDType
        let bigEndian: Bool
        switch descr {
        case nil:
            throw .malformedHeader("the key 'descr' is missing")
        case let .string(text)?:
            guard let parsed = NPYDType.parse(descr: text) else {
                throw .unsupportedDType("'\(Self.sanitized(text))'")
            }
            (dtype, bigEndian) = (parsed.dtype, parsed.bigEndian)
        case let .structured(text)?:
            throw .unsupportedDType(Self.sanitized(text))
        case _?:
            throw .malformedHeader("'descr' must be a string")
        }
        let isFortran: Bool
        switch fortranOrder {
        case nil: throw .malformedHeader("the key 'fortran_order' is missing")
        case let .bool(flag)?: isFortran = flag
        case _?: throw .malformedHeader("'fortran_order' must be True or False")
        }
        let dimensions: [Int]
        switch shape {
        case nil: throw .malformedHeader("the key 'shape' is missing")
        case let .tuple(values)?: dimensions = values
        case _?: throw .malformedHeader("'shape' must be a tuple of integers")
        }
        return NPYHeader(dtype: dtype, bigEndian: bigEndian, fortranOrder: isFortran, shape: dimensions)
    }

    // MARK: - Values

    private mutating func parseValue(forKey key: String) throws(NPYError) -> Value {
        guard let byte = peek() else { throw malformed("the header ends after '\(Self.sanitized(key)):'") }
        switch byte {
        case UInt8(ascii: "'"), UInt8(ascii: "\""):
            return .string(try parseString())
        case UInt8(ascii: "("):
            // A descr tuple that starts with a string or list, such as ('<f8', (2,)), is a
            // subarray dtype, not a malformed shape.
            if key == "descr", startsStructuredTuple() {
                return .structured(try skipBracketed())
            }
            return .tuple(try parseTuple())
        case UInt8(ascii: "["):
            return .structured(try skipBracketed())
        case UInt8(ascii: "T"), UInt8(ascii: "F"):
            if consume("True") { return .bool(true) }
            if consume("False") { return .bool(false) }
            throw malformed("unexpected word")
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "+"):
            _ = try parseInteger()
            return .integer
        default:
            throw malformed("unexpected character")
        }
    }

    /// Parses a quoted string. A backslash takes the next byte literally.
    private mutating func parseString() throws(NPYError) -> String {
        let quote = bytes[position]
        position += 1
        var content: [UInt8] = []
        while true {
            guard let byte = peek() else { throw .malformedHeader("a string is not terminated") }
            position += 1
            if byte == quote { break }
            if byte == UInt8(ascii: "\n") { throw .malformedHeader("a string is not terminated") }
            if byte == UInt8(ascii: "\\") {
                guard let escaped = peek() else { throw .malformedHeader("a string is not terminated") }
                position += 1
                content.append(escaped)
            } else {
                content.append(byte)
            }
        }
        if utf8 {
            return String(decoding: content, as: UTF8.self)
        }
        return String(String.UnicodeScalarView(content.map { Unicode.Scalar($0) }))
    }

    /// Parses `()`, `(n,)` or `(n, m, …)` with an optional trailing comma.
    private mutating func parseTuple() throws(NPYError) -> [Int] {
        position += 1 // "("
        var values: [Int] = []
        skipWhitespace()
        if peek() == UInt8(ascii: ")") {
            position += 1
            return values
        }
        while true {
            skipWhitespace()
            guard let byte = peek(),
                  (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                    || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "+")
            else { throw malformed("'shape' must be a tuple of integers") }
            values.append(try parseInteger())
            skipWhitespace()
            guard let separator = peek() else { throw .malformedHeader("the shape tuple is not closed") }
            if separator == UInt8(ascii: ")") {
                position += 1
                if values.count == 1 {
                    throw .malformedHeader("'shape' must be a tuple of integers, but (\(values[0])) is an integer")
                }
                return values
            }
            guard separator == UInt8(ascii: ",") else { throw malformed("expected ',' or ')' in the shape") }
            position += 1
            skipWhitespace()
            if peek() == UInt8(ascii: ")") {
                position += 1
                return values
            }
        }
    }

    /// Parses a decimal integer with an optional sign and Python 2 `L` suffix.
    /// - Throws: ``NPYError/negativeDimension(_:)`` for a negative value and
    ///   ``NPYError/shapeOverflow`` for one that does not fit in `Int`.
    private mutating func parseInteger() throws(NPYError) -> Int {
        var negative = false
        if peek() == UInt8(ascii: "-") || peek() == UInt8(ascii: "+") {
            negative = bytes[position] == UInt8(ascii: "-")
            position += 1
        }
        var value = 0
        var digits = 0
        var overflow = false
        while let byte = peek(), (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) {
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(Int(byte - UInt8(ascii: "0")))
            overflow = overflow || o1 || o2
            value = sum
            digits += 1
            position += 1
        }
        guard digits > 0 else { throw malformed("expected digits") }
        if peek() == UInt8(ascii: "L") || peek() == UInt8(ascii: "l") {
            position += 1
        }
        if overflow { throw .shapeOverflow }
        if negative && value != 0 { throw .negativeDimension(-value) }
        return value
    }

    /// Whether the tuple opening at the current position has a string or a list as its
    /// first element (the position is left unchanged).
    private func startsStructuredTuple() -> Bool {
        var index = position + 1
        while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x09 || bytes[index] == 0x0A {
            index += 1
        }
        guard index < bytes.count else { return false }
        return bytes[index] == UInt8(ascii: "'") || bytes[index] == UInt8(ascii: "\"") || bytes[index] == UInt8(ascii: "[")
    }

    /// Skips a bracketed Python literal (a structured descr list or subarray descr tuple)
    /// and returns its text.
    private mutating func skipBracketed() throws(NPYError) -> String {
        let start = position
        var depth = 0
        var quote: UInt8?
        while let byte = peek() {
            position += 1
            if let open = quote {
                if byte == UInt8(ascii: "\\") { position += 1 } else if byte == open { quote = nil }
                continue
            }
            switch byte {
            case UInt8(ascii: "'"), UInt8(ascii: "\""): quote = byte
            case UInt8(ascii: "["), UInt8(ascii: "("), UInt8(ascii: "{"): depth += 1
            case UInt8(ascii: "]"), UInt8(ascii: ")"), UInt8(ascii: "}"):
                depth -= 1
                if depth == 0 {
                    let text = bytes[start..<position].map { Character(Unicode.Scalar($0)) }
                    return String(text)
                }
            default: break
            }
        }
        throw .malformedHeader("a list in the header is not closed")
    }

    // MARK: - Tokens

    private func peek() -> UInt8? {
        position < bytes.count ? bytes[position] : nil
    }

    private mutating func skipWhitespace() {
        while let byte = peek(),
              byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D || byte == 0x0B || byte == 0x0C {
            position += 1
        }
    }

    private mutating func expect(_ byte: UInt8, _ message: String) throws(NPYError) {
        guard peek() == byte else { throw malformed(message) }
        position += 1
    }

    private mutating func consume(_ word: String) -> Bool {
        let wordBytes = Array(word.utf8)
        guard bytes.count - position >= wordBytes.count else { return false }
        for (offset, byte) in wordBytes.enumerated() where bytes[position + offset] != byte {
            return false
        }
        // The word must end here ("Truex" is not True).
        if let next = bytes.count > position + wordBytes.count ? bytes[position + wordBytes.count] : nil,
           next == UInt8(ascii: "_") || (0x30...0x39).contains(next) || (0x41...0x5A).contains(next) || (0x61...0x7A).contains(next) {
            return false
        }
        position += wordBytes.count
        return true
    }

    private func malformed(_ message: String) -> NPYError {
        .malformedHeader("\(message) at byte \(position) of the header")
    }

    /// Makes header text safe to show in a message: control and non-ASCII characters are
    /// replaced by '?', and long text is cut to 40 characters.
    static func sanitized(_ text: String) -> String {
        var result = ""
        for scalar in text.unicodeScalars.prefix(41) {
            result.unicodeScalars.append((0x20..<0x7F).contains(scalar.value) ? scalar : "?")
        }
        if text.unicodeScalars.count > 40 {
            result = String(result.prefix(40)) + "…"
        }
        return result
    }
}
