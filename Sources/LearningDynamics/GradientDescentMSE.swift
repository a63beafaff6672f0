import Foundation
import LinearAlgebra

/// A point of training: gradient-flow time or a number of discrete gradient-descent steps.
///
/// Times are in neural-tangents' units, "steps": the absolute time of the flow is η t, so
/// `.flow(t)` approximates `.steps(t)` when every η λ_i / c is small.
public enum TrainingTime: Sendable, Hashable, CustomStringConvertible {
    /// Gradient flow (continuous time) at t >= 0; t = +∞ is the converged state
    /// (kernel regression). Mode factor exp(−η λ_i t / c).
    case flow(Double)
    /// `s >= 0` steps of full-batch gradient descent. Mode factor (1 − η λ_i / c)^s.
    case steps(Int)

    /// The end of gradient flow, t = +∞: kernel regression.
    public static let infinity = TrainingTime.flow(.infinity)

    /// "t=1.5", "t=inf" or "steps=10".
    public var description: String {
        switch self {
        case .flow(let t): return t == .infinity ? "t=inf" : "t=\(t)"
        case .steps(let s): return "steps=\(s)"
        }
    }

    func validate() throws(DynamicsError) {
        switch self {
        case .flow(let t) where !(t >= 0):
            throw .invalidParameter("a training time must be >= 0 (possibly +inf), not \(t)")
        case .steps(let s) where s < 0:
            throw .invalidParameter("a step count must be >= 0, not \(s)")
        default:
            break
        }
    }
}

/// The diagonal regularizer of neural-tangents' `gradient_descent_mse(..., diag_reg,
/// diag_reg_absolute_scale)`: the dynamics use Θ + δ I instead of Θ.
public enum DiagonalRegularizer: Sendable, Equatable {
    /// δ = 0.
    case none
    /// δ = r · trace(Θ) / N (`diag_reg = r`, `diag_reg_absolute_scale=False`, the default).
    case relative(Double)
    /// δ = r (`diag_reg = r`, `diag_reg_absolute_scale=True`).
    case absolute(Double)

    /// The diagonal shift δ for a kernel with this trace and order N.
    public func shift(trace: Double, n: Int) -> Double {
        switch self {
        case .none: return 0
        case .relative(let r): return n > 0 ? r * trace / Double(n) : 0
        case .absolute(let r): return r
        }
    }

    var strength: Double {
        switch self {
        case .none: return 0
        case .relative(let r), .absolute(let r): return r
        }
    }
}

/// Predictions of a linearized network trained by gradient descent on the MSE loss, in
/// closed form from its NTK: neural-tangents' `nt.predict.gradient_descent_mse` with the
/// default `trace_axes=(-1,)` (the kernel is Θ ⊗ I_k, shared by the k outputs), plus the
/// discrete-step version of the same dynamics.
///
/// Loss (1/(2c)) ‖f(X) − Y‖²_F with c = N k, learning rate η. With the (regularized) train
/// kernel Θ + δI = V diag(λ) Vᵀ, λ_i⁺ = max(λ_i, 0) (negative eigenvalues are clamped as
/// neural-tangents does) and the residual modes R = Vᵀ (f₀(X) − Y) (N x k):
///
///     f_t(X)  = f₀(X)  + V diag(e_i(t)) R
///     f_t(X*) = f₀(X*) + Θ(X*, X) V diag(e_i(t) / λ_i) R        (0 for modes with λ_i⁺ = 0)
///     L(t)    = (1/(2c)) Σ_i (1 + e_i(t))² ‖R_i‖²
///
/// where e_i = expm1(−η λ_i⁺ t / c) for gradient flow at time t (t = +∞: kernel regression,
/// f(X*) = f₀(X*) + Θ(X*, X) (Θ + δI)⁻¹ (Y − f₀(X))) and e_i = (1 − η λ_i⁺ / c)^s − 1
/// after s discrete steps. A mode with λ_i⁺ = 0 is frozen: its train residual stays and it
/// adds nothing to the test predictions (neural-tangents' clamp; for a Gram matrix
/// Θ(X*, X) v_i = 0 on Θ's null space, so it is also the exact limit). At t = +∞ with such
/// a mode neural-tangents returns NaN (0 · ∞); this gives the limit t → ∞.
///
/// As in neural-tangents, the train predictions are those of the dynamics driven by the
/// regularized kernel; with δ > 0, the regularized model's outputs on the training inputs
/// are its test predictions with `testKernel = trainKernel`.
///
/// One eigendecomposition (LAPACK dsyevd, or an existing one of Θ) serves every time,
/// train and test set.
public struct GradientDescentMSE: Sendable {
    /// N, the number of training samples.
    public let sampleCount: Int
    /// k, the number of outputs (columns of Y).
    public let outputCount: Int
    /// η.
    public let learningRate: Double
    /// The regularizer asked for.
    public let regularizer: DiagonalRegularizer
    /// δ, the value added to Θ's diagonal.
    public let diagonalShift: Double
    /// The eigendecomposition of Θ + δI (ascending eigenvalues, as computed: not clamped).
    public let eigen: SymmetricEigen
    /// Y, N x k.
    public let targets: RowMajorMatrix

    /// The largest relative asymmetry max |Θ_ij − Θ_ji| / max |Θ_ij| accepted in a train
    /// kernel: far above rounding (kernels written in float32 included), far below the
    /// O(1) asymmetry of a wrong matrix (a cross kernel, a transposed layout).
    public static let symmetryTolerance = 1e-6

    /// c = N k, neural-tangents' normalization (`y_train.size`).
    public var normalization: Double { Double(sampleCount * outputCount) }

    /// Prepares the dynamics: checks the inputs and eigendecomposes Θ + δI once.
    ///
    /// - Parameters:
    ///   - trainKernel: Θ(X, X), N x N, symmetric (it is symmetrized as (Θ + Θᵀ)/2, as
    ///     `jnp.linalg.eigh` does).
    ///   - targets: Y, N x k.
    ///   - learningRate: η > 0 (neural-tangents' default is 1).
    ///   - regularizer: the diagonal regularizer (`diag_reg`).
    /// - Throws: ``DynamicsError`` for a bad shape, a non-finite entry, an asymmetric
    ///   kernel, η <= 0 or non-finite, a non-finite regularizer, or a failed
    ///   eigendecomposition.
    public init(trainKernel: RowMajorMatrix, targets: RowMajorMatrix, learningRate: Double = 1,
                regularizer: DiagonalRegularizer = .none) throws(DynamicsError) {
        let n = trainKernel.rows
        if n < 1 { throw .shape("the train kernel is empty") }
        try trainKernel.validate("the train kernel", rows: n, columns: n)
        if targets.columns < 1 { throw .shape("the targets have no columns") }
        try targets.validate("the targets", rows: n, columns: nil)
        guard learningRate > 0, learningRate.isFinite else {
            throw .invalidParameter("the learning rate must be positive and finite, not \(learningRate)")
        }
        guard regularizer.strength.isFinite else {
            throw .invalidParameter("the diagonal regularizer must be finite, not \(regularizer.strength)")
        }

        var matrix = trainKernel.elements
        var scale = 0.0, asymmetry = 0.0, trace = 0.0
        for i in 0..<n {
            trace += matrix[i * n + i]
            for j in 0..<n {
                scale = Swift.max(scale, abs(matrix[i * n + j]))
                if j > i { asymmetry = Swift.max(asymmetry, abs(matrix[i * n + j] - matrix[j * n + i])) }
            }
        }
        if scale > 0, asymmetry / scale > Self.symmetryTolerance {
            throw .notSymmetric(relativeDifference: asymmetry / scale)
        }
        let shift = regularizer.shift(trace: trace, n: n)
        for i in 0..<n {
            for j in (i + 1)..<n {
                let mean = 0.5 * (matrix[i * n + j] + matrix[j * n + i])
                matrix[i * n + j] = mean
                matrix[j * n + i] = mean
            }
            matrix[i * n + i] += shift
        }
        let eigen: SymmetricEigen
        do {
            eigen = try SymmetricEigen.compute(matrix: matrix, n: n, vectors: true)
        } catch {
            throw .eigen(error)
        }
        self.init(validatedEigen: eigen, targets: targets, learningRate: learningRate,
                  regularizer: regularizer, shift: shift)
    }

    /// Prepares the dynamics from an eigendecomposition of Θ that already exists (such as
    /// the one `ntk gram --eigen vectors` writes), without decomposing again:
    /// Θ + δI = V diag(λ + δ) Vᵀ, with δ from trace Θ = Σ λ_i for a relative regularizer.
    ///
    /// - Parameters:
    ///   - eigen: Θ's eigendecomposition, with eigenvectors (ascending values, column j of the
    ///     row-major vectors belonging to value j).
    ///   - targets, learningRate, regularizer: as in ``init(trainKernel:targets:learningRate:regularizer:)``.
    /// - Throws: ``DynamicsError`` for missing or misshapen eigenvectors, non-finite or
    ///   non-ascending eigenvalues, and the parameter errors of the other initializer.
    public init(eigen: SymmetricEigen, targets: RowMajorMatrix, learningRate: Double = 1,
                regularizer: DiagonalRegularizer = .none) throws(DynamicsError) {
        let n = eigen.n
        if n < 1 { throw .shape("the eigendecomposition is empty") }
        guard let vectors = eigen.vectors, vectors.count == n * n else {
            throw .shape("the eigendecomposition needs its \(n) x \(n) eigenvectors")
        }
        for (i, value) in eigen.values.enumerated() {
            if !value.isFinite { throw .nonFinite(name: "the eigenvalues", row: i, column: 0) }
            if i > 0, value < eigen.values[i - 1] { throw .notAscending(index: i) }
        }
        if let index = vectors.firstIndex(where: { !$0.isFinite }) {
            throw .nonFinite(name: "the eigenvectors", row: index / n, column: index % n)
        }
        if targets.columns < 1 { throw .shape("the targets have no columns") }
        try targets.validate("the targets", rows: n, columns: nil)
        guard learningRate > 0, learningRate.isFinite else {
            throw .invalidParameter("the learning rate must be positive and finite, not \(learningRate)")
        }
        guard regularizer.strength.isFinite else {
            throw .invalidParameter("the diagonal regularizer must be finite, not \(regularizer.strength)")
        }
        let shift = regularizer.shift(trace: eigen.values.reduce(0, +), n: n)
        var shifted = eigen
        shifted.values = eigen.values.map { $0 + shift }
        self.init(validatedEigen: shifted, targets: targets, learningRate: learningRate,
                  regularizer: regularizer, shift: shift)
    }

    private init(validatedEigen eigen: SymmetricEigen, targets: RowMajorMatrix, learningRate: Double,
                 regularizer: DiagonalRegularizer, shift: Double) {
        self.eigen = eigen
        sampleCount = eigen.n
        outputCount = targets.columns
        self.learningRate = learningRate
        self.regularizer = regularizer
        diagonalShift = shift
        self.targets = targets
    }

    /// 2c / λ_max: gradient descent with η below it contracts every mode (|1 − η λ_i / c| < 1),
    /// as neural-tangents' `max_learning_rate(k, y_train_size=N k)` (which adds 1e-12 to
    /// λ_max). Infinite when λ_max <= 0.
    public var maxStableLearningRate: Double {
        Self.maxStableLearningRate(lambdaMax: eigen.values.last ?? 0, normalization: normalization)
    }

    /// 2c / λ_max (+∞ when λ_max <= 0).
    /// e for one mode of rate η λ⁺ / c: expm1(−rate t) for flow, (1 − rate)^s − 1 for s steps,
    /// 0 for a frozen mode (rate 0, also at t = +∞). f_t(X) = f₀ + V diag(e) Vᵀ (f₀ − Y).
    public static func trainFactor(at time: TrainingTime, rate: Double) -> Double {
        if rate == 0 { return 0 }
        switch time {
        case .flow(let t):
            return expm1(-rate * t)
        case .steps(let s):
            if s == 0 { return 0 }
            // log1p keeps the digits of a small rate; a base <= 0 (rate >= 1: the mode
            // overshoots and oscillates) has no logarithm.
            return rate < 1 ? expm1(Double(s) * log1p(-rate)) : pow(1 - rate, Double(s)) - 1
        }
    }

    public static func maxStableLearningRate(lambdaMax: Double, normalization c: Double) -> Double {
        lambdaMax > 0 ? 2 * c / lambdaMax : .infinity
    }

    /// The time constant of each mode, c / (η λ_i⁺), in the units of `TrainingTime.flow`
    /// (mode i decays as exp(−t / τ_i)); +∞ for a frozen mode. In the order of
    /// `eigen.values` (ascending eigenvalues, so descending time constants).
    public var timeConstants: [Double] {
        eigen.values.map { $0 > 0 ? normalization / (learningRate * $0) : .infinity }
    }

    /// Projects one initial state onto the eigenbasis, ready for any number of times.
    ///
    /// - Parameters:
    ///   - trainOutputs: f₀(X), N x k.
    ///   - testKernel: Θ(X*, X), M x N (nil for train predictions only).
    ///   - testOutputs: f₀(X*), M x k (required with `testKernel`).
    /// - Throws: ``DynamicsError`` for a bad shape or a non-finite entry.
    public func trajectory(trainOutputs: RowMajorMatrix, testKernel: RowMajorMatrix? = nil,
                           testOutputs: RowMajorMatrix? = nil) throws(DynamicsError) -> Trajectory {
        try Trajectory(dynamics: self, trainOutputs: trainOutputs, testKernel: testKernel, testOutputs: testOutputs)
    }

    /// Predictions at each of `times` (see ``trajectory(trainOutputs:testKernel:testOutputs:)``).
    public func predictions(at times: [TrainingTime], trainOutputs: RowMajorMatrix,
                            testKernel: RowMajorMatrix? = nil,
                            testOutputs: RowMajorMatrix? = nil) throws(DynamicsError) -> [Prediction] {
        let trajectory = try trajectory(trainOutputs: trainOutputs, testKernel: testKernel, testOutputs: testOutputs)
        var result: [Prediction] = []
        for time in times { result.append(try trajectory.prediction(at: time)) }
        return result
    }
}

/// The outputs of the linearized network at one training time.
public struct Prediction: Sendable {
    /// When.
    public let time: TrainingTime
    /// f_t(X), N x k.
    public let train: RowMajorMatrix
    /// f_t(X*), M x k, when a test set was given.
    public let test: RowMajorMatrix?
    /// L = (1/(2c)) ‖f_t(X) − Y‖²_F, from the mode sum (accurate even where the residual
    /// is far below the targets' rounding).
    public let trainLoss: Double

    /// A prediction computed elsewhere (e.g. by conjugate gradients on a distributed kernel).
    public init(time: TrainingTime, train: RowMajorMatrix, test: RowMajorMatrix?, trainLoss: Double) {
        self.time = time
        self.train = train
        self.test = test
        self.trainLoss = trainLoss
    }
}

/// One initial state of the dynamics, projected onto the eigenbasis: predictions at any
/// time cost two small products, O((N + M) N k).
public struct Trajectory: Sendable {
    let sampleCount: Int
    let outputCount: Int
    let testCount: Int?
    let learningRate: Double
    let normalization: Double
    /// λ_i⁺ = max(λ_i, 0), ascending.
    let clampedValues: [Double]
    /// V, N x N row-major.
    let vectors: [Double]
    /// Rᵀ = (Vᵀ (f₀(X) − Y))ᵀ, k x N: row a holds the modes of output a.
    let residualModesT: [Double]
    /// ‖R_i‖², the residual power per mode.
    let modePower: [Double]
    let trainOutputs: RowMajorMatrix
    /// Θ(X*, X) V, M x N.
    let testKernelTimesV: [Double]?
    let testOutputs: RowMajorMatrix?

    init(dynamics d: GradientDescentMSE, trainOutputs: RowMajorMatrix, testKernel: RowMajorMatrix?,
         testOutputs: RowMajorMatrix?) throws(DynamicsError) {
        let n = d.sampleCount, k = d.outputCount
        try trainOutputs.validate("the initial train outputs", rows: n, columns: k)
        let m: Int?
        switch (testKernel, testOutputs) {
        case (nil, nil):
            m = nil
        case (let kernel?, let outputs?):
            try kernel.validate("the test kernel", rows: nil, columns: n)
            try outputs.validate("the initial test outputs", rows: kernel.rows, columns: k)
            m = kernel.rows
        default:
            throw .shape("the test kernel and the initial test outputs must be given together")
        }
        guard let v = d.eigen.vectors else { throw .eigen(.lapack(info: -1)) }

        // Dᵀ = (f₀ − Y)ᵀ, k x N; Rᵀ = Dᵀ V.
        var dT = [Double](repeating: 0, count: k * n)
        for i in 0..<n { for a in 0..<k { dT[a * n + i] = trainOutputs[i, a] - d.targets[i, a] } }
        var rT = [Double](repeating: 0, count: k * n)
        GEMM.multiply(m: k, n: n, k: n, a: dT, lda: n, b: v, ldb: n, c: &rT, ldc: n)
        var power = [Double](repeating: 0, count: n)
        for a in 0..<k { for i in 0..<n { power[i] += rT[a * n + i] * rT[a * n + i] } }

        var a: [Double]?
        if let kernel = testKernel, let m, m > 0 {
            var product = [Double](repeating: 0, count: m * n)
            GEMM.multiply(m: m, n: n, k: n, a: kernel.elements, lda: n, b: v, ldb: n, c: &product, ldc: n)
            a = product
        } else if m != nil {
            a = []
        }

        sampleCount = n
        outputCount = k
        testCount = m
        learningRate = d.learningRate
        normalization = d.normalization
        clampedValues = d.eigen.values.map { Swift.max($0, 0) }
        vectors = v
        residualModesT = rT
        modePower = power
        self.trainOutputs = trainOutputs
        testKernelTimesV = a
        self.testOutputs = testOutputs
    }

    /// L(0) = (1/(2c)) ‖f₀(X) − Y‖²_F.
    public var initialTrainLoss: Double { modePower.reduce(0, +) / (2 * normalization) }

    /// The predictions at `time`.
    /// - Throws: ``DynamicsError/invalidParameter(_:)`` for a negative or NaN time.
    public func prediction(at time: TrainingTime) throws(DynamicsError) -> Prediction {
        try time.validate()
        let n = sampleCount, k = outputCount
        let e = trainFactors(at: time)
        var sT = [Double](repeating: 0, count: k * n)
        var gT = [Double](repeating: 0, count: k * n)
        for a in 0..<k {
            for i in 0..<n {
                let r = residualModesT[a * n + i]
                sT[a * n + i] = r * e[i]
                gT[a * n + i] = clampedValues[i] > 0 ? r * e[i] / clampedValues[i] : 0
            }
        }

        // (V S)ᵀ = Sᵀ Vᵀ: k x N.
        var deltaT = [Double](repeating: 0, count: k * n)
        GEMM.multiplyTransposed(m: k, n: n, k: n, a: sT, lda: n, b: vectors, ldb: n, c: &deltaT, ldc: n)
        var train = trainOutputs
        for i in 0..<n { for a in 0..<k { train[i, a] += deltaT[a * n + i] } }

        var test: RowMajorMatrix?
        if let m = testCount, let a = testKernelTimesV, var outputs = testOutputs {
            // (Θ* V G)ᵀ = Gᵀ (Θ* V)ᵀ: k x M.
            var testDeltaT = [Double](repeating: 0, count: k * m)
            GEMM.multiplyTransposed(m: k, n: m, k: n, a: gT, lda: n, b: a, ldb: n, c: &testDeltaT, ldc: m)
            for j in 0..<m { for b in 0..<k { outputs[j, b] += testDeltaT[b * m + j] } }
            test = outputs
        }
        return Prediction(time: time, train: train, test: test, trainLoss: loss(at: time))
    }

    /// The variance of the train outputs at `time` of an infinite ensemble whose initial
    /// outputs are drawn from the Gaussian process of this kernel (the NNGP dynamics:
    /// neural-tangents' `gradient_descent_mse_ensemble(..., get='nngp', compute_cov=True)`
    /// without test inputs): the diagonal of V diag(λ_i⁺ E_i²) Vᵀ, E_i = 1 + e_i the mode's
    /// decay (exp(−η λ_i⁺ t / c), or (1 − η λ_i⁺ / c)^s). The same for each of the k outputs.
    /// - Throws: ``DynamicsError/invalidParameter(_:)`` for a negative or NaN time.
    public func trainVariance(at time: TrainingTime) throws(DynamicsError) -> [Double] {
        try time.validate()
        let n = sampleCount
        let weights = zip(trainFactors(at: time), clampedValues).map { e, lambda in lambda * (1 + e) * (1 + e) }
        var variance = [Double](repeating: 0, count: n)
        for j in 0..<n {
            var sum = 0.0
            for i in 0..<n where weights[i] != 0 {
                let v = vectors[j * n + i]
                sum += v * v * weights[i]
            }
            variance[j] = sum
        }
        return variance
    }

    /// The variance of the test outputs at `time` of the same ensemble (NNGP dynamics):
    /// K(x*, x*) − Σ_i (Θ(X*, X) V)_{*i}² (1 − E_i²) / λ_i⁺ over the modes with λ_i⁺ > 0,
    /// with 1 − E_i² = −e_i (2 + e_i) to keep its digits when E_i is near 1. At t = +∞ it is
    /// the Gaussian-process posterior variance K** − K*ₓ (K + δI)⁻¹ Kₓ*.
    ///
    /// - Parameters:
    ///   - time: the training time.
    ///   - testSelfKernel: K(x*_j, x*_j) for each test input (M values).
    /// - Throws: ``DynamicsError`` for a negative or NaN time, a trajectory without test
    ///   inputs, or `testSelfKernel` of the wrong length.
    public func testVariance(at time: TrainingTime, testSelfKernel: [Double]) throws(DynamicsError) -> [Double] {
        try time.validate()
        guard let m = testCount, let a = testKernelTimesV else { throw .shape("the trajectory has no test inputs") }
        guard testSelfKernel.count == m else {
            throw .shape("the test self-kernel has \(testSelfKernel.count) values for \(m) test inputs")
        }
        let n = sampleCount
        let weights = zip(trainFactors(at: time), clampedValues).map { e, lambda in lambda > 0 ? -e * (2 + e) / lambda : 0 }
        var variance = testSelfKernel
        for j in 0..<m {
            var sum = 0.0
            for i in 0..<n where weights[i] != 0 {
                let x = a[j * n + i]
                sum += x * x * weights[i]
            }
            variance[j] -= sum
        }
        return variance
    }

    /// L(t) = (1/(2c)) Σ_i exp(−2 η λ_i⁺ t / c) ‖R_i‖² for gradient flow, and
    /// (1/(2c)) Σ_i (1 − η λ_i⁺ / c)^(2s) ‖R_i‖² after s steps.
    /// - Throws: ``DynamicsError/invalidParameter(_:)`` for a negative or NaN time.
    public func trainLoss(at time: TrainingTime) throws(DynamicsError) -> Double {
        try time.validate()
        return loss(at: time)
    }

    func loss(at time: TrainingTime) -> Double {
        var sum = 0.0
        for i in 0..<sampleCount where modePower[i] > 0 {
            let rate = learningRate * clampedValues[i] / normalization
            let factor: Double
            switch time {
            case .flow(let t):
                factor = rate > 0 ? exp(-2 * rate * t) : 1
            case .steps(let s):
                factor = pow(1 - rate, Double(2 * s))
            }
            sum += factor * modePower[i]
        }
        return sum / (2 * normalization)
    }

    /// e_i: expm1(−η λ_i⁺ t / c) for flow, (1 − η λ_i⁺ / c)^s − 1 for steps; 0 for frozen
    /// modes (also at t = +∞, where 0 · ∞ would be NaN).
    func trainFactors(at time: TrainingTime) -> [Double] {
        clampedValues.map { lambda in
            GradientDescentMSE.trainFactor(at: time, rate: learningRate * lambda / normalization)
        }
    }
}
