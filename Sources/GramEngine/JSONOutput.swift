import Foundation

/// The tool's JSON files (summary.json, metrics.json, …): pretty-printed with sorted keys,
/// and every non-finite number written as `null`, so that each file is standard JSON that
/// any parser reads (JSON has no NaN or infinity).
enum JSONOutput {
    /// A string no value of the tool's files contains; it stands for a non-finite number
    /// while encoding and is then replaced by null.
    private static let placeholder = "ntk-non-finite-6f1c2a"

    /// The JSON text of `value`, followed by a newline. Throws `software` (70) when the
    /// value cannot be encoded (a bug).
    static func encode<T: Encodable>(_ value: T) throws(NTKError) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: placeholder, negativeInfinity: placeholder,
                                                                      nan: placeholder)
        let data: Data
        do { data = try encoder.encode(value) } catch { throw NTKError(.software, "cannot encode JSON: \(error)") }
        let text = String(decoding: data, as: UTF8.self).replacingOccurrences(of: "\"\(placeholder)\"", with: "null")
        return Data((text + "\n").utf8)
    }
}
