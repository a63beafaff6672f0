import Foundation
import LinearAlgebra

/// What people read off a kernel's spectrum (and, with eigenvectors and targets, off its
/// relation to the targets). `Codable` with snake_case keys for summary.json; a quantity
/// that is undefined for the spectrum at hand is nil (and left out of the JSON).
///
/// λ_1 <= … <= λ_N are the eigenvalues of Θ; λ⁺ = max(λ, 0) where a quantity needs a
/// non-negative spectrum (negative eigenvalues of a PSD kernel are rounding noise).
public struct SpectralDiagnostics: Codable, Sendable, Equatable {
    /// N, the number of eigenvalues.
    public var n: Int
    /// The smallest eigenvalue.
    public var lambdaMin: Double
    /// The largest eigenvalue.
    public var lambdaMax: Double
    /// λ_max / λ_min; nil unless λ_min > 0.
    public var conditionNumber: Double?
    /// trace Θ = Σ λ_i.
    public var trace: Double
    /// How many eigenvalues are < 0.
    public var negativeEigenvalues: Int
    /// exp(−Σ p_i log p_i) with p_i = λ_i⁺ / Σ λ⁺ (Roy & Vetterli's effective rank, between 1
    /// and N); nil when Σ λ⁺ = 0.
    public var effectiveRank: Double?
    /// (Σ λ⁺)² / Σ (λ⁺)², between 1 and N; nil when Σ λ⁺ = 0.
    public var participationRatio: Double?
    /// ‖Θ‖_F² / ‖Θ‖₂² = Σ λᵢ² / max|λᵢ|², between 1 and N (the usual stable rank); nil for Θ = 0.
    public var stableRank: Double?
    /// α of the power law λ_(r) ≈ C r^(−α) over the eigenvalues in decreasing order
    /// λ_(1) >= λ_(2) >= …: minus the least-squares slope of log λ_(r) against log r over the
    /// ranks r = 1 … K (K = ``decayFitModes`` asked, by default max(2, ⌈N/2⌉): the top half
    /// of the spectrum, above the rounding-dominated tail), keeping only the ranks with
    /// λ_(r) > N ε λ_max; nil when fewer than 2 ranks remain.
    public var decayExponent: Double?
    /// How many ranks the decay fit used.
    public var decayFitModes: Int
    /// ⟨Θ, Y Yᵀ⟩_F / (‖Θ‖_F ‖Y Yᵀ‖_F), from the eigendecomposition: Σ λ_i ‖v_iᵀ Y‖² /
    /// (√(Σ λ_i²) ‖YᵀY‖_F). With eigenvectors and targets only; nil for Θ = 0 or Y = 0.
    public var kernelTargetAlignment: Double?
    /// The same for the centred HΘH and H Y (H = I − 11ᵀ/N; Cortes et al. 2012):
    /// ⟨HΘH, H Y Yᵀ H⟩_F / (‖HΘH‖_F ‖H Y Yᵀ H‖_F). ‖HΘH‖²_F = Σλ² − (2/N) Σ λ_i² u_i² +
    /// (Σ λ_i u_i²)² / N² with u = Vᵀ1, which loses digits (relative ~ ε Σλ² / ‖HΘH‖²_F)
    /// when a constant mode dominates Θ. Nil for HΘH = 0 or centred Y = 0.
    public var centeredKernelTargetAlignment: Double?
    /// Σ_{i <= r} ‖v_(i)ᵀ Y‖² / ‖Y‖²_F for r = 1 … N over the modes in decreasing
    /// eigenvalue order (the fraction of the targets' power in the top r modes; ends at 1).
    public var cumulativeLabelPower: [Double]?

    enum CodingKeys: String, CodingKey {
        case n
        case lambdaMin = "lambda_min", lambdaMax = "lambda_max", conditionNumber = "condition_number"
        case trace, negativeEigenvalues = "negative_eigenvalues", effectiveRank = "effective_rank"
        case participationRatio = "participation_ratio", stableRank = "stable_rank"
        case decayExponent = "decay_exponent", decayFitModes = "decay_fit_modes"
        case kernelTargetAlignment = "kernel_target_alignment"
        case centeredKernelTargetAlignment = "centered_kernel_target_alignment"
        case cumulativeLabelPower = "cumulative_label_power"
    }

    /// The diagnostics of a spectrum alone.
    ///
    /// - Parameters:
    ///   - eigenvalues: ascending (as `SymmetricEigen` and `numpy.linalg.eigh` give them).
    ///   - decayFitModes: K, the number of top ranks for the decay fit (default max(2, ⌈N/2⌉)).
    /// - Throws: ``DynamicsError`` for an empty, non-finite or non-ascending spectrum or K < 2.
    public init(eigenvalues: [Double], decayFitModes: Int? = nil) throws(DynamicsError) {
        let n = eigenvalues.count
        if n == 0 { throw .shape("the spectrum is empty") }
        for (i, value) in eigenvalues.enumerated() {
            if !value.isFinite { throw .nonFinite(name: "the eigenvalues", row: i, column: 0) }
            if i > 0, value < eigenvalues[i - 1] { throw .notAscending(index: i) }
        }
        if let k = decayFitModes, k < 2 {
            throw .invalidParameter("the decay fit needs at least 2 modes, not \(k)")
        }
        let lambdaMin = eigenvalues[0], lambdaMax = eigenvalues[n - 1]
        self.n = n
        self.lambdaMin = lambdaMin
        self.lambdaMax = lambdaMax
        conditionNumber = lambdaMin > 0 ? lambdaMax / lambdaMin : nil
        trace = eigenvalues.reduce(0, +)
        negativeEigenvalues = eigenvalues.count(where: { $0 < 0 })

        // Ratios are computed on the spectrum scaled by its largest magnitude, so that
        // eigenvalues near the largest double (or the smallest) neither overflow nor
        // underflow in sums and squares; the trace alone may be ±∞ when its true value is.
        let scale = Self.scale(eigenvalues)
        let clamped = eigenvalues.map { Swift.max($0, 0) / scale }
        let positiveSum = clamped.reduce(0, +)
        if positiveSum > 0 {
            var entropy = 0.0, squares = 0.0
            for value in clamped where value > 0 {
                let p = value / positiveSum
                entropy -= p * log(p)
                squares += value * value
            }
            effectiveRank = exp(entropy)
            participationRatio = positiveSum * positiveSum / squares
        }
        stableRank = eigenvalues.contains(where: { $0 != 0 }) ? eigenvalues.reduce(0) { $0 + ($1 / scale) * ($1 / scale) } : nil

        // Ranks r = 1 ... K over the decreasing spectrum, above the rounding floor.
        let fitCount = Swift.min(n, decayFitModes ?? Swift.max(2, (n + 1) / 2))
        let floor = Double(n) * Double.ulpOfOne * lambdaMax
        var xs: [Double] = [], ys: [Double] = []
        for r in 1...fitCount {
            let value = eigenvalues[n - r]
            if value > floor, value > 0 {
                xs.append(log(Double(r)))
                ys.append(log(value))
            }
        }
        self.decayFitModes = xs.count
        if xs.count >= 2 {
            let xMean = xs.reduce(0, +) / Double(xs.count), yMean = ys.reduce(0, +) / Double(ys.count)
            var sxy = 0.0, sxx = 0.0
            for (x, y) in zip(xs, ys) {
                sxy += (x - xMean) * (y - yMean)
                sxx += (x - xMean) * (x - xMean)
            }
            decayExponent = -sxy / sxx
        }
    }

    /// The diagnostics of a spectrum and its relation to targets.
    ///
    /// - Parameters:
    ///   - eigenvalues: ascending.
    ///   - eigenvectors: row-major N x N, column j belonging to `eigenvalues[j]` (as
    ///     `SymmetricEigen.vectors` and `numpy.linalg.eigh`).
    ///   - targets: Y, N x k (k >= 1; for labels, their one-hot matrix).
    ///   - decayFitModes: as in ``init(eigenvalues:decayFitModes:)``.
    /// - Throws: ``DynamicsError`` for inconsistent shapes or non-finite values.
    public init(eigenvalues: [Double], eigenvectors: [Double], targets: RowMajorMatrix,
                decayFitModes: Int? = nil) throws(DynamicsError) {
        try self.init(eigenvalues: eigenvalues, decayFitModes: decayFitModes)
        let n = eigenvalues.count
        if eigenvectors.count != n * n {
            throw .shape("\(eigenvectors.count) eigenvector elements do not make \(n) x \(n)")
        }
        if let index = eigenvectors.firstIndex(where: { !$0.isFinite }) {
            throw .nonFinite(name: "the eigenvectors", row: index / n, column: index % n)
        }
        if targets.columns < 1 { throw .shape("the targets have no columns") }
        try targets.validate("the targets", rows: n, columns: nil)
        let k = targets.columns

        // Pᵀ = Yᵀ V (k x N): the targets' coordinates in the eigenbasis; and u = Vᵀ 1.
        let yT = targets.transposed.elements
        var pT = [Double](repeating: 0, count: k * n)
        GEMM.multiply(m: k, n: n, k: n, a: yT, lda: n, b: eigenvectors, ldb: n, c: &pT, ldc: n)
        var u = [Double](repeating: 0, count: n)
        for i in 0..<n { for j in 0..<n { u[j] += eigenvectors[i * n + j] } }
        var columnMeans = [Double](repeating: 0, count: k)
        for i in 0..<n { for a in 0..<k { columnMeans[a] += targets[i, a] / Double(n) } }

        var modePower = [Double](repeating: 0, count: n)         // ‖v_iᵀ Y‖²
        var centeredModePower = [Double](repeating: 0, count: n) // ‖v_iᵀ H Y‖²
        for a in 0..<k {
            for i in 0..<n {
                let p = pT[a * n + i]
                let pc = p - u[i] * columnMeans[a]
                modePower[i] += p * p
                centeredModePower[i] += pc * pc
            }
        }

        // ‖Y Yᵀ‖_F = ‖YᵀY‖_F, and the same for the centred targets.
        var gram = [Double](repeating: 0, count: k * k), centeredGram = gram
        for i in 0..<n {
            for a in 0..<k {
                for b in 0..<k {
                    gram[a * k + b] += targets[i, a] * targets[i, b]
                    centeredGram[a * k + b] += (targets[i, a] - columnMeans[a]) * (targets[i, b] - columnMeans[b])
                }
            }
        }
        let targetNorm = gram.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let centeredTargetNorm = centeredGram.reduce(0) { $0 + $1 * $1 }.squareRoot()

        // On the scaled spectrum (see the spectrum-only initializer); the alignments are ratios.
        let scale = Self.scale(eigenvalues)
        var inner = 0.0, centeredInner = 0.0, squares = 0.0, weightedU2 = 0.0, squaresU2 = 0.0
        for i in 0..<n {
            let lambda = eigenvalues[i] / scale
            inner += lambda * modePower[i]
            centeredInner += lambda * centeredModePower[i]
            squares += lambda * lambda
            weightedU2 += lambda * u[i] * u[i]
            squaresU2 += lambda * lambda * u[i] * u[i]
        }
        let kernelNorm = squares.squareRoot()
        let centeredKernelNorm = Swift.max(0, squares - 2 * squaresU2 / Double(n)
                                           + weightedU2 * weightedU2 / Double(n * n)).squareRoot()
        if kernelNorm > 0, targetNorm > 0 {
            kernelTargetAlignment = inner / (kernelNorm * targetNorm)
        }
        if centeredKernelNorm > 0, centeredTargetNorm > 0 {
            centeredKernelTargetAlignment = centeredInner / (centeredKernelNorm * centeredTargetNorm)
        }

        let total = targets.elements.reduce(0) { $0 + $1 * $1 }
        if total > 0 {
            var cumulative = [Double](), running = 0.0
            cumulative.reserveCapacity(n)
            for i in stride(from: n - 1, through: 0, by: -1) {
                running += modePower[i]
                cumulative.append(running / total)
            }
            cumulativeLabelPower = cumulative
        }
    }

    /// The largest eigenvalue magnitude, or 1 for the zero spectrum: the divisor that keeps
    /// sums of eigenvalues and of their squares finite.
    static func scale(_ eigenvalues: [Double]) -> Double {
        let largest = eigenvalues.reduce(0) { Swift.max($0, abs($1)) }
        return largest > 0 ? largest : 1
    }

    /// The diagnostics of an eigendecomposition, with the target relations when it holds
    /// eigenvectors and `targets` is given.
    public init(eigen: SymmetricEigen, targets: RowMajorMatrix? = nil, decayFitModes: Int? = nil) throws(DynamicsError) {
        if let vectors = eigen.vectors, let targets {
            try self.init(eigenvalues: eigen.values, eigenvectors: vectors, targets: targets, decayFitModes: decayFitModes)
        } else {
            try self.init(eigenvalues: eigen.values, decayFitModes: decayFitModes)
        }
    }
}
