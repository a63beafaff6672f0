import Foundation
import LearningDynamics
import LinearAlgebra
import MPI
import Network
import NumPyIO

/// `ntk predict --solver cg`: t = ∞ by preconditioned conjugate gradients on the distributed
/// kernels (docs/maths.md §10). No rank gathers Θ(X, X) or Θ(X*, X): each CG step multiplies
/// every rank's tiles by the block of k search directions, with one reduction.
extension PredictJob {
    /// Whether this run solves on the distributed kernels: asked for (`cg`), or `auto` when
    /// the empirical or analytic kernel is asked and the eigen path's rank-0 peak
    /// `eigenBytes` does not fit rank 0's node. Refuses (64) what it cannot do. Collective.
    static func useConjugateGradients(_ options: PredictOptions, eigenBytes: Double, world: Communicator) throws -> Bool {
        let possible = options.kernel != .nngp && !options.keepKernels
        // Kernels asked to be on disk are only ever used by CG.
        switch options.solver == .auto && options.kernelStorage == .disk ? .cg : options.solver {
        case .eigen: return false
        case .cg:
            try Agreement(world: world).stage { () throws(NTKError) in
                if options.kernel == .nngp {
                    throw NTKError(.usage, "--solver cg gives the mean only; --kernel nngp (mean and variance) needs --solver eigen")
                }
                if options.keepKernels && options.kernelStorage != .disk {
                    throw NTKError(.usage, "--keep-kernels needs --solver eigen, or --solver cg with --kernel-storage disk (CG never gathers the kernels; out of core they are files)")
                }
            }
            return true
        case .auto:
            guard possible else { return false }
            let localRanks = (try? world.nodeLocal().size) ?? 1
            var choice: [Int32] = [0]
            if world.isRoot, let available = options.engine.availableBytes {
                let needed = eigenBytes + Double(max(0, localRanks - 1)) * Double(MemoryPlan.baseline)
                choice[0] = needed > Double(available) ? 1 : 0
            }
            try Agreement(world: world).stage { () throws(NTKError) in
                do { try world.broadcast(&choice, root: 0) } catch { throw NTKError(.software, "MPI: \(error)") }
            }
            return choice[0] == 1
        }
    }

    static func executeCG(_ options: PredictOptions, loaded: Loaded, output: OutputDirectory?, engine: TileEngine,
                          start: UInt64, world: Communicator) throws {
        let agreement = Agreement(world: world)
        let n = loaded.train.count, k = loaded.spec.outputCount
        let m = loaded.test?.count
        let ranks = Double(world.size), dn = Double(n), dm = Double(m ?? 0)
        let rank = Swift.min(options.preconditionerRank, n / 10)
        // Every rank: its share of both kernels' tiles, the CG vectors (about 8 blocks of k
        // rows), the preconditioner's block Lanczos basis and its eigenvectors.
        let block = Double(Swift.max(rank + 8, 16))
        let vectors = 8 * (8 * Double(k) * (dn + dm) + (rank > 0 ? 2 * 8 * block * dn + Double(rank) * dn : 0))
        // In memory every rank keeps its share of both kernels' tiles; out of core two panels
        // of each kernel's file and the pages of the file it writes.
        let inMemory = Double(MemoryPlan.baseline) + 8 * (dn * dn / (2 * ranks) + dm * dn / ranks) + vectors
        let panels = KernelFileOperator.bufferBytes(samples: n, columns: n, symmetric: true, entry: 1, ranks: world.size)
            + (m.map { KernelFileOperator.bufferBytes(samples: $0, columns: n, symmetric: false, entry: 1, ranks: world.size) } ?? 0)
        let outOfCoreBytes = Double(MemoryPlan.baseline) + Double(panels) + Double(ParallelKernelFile.Writer.windowLimit) + vectors
        var outOfCore = options.kernelStorage == .disk
        if options.kernelStorage == .auto {
            let localRanks = (try? world.nodeLocal().size) ?? 1
            var choice: [Int32] = [0]
            if world.isRoot, let available = options.engine.availableBytes {
                // As `TileEngine.checkMemory` counts a node's ranks.
                let node = { (bytes: Double) in bytes + Double(localRanks - 1) * Double(MemoryPlan.baseline) }
                if node(inMemory) > Double(available) && node(outOfCoreBytes) <= Double(available) {
                    choice[0] = 1
                    Report.warning("the kernels' tiles do not fit the memory of rank 0's node (\(MemoryPlan.format(node(inMemory))) needed, \(MemoryPlan.format(Double(available))) available): out of core, each rank streams its panels of the kernel files from disk for every product")
                }
            }
            try agreement.stage { () throws(NTKError) in
                do { try world.broadcast(&choice, root: 0) } catch { throw NTKError(.software, "MPI: \(error)") }
            }
            outOfCore = choice[0] == 1
        }
        if outOfCore {
            try engine.checkMemory(outOfCoreBytes, what: "out of core: two panels of each kernel file, the CG vectors and the preconditioner's eigenvectors")
        } else {
            try engine.checkMemory(inMemory, what: "each rank's share of Θ(X, X) and Θ(X*, X), the CG vectors and the preconditioner's eigenvectors; --kernel-storage disk needs less")
        }
        let kernelStart = Clock.now
        let jobs = kernelJobs(options, loaded: loaded, engine: engine, world: world)
        let train: any KernelOperator, test: (any KernelOperator)?
        var files: [String: KernelFileOperator] = [:]
        if outOfCore {
            let trainFile = try engine.streamed(jobs[0].name, computer: jobs[0].computer(), plan: jobs[0].plan, manifest: jobs[0].manifest,
                                                file: "train_kernel.npy", directory: output, complete: options.keepKernels)
            train = trainFile
            files["train"] = trainFile
            if jobs.count > 1 {
                let testFile = try engine.streamed(jobs[1].name, computer: jobs[1].computer(), plan: jobs[1].plan, manifest: jobs[1].manifest,
                                                   file: "test_kernel.npy", directory: output, complete: options.keepKernels)
                test = testFile
                files["test"] = testFile
            } else {
                test = nil
            }
        } else {
            train = try engine.distributed(jobs[0].name, computer: jobs[0].computer(), plan: jobs[0].plan, manifest: jobs[0].manifest)
            test = jobs.count > 1
                ? try engine.distributed(jobs[1].name, computer: jobs[1].computer(), plan: jobs[1].plan, manifest: jobs[1].manifest) : nil
        }
        let kernelSeconds = Clock.seconds(since: kernelStart)

        // Every rank: f₀ (the same computation everywhere), the right-hand sides, the solve.
        let solveStart = Clock.now
        let network = options.zeroInitialOutputs ? nil : loaded.network
        let f0 = network?.outputs(loaded.train.values, count: n) ?? [Double](repeating: 0, count: n * k)
        let f0Test: [Double]? = loaded.test.map { t in network?.outputs(t.values, count: t.count) ?? [Double](repeating: 0, count: t.count * k) }
        let y = loaded.targets.values
        let times = options.times.map { TrainingTime.flow($0) } + options.steps.map { TrainingTime.steps($0) }
        let onlyInfinity = times.allSatisfy { if case .flow(let t) = $0 { return t == .infinity }; return false }
        // Per time, as k rows of length N: the train outputs' change f_t(X) − f₀(X), and the
        // coefficients x with f_t(X*) − f₀(X*) = Θ(X*, X) x.
        typealias Solved = (trainDelta: [[Double]], coefficients: [[Double]], record: CGSummary, shift: Double, lambdaMax: Double?)
        let solved = try agreement.stage(quietly: true) { () throws(NTKError) -> Solved in
            do {
                // The top first: out of core its products also read the diagonal (the trace).
                let top = rank > 0 ? try train.largest(rank) : nil
                let shift = options.regularizer.shift(trace: try train.trace(), n: n)
                // B = Y − f₀ as k rows of length N.
                var b = [Double](repeating: 0, count: k * n)
                for i in 0..<n { for c in 0..<k { b[c * n + i] = y[i * k + c] - f0[i * k + c] } }
                if onlyInfinity {
                    let result = try ConjugateGradient.solve(
                        n: n, rhs: b, count: k, shift: shift, tolerance: options.cgTolerance, maxIterations: options.cgMaxIterations,
                        preconditioner: top.map { ConjugateGradient.Preconditioner(vectors: $0.vectors, values: $0.values) }) { x, count in
                        try train.apply(x, count: count)
                    }
                    // f(X) = f₀ + (Θ + δI)α: one product.
                    var delta = try train.apply(result.solution, count: k)
                    for e in delta.indices { delta[e] += shift * result.solution[e] }
                    let record = CGSummary(method: "cg", iterations: result.iterations, relativeResiduals: result.relativeResiduals,
                                           tolerance: options.cgTolerance, preconditionerRank: rank, blockProducts: result.products + 1,
                                           lambdaMax: top?.values.last)
                    return ([delta], [result.solution], record, shift, top?.values.last)
                }
                // Finite times: the Krylov approximation of the dynamics' matrix functions of
                // Θ + δI (eigenvalues clamped at 0 as the eigen path), the top deflated.
                let rateScale = options.learningRate / Double(n * k)
                var functions: [@Sendable (Double) -> Double] = []
                for time in times {
                    // The coefficients' function (1 − E(λ))/λ, continued to λ = 0 (a·t or
                    // r·s; 0 at t = ∞, the pseudo-inverse) so that it is ∫ E, as the
                    // bounds assume.
                    let atZero: Double
                    switch time {
                    case .flow(let t): atZero = t == .infinity ? 0 : rateScale * t
                    case .steps(let s): atZero = rateScale * Double(s)
                    }
                    functions.append { lambda in
                        let x = Swift.max(lambda + shift, 0)
                        return x > 0 ? -GradientDescentMSE.trainFactor(at: time, rate: rateScale * x) / x : atZero
                    }
                    functions.append { lambda in -GradientDescentMSE.trainFactor(at: time, rate: rateScale * Swift.max(lambda + shift, 0)) }
                }
                let result = try KrylovFunction.apply(functions: functions, n: n, rhs: b, count: k,
                                                      deflation: top.map { ($0.vectors, $0.values) }, residuals: top?.residuals,
                                                      tolerance: options.cgTolerance, maxSteps: options.cgMaxIterations) { x, count in
                    try train.apply(x, count: count)
                }
                // The a posteriori bounds (docs/maths.md §10), relative to ‖b‖ per output.
                let dynamics = times.map { time -> KrylovFunction.Dynamics in
                    switch time {
                    case .flow(let t): return .flow(t == .infinity ? .infinity : rateScale * t)
                    case .steps(let s): return .steps(s, rate: rateScale)
                    }
                }
                let deflated = top.map { KrylovFunction.Deflated(values: $0.values, vectors: $0.vectors, residuals: $0.residuals, n: n) }
                // Certified upper ends of the spectrum of Θ + δI ⪰ 0: its trace, and ‖Θ‖_F + δ
                // (out of core summed during the first pass, which has run).
                let upper = Swift.min(try train.trace() + Double(n) * shift, try train.frobeniusNorm() + shift)
                var bounds = [[KrylovFunction.Bound]](repeating: [], count: times.count)
                for r in 0..<k {
                    let perTime = try KrylovFunction.bounds(result.projections[r], deflated: deflated, shift: shift, upper: upper,
                                                            lower: Swift.max(shift, 0), dynamics: dynamics)
                    for (index, bound) in perTime.enumerated() { bounds[index].append(bound) }
                }
                var norms = [Double](repeating: 0, count: k)
                for c in 0..<k { norms[c] = (0..<n).reduce(0) { $0 + b[c * n + $1] * b[c * n + $1] }.squareRoot() }
                var record = CGSummary(method: "krylov", iterations: result.steps, relativeResiduals: [],
                                       tolerance: options.cgTolerance, preconditionerRank: rank, blockProducts: result.products,
                                       lambdaMax: top?.values.last)
                record.estimatedErrors = stride(from: 0, to: functions.count, by: 2).map { j in
                    zip(result.estimatedErrors[j], result.estimatedErrors[j + 1]).map { Swift.max($0, $1) }
                }
                func relative(_ value: Double?, _ c: Int) -> Double? {
                    value.map { norms[c] > 0 ? $0 / norms[c] : ($0 == 0 ? 0 : .infinity) }.flatMap { $0.isFinite ? $0 : nil }
                }
                record.errorBounds = bounds.map { perOutput in perOutput.enumerated().map { relative($0.element.train, $0.offset) } }
                record.coefficientBounds = bounds.map { perOutput in perOutput.enumerated().map { relative($0.element.coefficients, $0.offset) } }
                return (stride(from: 1, to: functions.count, by: 2).map { result.values[$0] },
                        stride(from: 0, to: functions.count, by: 2).map { result.values[$0] }, record, shift, top?.values.last)
            } catch let error as NTKError {
                throw error
            } catch let error as ConjugateGradient.Failure {
                throw NTKError(.dataError, "\(error)")
            } catch let error as KrylovFunction.Failure {
                throw NTKError(.dataError, "\(error)")
            } catch {
                throw NTKError(.software, "conjugate gradients: \(error)")
            }
        }
        // f_t(X*) = f₀* + Θ(X*, X) x_t for every time: one product with all of them.
        // And ‖Θ(X*, X)‖_F ≥ ‖Θ(X*, X)‖₂, which carries the coefficients' bounds to the test
        // predictions (out of core, summed during that product's pass).
        let tested: (fits: [[Double]], frobenius: Double)? = try agreement.stage(quietly: true) { () throws(NTKError) -> ([[Double]], Double)? in
            guard let test, let m else { return nil }
            do {
                let all = try test.apply(solved.coefficients.flatMap { $0 }, count: k * times.count)
                return ((0..<times.count).map { Array(all[($0 * k * m)..<(($0 + 1) * k * m)]) }, try test.frobeniusNorm())
            } catch {
                throw NTKError(.software, "MPI: \(error)")
            }
        }
        let testFits = tested?.fits
        let solveSeconds = Clock.seconds(since: solveStart)
        var streaming: [String: GramSummary.OutOfCore] = [:]
        for name in files.keys.sorted() { streaming[name] = try files[name]!.report() }
        files = [:]

        try agreement.stage(quietly: true) { () throws(NTKError) in
            guard world.isRoot, let output else { return }
            let c = Double(n * k)
            var predictions: [Prediction] = []
            var metrics: [PredictionMetrics] = []
            for (index, time) in times.enumerated() {
                var trainPredictions = f0
                for i in 0..<n { for a in 0..<k { trainPredictions[i * k + a] += solved.trainDelta[index][a * n + i] } }
                var testPredictions = f0Test
                if let testFits, let m {
                    for i in 0..<m { for a in 0..<k { testPredictions![i * k + a] += testFits[index][a * m + i] } }
                }
                var loss = 0.0
                for e in 0..<(n * k) { loss += (trainPredictions[e] - y[e]) * (trainPredictions[e] - y[e]) }
                let prediction = Prediction(time: time, train: RowMajorMatrix(rows: n, columns: k, elements: trainPredictions),
                                            test: testPredictions.map { RowMajorMatrix(rows: m!, columns: k, elements: $0) },
                                            trainLoss: loss / (2 * c))
                do {
                    metrics.append(try PredictionMetrics(
                        prediction: prediction, trainTargets: RowMajorMatrix(rows: n, columns: k, elements: y),
                        testTargets: loaded.testTargets.map { RowMajorMatrix(rows: m!, columns: k, elements: $0.values) },
                        trainLabels: k > 1 ? loaded.targets.labels : nil, testLabels: k > 1 ? loaded.testTargets?.labels : nil))
                } catch {
                    throw NTKError(.dataError, "cannot score the predictions: \(error)")
                }
                predictions.append(prediction)
            }
            var cg = solved.record
            if let tested, let coefficients = cg.coefficientBounds {
                cg.testErrorBounds = coefficients.map { $0.map { bound in bound.map { tested.frobenius * $0 } } }
            }
            var summary = PredictSummary(kernel: options.kernel.rawValue, initialOutputs: network == nil ? "zero" : "network",
                                         n: n, m: m, outputs: k, learningRate: options.learningRate, normalization: c,
                                         maxStableLearningRate: solved.lambdaMax.map { GradientDescentMSE.maxStableLearningRate(lambdaMax: $0 + solved.shift, normalization: c) } ?? .nan,
                                         diagonalShift: solved.shift, times: times.map(\.description), diagnostics: nil, timeConstants: [],
                                         ranks: world.size,
                                         seconds: ["kernels": kernelSeconds, "dynamics": solveSeconds, "total": Clock.seconds(since: start)])
            summary.solver = "cg"
            summary.cg = cg
            summary.kernelStorage = outOfCore ? KernelStorage.disk.rawValue : KernelStorage.memory.rawValue
            if outOfCore {
                summary.outOfCore = streaming
                // The kernel files are results only when asked for.
                if !options.keepKernels { for name in ["train_kernel.npy", "test_kernel.npy"] { output.drop(name) } }
            }
            let t = predictions.count
            try output.stage("train_predictions.npy", NPYFormat.encode(NPYArray(shape: [t, n, k], doubles: predictions.flatMap { $0.train.elements })))
            if let m {
                try output.stage("test_predictions.npy", NPYFormat.encode(NPYArray(shape: [t, m, k], doubles: predictions.flatMap { $0.test!.elements })))
            }
            try output.stage("metrics.json", try JSONOutput.encode(CGMetricsFile(times: metrics, solverErrors: cg.solverErrors(times: times))))
            let report = SpectralReport.cgText(cg, shift: solved.shift, metrics: metrics, n: n, k: k)
            try commit(&summary, report: report, output: output, engine: engine, quiet: options.quiet)
        }
    }
}

/// metrics.json of a CG run: the metrics per time, and the solver's error per time and
/// output beside them.
struct CGMetricsFile: Encodable {
    var times: [PredictionMetrics]
    var solverErrors: [CGSummary.SolverError]
    enum CodingKeys: String, CodingKey { case times, solverErrors = "solver_errors" }
}

extension CGSummary {
    /// The error of the solve behind each time's predictions, per output, relative to
    /// ‖b‖ = ‖Y − f₀‖. t = ∞: the relative residual ‖b − (Θ + δI)α‖/‖b‖ (by CG, the train
    /// predictions' error; on the Lanczos path, where the train predictions are Y, that of
    /// the coefficients). Finite times (Lanczos): the a posteriori bounds on the train and
    /// test predictions' errors, and the approximation's last relative change (the stopping
    /// rule's estimate); docs/maths.md §10.
    struct SolverError: Encodable {
        var time: String
        var kind: String
        var relative: [Double?]
        var testRelative: [Double?]?
        var estimated: [Double]?
        enum CodingKeys: String, CodingKey { case time, kind, relative, testRelative = "test_relative", estimated }
    }

    func solverErrors(times: [TrainingTime]) -> [SolverError] {
        if method == "cg" {
            return times.map { SolverError(time: $0.description, kind: "relative residual (the train predictions' error relative to ||Y - f0||)",
                                           relative: relativeResiduals) }
        }
        return times.enumerated().map { index, time in
            let estimated = estimatedErrors.map { $0[index] }
            let bound = errorBounds?[index] ?? []
            if case .flow(let t) = time, t == .infinity {
                // The train predictions are Y here (the train function is 1); the residual
                // measures the coefficients behind the test predictions.
                return SolverError(time: time.description,
                                   kind: "relative residual of the coefficients, ||Y - f0 - (Theta + delta I) alpha|| / ||Y - f0|| (the train predictions are Y)",
                                   relative: bound, estimated: estimated)
            }
            return SolverError(time: time.description,
                               kind: "bound on the predictions' error relative to ||Y - f0|| (a posteriori, maxima over a grid of the spectrum; test through ||Theta(X*, X)||_F)",
                               relative: bound, testRelative: testErrorBounds?[index], estimated: estimated)
        }
    }
}

extension SpectralReport {
    /// The report of a CG run: the solve, then the metrics at t = ∞.
    static func cgText(_ cg: CGSummary, shift: Double, metrics: [PredictionMetrics], n: Int, k: Int) -> String {
        func g(_ v: Double?) -> String { v.map { String(format: "%.6g", $0) } ?? "n/a" }
        var lines: [String]
        if cg.method == "cg" {
            lines = ["Kernel regression at t = inf by preconditioned conjugate gradients (N = \(n), k = \(k); the kernel never gathered)",
                     "  \(cg.iterations) steps, relative residuals \(cg.relativeResiduals.map { g($0) }.joined(separator: ", ")) (tolerance \(g(cg.tolerance)))",
                     "  preconditioner: the top \(cg.preconditionerRank) eigenpairs; lambda_max \(g(cg.lambdaMax)); diagonal shift \(g(shift))"]
        } else {
            let worst = cg.estimatedErrors?.flatMap { $0 }.max()
            // The largest bound; a missing one (no bound holds) shows as n/a.
            func largest(_ bounds: [[Double?]]?) -> String {
                guard let all = bounds?.flatMap({ $0 }), !all.isEmpty else { return "n/a" }
                return all.contains { $0 == nil } ? "n/a" : g(all.compactMap { $0 }.max())
            }
            lines = ["Gradient-descent dynamics by the Krylov approximation of exp(-eta t Theta / c) (N = \(n), k = \(k); the kernel never gathered)",
                     "  \(cg.iterations) Lanczos steps, the top \(cg.preconditionerRank) eigenpairs exact; estimated relative error \(g(worst)) (tolerance \(g(cg.tolerance)))",
                     "  a posteriori error bounds relative to ||Y - f0||: train \(largest(cg.errorBounds)), test \(largest(cg.testErrorBounds)) (metrics.json solver_errors)",
                     "  lambda_max \(g(cg.lambdaMax)); diagonal shift \(g(shift))"]
        }
        lines += metricsTable(metrics)
        return lines.joined(separator: "\n") + "\n"
    }
}
