import Foundation
import LearningDynamics
import LinearAlgebra
import MPI
import Network
import NumPyIO
import Plots

/// Everything `ntk predict` needs to know.
public struct PredictOptions: Sendable {
    public var train: String
    public var targets: String
    public var test: String?
    public var testTargets: String?
    public var model: ModelSource
    public var parameters: ParameterSource
    /// .empirical (the linearized finite network), .analytic (the infinite-width NTK
    /// ensemble's mean: f₀ = 0) or .nngp (the infinite-width NNGP ensemble: the Bayesian
    /// posterior at t = ∞; mean and variance).
    public var kernel: KernelKind = .empirical
    /// Start from f₀ = 0 instead of the network's outputs (empirical kernel): plain kernel
    /// regression Θ(X*, X) Θ⁻¹ Y at t = ∞.
    public var zeroInitialOutputs = false
    /// Also write the kernels computed (train_kernel.npy, test_kernel.npy) and the train
    /// kernel's eigenvalues (eigenvalues.npy).
    public var keepKernels = false
    public var learningRate: Double = 1
    /// Gradient-flow times (+∞ = kernel regression), in neural-tangents' units.
    public var times: [Double] = [.infinity]
    /// Discrete gradient-descent step counts.
    public var steps: [Int] = []
    public var regularizer: DiagonalRegularizer = .none
    public var output: String
    public var force = false
    public var quiet = false
    /// Tiles, per-sample cache, checkpoints, memory budget, progress.
    public var engine = EngineOptions()
    /// How the dynamics are solved: the eigendecomposition of the gathered kernel, or
    /// conjugate gradients on the distributed one (t = ∞ only).
    public var solver: PredictSolver = .auto
    /// CG: the relative residual ‖B − (Θ + δI)α‖/‖B‖ to reach per output.
    public var cgTolerance = 1e-10
    public var cgMaxIterations = 5000
    /// CG: the top eigenpairs of the spectral preconditioner (0: none).
    public var preconditionerRank = 32
    /// CG: where the kernels live while they are solved with: the ranks' memory, or .npy
    /// files on disk streamed for every product (auto: disk only when memory cannot hold
    /// the tiles). Out of core, --keep-kernels commits those files as the results.
    public var kernelStorage: KernelStorage = .auto

    public init(train: String, targets: String, model: ModelSource, parameters: ParameterSource, output: String) {
        self.train = train
        self.targets = targets
        self.model = model
        self.parameters = parameters
        self.output = output
    }
}

/// How `ntk predict` solves the dynamics.
public enum PredictSolver: String, Sendable, CaseIterable {
    /// cg when only t = ∞ is asked of the empirical or analytic kernel and the eigen path
    /// does not fit rank 0's node (its memory plan), else eigen.
    case auto
    /// Θ gathered on rank 0 and eigendecomposed: every time, the spectral diagnostics.
    case eigen
    /// Preconditioned conjugate gradients on the distributed kernels (no rank gathers
    /// Θ(X, X) or Θ(X*, X)): t = ∞ only.
    case cg
}

/// What the solve of `ntk predict --solver cg` did.
public struct CGSummary: Codable, Sendable {
    /// "cg" (t = ∞ only: preconditioned conjugate gradients) or "krylov" (finite times:
    /// Lanczos approximations of the dynamics' matrix functions).
    public var method: String
    /// CG steps, or Lanczos steps.
    public var iterations: Int
    /// ‖B − (Θ + δI)α‖/‖B‖ per output, recomputed after the last step.
    public var relativeResiduals: [Double]
    public var tolerance: Double
    /// The preconditioner's eigenpairs (block Lanczos on the same tiles).
    public var preconditionerRank: Int
    /// Products of the distributed kernel with blocks of k vectors.
    public var blockProducts: Int
    /// The largest eigenvalue of Θ (from the preconditioner's block Lanczos).
    public var lambdaMax: Double?
    /// Krylov: per time and output, the last relative change of the approximation (an a
    /// posteriori estimate of its error; 0 where the Krylov space closed, exact).
    public var estimatedErrors: [[Double]]?
    /// Krylov: per time and output, the a posteriori bound on the train predictions' error
    /// relative to ‖Y − f₀‖ (at t = ∞ the coefficients' relative residual; null where no
    /// bound holds: steps whose rate times the spectrum's certified upper end exceeds 2);
    /// docs/maths.md §10.
    public var errorBounds: [[Double?]]?
    /// The same for the test predictions, through ‖Θ(X*, X)‖_F (finite times only).
    public var testErrorBounds: [[Double?]]?
    /// The coefficients' bounds relative to ‖Y − f₀‖ (not written; the test bounds' factor).
    var coefficientBounds: [[Double?]]? = nil
    enum CodingKeys: String, CodingKey {
        case method, iterations, tolerance, estimatedErrors = "estimated_errors"
        case errorBounds = "error_bounds", testErrorBounds = "test_error_bounds"
        case relativeResiduals = "relative_residuals", preconditionerRank = "preconditioner_rank"
        case blockProducts = "block_products", lambdaMax = "lambda_max"
    }
}

/// The record of a prediction run, written as summary.json.
public struct PredictSummary: Codable, Sendable {
    public var kernel: String
    /// "network" (f₀ = the network's outputs at its parameters) or "zero".
    public var initialOutputs: String
    public var n: Int
    public var m: Int?
    public var outputs: Int
    public var learningRate: Double
    /// c = N·k, the loss normalization.
    public var normalization: Double
    public var maxStableLearningRate: Double
    public var diagonalShift: Double
    public var times: [String]
    /// The spectral diagnostics (the eigen solver only).
    public var diagnostics: SpectralDiagnostics?
    /// "eigen" or "cg".
    public var solver = "eigen"
    /// The CG solve (--solver cg).
    public var cg: CGSummary?
    /// CG path: where the kernels lived ("memory": the ranks' tiles; "disk": streamed from
    /// .npy files), and out of core what streaming each ("train", "test") cost.
    public var kernelStorage: String?
    public var outOfCore: [String: GramSummary.OutOfCore]?
    /// c / (η λ_i) per mode, in decreasing-eigenvalue order (null in the JSON for λ_i ≤ 0, where it is +∞).
    public var timeConstants: [Double]
    public var ranks: Int
    public var seconds: [String: Double]
    /// The result record's marks (see `OutputDirectory`): the tool, and the files it wrote.
    public var tool = "ntk"
    public var files: [String] = []

    enum CodingKeys: String, CodingKey {
        case kernel, n, m, outputs, normalization, times, diagnostics, ranks, seconds, tool, files, solver, cg
        case kernelStorage = "kernel_storage", outOfCore = "out_of_core"
        case initialOutputs = "initial_outputs"
        case learningRate = "learning_rate", maxStableLearningRate = "max_stable_learning_rate"
        case diagonalShift = "diagonal_shift", timeConstants = "time_constants"
    }
}

/// `ntk predict`: the linearized network's (or the infinite-width ensemble's) predictions
/// under MSE gradient descent, from kernels computed by the distributed engine.
public enum PredictJob {
    public static func run(_ options: PredictOptions, world: Communicator) -> ExitStatus {
        JobRunner.run(world: world) { try execute(options, world: world) }
    }

    struct Loaded {
        var train: DataSet
        var test: DataSet?
        var targets: Targets
        var testTargets: Targets?
        var spec: ModelSpec
        var network: Network?
        var infinite: InfiniteWidthKernel?
    }

    static func load(_ options: PredictOptions) throws(NTKError) -> Loaded {
        var gram = GramOptions(data: options.train, model: options.model, parameters: options.parameters, output: options.output)
        gram.data2 = options.test
        gram.kernel = options.kernel
        let base = try GramJob.load(gram)
        let k = base.spec.outputCount
        let targets = try Inputs.targets(options.targets, role: "--targets", count: base.data.count, outputs: k)
        var testTargets: Targets? = nil
        if let path = options.testTargets {
            guard let test = base.data2 else { throw NTKError(.usage, "--test-targets needs --test") }
            testTargets = try Inputs.targets(path, role: "--test-targets", count: test.count, outputs: k)
        }
        return Loaded(train: base.data, test: base.data2, targets: targets, testTargets: testTargets, spec: base.spec,
                      network: base.network, infinite: base.infinite)
    }

    static func execute(_ options: PredictOptions, world: Communicator) throws {
        let agreement = Agreement(world: world)
        let start = Clock.now
        BLASLibrary.setThreadCount(1)
        let loaded = try agreement.stage { () throws(NTKError) -> Loaded in try load(options) }
        let output: OutputDirectory? = try agreement.stage { () throws(NTKError) -> OutputDirectory? in
            guard world.isRoot else { return nil }
            return try OutputDirectory(path: options.output, force: options.force, markers: ["summary.json"],
                                       writes: ["train_predictions.npy", "test_predictions.npy", "train_variance.npy", "test_variance.npy",
                                                "metrics.json", "spectrum.svg", "spectrum.png", "spectrum.csv", "label_power.svg", "label_power.png", "report.txt",
                                                "train_kernel.npy", "test_kernel.npy", "eigenvalues.npy", "summary.json"])
        }
        let n = loaded.train.count, k = loaded.spec.outputCount
        let m = loaded.test?.count

        // Rank 0 holds Θ(X, X), its eigenvectors and a copy, and Θ(X*, X); every rank its share of tiles.
        let engine = TileEngine(options: options.engine, output: options.output, world: world)
        let dn = Double(n), dm = Double(m ?? 0)
        let eigenBytes = Double(MemoryPlan.baseline) + 8 * (4 * dn * dn + dm * dn) + 8 * Double(options.times.count + options.steps.count) * (dn + dm) * Double(k)
        if try useConjugateGradients(options, eigenBytes: eigenBytes, world: world) {
            try executeCG(options, loaded: loaded, output: output, engine: engine, start: start, world: world)
            return
        }
        try engine.checkMemory(eigenBytes, what: "Θ(X, X) with its eigenvectors, Θ(X*, X) and the predictions")
        let kernelStart = Clock.now
        let jobs = kernelJobs(options, loaded: loaded, engine: engine, world: world)
        let trainKernel = try engine.gathered(jobs[0].name, computer: jobs[0].computer(), plan: jobs[0].plan, manifest: jobs[0].manifest)
        let testKernel: [Double]? = jobs.count > 1
            ? try engine.gathered(jobs[1].name, computer: jobs[1].computer(), plan: jobs[1].plan, manifest: jobs[1].manifest) : nil
        let kernelSeconds = Clock.seconds(since: kernelStart)

        try agreement.stage(quietly: true) { () throws(NTKError) in
            guard world.isRoot, let output else { return }
            let solveStart = Clock.now
            // f₀: the network's outputs, or 0 (the infinite ensembles' mean, or --f0-zero).
            let network = options.zeroInitialOutputs ? nil : loaded.network
            let f0: [Double] = network?.outputs(loaded.train.values, count: n) ?? [Double](repeating: 0, count: n * k)
            let f0Test: [Double]? = loaded.test.map { test in
                network?.outputs(test.values, count: test.count) ?? [Double](repeating: 0, count: test.count * k)
            }
            let y = RowMajorMatrix(rows: n, columns: k, elements: loaded.targets.values)
            let times = options.times.map { TrainingTime.flow($0) } + options.steps.map { TrainingTime.steps($0) }
            let dynamics: GradientDescentMSE
            let predictions: [Prediction]
            let diagnostics: SpectralDiagnostics
            // The NNGP ensemble's output variances per time (the same for each output).
            var trainVariance: [Double] = [], testVariance: [Double] = []
            do {
                dynamics = try GradientDescentMSE(trainKernel: RowMajorMatrix(rows: n, columns: n, elements: trainKernel), targets: y,
                                                  learningRate: options.learningRate, regularizer: options.regularizer)
                let trajectory = try dynamics.trajectory(
                    trainOutputs: RowMajorMatrix(rows: n, columns: k, elements: f0),
                    testKernel: testKernel.map { RowMajorMatrix(rows: m!, columns: n, elements: $0) },
                    testOutputs: f0Test.map { RowMajorMatrix(rows: m!, columns: k, elements: $0) })
                var list: [Prediction] = []
                for time in times { list.append(try trajectory.prediction(at: time)) }
                predictions = list
                if options.kernel == .nngp {
                    let selfKernel = loaded.test.map { test in Self.selfKernel(loaded.infinite!, test) }
                    for time in times {
                        trainVariance += try trajectory.trainVariance(at: time)
                        if let selfKernel { testVariance += try trajectory.testVariance(at: time, testSelfKernel: selfKernel) }
                    }
                }
                diagnostics = try SpectralDiagnostics(eigen: dynamics.eigen, targets: y)
            } catch {
                throw NTKError(.software, "the dynamics failed: \(error)")
            }
            var metrics: [PredictionMetrics] = []
            do {
                for p in predictions {
                    metrics.append(try PredictionMetrics(
                        prediction: p, trainTargets: y,
                        testTargets: loaded.testTargets.map { RowMajorMatrix(rows: m!, columns: k, elements: $0.values) },
                        trainLabels: k > 1 ? loaded.targets.labels : nil, testLabels: k > 1 ? loaded.testTargets?.labels : nil))
                }
            } catch {
                throw NTKError(.dataError, "cannot score the predictions: \(error)")
            }
            let solveSeconds = Clock.seconds(since: solveStart)

            let t = predictions.count
            var train = [Double](), test = [Double]()
            train.reserveCapacity(t * n * k)
            for p in predictions {
                train += p.train.elements
                if let tp = p.test { test += tp.elements }
            }
            var summary = PredictSummary(kernel: options.kernel.rawValue, initialOutputs: network == nil ? "zero" : "network",
                                         n: n, m: m, outputs: k, learningRate: options.learningRate,
                                         normalization: dynamics.normalization, maxStableLearningRate: dynamics.maxStableLearningRate,
                                         diagonalShift: dynamics.diagonalShift, times: times.map(\.description),
                                         diagnostics: diagnostics, timeConstants: dynamics.timeConstants.reversed(),
                                         ranks: world.size,
                                         seconds: ["kernels": kernelSeconds, "dynamics": solveSeconds, "total": Clock.seconds(since: start)])
            let metricsJSON = try JSONOutput.encode(["times": metrics])
            try output.stage("train_predictions.npy", NPYFormat.encode(NPYArray(shape: [t, n, k], doubles: train)))
            if let m { try output.stage("test_predictions.npy", NPYFormat.encode(NPYArray(shape: [t, m, k], doubles: test))) }
            if options.kernel == .nngp {
                try output.stageNPY("train_variance.npy", shape: [t, n], values: trainVariance)
                if let m { try output.stageNPY("test_variance.npy", shape: [t, m], values: testVariance) }
            }
            if options.keepKernels {
                // Streamed from the arrays: no second copy of the N x N kernel.
                try output.stageNPY("train_kernel.npy", shape: [n, n], values: trainKernel)
                if let m, let testKernel { try output.stageNPY("test_kernel.npy", shape: [m, n], values: testKernel) }
                let shift = dynamics.diagonalShift
                try output.stageNPY("eigenvalues.npy", shape: [n], values: dynamics.eigen.values.map { $0 - shift })
            }
            try output.stage("metrics.json", metricsJSON)
            try output.stagePlot("spectrum", SpectralReport.spectrumPlot(eigenvalues: dynamics.eigen.values))
            try output.stage("spectrum.csv", SpectralReport.csv(eigenvalues: dynamics.eigen.values))
            if let power = diagnostics.cumulativeLabelPower {
                try output.stagePlot("label_power", SpectralReport.labelPowerPlot(power))
            }
            let report = SpectralReport.text(diagnostics: diagnostics, maxStableLearningRate: dynamics.maxStableLearningRate,
                                             learningRate: options.learningRate, normalization: dynamics.normalization,
                                             metrics: metrics)
            try commit(&summary, report: report, output: output, engine: engine, quiet: options.quiet)
        }
    }

    /// Rank 0: stages report.txt and summary.json (listing every file), commits the
    /// results, removes the checkpoints and prints the report.
    static func commit(_ summary: inout PredictSummary, report: String, output: OutputDirectory, engine: TileEngine,
                       quiet: Bool) throws(NTKError) {
        try output.stage("report.txt", Data(report.utf8))
        summary.files = output.stagedNames + ["summary.json"]
        try output.stage("summary.json", try JSONOutput.encode(summary))
        try output.commitStaged()
        engine.finish()
        if !quiet { print(report + "  wrote " + summary.files.joined(separator: ", ") + " to \(output.path)") }
    }

    /// One kernel a prediction needs: its checkpoint name, tile plan, computer (made when
    /// the kernel is computed) and manifest.
    struct KernelJob {
        let name: String
        let plan: TilePlan
        let computer: () -> TileComputer
        let manifest: Checkpoint.Manifest
    }

    /// Θ(X, X) ("train"), and Θ(X*, X) ("test", rows the test points) with a test set: the
    /// same for the eigen and the CG paths.
    static func kernelJobs(_ options: PredictOptions, loaded: Loaded, engine: TileEngine, world: Communicator) -> [KernelJob] {
        let n = loaded.train.count, k = loaded.spec.outputCount, kind = options.kernel
        func job(_ name: String, rows: DataSet, columns: DataSet?) -> KernelJob {
            let plan = TilePlan(rows: rows.count, columns: n, tileSize: options.engine.tileSize(rows: n, columns: n),
                                symmetric: columns == nil, ranks: world.size)
            return KernelJob(name: name, plan: plan, computer: {
                if let network = loaded.network {
                    return TileComputer(network: network, plan: plan, outputKernel: .mean, method: options.engine.method,
                                        forms: options.engine.layerForms, rowData: rows.values, columnData: columns?.values,
                                        cacheBytes: options.engine.cacheMegabytes << 20)
                }
                return TileComputer(infinite: loaded.infinite!, kind: kind, outputCount: k, plan: plan, outputKernel: .mean,
                                    rowData: rows.values, columnData: columns?.values)
            }, manifest: engine.manifest(rows: rows, columns: columns, spec: loaded.spec, network: loaded.network, kind: kind, plan: plan))
        }
        var jobs = [job("train", rows: loaded.train, columns: nil)]
        if let test = loaded.test { jobs.append(job("test", rows: test, columns: loaded.train)) }
        return jobs
    }

    /// K(x, x) of each input: the test points' prior variances under the NNGP.
    static func selfKernel(_ kernel: InfiniteWidthKernel, _ data: DataSet) -> [Double] {
        let d = data.width
        return data.values.withUnsafeBufferPointer { values in
            (0..<data.count).map { i in
                let row = UnsafeBufferPointer(rebasing: values[(i * d)..<((i + 1) * d)])
                return kernel.evaluate(x: row, m: 1, y: row, n: 1).nngp[0]
            }
        }
    }
}

/// Readable renderings of spectral diagnostics: a text report, a spectrum plot and table.
public enum SpectralReport {
    /// The spectrum as CSV, largest first: `rank,eigenvalue,cumulative_fraction`, rank from 1
    /// and the fraction of the trace (of the positive part) in the top `rank` modes.
    static func csv(eigenvalues: [Double]) -> Data {
        let descending = eigenvalues.reversed()
        let total = descending.reduce(0) { $0 + Swift.max($1, 0) }
        var text = "rank,eigenvalue,cumulative_fraction\n"
        var running = 0.0
        for (r, value) in descending.enumerated() {
            running += Swift.max(value, 0)
            text += "\(r + 1),\(String(format: "%.17g", value)),\(total > 0 ? String(format: "%.17g", running / total) : "")\n"
        }
        return Data(text.utf8)
    }

    /// The report: one line per diagnostic, then one line per training time.
    public static func text(diagnostics d: SpectralDiagnostics, maxStableLearningRate: Double?, learningRate: Double?,
                            normalization: Double?, metrics: [PredictionMetrics] = []) -> String {
        func g(_ v: Double?) -> String { v.map { String(format: "%.6g", $0) } ?? "n/a" }
        var lines = ["NTK spectrum (N = \(d.n))",
                     "  lambda_min \(g(d.lambdaMin)), lambda_max \(g(d.lambdaMax)), condition number \(g(d.conditionNumber)), trace \(g(d.trace))",
                     "  effective rank \(g(d.effectiveRank)), participation ratio \(g(d.participationRatio)), stable rank \(g(d.stableRank))",
                     "  eigenvalue decay exponent \(g(d.decayExponent)) (lambda_k ~ k^-alpha over the top \(d.decayFitModes) modes)"]
        if d.negativeEigenvalues > 0 { lines.append("  \(d.negativeEigenvalues) negative eigenvalue(s) (clamped to 0 in the dynamics)") }
        if let a = d.kernelTargetAlignment {
            lines.append("  kernel-target alignment \(g(a)), centred \(g(d.centeredKernelTargetAlignment))")
        }
        if let power = d.cumulativeLabelPower, !power.isEmpty {
            let marks = [1, 10, 100, 1000].filter { $0 <= power.count }
            lines.append("  label power in the top modes: " + marks.map { "\($0): \(String(format: "%.3f", power[$0 - 1]))" }.joined(separator: ", "))
        }
        if let maxRate = maxStableLearningRate, let c = normalization {
            var line = "  largest stable learning rate 2c/lambda_max = \(g(maxRate)) (c = \(g(c)))"
            if let learningRate { line += learningRate < maxRate ? "; \(g(learningRate)) is stable" : "; \(g(learningRate)) DIVERGES in discrete steps" }
            lines.append(line)
            if let learningRate, d.lambdaMax > 0 {
                let slowest = d.lambdaMin > 0 ? c / (learningRate * d.lambdaMin) : .infinity
                lines.append("  mode time constants c/(eta lambda_i): fastest \(g(c / (learningRate * d.lambdaMax))), slowest \(slowest.isFinite ? g(slowest) : "inf")")
            }
        }
        lines += metricsTable(metrics)
        return lines.joined(separator: "\n") + "\n"
    }

    /// One line per training time: loss, MSE and accuracies (none without metrics).
    static func metricsTable(_ metrics: [PredictionMetrics]) -> [String] {
        guard !metrics.isEmpty else { return [] }
        func g(_ v: Double?) -> String { v.map { String(format: "%.6g", $0) } ?? "n/a" }
        func a(_ v: Double?) -> String { v.map { String(format: "%.4f", $0) } ?? "-" }
        func pad(_ s: String, _ width: Int) -> String { s.padding(toLength: max(width, s.count), withPad: " ", startingAt: 0) }
        return ["  time         train loss     train MSE      test MSE       train acc  test acc"] + metrics.map { m in
            "  " + pad(m.time.description, 12) + " " + pad(g(m.trainLoss), 14) + " " + pad(g(m.trainMSE), 14) + " "
                + pad(g(m.testMSE), 14) + " " + pad(a(m.trainAccuracy), 10) + " " + a(m.testAccuracy)
        }
    }

    /// Eigenvalues against rank (log-log).
    public static func spectrumPlot(eigenvalues: [Double], title: String = "NTK spectrum") -> SVGPlot {
        let descending = eigenvalues.reversed().enumerated().map { (x: Double($0.offset + 1), y: $0.element) }
        var plot = SVGPlot(title: title, xLabel: "rank k (decreasing eigenvalue)", yLabel: "eigenvalue λ_k",
                           xLogarithmic: true, yLogarithmic: true)
        plot.add("λ_k", descending, style: descending.count > 200 ? .line : .lineAndMarkers)
        plot.notes = ["N = \(eigenvalues.count); non-positive eigenvalues are not drawn on the log axis"]
        return plot
    }

    /// The cumulative label power Σ_{i≤k} (v_iᵀy)²/‖y‖² against rank k (log x).
    public static func labelPowerPlot(_ power: [Double]) -> SVGPlot {
        var plot = SVGPlot(title: "Label power captured by the top NTK modes", xLabel: "rank k (decreasing eigenvalue)",
                           yLabel: "cumulative label power", xLogarithmic: true)
        plot.add("Σ_{i ≤ k} (v_i^{T} y)^2 / ‖y‖^2", power.enumerated().map { (x: Double($0.offset + 1), y: $0.element) }, style: .line)
        plot.notes = ["targets that concentrate in the top modes are learned first and generalise best"]
        return plot
    }
}
