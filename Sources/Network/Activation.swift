import Foundation

/// An elementwise nonlinearity, as neural-tangents' stax layers of the same name.
public enum Activation: Sendable, Equatable, Hashable {
    case relu
    case erf
    case tanh
    case identity
    /// The exact, erf-based GELU: x Φ(x) (stax.Gelu(approximate=False)).
    case gelu
    case sigmoid
    /// log(1 + eˣ), as jax.nn.softplus.
    case softplus
    /// x for x ≥ 0, αx otherwise (stax.LeakyRelu(alpha)).
    case leakyRelu(alpha: Double)

    /// The name used in model files.
    public var name: String {
        switch self {
        case .relu: return "relu"
        case .erf: return "erf"
        case .tanh: return "tanh"
        case .identity: return "identity"
        case .gelu: return "gelu"
        case .sigmoid: return "sigmoid"
        case .softplus: return "softplus"
        case .leakyRelu: return "leaky_relu"
        }
    }

    /// Every activation name a model file may use.
    public static let names = ["relu", "erf", "tanh", "identity", "gelu", "sigmoid", "softplus", "leaky_relu"]

    /// φ(x).
    @inline(__always)
    public func value(_ x: Double) -> Double {
        switch self {
        case .relu: return x > 0 ? x : 0
        case .erf: return Foundation.erf(x)
        case .tanh: return Foundation.tanh(x)
        case .identity: return x
        case .gelu: return 0.5 * x * (1 + Foundation.erf(x * 0.7071067811865476))
        case .sigmoid: return Self.logistic(x)
        case .softplus: return max(x, 0) + Foundation.log1p(Foundation.exp(-abs(x)))
        case .leakyRelu(let alpha): return x >= 0 ? x : alpha * x
        }
    }

    /// φ'(x). At the kinks of relu and leaky_relu the one-sided value JAX uses.
    @inline(__always)
    public func derivative(_ x: Double) -> Double {
        switch self {
        case .relu: return x > 0 ? 1 : 0
        case .erf: return 1.1283791670955126 * Foundation.exp(-x * x)
        case .tanh:
            let t = Foundation.tanh(x)
            return 1 - t * t
        case .identity: return 1
        case .gelu:
            return 0.5 * (1 + Foundation.erf(x * 0.7071067811865476)) + x * 0.3989422804014327 * Foundation.exp(-0.5 * x * x)
        case .sigmoid:
            let s = Self.logistic(x)
            return s * (1 - s)
        case .softplus: return Self.logistic(x)
        case .leakyRelu(let alpha): return x >= 0 ? 1 : alpha
        }
    }

    /// φ applied in place to every element (the switch hoisted out of the loop).
    public func applyValue(_ x: UnsafeMutableBufferPointer<Double>) {
        switch self {
        case .relu: for i in x.indices { x[i] = x[i] > 0 ? x[i] : 0 }
        case .identity: return
        default: for i in x.indices { x[i] = value(x[i]) }
        }
    }

    /// out[i] = φ'(x[i]) (the switch hoisted out of the loop).
    public func derivatives(_ x: UnsafeBufferPointer<Double>, into out: UnsafeMutableBufferPointer<Double>) {
        precondition(out.count >= x.count)
        switch self {
        case .relu: for i in x.indices { out[i] = x[i] > 0 ? 1 : 0 }
        case .identity: for i in x.indices { out[i] = 1 }
        default: for i in x.indices { out[i] = derivative(x[i]) }
        }
    }

    @inline(__always)
    static func logistic(_ x: Double) -> Double {
        if x >= 0 { return 1 / (1 + Foundation.exp(-x)) }
        let e = Foundation.exp(x)
        return e / (1 + e)
    }
}
