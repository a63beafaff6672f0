import ArgumentParser
import GramEngine
import Network

extension Parameterization: ExpressibleByArgument {}
extension OutputKernel: ExpressibleByArgument {}
extension GradientMethod: ExpressibleByArgument {}
extension FactorForms: ExpressibleByArgument {}
extension EigenOutput: ExpressibleByArgument {}
extension PredictSolver: ExpressibleByArgument {}
extension KernelKind: ExpressibleByArgument {}
extension EigenSolver: ExpressibleByArgument {}
extension KernelStorage: ExpressibleByArgument {}
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

/// `--b-std`: a standard deviation, or `none` for layers without biases. Parsed when the
/// flags are read, so a value that does not parse is a usage error, never a default.
enum BiasStd: ExpressibleByArgument, Equatable {
    case none
    case value(Double)

    init?(argument: String) {
        let text = argument.trimmingCharacters(in: .whitespaces).lowercased()
        if text == "none" || text == "null" { self = .none; return }
        guard let value = Double(text), value.isFinite, value >= 0 else { return nil }
        self = .value(value)
    }

    /// b_std of the model; nil means no bias.
    var standardDeviation: Double? {
        switch self {
        case .none: return nil
        case .value(let v): return v
        }
    }

    static var defaultValueDescription: String { "0.1" }
}

/// A comma-separated list of seeds (`--seeds`): non-negative integers, distinct when
/// `distinct` (draws of one ensemble).
func parseSeedList(_ text: String, distinct: Bool) throws -> [UInt64] {
    let values = text.split(separator: ",").map { UInt64($0.trimmingCharacters(in: .whitespaces)) }
    guard !values.isEmpty, values.allSatisfy({ $0 != nil }), !distinct || Set(values).count == values.count else {
        throw ValidationError("--seeds must be a comma-separated list of \(distinct ? "distinct " : "")non-negative integers, got '\(text)'")
    }
    return values.map { $0! }
}

/// Bounds of the numeric flags, checked when the flags are read, so that no value wraps
/// around in later arithmetic (a MiB count shifted to bytes, a width squared).
enum Limits {
    /// Layer widths and output counts: the model file's bound (Int32.max).
    static let maximumWidth = Int(Int32.max)
    /// Hidden layers of the shorthand network.
    static let maximumDepth = 10_000
    /// Memory sizes in MiB: 2^40 MiB is an exbibyte, far above any node; × 2^20 stays in Int.
    static let maximumMebibytes = 1 << 40
    /// Samples per tile side: a tile holds at most 2^31 values (46340² < 2^31).
    static let maximumTile = 46_340

    static func check(_ value: Int?, _ flag: String, _ range: ClosedRange<Int>) throws {
        guard let value else { return }
        if value < range.lowerBound { throw ValidationError("\(flag) must be at least \(range.lowerBound), got \(value)") }
        if value > range.upperBound { throw ValidationError("\(flag) must be at most \(range.upperBound), got \(value)") }
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
    var biasStd: BiasStd?

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
        try Limits.check(depth, "--depth", 0...Limits.maximumDepth)
        try Limits.check(width, "--width", 1...Limits.maximumWidth)
        try Limits.check(outputs, "--out-dim", 1...Limits.maximumWidth)
        if let weightStd, !(weightStd.isFinite && weightStd >= 0) { throw ValidationError("--w-std must be a finite non-negative number") }
    }

    var source: ModelSource {
        if let model { return .file(model) }
        return .spec(ModelSpec.fullyConnected(
            depth: depth ?? 2, width: width ?? 512, activation: (activation ?? .relu).activation,
            weightStd: weightStd ?? 2.0.squareRoot(), biasStd: (biasStd ?? .value(0.1)).standardDeviation,
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

    @Flag(inversion: .prefixedNo, help: "Show progress on stderr. Default: rewritten in place on a terminal, a plain line every 30 s in a log file; --progress: a plain line every second off a terminal too.")
    var progress: Bool?

    @Flag(help: "Print nothing on stdout.")
    var quiet = false
}
