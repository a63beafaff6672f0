import ArgumentParser
import GramEngine
import Network

extension Parameterization: ExpressibleByArgument {}
extension OutputKernel: ExpressibleByArgument {}
extension GradientMethod: ExpressibleByArgument {}
extension EigenOutput: ExpressibleByArgument {}
extension KernelKind: ExpressibleByArgument {}
extension EigenSolver: ExpressibleByArgument {}
extension Precision: ExpressibleByArgument {}

/// An activation name on the command line.
enum ActivationName: String, ExpressibleByArgument, CaseIterable {
    case relu, erf, tanh, identity, gelu, sigmoid, softplus
    case leakyRelu = "leaky_relu"

    var activation: Activation {
        switch self {
        case .relu: return .relu
        case .erf: return .erf
        case .tanh: return .tanh
        case .identity: return .identity
        case .gelu: return .gelu
        case .sigmoid: return .sigmoid
        case .softplus: return .softplus
        case .leakyRelu: return .leakyRelu(alpha: 0.01)
        }
    }
}

/// The network: a model file, or shorthand flags for a plain fully connected network.
struct ModelOptions: ParsableArguments {
    @Option(help: "A model file (JSON): parameterization and layers. Excludes the shorthand flags below.")
    var model: String?

    @Option(help: "Shorthand: the number of hidden dense layers (default 2).")
    var depth: Int?

    @Option(help: "Shorthand: the width of every hidden layer (default 512).")
    var width: Int?

    @Option(help: "Shorthand: the activation after every hidden layer (default relu).")
    var activation: ActivationName?

    @Option(name: .customLong("w-std"), help: "Shorthand: W_std of every dense layer (default √2).")
    var weightStd: Double?

    @Option(name: .customLong("b-std"), help: "Shorthand: b_std of every dense layer, or 'none' for no biases (default 0.1).")
    var biasStd: String?

    @Option(name: .customLong("out-dim"), help: "Shorthand: the number of outputs k (default 1).")
    var outputs: Int?

    @Option(help: "Shorthand: ntk or standard (default ntk).")
    var parameterization: Parameterization?

    var usesShorthand: Bool {
        depth != nil || width != nil || activation != nil || weightStd != nil || biasStd != nil || outputs != nil || parameterization != nil
    }

    func validate() throws {
        if model != nil && usesShorthand {
            throw ValidationError("--model excludes the shorthand flags (--depth, --width, --activation, --w-std, --b-std, --out-dim, --parameterization): the model file describes the whole network")
        }
        if let depth, depth < 0 { throw ValidationError("--depth must be 0 or more, got \(depth)") }
        if let width, width < 1 { throw ValidationError("--width must be at least 1, got \(width)") }
        if let outputs, outputs < 1 { throw ValidationError("--out-dim must be at least 1, got \(outputs)") }
        if let weightStd, !(weightStd.isFinite && weightStd >= 0) { throw ValidationError("--w-std must be a finite non-negative number") }
        _ = try parsedBiasStd()
    }

    func parsedBiasStd() throws -> Double? {
        guard let biasStd else { return 0.1 }
        if biasStd.lowercased() == "none" || biasStd.lowercased() == "null" { return nil }
        guard let value = Double(biasStd), value.isFinite, value >= 0 else {
            throw ValidationError("--b-std must be a finite non-negative number or 'none', got '\(biasStd)'")
        }
        return value
    }

    var source: ModelSource {
        if let model { return .file(model) }
        return .spec(ModelSpec.fullyConnected(
            depth: depth ?? 2, width: width ?? 512, activation: (activation ?? .relu).activation,
            weightStd: weightStd ?? 2.0.squareRoot(), biasStd: (try? parsedBiasStd()) ?? 0.1,
            outputs: outputs ?? 1, parameterization: parameterization ?? .ntk))
    }
}

/// The network's parameters: a file, or a seed to draw them from.
struct ParameterOptions: ParsableArguments {
    @Option(help: "Parameters (.npz: W0, b0, W1, … as raw trainable arrays of the parameterization). Excludes --seed.")
    var params: String?

    @Option(help: "Draw the parameters from the parameterization's distributions with this seed (default 0).")
    var seed: UInt64?

    func validate() throws {
        if params != nil && seed != nil { throw ValidationError("--params and --seed exclude each other") }
    }

    var source: ParameterSource {
        if let params { return .file(params) }
        return .seed(seed ?? 0)
    }
}

/// Where results go and what the run prints: shared by the commands that write a
/// result directory.
struct OutputOptions: ParsableArguments {
    @Option(help: "The output directory (created if missing).")
    var out: String

    @Flag(help: "Replace a result already in --out.")
    var force = false

    @Flag(inversion: .prefixedNo, help: "Show progress on stderr (default: only when stderr is a terminal).")
    var progress: Bool?

    @Flag(help: "Print nothing on stdout.")
    var quiet = false
}
