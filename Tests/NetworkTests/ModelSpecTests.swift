import Foundation
import Testing
@testable import Network

@Suite struct ModelSpecTests {
    @Test("the schema of the README parses, with W_std defaulting to 1 and a null b_std meaning no bias")
    func parses() throws {
        let json = """
            {"parameterization": "standard", "layers": [
              {"type": "dense", "width": 512, "W_std": 1.4142135623730951, "b_std": 0.1},
              {"type": "relu"},
              {"type": "dense", "width": 3},
              {"type": "leaky_relu", "alpha": 0.2},
              {"type": "dense", "width": 1, "b_std": null}]}
            """
        let spec = try ModelSpec.decode(json: Data(json.utf8))
        #expect(spec.parameterization == .standard)
        #expect(spec.layers == [
            .dense(DenseLayer(width: 512, weightStd: 1.4142135623730951, biasStd: 0.1)),
            .activation(.relu, quadratureDegree: nil),
            .dense(DenseLayer(width: 3, weightStd: 1, biasStd: nil)),
            .activation(.leakyRelu(alpha: 0.2), quadratureDegree: nil),
            .dense(DenseLayer(width: 1, weightStd: 1, biasStd: nil))])
        #expect(spec.outputCount == 1)
        #expect(try ModelSpec.decode(json: spec.encodeJSON()) == spec)
    }

    @Test("malformed model files are refused with a message naming the problem", arguments: [
        ("{", "not valid JSON"),
        ("[]", "top level"),
        (#"{"layers": [{"type": "conv2d"}]}"#, "unknown layer type \"conv2d\""),
        (#"{"layers": [{"type": "conv"}]}"#, "conv needs an integer \"channels\""),
        (#"{"layers": [{"type": "dense", "width": 0}]}"#, "positive"),
        (#"{"layers": [{"type": "dense", "width": -3}]}"#, "positive"),
        (#"{"layers": [{"type": "dense", "width": 2.5}]}"#, "integer"),
        (#"{"layers": [{"type": "dense", "width": true}]}"#, "integer"),
        (#"{"layers": [{"type": "dense", "width": "8"}]}"#, "integer"),
        (#"{"layers": [{"type": "dense"}]}"#, "width"),
        (#"{"layers": [{"type": "relu"}]}"#, "needs a dense or conv layer"),
        (#"{"layers": []}"#, "needs a dense or conv layer"),
        (#"{"parameterization": "mup", "layers": [{"type": "dense", "width": 1}]}"#, "parameterization"),
        (#"{"layers": [{"type": "dense", "width": 1, "W_std": -1}]}"#, "W_std"),
        (#"{"layers": [{"type": "dense", "width": 1, "widht": 3}]}"#, "unknown key \"widht\""),
        (#"{"layers": [{"type": "relu", "alpha": 2}, {"type": "dense", "width": 1}]}"#, "alpha"),
        (#"{"layer": []}"#, "unknown key"),
    ])
    func refuses(json: String, expected: String) {
        do {
            _ = try ModelSpec.decode(json: Data(json.utf8))
            Issue.record("accepted \(json)")
        } catch {
            #expect(error.message.contains(expected), "\(error.message)")
        }
    }

    @Test("parameter arrays with missing, extra or misshapen names are refused")
    func parameterNames() {
        let spec = ModelSpec.fullyConnected(depth: 1, width: 3, activation: .relu, weightStd: 1, biasStd: nil, outputs: 1, parameterization: .ntk)
        let good: [String: (shape: [Int], values: [Double])] = ["W0": ([2, 3], [1, 2, 3, 4, 5, 6]), "W1": ([3, 1], [1, 1, 1])]
        #expect(throws: Never.self) { try Network(spec: spec, inputWidth: 2, named: good) }
        var missing = good; missing["W1"] = nil
        var extra = good; extra["b0"] = ([3], [0, 0, 0])
        var shape = good; shape["W0"] = ([3, 2], [1, 2, 3, 4, 5, 6])
        var nan = good; nan["W1"] = ([3, 1], [1, .nan, 1])
        for (arrays, text) in [(missing, "W1 is missing"), (extra, "unexpected array b0"), (shape, "W0 has shape (3, 2)"), (nan, "non-finite")] {
            do {
                _ = try Network(spec: spec, inputWidth: 2, named: arrays)
                Issue.record("accepted \(text)")
            } catch {
                #expect(error.message.contains(text), "\(error.message)")
            }
        }
    }
}

@Suite struct ModelSpecFuzzTests {
    @Test("3000 random byte mutations and truncations of a model file decode or throw ModelError, never crash")
    func mutations() {
        let valid = Array(#"{"parameterization": "standard", "layers": [{"type": "dense", "width": 8, "W_std": 1.5, "b_std": 0.1}, {"type": "leaky_relu", "alpha": 0.2}, {"type": "dense", "width": 2, "b_std": null}]}"#.utf8)
        var state: UInt64 = 42
        func next(_ bound: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(bound))
        }
        let alphabet = Array(#"{}[]",:0123456789.-eE truefalsnul"#.utf8) + [0, 0xff, 0x80]
        var accepted = 0
        for iteration in 0..<3000 {
            var bytes = valid
            if iteration % 10 == 0 {
                bytes = Array(bytes.prefix(next(bytes.count)))
            } else {
                for _ in 0..<(1 + next(4)) { bytes[next(bytes.count)] = alphabet[next(alphabet.count)] }
            }
            do {
                let spec = try ModelSpec.decode(json: Data(bytes))
                // Whatever is accepted must satisfy the model rules.
                #expect(throws: Never.self) { try spec.validate() }
                accepted += 1
            } catch {
                #expect(!error.message.isEmpty)
            }
        }
        #expect(accepted < 3000)
    }
}
