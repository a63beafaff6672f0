import Foundation
import Testing
@testable import Network

/// The message `ModelSpec.decode(json:)` throws for `json`, or nil if it is accepted.
private func refusal(_ json: String) -> String? {
    do {
        _ = try ModelSpec.decode(json: Data(json.utf8))
        return nil
    } catch {
        return error.message
    }
}

@Suite struct ModelSpecJSONTests {
    @Test("a key twice is refused, naming the key and the object: top level, a layer, or deeper")
    func duplicateKeys() {
        #expect(refusal(#"{"parameterization": "ntk", "layers": [{"type": "dense", "width": 1}], "parameterization": "standard"}"#)
                == #"duplicate key "parameterization" in the top-level object (line 1, column 72)"#)
        #expect(refusal("""
            {"layers": [
              {"type": "dense", "width": 4},
              {"type": "dense", "width": 4, "width": 8}]}
            """) == #"duplicate key "width" in layer 1 (line 3, column 33)"#)
        #expect(refusal(#"{"description": {"a": [{"b": 1, "b": 2}]}, "layers": [{"type": "dense", "width": 1}]}"#)
                == #"duplicate key "b" in the object at description.a[0] (line 1, column 33)"#)
    }

    @Test("invalid JSON is refused as \"not valid JSON\" with what was found and its line and column")
    func syntaxErrors() {
        let json = """
            {"layers": [
              {"type": "dense",
              "width": 4,}
            ]}
            """
        #expect(refusal(json) == "not valid JSON (unexpected character '}' at line 3, column 14)")
        #expect(refusal("{") == "not valid JSON (unexpected end of the text at line 1, column 2)")
    }

    @Test("integer fields take integral numbers up to 2147483647 and say so beyond it", arguments: [
        ("1e15", "1000000000000000"), ("1000000000000000", "1000000000000000"), ("2147483648", "2147483648"),
        ("-1e15", "-1000000000000000"), ("1e300", "1e+300"), ("99999999999999999999", "1e+20"),
    ])
    func integerBound(width: String, shown: String) {
        #expect(refusal(#"{"layers": [{"type": "dense", "width": \#(width)}]}"#)
                == "layer 0: width must be a positive integer of at most 2147483647, got \(shown)")
        #expect(refusal(#"{"layers": [{"type": "relu", "quadrature_degree": \#(width)}, {"type": "dense", "width": 1}]}"#)
                == "layer 0: quadrature_degree must be a positive integer of at most 2147483647, got \(shown)")
    }

    @Test("integral widths written as 64, 64.0, 6.4e1 or 2147483647 are accepted; 2.5 is not an integer")
    func integralWidths() throws {
        for (text, width) in [("64", 64), ("64.0", 64), ("6.4e1", 64), ("2147483647", 2_147_483_647)] {
            let spec = try ModelSpec.decode(json: Data(#"{"layers": [{"type": "dense", "width": \#(text)}]}"#.utf8))
            #expect(spec.denseLayers.map(\.width) == [width])
        }
        #expect(refusal(#"{"layers": [{"type": "dense", "width": 2.5}]}"#) == "layer 0: \"width\" must be an integer, got 2.5")
        #expect(refusal(#"{"layers": [{"type": "dense", "width": "8"}]}"#) == "layer 0: \"width\" must be an integer")
    }

    @Test("validate() bounds a programmatic width at 2147483647 with the same message")
    func validateBound() {
        let spec = ModelSpec(parameterization: .ntk, layers: [.dense(DenseLayer(width: 1 << 40))])
        #expect(throws: ModelError("layer 0: dense width must be a positive integer of at most 2147483647, got 1099511627776")) {
            try spec.validate()
        }
    }

    /// A dense layer and an activation, as repeated by ``bigModel(bytes:manyLayers:)``.
    static let layerPair = #"{"type": "dense", "width": 3, "W_std": 1.4142135623730951, "b_std": 0.05}, {"type": "relu"}, "#

    /// A model file of about `bytes` bytes: a long description with escapes, or
    /// `bytes / layerPair.utf8.count` layer pairs and a readout.
    static func bigModel(bytes: Int, manyLayers: Bool) -> Data {
        var text = #"{"name": "big", "layers": ["#
        if manyLayers {
            text += String(repeating: layerPair, count: bytes / layerPair.utf8.count)
            text += #"{"type": "dense", "width": 1}], "description": "many layers"}"#
        } else {
            text += #"{"type": "dense", "width": 1}], "description": ""#
            let piece = "lorem ipsum é€ \\n \\u00e9 "
            text += String(repeating: piece, count: bytes / piece.utf8.count) + "\"}"
        }
        return Data(text.utf8)
    }

    @Test("5 MB model files, a long description or 100000 layers, parse or are refused in well under 5 s (debug build)",
          arguments: [false, true])
    func bigFiles(manyLayers: Bool) throws {
        let data = Self.bigModel(bytes: 5_000_000, manyLayers: manyLayers)
        #expect(data.count > 4_900_000)
        let clock = ContinuousClock()
        var start = clock.now
        let spec = try ModelSpec.decode(json: data)
        #expect(clock.now - start < .seconds(5))
        #expect(spec.denseLayers.count == (manyLayers ? 5_000_000 / Self.layerPair.utf8.count + 1 : 1))
        // The same file with a duplicate key at the very end is refused as fast.
        var duplicated = data.dropLast(1)
        duplicated.append(contentsOf: #", "name": "again"}"#.utf8)
        start = clock.now
        let message = refusal(String(decoding: duplicated, as: UTF8.self))
        #expect(clock.now - start < .seconds(5))
        #expect(message?.hasPrefix(#"duplicate key "name" in the top-level object (line 1, column "#) == true, "\(String(describing: message))")
    }
}
